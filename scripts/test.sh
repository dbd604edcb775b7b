#!/usr/bin/env bash
# Runs EdgeLB's whole test suite on this machine, installing whatever is
# missing first (idempotent). Needs root: the tests load XDP programs and
# create network namespaces. This is exactly what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
# `cargo test` at the root covers the workspace's default members: every crate
# but the eBPF one, which the xdp-fwd loader's build script compiles for BPF.
cargo test --locked --release 2>&1 | grep -v '^warning: xdp-fwd@' 
