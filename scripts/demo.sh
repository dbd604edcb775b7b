#!/usr/bin/env bash
# Runs the EdgeLB demo, installing whatever is missing first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Until the namespace simulation lands, the demo builds everything and runs
# real packets through the XDP program with BPF_PROG_TEST_RUN.
cargo build --locked --release 2>&1 | grep -Ev '^warning: xdp-(fwd|decap)@'
cargo test --locked --release -p xdp-fwd -- --nocapture --test-threads 1 2>&1 | grep -Ev '^warning: xdp-(fwd|decap)@'
