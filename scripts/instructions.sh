#!/usr/bin/env bash
# Instructions per HTTP/1.1 transaction on the shard path (and, with `encode`, plus the export
# core's span encoding and gzip), counted by callgrind: repeatable on a busy machine, unlike
# timings. Runs the driver with two transaction counts and prints the difference per transaction.
# Usage: scripts/instructions.sh [encode]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p telegen-benches --example shard_instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/shard_instructions"
count() { # $1: transactions per connection
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" ${2:-} 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
lo=$(count 10 "${1:-}")
hi=$(count 30 "${1:-}")
# 1,024 connections x 20 more transactions each.
echo "instructions per transaction${1:+ ($1)}: $(( (hi - lo) / (20 * 1024) ))"
