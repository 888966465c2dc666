// Command bbolt-reference runs keelutl bench's workload on Go bbolt 1.3.6, so the two engines can
// be compared side by side on the same machine in the same script (Benchmarks/compare-bbolt.sh).
// Same phases, same keys (SplitMix64 with the same seed), same JSON lines, backend "bbolt-go".
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

type splitMix64 struct{ state uint64 }

func (s *splitMix64) next() uint64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

var (
	path       = flag.String("path", "", "database file (default: temporary)")
	count      = flag.Int("count", 1000, "keys")
	batchSize  = flag.Int("batch-size", 0, "keys per transaction")
	keySize    = flag.Int("key-size", 8, "key size")
	valueSize  = flag.Int("value-size", 32, "value size")
	writeMode  = flag.String("write-mode", "seq", "seq or rnd")
	readMode   = flag.String("read-mode", "seq", "seq or rnd")
	fill       = flag.Float64("fill-percent", 0.5, "fill percent")
	noSync     = flag.Bool("no-sync", false, "skip fdatasync")
	smallTxns  = flag.Int("small-txns", 10000, "single-put synced transactions")
	seed       = flag.Uint64("seed", 1, "seed")
	noFreelist = flag.Bool("no-freelist-sync", false, "NoFreelistSync")
)

func main() {
	flag.Parse()
	p := *path
	if p == "" {
		p = fmt.Sprintf("%s/bbolt-reference-%d.db", os.TempDir(), os.Getpid())
	}
	os.Remove(p)
	defer os.Remove(p)
	db, err := bolt.Open(p, 0600, &bolt.Options{NoFreelistSync: *noFreelist})
	must(err)
	db.NoSync = *noSync
	defer db.Close()

	startRSS = currentRSS()
	keys := make([][]byte, *count)
	rng := &splitMix64{state: *seed}
	for i := range keys {
		k := make([]byte, *keySize)
		if *writeMode == "rnd" {
			for j := 0; j < *keySize; j += 8 {
				var w [8]byte
				binary.LittleEndian.PutUint64(w[:], rng.next())
				copy(k[j:], w[:])
			}
		} else {
			width := *keySize
			if width > 8 {
				width = 8
			}
			v := uint64(i + 1)
			for j := width - 1; j >= 0; j-- {
				k[j] = byte(v)
				v >>= 8
			}
		}
		keys[i] = k
	}
	batch := *batchSize
	if batch == 0 {
		batch = *count
	}
	value := make([]byte, *valueSize)

	// write
	phaseCPU = cpuSeconds()
	var lat []time.Duration
	start := time.Now()
	for written := 0; written < *count; written += batch {
		t0 := time.Now()
		must(db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("bench"))
			if err != nil {
				return err
			}
			b.FillPercent = *fill
			for i := written; i < written+batch; i++ {
				if err := b.Put(keys[i], value); err != nil {
					return err
				}
			}
			return nil
		}))
		lat = append(lat, time.Since(t0))
	}
	report("write", *count, time.Since(start), lat, p)

	// read
	order := make([]int, *count)
	for i := range order {
		order[i] = i
	}
	if *readMode == "rnd" {
		r := rand.New(rand.NewSource(int64(*seed)))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	phaseCPU = cpuSeconds()
	start = time.Now()
	found := 0
	must(db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("bench"))
		for _, i := range order {
			if b.Get(keys[i]) != nil {
				found++
			}
		}
		return nil
	}))
	report("read", *count, time.Since(start), nil, p)

	// scan
	phaseCPU = cpuSeconds()
	start = time.Now()
	seen := 0
	must(db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("bench")).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seen++
		}
		return nil
	}))
	report("scan", seen, time.Since(start), nil, p)

	// small-txn
	if *smallTxns > 0 {
		lat = lat[:0]
		small := make([]byte, *valueSize)
		phaseCPU = cpuSeconds()
		start = time.Now()
		for i := 0; i < *smallTxns; i++ {
			t0 := time.Now()
			must(db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("small"))
				if err != nil {
					return err
				}
				return b.Put(keys[i%*count], small)
			}))
			lat = append(lat, time.Since(t0))
		}
		report("small-txn", *smallTxns, time.Since(start), lat, p)
	}
}

// phaseCPU is the process's CPU time when the current phase began.
var phaseCPU float64

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 + float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

func report(phase string, ops int, d time.Duration, lat []time.Duration, p string) {
	line := fmt.Sprintf(`{"backend":"bbolt-go","phase":"%s","ops":%d,"seconds":%.6f,"ops_per_sec":%.1f`, phase, ops, d.Seconds(), float64(ops)/d.Seconds())
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(q float64) float64 {
			i := int(float64(len(lat))*q+0.999999) - 1
			if i < 0 {
				i = 0
			}
			return float64(lat[i].Nanoseconds()) / 1000
		}
		line += fmt.Sprintf(`,"p50_us":%.1f,"p99_us":%.1f`, pct(0.5), pct(0.99))
	}
	st, _ := os.Stat(p)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	line += fmt.Sprintf(`,"cpu_seconds":%.6f,"file_bytes":%d,"peak_rss_bytes":%d,"start_rss_bytes":%d}`, cpuSeconds()-phaseCPU, st.Size(), ru.Maxrss*1024, startRSS)
	fmt.Println(line)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// startRSS is the resident memory when the workload began (runtime, the opened database).
var startRSS int64

func currentRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}
