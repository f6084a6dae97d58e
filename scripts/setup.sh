#!/usr/bin/env bash
# Installs what Telegen needs on a fresh Debian machine and mounts tracefs/bpffs when missing.
# Idempotent; run as root. Usage: scripts/setup.sh [run|perf|test] (default: test).
#   run   what building and running the agent needs (scripts/run.sh): build tools and libraries;
#         it leaves every service the host runs as it is;
#   perf  that plus nginx-light and wrk for the harness's overhead phase (scripts/perf.sh);
#   test  everything the tests start (scripts/test.sh), the Python peers, OpenSSL 1.1, rustfmt and
#         clippy; and it stops the nginx and redis services (the other modes stop only the
#         servers they installed themselves, which Debian starts on installing them).
set -euo pipefail

mode=${1:-test}
case "$mode" in
  run | perf | test) ;;
  *)
    echo "setup: unknown mode '$mode' (run, perf or test)" >&2
    exit 2
    ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (BPF, tracefs and apt need it)" >&2
  exit 1
fi

# Build: clang and llvm compile the BPF programs, libelf/zlib/pkg-config for libbpf, libisal-dev
# for the export core's gzip (ISA-L's igzip; its libisal2 is then a runtime library of the agent).
PKGS=(clang llvm libelf-dev zlib1g-dev libisal-dev pkg-config make gcc)
# Perf: nginx (the traced server) and wrk (its load).
if [ "$mode" != run ]; then
  PKGS+=(nginx-light wrk)
fi
# Tests: nginx and curl (HTTP/1.1 and HTTP/2 peers; TLS with an openssl-made certificate),
# python3, redis-server, golang-go, default-jdk-headless (real processes for runtime and database
# discovery), dnsmasq-base and dnsutils (dig) as DNS peers; nghttp2-client (nghttp, an HTTP/2
# client for the HTTP/2 fixture capture, dataplane/tests/fixtures/http2/capture.py).
if [ "$mode" = test ]; then
  PKGS+=(curl openssl python3 redis-server golang-go default-jdk-headless dnsmasq-base dnsutils nghttp2-client)
fi
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
if [ "$mode" = test ]; then
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
  # OpenSSL 1.1 for the TLS tests (tests/tests/tls11_kernel.rs): bookworm ships only libssl3, so
  # apt downloads Debian bullseye's libssl1.1 (by package name and pinned version, from the
  # mirrors this machine's apt already uses, through a throwaway apt state) and dpkg-deb unpacks it
  # into LIBSSL11_DIR. Never installed: the system's libssl and apt configuration are left as they
  # are. Skipped when the cached .deb matches its sha256 and both libraries are there.
  LIBSSL11_DIR=/opt/telegen-test/libssl1.1
  LIBSSL11_VERSION=1.1.1w-0+deb11u8
  LIBSSL11_DEB=libssl1.1_${LIBSSL11_VERSION}_amd64.deb
  LIBSSL11_SHA256=dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d
  libssl11_ok() {
    [ -f "$LIBSSL11_DIR/$LIBSSL11_DEB" ] &&
      echo "$LIBSSL11_SHA256  $LIBSSL11_DIR/$LIBSSL11_DEB" | sha256sum -c --status - &&
      [ -f "$LIBSSL11_DIR/root/usr/lib/x86_64-linux-gnu/libssl.so.1.1" ] &&
      [ -f "$LIBSSL11_DIR/root/usr/lib/x86_64-linux-gnu/libcrypto.so.1.1" ]
  }
  # The Debian archive and security mirrors apt is configured with (deb822 or one-line sources).
  debian_mirror() { # $1: "security" for the security archive, "" for the main one
    local uris
    uris=$({ sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; })
    if [ "$1" = security ]; then
      printf '%s\n' $uris | awk '/security/ { print; exit }'
    else
      printf '%s\n' $uris | awk '/debian/ && !/security/ { print; exit }'
    fi
  }
  if [ "$(dpkg --print-architecture)" = amd64 ] && ! libssl11_ok; then
    echo "setup: downloading libssl1.1=$LIBSSL11_VERSION (Debian bullseye) into $LIBSSL11_DIR"
    main_mirror=$(debian_mirror "")
    security_mirror=$(debian_mirror security)
    if [ -z "$main_mirror" ] || [ -z "$security_mirror" ]; then
      echo "setup: no Debian archive and security mirrors found in /etc/apt sources" >&2
      exit 1
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    cat >"$tmp/sources.list" <<SOURCES
deb [signed-by=$keyring] $main_mirror bullseye main
deb [signed-by=$keyring] $security_mirror bullseye-security main
SOURCES
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    apt_tmp=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives"
      -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Get::List-Cleanup=0
      -o APT::Sandbox::User=root)
    apt-get "${apt_tmp[@]}" -qq update
    (cd "$tmp" && apt-get "${apt_tmp[@]}" -qq download "libssl1.1=$LIBSSL11_VERSION")
    if ! echo "$LIBSSL11_SHA256  $tmp/$LIBSSL11_DEB" | sha256sum -c --status -; then
      echo "setup: $LIBSSL11_DEB does not match sha256 $LIBSSL11_SHA256" >&2
      exit 1
    fi
    dpkg-deb -x "$tmp/$LIBSSL11_DEB" "$tmp/root"
    rm -rf "$LIBSSL11_DIR"
    mkdir -p "$LIBSSL11_DIR"
    mv "$tmp/root" "$LIBSSL11_DIR/root"
    mv "$tmp/$LIBSSL11_DEB" "$LIBSSL11_DIR/$LIBSSL11_DEB"
    libssl11_ok || { echo "setup: $LIBSSL11_DIR is incomplete after unpacking $LIBSSL11_DEB" >&2; exit 1; }
  fi
fi
# Debian starts the servers it installs; the tests and the harness start their own on free
# loopback ports. The test mode stops them whatever installed them (a test machine); the other
# modes stop only those this run installed, and leave a server the host already ran alone.
for pair in nginx-light:nginx redis-server:redis-server; do
  pkg=${pair%%:*} svc=${pair#*:}
  if { [ "$mode" = test ] || [[ " ${missing[*]} " == *" $pkg "* ]]; } &&
    command -v systemctl >/dev/null 2>&1; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
# scripts/test.sh also runs rustfmt and clippy: add them when rustup manages the toolchain.
if [ "$mode" = test ] && { ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; }; then
  if command -v rustup >/dev/null 2>&1; then
    echo "setup: adding the rustfmt and clippy components"
    rustup component add rustfmt clippy
  else
    echo "setup: cargo fmt / cargo clippy missing; install the rustfmt and clippy components" >&2
    exit 1
  fi
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
