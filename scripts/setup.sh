#!/usr/bin/env bash
# Installs what Telegen needs on a fresh Debian machine and mounts tracefs/bpffs when missing.
# Idempotent; run as root. Used by scripts/run.sh and scripts/test.sh.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (BPF, tracefs and apt need it)" >&2
  exit 1
fi

# Build: clang compiles the BPF programs, libelf/zlib/pkg-config for libbpf.
# Tests: nginx and curl (HTTP/1.1 and HTTP/2 peers; TLS with an openssl-made certificate),
# wrk (load for the perf harness), python3, redis-server, golang-go, default-jdk-headless (real processes for runtime and database
# discovery), dnsmasq-base and dnsutils (dig) as DNS peers; nghttp2-client (nghttp, an HTTP/2
# client for the HTTP/2 fixture capture, dataplane/tests/fixtures/http2/capture.py).
PKGS=(clang llvm libelf-dev zlib1g-dev pkg-config make gcc curl openssl nginx-light wrk python3 redis-server golang-go default-jdk-headless dnsmasq-base dnsutils nghttp2-client)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python peers of the protocol tests: a gRPC server and client (grpcio), a DNS resolver
# (dnspython). Pinned to known-good versions; installed only when missing.
if ! python3 -c 'import grpc, dns.resolver' >/dev/null 2>&1; then
  echo "setup: installing grpcio and dnspython (pip)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  pip_args=(-q --disable-pip-version-check)
  # Debian's own python3 marks itself externally managed (PEP 668); these test-only packages
  # go into it anyway.
  if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    pip_args+=(--break-system-packages)
  fi
  python3 -m pip install "${pip_args[@]}" "grpcio==1.85.*" "dnspython==2.*"
fi
# Debian starts the packaged servers; the tests start their own on free loopback ports.
for svc in nginx redis-server; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

if [ ! -d /sys/kernel/tracing/events ] || [ -z "$(ls -A /sys/kernel/tracing 2>/dev/null)" ]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  mount -t bpf bpf /sys/fs/bpf
fi
if [ ! -e /sys/kernel/btf/vmlinux ]; then
  echo "setup: /sys/kernel/btf/vmlinux is missing: this kernel lacks BTF (CONFIG_DEBUG_INFO_BTF)" >&2
  exit 1
fi
