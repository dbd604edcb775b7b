#!/usr/bin/env bash
# One-time, idempotent set-up of a fresh Debian 12 machine for building and
# testing EdgeLB. A second run only checks and exits quickly.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Debian packages the build, the tests, the sim and the benchmarks use.
#    llvm-22-dev: libLLVM for bpf-linker; bpftool/ethtool/iproute2: XDP and veth;
#    frr/bird2/gobgpd: real BGP peers; tcpdump: captures in tests;
#    ipvsadm: the IPVS baseline in the sim benchmark; nftables: the kernel-nft
#    baseline (jhash DNAT) in the xdp-fwd pps bench; conntrack: flushes its
#    connection table between rounds.
PKGS=(llvm-22-dev bpftool ethtool iproute2 iputils-ping frr bird2 gobgpd tcpdump ipvsadm
      nftables conntrack procps psmisc kmod)
MISSING=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  log "installing Debian packages: ${MISSING[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${MISSING[@]}"
  # The packages' own services are not ours: tests start their daemons with
  # their files under a temp dir. Keep the system copies stopped.
  for svc in frr bird gobgpd; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
    service "$svc" stop >/dev/null 2>&1 || true
  done
  pkill -x bird >/dev/null 2>&1 || true
fi

# 2. Toolchains: stable for userspace (rust-toolchain.toml pins it), nightly
#    with rust-src for the eBPF crate (-Z build-std=core).
rustup toolchain list | grep -q '^nightly-' || rustup toolchain install nightly --profile minimal
rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
  || rustup component add rust-src --toolchain nightly
# bpf-linker reads rustc's bitcode with its own libLLVM: the majors must match.
rustc +nightly -vV | grep -q '^LLVM version: 22\.' \
  || { log "nightly rustc is not on LLVM 22; bpf-linker must be rebuilt for its LLVM"; exit 1; }

# 3. bpf-linker 0.13 dynamically linked against Debian's LLVM 22.
if ! bpf-linker --version 2>/dev/null | grep -q '^bpf-linker 0\.13\.'; then
  log "building bpf-linker 0.13.0 against LLVM 22 (one-time)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked \
    --no-default-features --features llvm-22
fi
log "ready: $(bpf-linker --version)"
