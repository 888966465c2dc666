#!/usr/bin/env bash
# KeelRaft against etcd 3.4's raft, side by side on this machine: a 3-node in-memory cluster
# (no disk, no network), 128-byte entries, 1 and 1000 proposals in flight, the same driving
# loop (Benchmarks/etcdraft/main.go and `keelutl bench raft`), alternating runs. Prints each
# run's JSON line and a table of medians (keel/etcd > 1 means Keel is faster), with
# allocations per committed entry (Keel's counted with the LD_PRELOAD counter, etcd's from Go's
# runtime.MemStats).
#   Benchmarks/compare-raft.sh [--reps R] [--count N]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5 count=200000
while [ $# -gt 0 ]; do case "$1" in --reps) reps=$2; shift 2;; --count) count=$2; shift 2;; *) echo "unknown $1" >&2; exit 2;; esac; done
swift build -c release --product keelutl >&2
swift build -c release --product KeelMallocCount >&2
go_bin=$(mktemp -d)/etcdraft-bench
GO111MODULE=off GOPATH="$(mktemp -d):/usr/share/gocode" go build -o "$go_bin" Benchmarks/etcdraft/main.go
out=$(mktemp)
for r in $(seq 1 "$reps"); do
  .build/release/keelutl bench raft --count "$count" --inflight 1,1000 --json | tee -a "$out"
  "$go_bin" "$count" 1,1000 128 | tee -a "$out"
done
# Allocations: one extra Keel run with the counter preloaded (the counter's atomics cost time).
LD_PRELOAD="$PWD/.build/release/libKeelMallocCount.so" .build/release/keelutl bench raft --count "$count" --inflight 1,1000 --json \
  | sed 's/"impl":"keel-raft"/"impl":"keel-raft-counted"/' | tee -a "$out"
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(impl, inflight, field):
    xs = [r[field] for r in rows if r["impl"] == impl and r["inflight"] == inflight and field in r]
    return statistics.median(xs) if xs else float("nan")
print("| in flight | keel commits/s | etcd commits/s | keel/etcd | keel allocs/entry | etcd allocs/entry |")
print("|---|---|---|---|---|---|")
for n in (1, 1000):
    k, e = med("keel-raft", n, "ops_per_sec"), med("etcd-raft", n, "ops_per_sec")
    print(f"| {n} | {k:,.0f} | {e:,.0f} | {k/e:.2f} | {med('keel-raft-counted', n, 'allocs_per_entry'):.3f} | {med('etcd-raft', n, 'allocs_per_entry'):.2f} |")
PY
