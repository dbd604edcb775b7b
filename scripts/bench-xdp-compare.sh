#!/usr/bin/env bash
# Per-packet cost of the XDP forwarder at two revisions, measured side by
# side: builds the `forwarder` bench of each revision, then runs them
# alternately PAIRS times (so machine noise hits both alike) and prints, per
# case, the median and range over the runs of each revision's "minus floor"
# figure (see BENCHMARKS.md, xdp-fwd section).
#
# Usage (root, from the repository): scripts/bench-xdp-compare.sh BASE [NEW] [PAIRS]
#   BASE, NEW: git revisions (NEW defaults to the working tree as committed: HEAD)
#   PAIRS: alternated runs of each (default 21); each run is 20000 rounds,
#          and each pair runs at its own JIT placement (EDGELB_BENCH_SHIFT).
set -euo pipefail

base=${1:?usage: $0 BASE [NEW] [PAIRS]}
new=${2:-HEAD}
pairs=${3:-21}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d /tmp/edgelb-xdp-compare.XXXXXX)
cleanup() {
    for name in base new; do
        git -C "$root" worktree remove --force "$work/$name" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

build() { # name revision
    local name=$1 rev=$2 exe
    git -C "$root" worktree add --quiet --detach "$work/$name" "$rev"
    # Both revisions run the same harness: NEW's bench (its output columns),
    # over each revision's own program and loader.
    git -C "$root" show "$new:xdp-fwd/loader/benches/forwarder.rs" \
        >"$work/$name/xdp-fwd/loader/benches/forwarder.rs"
    # The harness includes the loader's test fixtures (tests/common): NEW's too.
    git -C "$root" archive "$new" xdp-fwd/loader/tests/common | tar -x -C "$work/$name"
    exe=$(cd "$work/$name" && CARGO_TARGET_DIR="$root/target/xdp-compare" \
        cargo bench --quiet -p xdp-fwd --bench forwarder --no-run --message-format=json |
        python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "forwarder" in m["target"]["name"]:
        print(m["executable"])')
    cp "$exe" "$work/bench-$name"
    echo "built $name = $(git -C "$root" rev-parse --short "$rev")" >&2
}
build base "$base"
build new "$new"

for i in $(seq 1 "$pairs"); do
    for name in base new; do
        # Each pair runs at another JIT placement (see the bench's
        # occupy_jit_chunks): a single placement can favour either build.
        # The live-frame table (warm figures, 3 rounds) has one figure over
        # its floor per case: reported under "live: " as both columns.
        EDGELB_BENCH_SHIFT=$(((i * 37) % 64)) "$work/bench-$name" 20000 1000000 3 2>&1 |
            awk -v b="$name" -F'|' '/^Warm figures/ { live = 1 }
                /^\| [a-zA-Z]/ && !/^\| case/ {
                gsub(/^ +| +$/, "", $2); gsub(/ /, "", $4); gsub(/ /, "", $5);
                if (live) { $2 = "live: " $2; $5 = $4 }
                print b "\t" $2 "\t" $4 "\t" $5 }'
    done
done >"$work/runs.tsv"

python3 - "$work/runs.tsv" "$pairs" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
cases = []
for line in open(sys.argv[1]):
    build, case, med, iqm = line.rstrip("\n").split("\t")
    runs[(case, build, "med")].append(float(med))
    runs[(case, build, "iqm")].append(float(iqm))
    if case not in cases:
        cases.append(case)
for kind, title in (("med", "median of each run's repeat=1 samples"),
                    ("iqm", "interquartile mean of each run's repeat=1 samples")):
    print(f"\n{sys.argv[2]} alternated runs each; ns over the trivial program ({title}); "
          "median over the runs (range)\n")
    print("| case | base | new | new / base |")
    print("|---|---:|---:|---:|")
    for case in cases:
        b, n = runs[(case, "base", kind)], runs[(case, "new", kind)]
        mb, mn = statistics.median(b), statistics.median(n)
        ratio = f"{mn / mb:.2f}" if mb > 0 else "-"
        print(f"| {case} | {mb:.1f} ({min(b):.1f}-{max(b):.1f}) | {mn:.1f} ({min(n):.1f}-{max(n):.1f}) | {ratio} |")
PY
