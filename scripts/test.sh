#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every check: format, lints, docs, unit, property, kernel
# and integration tests, the benches once each (as tests), and a type-check of the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Docs build without a warning (a broken or private link, a stray HTML tag).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# Kernel and integration tests run for real as root; under CI=true a missing BPF
# prerequisite fails them instead of skipping.
cargo test --workspace --all-targets --locked
cargo check --manifest-path fuzz/Cargo.toml --quiet
