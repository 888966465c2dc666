#!/usr/bin/env bash
# keel against Debian's etcd 3.4 on this machine, side by side: the same load generator built
# on etcd's own clientv3 (Benchmarks/etcdbench, so the client's CPU cost is Go's for both), the
# same flags, data directories on the same disk, one fresh server per workload, alternating.
# Prints each run's JSON line and a table (throughput keel/etcd > 1 and p99 keel/etcd < 1 mean
# Keel is better), peak RSS after 1M keys, and one WAL fdatasync measured by
# `keelutl disk-profile` in the same run as the floor for a single durable put.
# `keel bench` is the same kind of load generator in Swift; it is not used for the ratios
# because grpc-swift's client costs several times the CPU of Go's on this 2-core machine.
#   Benchmarks/compare-server.sh [--total N] [--dir DIR] [--scratch-path P]
set -euo pipefail
cd "$(dirname "$0")/.."
total=20000 dir=$(mktemp -d -p "${TMPDIR:-/tmp}") scratch=.build
while [ $# -gt 0 ]; do case "$1" in --total) total=$2; shift 2;; --dir) dir=$2; shift 2;; --scratch-path) scratch=$2; shift 2;; *) echo "unknown $1" >&2; exit 2;; esac; done
swift build -c release --product keel --scratch-path "$scratch" >&2
swift build -c release --product keelutl --scratch-path "$scratch" >&2
bin="$scratch/release"
gobench=$(mktemp -d)/etcdbench
GO111MODULE=off GOPATH="$(mktemp -d):/usr/share/gocode" go build -o "$gobench" Benchmarks/etcdbench/main.go
out=$(mktemp)
port=23790
start_server() {  # keel|etcd; leaves $pid
  rm -rf "$dir/$1"
  if [ "$1" = keel ]; then
    "$bin/keel" --data-dir "$dir/keel" --listen-client-urls http://127.0.0.1:$port --log-level error >/dev/null 2>&1 &
  else
    etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:$port --advertise-client-urls http://127.0.0.1:$port \
      --listen-peer-urls http://127.0.0.1:$((port + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((port + 1)) \
      --initial-cluster default=http://127.0.0.1:$((port + 1)) --log-level error >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:$port endpoint health >/dev/null 2>&1 && return; sleep 0.1; done
  echo "$1 did not start" >&2; exit 1
}
stop_server() { kill -TERM $pid; wait $pid || true; }
workloads=(
  "put-1|-workload put -clients 1 -val-size 256 -key-space-size 100000 -total $((total / 10))"
  "put-100|-workload put -clients 100 -conns 10 -val-size 256 -key-space-size 100000 -total $total"
  "put-1000|-workload put -clients 1000 -conns 100 -val-size 256 -key-space-size 100000 -total $total"
  "range-l-100|-workload range -clients 100 -conns 10 -consistency l -total $total"
  "range-s-100|-workload range -clients 100 -conns 10 -consistency s -total $total"
  "txn-put-100|-workload txn-put -clients 100 -conns 10 -val-size 256 -key-space-size 100000 -total $total"
  "keepalive-100|-workload lease-keepalive -clients 100 -conns 10 -total $total"
  "watch-1|-workload watch-latency -watchers 1 -total $((total / 20))"
  "watch-100|-workload watch-latency -watchers 100 -conns 10 -total $((total / 20))"
)
for w in "${workloads[@]}"; do
  name=${w%%|*}; args=${w#*|}
  for impl in keel etcd; do
    start_server $impl
    "$gobench" -endpoint 127.0.0.1:$port $args | sed "s/^{/{\"impl\":\"$impl\",\"name\":\"$name\",/" | tee -a "$out"
    stop_server
  done
done
# Peak resident memory with 1M keys (16-byte keys, 100-byte values, in txns of 100 puts).
for impl in keel etcd; do
  start_server $impl
  "$gobench" -endpoint 127.0.0.1:$port -workload fill -clients 10 -conns 10 -key-size 16 -val-size 100 -total 1000000 >/dev/null
  echo "{\"impl\":\"$impl\",\"name\":\"rss-1m\",\"peak_rss_kib\":$(awk '/VmHWM/ {print $2}' /proc/$pid/status)}" | tee -a "$out"
  stop_server
done
"$bin/keelutl" disk-profile --dir "$dir" --json | tail -1 | sed 's/^{/{"impl":"disk","name":"wal-fdatasync",/' | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
get = lambda impl, name: next((r for r in rows if r["impl"] == impl and r["name"] == name), None)
print("| workload | keel req/s | etcd req/s | keel/etcd | keel p99 ms | etcd p99 ms | p99 keel/etcd |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if r["impl"] != "keel" or "requests_per_second" not in r: continue
    e = get("etcd", r["name"])
    if not e: continue
    print(f"| {r['name']} | {r['requests_per_second']:,.0f} | {e['requests_per_second']:,.0f} | {r['requests_per_second']/e['requests_per_second']:.2f} "
          f"| {r['p99_ms']:.2f} | {e['p99_ms']:.2f} | {r['p99_ms']/max(e['p99_ms'],1e-9):.2f} |")
k, e = get("keel", "rss-1m"), get("etcd", "rss-1m")
if k and e: print(f"peak RSS with 1M keys: keel {k['peak_rss_kib']/1024:.0f} MiB, etcd {e['peak_rss_kib']/1024:.0f} MiB ({k['peak_rss_kib']/e['peak_rss_kib']:.2f}x)")
d, k1 = get("disk", "wal-fdatasync"), get("keel", "put-1")
if d and k1:
    print(f"single-client durable put p50 {k1['p50_ms']:.3f} ms vs one WAL fdatasync p50 {d['p50_us']/1000:.3f} ms: {k1['p50_ms']/(d['p50_us']/1000):.2f}x")
PY
