#!/bin/sh
# Writes a tiny stand-in "image": the tags as JSON and an index page.
set -eu
mkdir -p "$OUTPUT_DIR"
printf '%s\n' "$TAGS_JSON" > "$OUTPUT_DIR/tags.json"
cat > "$OUTPUT_DIR/index.html" <<HTML
<!doctype html>
<html><head><title>$IMAGE_NAME $IMAGE_VERSION</title></head>
<body><h1>$IMAGE_NAME</h1><p>version $IMAGE_VERSION</p></body></html>
HTML
echo "image written to $OUTPUT_DIR"
echo "tags: $TAGS_JSON"
