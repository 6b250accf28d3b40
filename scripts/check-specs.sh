#!/usr/bin/env bash
# Re-checks the vendored REST API specifications (tests/fixtures/specs) against
# the SHA-256 recorded for each in tests/fixtures/specs/SOURCES.md, and
# refuses a spec file that is not listed there.
set -euo pipefail
cd "$(dirname "$0")/../tests/fixtures/specs"
status=0
listed=$(mktemp)
trap 'rm -f "$listed"' EXIT
while IFS='|' read -r _ file _ _ sum _; do
  file=$(echo "$file" | tr -d ' `')
  sum=$(echo "$sum" | tr -d ' `')
  case "$file" in specification/*) ;; *) continue ;; esac
  echo "$file" >>"$listed"
  if [ ! -f "$file" ]; then
    echo "check-specs: $file is listed in SOURCES.md but missing" >&2
    status=1
  elif [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$sum" ]; then
    echo "check-specs: $file does not match its recorded SHA-256 (changed since it was vendored?)" >&2
    status=1
  fi
done <SOURCES.md
while read -r file; do
  if ! grep -qxF "$file" "$listed"; then
    echo "check-specs: $file is not listed in SOURCES.md (record its source, commit and SHA-256)" >&2
    status=1
  fi
done < <(find specification -type f | sort)
[ "$status" -eq 0 ] && echo "check-specs: $(wc -l <"$listed") spec files match SOURCES.md"
exit "$status"
