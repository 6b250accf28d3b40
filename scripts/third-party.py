#!/usr/bin/env python3
"""The third-party files the tests read, against their manifest.

tests/third-party.toml pins each file: its path in the third-party folder, the
public repository, commit and path it comes from, and its SHA-256.

    third-party.py root          print the folder the tests read (as they find it)
    third-party.py check [DIR]   every pinned file is in DIR with its SHA-256, and
                                 every third-party path the tests name is pinned
    third-party.py fetch DIR     download each missing file from its pinned source
                                 into DIR, checking its SHA-256 before keeping it

The folder the tests read is IMAGE_FACTORY_THIRD_PARTY when set, else the shared
folder beside the project (../shared/third-party), else .third-party/ in the
project (what `fetch` fills); tests/common/mod.rs finds it the same way.
"""

import hashlib
import os
import re
import sys
import tomllib
import urllib.request

PROJECT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MANIFEST = os.path.join(PROJECT, "tests", "third-party.toml")
RAW = "https://raw.githubusercontent.com/{repository}/{commit}/{source}"


def manifest():
    with open(MANIFEST, "rb") as f:
        return tomllib.load(f)["file"]


def default_root():
    if os.environ.get("IMAGE_FACTORY_THIRD_PARTY"):
        return os.environ["IMAGE_FACTORY_THIRD_PARTY"]
    shared = os.path.normpath(os.path.join(PROJECT, "..", "shared", "third-party"))
    if os.path.isdir(shared):
        return shared
    return os.path.join(PROJECT, ".third-party")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def named_by_tests():
    """Every literal path the tests pass to `third_party(...)` or `third_party_root().join(...)`."""
    names = set()
    pattern = re.compile(r'third_party\(\s*"([^"]+)"')
    for top in ("tests", "benches"):
        for folder, dirs, files in os.walk(os.path.join(PROJECT, top)):
            dirs[:] = [d for d in dirs if d != "node_modules"]
            for name in files:
                if name.endswith(".rs"):
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        names.update(pattern.findall(f.read()))
    return names


def check(root):
    files = manifest()
    status = 0
    for entry in files:
        path = os.path.join(root, entry["path"])
        if not os.path.isfile(path):
            print(f"third-party: {entry['path']} is pinned but missing from {root}", file=sys.stderr)
            status = 1
            continue
        with open(path, "rb") as f:
            if sha256(f.read()) != entry["sha256"]:
                print(
                    f"third-party: {entry['path']} does not match its pinned SHA-256 "
                    "(a different version? take it in as docs/third-party.md says)",
                    file=sys.stderr,
                )
                status = 1
    pinned = [entry["path"] for entry in files]
    for name in sorted(named_by_tests()):
        prefix = name.rstrip("/") + "/"
        if name not in pinned and not any(p.startswith(prefix) for p in pinned):
            print(
                f"third-party: the tests read {name}, which tests/third-party.toml does not pin "
                "(record its repository, commit, path and SHA-256)",
                file=sys.stderr,
            )
            status = 1
    if status == 0:
        print(f"third-party: {len(files)} pinned files match in {root}")
    return status


def extract(text, how):
    """The fenced block of a Markdown page that `how` names (see the manifest)."""
    kind, _, index = how.partition(":")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    block = blocks[int(index)]
    if kind == "fence-body":
        block = block.split("\n\n", 1)[1]
    elif kind != "fence":
        raise ValueError(f"unknown extract {how!r}")
    return block


def fetch(root):
    status = 0
    for entry in manifest():
        path = os.path.join(root, entry["path"])
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if sha256(f.read()) == entry["sha256"]:
                    continue
        url = RAW.format(**entry)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
            if "extract" in entry:
                data = extract(data.decode("utf-8"), entry["extract"]).encode("utf-8")
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            print(f"third-party: could not download {entry['path']} from {url}: {e}", file=sys.stderr)
            status = 1
            continue
        if sha256(data) != entry["sha256"]:
            print(
                f"third-party: {url} does not have the pinned SHA-256 for {entry['path']}; not kept",
                file=sys.stderr,
            )
            status = 1
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".part", "wb") as f:
            f.write(data)
        os.replace(path + ".part", path)
    return status


def main(argv):
    if len(argv) >= 2 and argv[1] == "root":
        print(default_root())
        return 0
    if len(argv) in (2, 3) and argv[1] == "check":
        return check(argv[2] if len(argv) == 3 else default_root())
    if len(argv) == 3 and argv[1] == "fetch":
        return fetch(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
