#!/usr/bin/env bash
# Checks the third-party files the tests read (specifications, schemas,
# captures, Microsoft's security update data, Bicep's type data) against
# tests/third-party.toml: each pinned file present with its SHA-256, and every
# third-party path the tests name pinned there.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/third-party.py check "$@"
