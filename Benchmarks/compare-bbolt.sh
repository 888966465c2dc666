#!/usr/bin/env bash
# Runs keelutl bench and the same workload on Go bbolt 1.3.6 side by side, alternating, and prints
# the median ratio keel/bbolt per phase (throughput: higher is better for keel; p50: lower).
#
#   Benchmarks/compare-bbolt.sh [--reps N] [keelutl bench flags...]
#   e.g. Benchmarks/compare-bbolt.sh --reps 3 --count 1000000 --batch-size 1000 --key-size 16 --value-size 100 --write-mode rnd --read-mode rnd
#
# Needs: golang-go, golang-github-coreos-bbolt-dev (apt-get install). Builds keelutl in release.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=3
if [ "${1:-}" = "--reps" ]; then reps=$2; shift 2; fi
args=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
swift build -c release --product keelutl >&2
GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/bbolt-reference" Benchmarks/bbolt-reference/main.go
# Go's flag package takes the same names with one dash.
goargs=()
for a in "${args[@]}"; do case "$a" in --*) goargs+=("-${a#--}");; *) goargs+=("$a");; esac; done
for i in $(seq 1 "$reps"); do
  echo "# repetition $i" >&2
  .build/release/keelutl bench --json --path "$work/keel.db" "${args[@]}" | tee -a "$work/keel.jsonl" >&2
  "$work/bbolt-reference" -path "$work/go.db" "${goargs[@]}" | tee -a "$work/go.jsonl" >&2
done
python3 - "$work/keel.jsonl" "$work/go.jsonl" <<'PY'
import json, statistics, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line); out.setdefault(r["phase"], []).append(r)
    return out
keel, go = load(sys.argv[1]), load(sys.argv[2])
print(f"{'phase':10} {'keel ops/s':>12} {'bbolt ops/s':>12} {'keel/bbolt':>10} {'keel p50us':>10} {'bbolt p50us':>11} {'p50 ratio':>9}")
for phase in ["write", "read", "scan", "small-txn"]:
    if phase not in keel or phase not in go: continue
    k = statistics.median(r["ops_per_sec"] for r in keel[phase]); g = statistics.median(r["ops_per_sec"] for r in go[phase])
    line = f"{phase:10} {k:12.0f} {g:12.0f} {k/g:10.2f}"
    if "p50_us" in keel[phase][0]:
        kp = statistics.median(r["p50_us"] for r in keel[phase]); gp = statistics.median(r["p50_us"] for r in go[phase])
        line += f" {kp:10.0f} {gp:11.0f} {kp/gp:9.2f}"
    print(line)
for name, runs in (("keel", keel), ("bbolt", go)):
    last = runs["write"][-1] if "write" in runs else None
    rss = max(r["peak_rss_bytes"] for rs in runs.values() for r in rs)
    print(f"{name}: file {max(r['file_bytes'] for rs in runs.values() for r in rs)/1e6:.0f} MB, peak RSS {rss/1e6:.0f} MB")
PY
