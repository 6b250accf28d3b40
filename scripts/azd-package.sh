#!/usr/bin/env sh
# azd prepackage hook: builds the handler for this machine (it must be Linux
# x86-64: the package refuses anything else), writes dist/image-factory.zip
# with `image-factory package` (which checks functions, handler and infra
# queues agree) and unpacks it into dist/package, the folder azd deploys.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked
target/release/image-factory package --binary target/release/image-factory --out dist/image-factory.zip
rm -rf dist/package
mkdir -p dist/package
python3 -c 'import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for info in z.infolist():
    path = z.extract(info, sys.argv[2])
    mode = info.external_attr >> 16
    if mode:
        os.chmod(path, mode & 0o777)' dist/image-factory.zip dist/package
