#!/bin/sh
# The example image's declaration checker ([declare] checker in image.toml),
# the stand-in of the Windows image's Test-ImageDeclaration.ps1: the test
# stage runs it on this machine after the smoke test, in the template folder,
# with the run's RUN_DIR, IMAGE_NAME and IMAGE_VERSION and the declaration in
# DECLARE_FEATURES, DECLARE_LANGUAGE_PACKS,
# DECLARE_DEFENDER_SIGNATURE_MAX_AGE_HOURS, DECLARE_FIREWALL_PROFILES and
# DECLARE_SERVICES (lists comma-separated; empty: not checked). It checks the
# stand-in system the build wrote (provision.sh) and prints what the
# PowerShell checker prints, one line of JSON:
#   {"checks":[{"name":"feature:Web-Server","expected":"Installed","actual":"Installed","ok":true}, ...]}
# then exits 1 when a check failed, 0 otherwise. It changes nothing. The
# factory checks every name it passes (letters, digits, '-', '_', '.'), and
# the values come from the stand-in system: nothing needs quoting in the JSON.
set -eu

system="$RUN_DIR/output/$IMAGE_NAME-$IMAGE_VERSION/system"
checks=""
failed=0

# add <name> <expected> <actual> <true|false>
add() {
  if [ "$4" != true ]; then
    failed=1
  fi
  checks="$checks${checks:+,}{\"name\":\"$1\",\"expected\":\"$2\",\"actual\":\"$3\",\"ok\":$4}"
}

# found <file of the system> <what its absence means>: its content
found() {
  if [ -f "$1" ]; then
    head -n 1 "$1"
  else
    printf '%s\n' "$2"
  fi
}

# check <kind> <folder> <expected content> <absent> <comma-separated names>
check() {
  old_ifs=$IFS
  IFS=,
  for name in $5; do
    IFS=$old_ifs
    actual=$(found "$system/$2/$name" "$4")
    ok=false
    if [ "$actual" = "$3" ]; then
      ok=true
    fi
    add "$1:$name" "$3" "$actual" "$ok"
    IFS=,
  done
  IFS=$old_ifs
}

check feature features Installed "not installed" "${DECLARE_FEATURES:-}"
check language-pack language-packs installed "not installed" "${DECLARE_LANGUAGE_PACKS:-}"

max_hours="${DECLARE_DEFENDER_SIGNATURE_MAX_AGE_HOURS:-}"
if [ -n "$max_hours" ]; then
  enabled=$(found "$system/defender/antivirus-enabled" False)
  ok=false
  if [ "$enabled" = True ]; then
    ok=true
  fi
  add defender:antivirus-enabled True "$enabled" "$ok"
  updated=$(found "$system/defender/signatures-updated" "")
  case "$updated" in
    "" | *[!0-9]*)
      add defender:signature-age-hours "<= $max_hours" "signatures never updated" false
      ;;
    *)
      age=$(($(date -u +%s) - updated))
      tenths=$((age * 10 / 3600))
      ok=false
      if [ "$age" -le $((max_hours * 3600)) ]; then
        ok=true
      fi
      add defender:signature-age-hours "<= $max_hours" "$((tenths / 10)).$((tenths % 10)) (stand-in signatures)" "$ok"
      ;;
  esac
fi

check firewall firewall True False "${DECLARE_FIREWALL_PROFILES:-}"
check service services Running "not installed" "${DECLARE_SERVICES:-}"

printf '{"checks":[%s]}\n' "$checks"
exit "$failed"
