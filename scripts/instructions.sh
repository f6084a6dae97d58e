#!/usr/bin/env bash
# Instructions per transaction on the shard path (and, with `encode`, plus the export core's
# span encoding and gzip), counted by callgrind: repeatable on a busy machine, unlike timings.
# The driver feeds the perf harness's own synthetic records (generated before counting starts)
# and runs twice with two transaction counts; the difference per transaction is printed, so
# start-up and shutdown cancel out.
# With `forward`, two shards share the records (written on two CPUs, a quarter of each
# connection's away from its home) and forward to each other; the count covers both.
# Usage: scripts/instructions.sh [http1|grpc|dns] [encode] [forward]
# Environment: CONNS (connections, default 4096), TRACEPARENT_PCT (default 25).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p telegen-perf --example shard_instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/shard_instructions"
count() { # $1: transactions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='shard_instructions::drive' \
    "$bin" "$1" "${@:2}" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
lo=$(count 20000 "$@")
hi=$(count 60000 "$@")
echo "instructions per transaction (${*:-http1}): $(( (hi - lo) / 40000 ))"
