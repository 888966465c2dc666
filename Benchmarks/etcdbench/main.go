// A load generator built on etcd 3.4's own clientv3 (Debian's golang-etcd-server-dev), in the
// style of etcd's tools/benchmark, so keel and etcd are measured with etcd's client and the
// client's own CPU cost stays small. Prints one JSON line per run.
//
//	etcdbench -endpoint 127.0.0.1:2379 -workload put -clients 100 -conns 10 -total 20000 -val-size 256
//
// Workloads: put, range (-consistency l|s), txn-put, lease-keepalive, watch-latency (-watchers N).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "server")
	workload := flag.String("workload", "put", "put|range|txn-put|lease-keepalive|watch-latency")
	clients := flag.Int("clients", 1, "concurrent clients")
	conns := flag.Int("conns", 1, "connections shared by the clients")
	total := flag.Int("total", 10000, "requests")
	keySize := flag.Int("key-size", 8, "key bytes")
	valSize := flag.Int("val-size", 8, "value bytes")
	keySpace := flag.Int("key-space-size", 1, "distinct keys")
	consistency := flag.String("consistency", "l", "range: l or s")
	watchers := flag.Int("watchers", 1, "watch-latency: watchers")
	flag.Parse()

	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer c.Close()
		cs[i] = c
	}
	key := func(n int) string {
		b := make([]byte, *keySize)
		v := uint64(n)
		if *keySize >= 8 {
			binary.BigEndian.PutUint64(b[*keySize-8:], v)
		} else {
			for j := *keySize - 1; j >= 0; j-- {
				b[j] = byte(v)
				v >>= 8
			}
		}
		return string(b)
	}
	value := strings.Repeat("v", *valSize)
	ctx := context.Background()
	var mu sync.Mutex
	var lat []float64
	errs := 0
	var firstErr error
	record := func(d time.Duration, err error) {
		mu.Lock()
		if err != nil {
			errs++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			lat = append(lat, d.Seconds())
		}
		mu.Unlock()
	}
	per := func(c int) int {
		n := *total / *clients
		if c < *total%*clients {
			n++
		}
		return n
	}
	start := time.Now()
	var wg sync.WaitGroup
	switch *workload {
	case "put", "txn-put", "range":
		if *workload == "range" {
			cs[0].Put(ctx, key(0), value)
		}
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cli := cs[c%len(cs)]
				r := rand.New(rand.NewSource(int64(c)))
				for i := 0; i < per(c); i++ {
					k := key(r.Intn(*keySpace))
					t0 := time.Now()
					var err error
					switch *workload {
					case "put":
						_, err = cli.Put(ctx, k, value)
					case "txn-put":
						_, err = cli.Txn(ctx).Then(clientv3.OpPut(k, value)).Commit()
					default:
						opts := []clientv3.OpOption{}
						if *consistency == "s" {
							opts = append(opts, clientv3.WithSerializable())
						}
						_, err = cli.Get(ctx, key(0), opts...)
					}
					record(time.Since(t0), err)
				}
			}(c)
		}
		wg.Wait()
	case "fill":
		// -total keys in txns of 100 puts, spread over the clients (for memory with many keys).
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cli := cs[c%len(cs)]
				n := per(c)
				for i := 0; i < n; i += 100 {
					ops := []clientv3.Op{}
					for j := i; j < i+100 && j < n; j++ {
						ops = append(ops, clientv3.OpPut(key(c*n+j), value))
					}
					t0 := time.Now()
					_, err := cli.Txn(ctx).Then(ops...).Commit()
					record(time.Since(t0), err)
				}
			}(c)
		}
		wg.Wait()
	case "lease-keepalive":
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cli := cs[c%len(cs)]
				g, err := cli.Grant(ctx, 60)
				if err != nil {
					record(0, err)
					return
				}
				for i := 0; i < per(c); i++ {
					t0 := time.Now()
					_, err := cli.KeepAliveOnce(ctx, g.ID)
					record(time.Since(t0), err)
				}
			}(c)
		}
		wg.Wait()
	case "watch-latency":
		k := key(0)
		sent := sync.Map{}
		ready := make(chan struct{}, *watchers)
		done := make(chan struct{})
		for w := 0; w < *watchers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
				defer cancel()
				ch := cs[w%len(cs)].Watch(wctx, k, clientv3.WithCreatedNotify())
				seen := 0
				for resp := range ch {
					if resp.Created {
						ready <- struct{}{}
						continue
					}
					now := time.Now()
					for _, ev := range resp.Events {
						if t0, ok := sent.Load(ev.Kv.ModRevision); ok {
							record(now.Sub(t0.(time.Time)), nil)
						}
						seen++
					}
					if seen >= *total {
						return
					}
				}
			}(w)
		}
		for i := 0; i < *watchers; i++ {
			<-ready
		}
		rev := int64(0)
		if r, err := cs[0].Get(ctx, k); err == nil {
			rev = r.Header.Revision
		}
		for i := 0; i < *total; i++ {
			rev++
			sent.Store(rev, time.Now())
			if _, err := cs[0].Put(ctx, k, value); err != nil {
				record(0, err)
			}
		}
		wg.Wait()
		close(done)
	default:
		fmt.Fprintln(os.Stderr, "unknown workload", *workload)
		os.Exit(2)
	}
	secs := time.Since(start).Seconds()
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(float64(len(lat)) * q)
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return lat[i] * 1000
	}
	out := map[string]interface{}{
		"workload": *workload, "clients": *clients, "conns": *conns, "total": *total, "completed": len(lat), "errors": errs,
		"seconds": secs, "requests_per_second": float64(len(lat)) / secs,
		"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
	}
	if firstErr != nil {
		out["first_error"] = firstErr.Error()
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
