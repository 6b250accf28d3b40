#!/bin/sh
# Fails the build when the stand-in image is incomplete.
set -eu
test -s "$OUTPUT_DIR/tags.json"
test -s "$OUTPUT_DIR/index.html"
grep -q '"gitRef"' "$OUTPUT_DIR/tags.json"
echo "smoke test passed for $OUTPUT_DIR"
