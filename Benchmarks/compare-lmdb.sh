#!/usr/bin/env bash
# Runs keelutl bench (KeelBolt), the same workload on C LMDB driven directly (lmdb-reference, built
# here from liblmdb-dev) and on Go bbolt 1.3.6 (bbolt-reference), alternating, and prints per phase
# the medians and the ratios keel/LMDB and keel/bbolt: throughput (higher is better for keel),
# small-txn p50 (lower is better), CPU µs per operation, file size and peak RSS.
#
#   Benchmarks/compare-lmdb.sh [--reps N] [--scratch-path DIR] [--dynamic] [--no-bbolt] [keelutl bench flags...]
#   e.g. Benchmarks/compare-lmdb.sh --reps 5 --count 1000000 --batch-size 1000 --key-size 16 \
#            --value-size 100 --write-mode rnd --read-mode rnd
#   Add --no-sync for the disk-free CPU figure per put.
#
# keelutl is built as it ships, with the Swift runtime and Foundation linked in statically
# (--static-swift-stdlib, in .build-static so it does not disturb other release builds); its
# start-up RSS is then ~16 MB instead of ~22 MB. --dynamic measures the dynamically linked build.
#
# Needs: liblmdb-dev, a C compiler, golang-go, golang-github-coreos-bbolt-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5
scratch=
static=1
bbolt=1
while :; do
  case "${1:-}" in
    --reps) reps=$2; shift 2;;
    --scratch-path) scratch=$2; shift 2;;
    --dynamic) static=0; shift;;
    --no-bbolt) bbolt=0; shift;;
    *) break;;
  esac
done
args=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$static" = 1 ]; then
  scratch=${scratch:-.build-static}
  swift build -c release --product keelutl --static-swift-stdlib --scratch-path "$scratch" >&2
else
  scratch=${scratch:-.build}
  swift build -c release --product keelutl --scratch-path "$scratch" >&2
fi
keelutl="$scratch/release/keelutl"
cc -O2 -o "$work/lmdb-reference" Benchmarks/lmdb-reference/main.c -llmdb
if [ "$bbolt" = 1 ]; then
  GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
    go build -o "$work/bbolt-reference" Benchmarks/bbolt-reference/main.go
fi
# The C and Go drivers take the same names with one dash.
refargs=()
for a in "${args[@]}"; do case "$a" in --*) refargs+=("-${a#--}");; *) refargs+=("$a");; esac; done
touch "$work/keel.jsonl" "$work/lmdb.jsonl" "$work/bbolt.jsonl"
for i in $(seq 1 "$reps"); do
  echo "# repetition $i" >&2
  "$keelutl" bench --json --backend bolt --path "$work/keel.db" "${args[@]}" | tee -a "$work/keel.jsonl" >&2
  "$work/lmdb-reference" -path "$work/lmdb.mdb" "${refargs[@]}" | tee -a "$work/lmdb.jsonl" >&2
  if [ "$bbolt" = 1 ]; then
    "$work/bbolt-reference" -path "$work/go.db" "${refargs[@]}" | tee -a "$work/bbolt.jsonl" >&2
  fi
done
python3 - "$work/keel.jsonl" "$work/lmdb.jsonl" "$work/bbolt.jsonl" <<'PY'
import json, statistics, sys
def load(p):
    out = {}
    for line in open(p):
        line = line.strip()
        if not line.startswith("{"): continue
        r = json.loads(line); out.setdefault(r["phase"], []).append(r)
    return out
engines = [("keel", load(sys.argv[1])), ("lmdb", load(sys.argv[2])), ("bbolt", load(sys.argv[3]))]
engines = [(n, e) for n, e in engines if e]
med = lambda runs, f: statistics.median(r[f] for r in runs)
print(f"medians of {len(engines[0][1]['write'])} runs")
head = f"{'phase':10} {'metric':12}" + "".join(f" {n:>10}" for n, _ in engines) + "".join(f" {'keel/'+n:>11}" for n, _ in engines[1:])
print(head)
for phase in ["write", "read", "scan", "small-txn"]:
    have = [(n, e[phase]) for n, e in engines if phase in e]
    if len(have) != len(engines): continue
    rows = [("ops/s", "ops_per_sec", 0), ("cpu us/op", None, 2)]
    if "p50_us" in have[0][1][0]: rows.append(("p50 us", "p50_us", 0))
    for label, field, dec in rows:
        if field is None:
            vals = [statistics.median(r["cpu_seconds"] / r["ops"] * 1e6 for r in runs) for _, runs in have]
        else:
            vals = [med(runs, field) for _, runs in have]
        line = f"{phase:10} {label:12}" + "".join(f" {v:10.{dec}f}" for v in vals)
        line += "".join(f" {vals[0]/v:11.2f}" if v else f" {'-':>11}" for v in vals[1:])
        print(line)
# Peak RSS of the process, and above the RSS when the workload began (the runtime and libraries
# of each driver differ: keelutl carries Swift's runtime and Foundation, the C driver only libc).
mem = {}
for name, runs in engines:
    size = max(r["file_bytes"] for rs in runs.values() for r in rs)
    peaks = [max(rs[i]["peak_rss_bytes"] for rs in runs.values() if i < len(rs)) for i in range(len(runs["write"]))]
    starts = [runs["write"][i].get("start_rss_bytes", 0) for i in range(len(runs["write"]))]
    rss = statistics.median(peaks)
    grown = statistics.median(p - s for p, s in zip(peaks, starts))
    mem[name] = (rss, grown)
    print(f"{name}: file {size/1e6:.1f} MB, peak RSS {rss/1e6:.1f} MB, above start {grown/1e6:.1f} MB, start {statistics.median(starts)/1e6:.1f} MB (medians)")
if "lmdb" in mem:
    k, l = mem["keel"], mem["lmdb"]
    print(f"memory keel/lmdb: peak RSS {k[0]/l[0]:.3f}, above start {k[1]/l[1]:.3f}")
PY
