#!/bin/sh
# The test stage's smoke test for the example image: the built "image" must
# serve a page that names the version the run built (the stand-in for the
# Windows image's "IIS answers" check).
set -eu
page="$RUN_DIR/output/$IMAGE_NAME-$IMAGE_VERSION/index.html"
test -s "$page" || { echo "no page at $page" >&2; exit 1; }
grep -q "version $IMAGE_VERSION" "$page" || { echo "$page does not name version $IMAGE_VERSION" >&2; exit 1; }
echo "smoke test passed: $page names version $IMAGE_VERSION"
