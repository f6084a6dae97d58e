#!/usr/bin/env bash
# Sets up a fresh Debian machine (build packages only: scripts/setup.sh run), builds the agent
# and runs it on this host. It prints a live summary; with no collector (set
# OTEL_EXPORTER_OTLP_ENDPOINT or pass --otlp-endpoint) it also writes the OTLP data to
# ./telegen-otlp.jsonl. Extra arguments go to `telegen run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh run
cargo build --release --locked -p telegen
exec "${CARGO_TARGET_DIR:-target}/release/telegen" run "$@"
