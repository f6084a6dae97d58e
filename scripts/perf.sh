#!/usr/bin/env bash
# Telegen's performance harness in one command (as root): installs what it needs (like
# scripts/setup.sh: build tools, nginx-light, wrk), builds the release binaries, and runs
# `telegen-perf` (synthetic data-plane throughput, then overhead/capture/memory on nginx + wrk).
# Prints a table and writes perf-report.json. Extra arguments go to telegen-perf, e.g.
#   ./scripts/perf.sh --soak-secs 600       # add the 10-minute memory-flatness run
#   ./scripts/perf.sh --only synthetic      # HTTP/1.1, gRPC, DNS and a mix; the phase uses no
#                                           # kernel, but this script still sets up as root: to
#                                           # skip that, run target/release/telegen-perf directly
#   ./scripts/perf.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh perf
echo "perf: building release binaries (telegen, telegen-perf)"
cargo build --release -q -p telegen -p telegen-perf
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/telegen-perf" --telegen-bin "$target/release/telegen" "$@"
