#!/usr/bin/env bash
# keel against Debian's etcd 3.4 on this machine, side by side: the same `keel bench` load
# generator, the same flags, data directories on the same disk, one server at a time. Prints
# each run's JSON line and a table (keel/etcd throughput > 1 and p99 ratio < 1 mean Keel is
# better), plus one WAL fdatasync measured by `keelutl disk-profile` in the same run as the
# floor for a single durable put.
#   Benchmarks/compare-server.sh [--total N] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
total=20000 dir=$(mktemp -d -p "${TMPDIR:-/tmp}")
while [ $# -gt 0 ]; do case "$1" in --total) total=$2; shift 2;; --dir) dir=$2; shift 2;; *) echo "unknown $1" >&2; exit 2;; esac; done
swift build -c release --product keel >&2
swift build -c release --product keelutl >&2
bench=.build/release/keel
out=$(mktemp)
port=23790
run_server() {  # name, then the command line; leaves $pid
  rm -rf "$dir/$1"; shift
  "$@" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:$port endpoint health >/dev/null 2>&1 && return; sleep 0.1; done
  echo "server did not start: $*" >&2; exit 1
}
workloads=(
  "put-1 put --clients 1 --conns 1 --val-size 256 --key-space-size 100000 --total $((total / 10))"
  "put-100 put --clients 100 --conns 10 --val-size 256 --key-space-size 100000 --total $total"
  "put-1000 put --clients 1000 --conns 100 --val-size 256 --key-space-size 100000 --total $total"
  "range-l-100 range --clients 100 --conns 10 --consistency l --total $total"
  "range-s-100 range --clients 100 --conns 10 --consistency s --total $total"
  "txn-put-100 txn-put --clients 100 --conns 10 --val-size 256 --key-space-size 100000 --total $total"
  "keepalive-100 lease-keepalive --clients 100 --conns 10 --total $total"
  "watch-1 watch-latency --watchers 1 --total $((total / 20))"
  "watch-100 watch-latency --watchers 100 --conns 10 --total $((total / 20))"
)
for impl in keel etcd; do
  for w in "${workloads[@]}"; do
    set -- $w; name=$1; shift
    if [ $impl = keel ]; then
      run_server k .build/release/keel --data-dir "$dir/k" --listen-client-urls http://127.0.0.1:$port --log-level error
    else
      run_server e etcd --data-dir "$dir/e" --listen-client-urls http://127.0.0.1:$port --advertise-client-urls http://127.0.0.1:$port \
        --listen-peer-urls http://127.0.0.1:$((port + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((port + 1)) \
        --initial-cluster default=http://127.0.0.1:$((port + 1)) --log-level error
    fi
    $bench bench "$@" --endpoints 127.0.0.1:$port --json | sed "s/^{/{\"impl\":\"$impl\",\"name\":\"$name\",/" | tee -a "$out"
    rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    echo "{\"impl\":\"$impl\",\"name\":\"$name-rss\",\"peak_rss_kib\":$rss}" | tee -a "$out"
    kill -TERM $pid; wait $pid || true
  done
done
.build/release/keelutl disk-profile --dir "$dir" --json | tail -1 | sed 's/^{/{"impl":"disk","name":"wal-fdatasync",/' | tee -a "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
get = lambda impl, name: next((r for r in rows if r["impl"] == impl and r["name"] == name), None)
print("| workload | keel req/s | etcd req/s | keel/etcd | keel p99 ms | etcd p99 ms | p99 keel/etcd | peak RSS keel/etcd MiB |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["impl"] != "keel" or "requests_per_second" not in r: continue
    e = get("etcd", r["name"]); 
    if not e: continue
    kr, er = get("keel", r["name"] + "-rss"), get("etcd", r["name"] + "-rss")
    print(f"| {r['name']} | {r['requests_per_second']:,.0f} | {e['requests_per_second']:,.0f} | {r['requests_per_second']/e['requests_per_second']:.2f} "
          f"| {r['p99_ms']:.2f} | {e['p99_ms']:.2f} | {r['p99_ms']/max(e['p99_ms'],1e-9):.2f} | {kr['peak_rss_kib']/1024:.0f}/{er['peak_rss_kib']/1024:.0f} |")
d = get("disk", "wal-fdatasync")
k1 = get("keel", "put-1")
if d and k1:
    print(f"single-client durable put p50 {k1['p50_ms']:.3f} ms vs one WAL fdatasync p50 {d['p50_us']/1000:.3f} ms: {k1['p50_ms']/(d['p50_us']/1000):.2f}x")
PY
