// Command etcdmvcc runs the workloads of `keelutl bench mvcc` on etcd 3.4's own Go mvcc package
// (Debian's golang-etcd-server-dev; build with GO111MODULE=off and GOPATH including
// /usr/share/gocode): the same keys (SplitMix64), the same order, etcd's default backend
// batching. Prints one JSON object per phase, as keelutl does.
//
//	etcdmvcc PATH COUNT KEYSIZE VALUESIZE SEED
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/lease"
	"go.etcd.io/etcd/mvcc"
	"go.etcd.io/etcd/mvcc/backend"
	"go.etcd.io/etcd/pkg/traceutil"
	"go.uber.org/zap"
)

type index struct{ v uint64 }

func (i *index) ConsistentIndex() uint64 { return i.v }

func splitmix(state *uint64) uint64 {
	*state += 0x9E3779B97F4A7C15
	z := *state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func key(i int, seed uint64, size int) []byte {
	state := seed + uint64(i)
	out := make([]byte, 0, size+8)
	for len(out) < size {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], splitmix(&state))
		out = append(out, b[:]...)
	}
	return out[:size]
}

func cpu() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func rss() int64 {
	b, _ := ioutil.ReadFile("/proc/self/statm")
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func peak() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}

func emit(phase string, ops int, seconds, cpuSeconds float64, path string) {
	st, _ := os.Stat(path)
	size := int64(0)
	if st != nil {
		size = st.Size()
	}
	out, _ := json.Marshal(map[string]interface{}{"backend": "etcd-mvcc", "phase": phase, "ops": ops, "seconds": seconds,
		"ops_per_sec": float64(ops) / seconds, "cpu_seconds": cpuSeconds, "file_bytes": size, "peak_rss_bytes": peak()})
	fmt.Println(string(out))
}

func main() {
	path := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	ksize, _ := strconv.Atoi(os.Args[3])
	vsize, _ := strconv.Atoi(os.Args[4])
	seed, _ := strconv.ParseUint(os.Args[5], 10, 64)
	os.Remove(path)
	ig := &index{}
	b := backend.NewDefaultBackend(path)
	runtime.GC()
	before := rss()
	s := mvcc.New(zap.NewNop(), b, &lease.FakeLessor{}, nil, ig, mvcc.StoreConfig{})
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = key(i, seed, ksize)
	}
	value := bytes.Repeat([]byte{'a'}, vsize)
	phase := func(name string, ops int, body func()) {
		c0, t0 := cpu(), time.Now()
		body()
		emit(name, ops, time.Since(t0).Seconds(), cpu()-c0, path)
	}
	phase("put", n, func() {
		for i, k := range keys {
			ig.v = uint64(i + 1)
			s.Put(k, value, lease.NoLease)
		}
		b.ForceCommit()
	})
	runtime.GC()
	out, _ := json.Marshal(map[string]interface{}{"backend": "etcd-mvcc", "phase": "index-rss-bytes", "ops": rss() - before, "seconds": 0})
	fmt.Println(string(out))
	rng := rand.New(rand.NewSource(int64(seed)))
	phase("range-key", n/20, func() {
		for i := 0; i < n/20; i++ {
			s.Range(keys[rng.Intn(n)], nil, mvcc.RangeOptions{})
		}
	})
	sorted := append([][]byte(nil), keys...)
	sort.Slice(sorted, func(i, j int) bool { return bytes.Compare(sorted[i], sorted[j]) < 0 })
	phase("range-100", n/100, func() {
		for i := 0; i < n/100; i++ {
			j := rng.Intn(n - 100)
			s.Range(sorted[j], sorted[j+100], mvcc.RangeOptions{})
		}
	})
	_ = etcdserverpb.PutRequest{}
	phase("txn-put", n/10, func() {
		for i := 0; i < n/10; i++ {
			ig.v = uint64(n + i + 1)
			w := s.Write(traceutil.TODO())
			w.Put(keys[rng.Intn(n)], value, lease.NoLease)
			w.End()
		}
		b.ForceCommit()
	})
	s.Close()
	b.Close()
	os.Remove(path)
}
