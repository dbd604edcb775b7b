#!/usr/bin/env bash
# Runs EdgeLB's whole test suite on this machine, installing whatever is
# missing first (idempotent). Needs root: the tests load XDP programs and
# create network namespaces. This is exactly what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"

# One style and no lint warnings, or the run fails before any test: both are
# quick (clippy checks, it does not build release code).
cargo fmt --all --check
# (pipefail: clippy's status is the pipeline's; grep only filters.)
cargo clippy --locked --release --all-targets -- -D warnings 2>&1 \
  | { grep --line-buffered -Ev '^warning: xdp-(fwd|decap)@' || true; }

log=$(mktemp /tmp/edgelb-test.XXXXXX)
trap 'rm -f "$log"' EXIT
# `cargo test` at the root covers the workspace's default members: every crate
# but the eBPF one, which the xdp-fwd loader's build script compiles for BPF.
# (Its build output arrives as "warning: xdp-fwd@" lines: noise, filtered.)
# --no-fail-fast: one failing test binary must not hide the others.
# This includes the XDP differential fuzz at its full counts (xdp-fwd and
# xdp-decap `diff_fuzz`: 1,000,000 and 250,000 frames against the reference
# models, about 10 s together here): no extra step needed.
status=0
cargo test --locked --release --no-fail-fast 2>&1 | grep --line-buffered -Ev '^warning: xdp-(fwd|decap)@' | tee "$log" || status=$?

# The BGP message-path fuzz target again with a larger, still bounded budget
# (a million random and mutated messages per property; about 20 s here).
PROPTEST_CASES=1000000 cargo test --locked --release -p edgelb-bgp --test fuzz_messages 2>&1 \
  | grep --line-buffered -Ev '^warning: xdp-(fwd|decap)@' | tee -a "$log" || status=$?

# The decoder fuzz targets (Raft wire, admin protocol, TOML config) likewise:
# a million random and mutated inputs per property (see BENCHMARKS.md,
# reliability, for the time this takes).
PROPTEST_CASES=1000000 cargo test --locked --release -p edgelb-consensus --test fuzz_wire 2>&1 \
  | grep --line-buffered -Ev '^warning: xdp-(fwd|decap)@' | tee -a "$log" || status=$?
PROPTEST_CASES=1000000 cargo test --locked --release -p edgelb-node --test fuzz_admin --test fuzz_config 2>&1 \
  | grep --line-buffered -Ev '^warning: xdp-(fwd|decap)@' | tee -a "$log" || status=$?

# One closing line for the whole run, summed over every test binary.
passed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($(i+1) ~ /^passed/) s+=$i} END {print s+0}' "$log")
failed=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($(i+1) ~ /^failed/) s+=$i} END {print s+0}' "$log")
echo
echo "edgelb: $passed passed, $failed failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  exit 1
fi
