#!/usr/bin/env bash
# Compares `nasbench ingest` binaries by running them alternately on one
# file, so that a noisy machine (the 2-core development box varies 20-40%
# between runs) slows every binary alike. Prints, per run, the wall and CPU
# seconds to the finished database (no query index), the stage times of
# NASBENCH_TRACE and the peak RSS.
#
#   scripts/ingest-ab.sh FILE ROUNDS BINARY...
#
# e.g., with the bench's cached synthetic file and a copy of the old binary:
#   cp $CARGO_TARGET_DIR/release/nasbench /tmp/nb-old   # before the change
#   cargo build --release                               # after it
#   scripts/ingest-ab.sh $CARGO_TARGET_DIR/nasbench-bench/synthetic_full.tfrecord 3 \
#       /tmp/nb-old $CARGO_TARGET_DIR/release/nasbench
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
file=$1 rounds=$2
shift 2
for bin in "$@"; do
    [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
done
[ -r "$file" ] || { echo "cannot read $file" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -f "$work"/ab.duckdb*
        out=$(NASBENCH_TRACE=1 /usr/bin/time -f "TIME %e %U %S %M" \
            "$bin" ingest "$file" --db "$work/ab.duckdb" --no-query-index 2>&1) || {
            echo "$bin failed:" >&2
            echo "$out" >&2
            exit 1
        }
        # "[trace]  4.139 s wall  6.44 s cpu  records decoded" -> "4.14 s records decoded"
        stages=$(echo "$out" | awk '/^\[trace\]/ {
            name = $8; for (i = 9; i <= NF; i++) name = name " " $i
            printf " %.2f s %s;", $2, name }')
        echo "$out" | awk -v r="$round" -v b="$bin" -v s="$stages" '/^TIME/ {
            printf "round %s  %s  %.2f s wall  %.1f s cpu  %d MB  |%s\n", r, b, $2, $3 + $4, $5 / 1024, s }'
    done
done
