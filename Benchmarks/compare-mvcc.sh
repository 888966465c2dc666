#!/usr/bin/env bash
# KeelMVCC against etcd 3.4's own Go mvcc, side by side on this machine: the same keys, the same
# order, etcd's batching, alternating runs. Prints each run's JSON lines and a ratio table of
# medians (keel/etcd; > 1 means Keel is faster, for index memory < 1 means Keel is smaller).
#   Benchmarks/compare-mvcc.sh [--reps R] [--count N] [--dir D]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=3 count=1000000 dir=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do case "$1" in --reps) reps=$2; shift 2;; --count) count=$2; shift 2;; --dir) dir=$2; shift 2;; *) echo "unknown $1" >&2; exit 2;; esac; done
swift build -c release --product keelutl >&2
go_bin=$(mktemp -d)/etcdmvcc
GO111MODULE=off GOPATH="$(mktemp -d):/usr/share/gocode" go build -o "$go_bin" Benchmarks/etcdmvcc/main.go
out=$(mktemp)
for r in $(seq 1 "$reps"); do
  .build/release/keelutl bench mvcc --path "$dir/keel-mvcc-bench.db" --count "$count" --json | tee -a "$out"
  "$go_bin" "$dir/etcd-mvcc-bench.db" "$count" 32 256 1 | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(backend, phase, field):
    xs = [r[field] for r in rows if r["backend"] == backend and r["phase"] == phase]
    return statistics.median(xs) if xs else None
print("| phase | keel ops/s | etcd ops/s | keel/etcd |")
print("|---|---|---|---|")
for phase in ["put", "range-key", "range-100", "txn-put"]:
    k, e = med("keel-mvcc", phase, "ops_per_sec"), med("etcd-mvcc", phase, "ops_per_sec")
    print(f"| {phase} | {k:,.0f} | {e:,.0f} | {k/e:.2f} |")
k, e = med("keel-mvcc", "index-rss-bytes", "ops"), med("etcd-mvcc", "index-rss-bytes", "ops")
print(f"| index memory (RSS growth over the put phase) | {k/1e6:.1f} MB | {e/1e6:.1f} MB | {k/e:.2f} |")
PY
