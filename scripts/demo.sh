#!/usr/bin/env bash
# The EdgeLB demo: installs whatever is missing (idempotent), builds, then
# brings up a simulated cluster in network namespaces (client, FRR router
# with ECMP, 3 lbnode daemons with driver-mode XDP, 4 DSR backends),
# configures it through lbctl, sends TCP and UDP traffic while printing live
# per-backend and per-node counts, shows every node's table digest agreeing,
# and tears everything down (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release 2>&1 | grep -Ev '^warning: xdp-(fwd|decap)@' || true
test -x target/release/edgelb-sim || { echo "build failed" >&2; exit 1; }
exec timeout --signal=TERM --kill-after=30 300 target/release/edgelb-sim demo --seconds "${DEMO_SECONDS:-10}"
