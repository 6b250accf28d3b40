#!/bin/sh
# Writes a tiny stand-in "image": the tags as JSON, an index page, and a
# stand-in "system" that the declaration checker reads (check-declaration.sh):
# what the Windows image holds and declares, as files. STANDIN_OMIT names one
# check (service:W3SVC, feature:Web-Server, ...) whose item is left out, as
# if a step of the build had not installed it.
set -eu
mkdir -p "$OUTPUT_DIR"
printf '%s\n' "$TAGS_JSON" > "$OUTPUT_DIR/tags.json"
cat > "$OUTPUT_DIR/index.html" <<HTML
<!doctype html>
<html><head><title>$IMAGE_NAME $IMAGE_VERSION</title></head>
<body><h1>$IMAGE_NAME</h1><p>version $IMAGE_VERSION</p></body></html>
HTML

system="$OUTPUT_DIR/system"
rm -rf "$system"
# put <check name> <file of the system> <its content>
put() {
  if [ "$1" = "${STANDIN_OMIT:-}" ]; then
    echo "stand-in system: $1 left out"
    return 0
  fi
  mkdir -p "$(dirname "$2")"
  printf '%s\n' "$3" > "$2"
}
put feature:Web-Server "$system/features/Web-Server" Installed
put language-pack:fr-FR "$system/language-packs/fr-FR" installed
put defender:antivirus-enabled "$system/defender/antivirus-enabled" True
put defender:signature-age-hours "$system/defender/signatures-updated" "$(date -u +%s)"
for profile in Domain Private Public; do
  put "firewall:$profile" "$system/firewall/$profile" True
done
for service in W3SVC WinDefend mpssvc; do
  put "service:$service" "$system/services/$service" Running
done

echo "image written to $OUTPUT_DIR"
echo "tags: $TAGS_JSON"
