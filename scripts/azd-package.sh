#!/usr/bin/env sh
# azd prepackage hook: builds the handler for this machine (it must be Linux
# x86-64: the package refuses anything else) and writes the app into
# dist/package, the folder azd deploys, with `image-factory package --dir`:
# the Functions host's layout (host.json, one <name>/function.json per
# function, images/, the handler), checked against the handler, the infra
# queues and the host's indexing rule. dist/image-factory.zip, the same
# layout zipped, is written too for deployments without azd.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked
target/release/image-factory package --binary target/release/image-factory --out dist/image-factory.zip
# A dist/package from an older layout is not replaced by --dir: start afresh.
rm -rf dist/package
target/release/image-factory package --binary target/release/image-factory --dir dist/package
