#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds the agent and runs it on this host. With no collector
# (set OTEL_EXPORTER_OTLP_ENDPOINT or pass --otlp-endpoint) it prints a live summary and writes
# the OTLP data to ./telegen-otlp.jsonl. Extra arguments go to `telegen run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh run
cargo build --release --locked -p telegen
exec "${CARGO_TARGET_DIR:-target}/release/telegen" run "$@"
