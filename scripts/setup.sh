#!/usr/bin/env bash
# Installs what the factory and its tests need on a fresh Debian machine.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1
  fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# packer: the validate and build stages run it (Debian ships 1.6.6).
if ! command -v packer >/dev/null 2>&1; then
  echo "setup: installing packer"
  apt_install packer
fi

# curl and openssl: tests/readme.rs runs the README's commands, which use them.
if ! command -v curl >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  echo "setup: installing curl and openssl"
  apt_install curl openssl
fi

# git: the local git-tag adapter runs it in the images folder's repository (tests/git_tags.rs).
if ! command -v git >/dev/null 2>&1; then
  echo "setup: installing git"
  apt_install git
fi

# Chromium and chromedriver: the browser tests open the factory's pages.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "setup: installing chromium and chromedriver"
  apt_install chromium chromium-driver
fi

# Node packages the tests use, pinned by their lockfiles (tests/*/package-lock.json).
for lock in tests/*/package-lock.json; do
  [ -e "$lock" ] || continue
  dir=$(dirname "$lock")
  if [ ! -d "$dir/node_modules" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "setup: installing node and npm"
      apt_install nodejs npm
    fi
    echo "setup: installing the node packages of $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# checkov: tests/infra.rs runs it over infra/ (pinned; in a virtualenv under .venv).
CHECKOV_VERSION=3.3.30
if [ "$(.venv/bin/checkov --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "setup: installing python3-venv"
    apt_install python3 python3-venv python3-pip
  fi
  echo "setup: installing checkov $CHECKOV_VERSION into .venv"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

# The third-party files the tests check against (tests/third-party.toml):
# read from the shared folder beside the project where it exists, otherwise
# downloaded from their pinned sources into .third-party/ and checked.
if ! command -v python3 >/dev/null 2>&1; then
  echo "setup: installing python3"
  apt_install python3
fi
third_party=$(python3 scripts/third-party.py root)
if ! python3 scripts/third-party.py check "$third_party" >/dev/null 2>&1; then
  if [ "$third_party" = "$PWD/.third-party" ]; then
    echo "setup: downloading the third-party files tests/third-party.toml pins into .third-party/"
    python3 scripts/third-party.py fetch .third-party
  fi
  python3 scripts/third-party.py check "$third_party"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

