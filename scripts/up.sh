#!/usr/bin/env bash
# Runs the whole factory on this machine: HTTP triggers on http://localhost:7071/api/,
# timers, queues and state in .image-factory/. No Azure account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --quiet -- up "$@"
