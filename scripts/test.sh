#!/usr/bin/env bash
# Runs every check the project has: formatting, lints, and the whole test suite
# (unit, property, integration tests against real packer, real HTTP and real
# child processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
# The third-party files the tests read are the ones tests/third-party.toml pins.
bash scripts/check-specs.sh
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked -- --skip every_schedule_ends_each_run_once
# The fault-injection suite runs on its own, after the rest: its 1,000
# schedules have both cores to themselves.
cargo test --locked --test faults
