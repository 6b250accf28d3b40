#!/bin/sh
# Writes image-evidence.json (schema image-factory.evidence/1) in the shape
# the Windows template's Write-ImageEvidence.ps1 writes, from the values the
# example is given, marked "standIn": true: the example has no Windows to
# read. Nothing is written when EVIDENCE_OS_BUILD is empty. Every value is
# checked before it goes into the JSON (no quoting is needed after that);
# the file is written whole under a temporary name, then put in place.
set -eu

if [ -z "${EVIDENCE_OS_BUILD:-}" ]; then
  echo "no stand-in evidence: evidence_os_build is empty"
  exit 0
fi

fail() {
  echo "write-evidence: $1" >&2
  exit 1
}

# Only these characters (and nothing empty) may go into the JSON.
check() {
  name=$1
  value=$2
  allowed=$3
  case "$value" in
    "" | *[!$allowed]*) fail "$name is not valid: '$value'" ;;
  esac
}

check evidence_os_build "$EVIDENCE_OS_BUILD" '0-9.'
case "$EVIDENCE_OS_BUILD" in
  10.0.*.*) ;;
  *) fail "evidence_os_build must be 10.0.<build>.<ubr>, not '$EVIDENCE_OS_BUILD'" ;;
esac
case "$EVIDENCE_INSTALLATION_TYPE" in
  "Server" | "Server Core") ;;
  *) fail "evidence_installation_type must be Server or Server Core, not '$EVIDENCE_INSTALLATION_TYPE'" ;;
esac
check evidence_product_name "$EVIDENCE_PRODUCT_NAME" 'A-Za-z0-9 :().-'
case "$EVIDENCE_REBOOT_PENDING" in
  true | false) ;;
  *) fail "evidence_reboot_pending must be true or false, not '$EVIDENCE_REBOOT_PENDING'" ;;
esac
for value in "$IMAGE_NAME" "$IMAGE_VERSION"; do
  check "the image's name or version" "$value" 'a-z0-9.-'
done
run_id=null
if [ -n "${FACTORY_RUN_ID:-}" ]; then
  check factory_run_id "$FACTORY_RUN_ID" 'a-z0-9.-'
  run_id="\"$FACTORY_RUN_ID\""
fi

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
hotfixes=""
updates=""
old_ifs=$IFS
IFS=,
for kb in ${EVIDENCE_HOTFIXES:-}; do
  check evidence_hotfixes "$kb" 'KB0-9'
  hotfixes="$hotfixes${hotfixes:+, }\"$kb\""
  updates="$updates${updates:+, }{ \"title\": \"Stand-in update ($kb)\", \"kb\": \"$kb\", \"resultCode\": 2, \"operation\": 1, \"date\": \"$now\" }"
done
IFS=$old_ifs

temporary="$EVIDENCE_PATH.$$.tmp"
cat > "$temporary" <<JSON
{
  "schema": "image-factory.evidence/1",
  "collectedAt": "$now",
  "image": { "name": "$IMAGE_NAME", "version": "$IMAGE_VERSION", "runId": $run_id },
  "os": {
    "productName": "$EVIDENCE_PRODUCT_NAME",
    "installationType": "$EVIDENCE_INSTALLATION_TYPE",
    "build": "$EVIDENCE_OS_BUILD"
  },
  "rebootPending": $EVIDENCE_REBOOT_PENDING,
  "hotfixes": [$hotfixes],
  "updates": [$updates],
  "unavailable": [],
  "standIn": true
}
JSON
mv "$temporary" "$EVIDENCE_PATH"
echo "stand-in evidence written to $EVIDENCE_PATH: build $EVIDENCE_OS_BUILD, reboot pending $EVIDENCE_REBOOT_PENDING, hotfixes [${EVIDENCE_HOTFIXES:-}]"
