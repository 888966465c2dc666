// Command bboltoracle is the Go bbolt 1.3.6 side of Keel's interop tests. It is built by the
// Swift test suite in GOPATH mode against Debian's golang-github-coreos-bbolt-dev.
//
//	bboltoracle check PATH                       tx.Check(); prints OK or one error per line (exit 1)
//	bboltoracle dump PATH                        every bucket and key, depth first, in hex
//	bboltoracle write PATH SEED N [OPTIONS...]   a seeded random data set; OPTIONS: nofreelistsync hashmap pagesize=N
//	bboltoracle bigfreelist PATH                 a file whose freelist holds more than 65,535 ids
//	bboltoracle append PATH N                    adds bucket "go-append" with N keys to an existing file
package main

import (
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bboltoracle check|dump|write|bigfreelist|append PATH ...")
		os.Exit(2)
	}
	path := os.Args[2]
	switch os.Args[1] {
	case "check":
		os.Exit(check(path))
	case "dump":
		db := open(path, &bolt.Options{ReadOnly: true})
		defer db.Close()
		must(db.View(func(tx *bolt.Tx) error { return dumpBucket(tx.Cursor(), func(k []byte) *bolt.Bucket { return tx.Bucket(k) }, "") }))
	case "write":
		seed, _ := strconv.ParseInt(os.Args[3], 10, 64)
		n, _ := strconv.Atoi(os.Args[4])
		opts := &bolt.Options{}
		for _, o := range os.Args[5:] {
			switch {
			case o == "nofreelistsync":
				opts.NoFreelistSync = true
			case o == "hashmap":
				opts.FreelistType = bolt.FreelistMapType
			case strings.HasPrefix(o, "pagesize="):
				opts.PageSize, _ = strconv.Atoi(strings.TrimPrefix(o, "pagesize="))
			}
		}
		write(path, seed, n, opts)
	case "bigfreelist":
		bigFreelist(path)
	case "append":
		n, _ := strconv.Atoi(os.Args[3])
		db := open(path, nil)
		must(db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("go-append"))
			if err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := b.Put([]byte(fmt.Sprintf("go-key-%06d", i)), []byte(fmt.Sprintf("go-value-%d", i))); err != nil {
					return err
				}
			}
			return nil
		}))
		must(db.Close())
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

func open(path string, opts *bolt.Options) *bolt.DB {
	db, err := bolt.Open(path, 0600, opts)
	must(err)
	return db
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func check(path string) int {
	db := open(path, &bolt.Options{ReadOnly: true})
	defer db.Close()
	errors := 0
	_ = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			fmt.Println(err)
			errors++
		}
		return nil
	})
	if errors > 0 {
		fmt.Printf("%d errors found\n", errors)
		return 1
	}
	fmt.Println("OK")
	return 0
}

// dumpBucket prints "bucket PATH seq=N" and "key PATH KEY VALUE" lines (hex), depth first.
func dumpBucket(c *bolt.Cursor, child func([]byte) *bolt.Bucket, path string) error {
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if b := child(k); b != nil {
				p := path + "/" + hex.EncodeToString(k)
				fmt.Printf("bucket %s seq=%d\n", p, b.Sequence())
				if err := dumpBucket(b.Cursor(), func(k []byte) *bolt.Bucket { return b.Bucket(k) }, p); err != nil {
					return err
				}
				continue
			}
		}
		fmt.Printf("key %s %s %s\n", path, hex.EncodeToString(k), hex.EncodeToString(v))
	}
	return nil
}

// write builds a data set with nested buckets, inline buckets, overflow values, deletes and
// several transactions, from a seed, then prints its dump.
func write(path string, seed int64, n int, opts *bolt.Options) {
	rng := rand.New(rand.NewSource(seed))
	db := open(path, opts)
	for round := 0; round < 4; round++ {
		must(db.Update(func(tx *bolt.Tx) error {
			for i := 0; i < n; i++ {
				top, err := tx.CreateBucketIfNotExists([]byte(fmt.Sprintf("top-%d", rng.Intn(4))))
				if err != nil {
					return err
				}
				b := top
				if rng.Intn(3) == 0 {
					if b, err = top.CreateBucketIfNotExists([]byte(fmt.Sprintf("nested-%d", rng.Intn(3)))); err != nil {
						return err
					}
				}
				key := []byte(fmt.Sprintf("k%05d", rng.Intn(n*2)))
				var value []byte
				switch rng.Intn(10) {
				case 0:
					value = make([]byte, 5000+rng.Intn(10000)) // overflow pages
				case 1:
					value = []byte{}
				default:
					value = make([]byte, rng.Intn(200))
				}
				rng.Read(value)
				if rng.Intn(5) == 0 {
					if err := b.Delete(key); err != nil {
						return err
					}
				} else if err := b.Put(key, value); err != nil {
					return err
				}
				if rng.Intn(50) == 0 {
					if _, err := b.NextSequence(); err != nil {
						return err
					}
				}
			}
			// A small bucket that stays inline.
			small, err := tx.CreateBucketIfNotExists([]byte("small"))
			if err != nil {
				return err
			}
			return small.Put([]byte(fmt.Sprintf("s%d", round)), []byte("tiny"))
		}))
	}
	must(db.Close())
	db = open(path, &bolt.Options{ReadOnly: true})
	must(db.View(func(tx *bolt.Tx) error { return dumpBucket(tx.Cursor(), func(k []byte) *bolt.Bucket { return tx.Bucket(k) }, "") }))
	must(db.Close())
}

// bigFreelist writes 70,000 values on 512-byte pages and deletes them, leaving > 65,535 free ids.
func bigFreelist(path string) {
	db := open(path, &bolt.Options{PageSize: 512})
	value := make([]byte, 400)
	must(db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("big"))
		if err != nil {
			return err
		}
		b.FillPercent = 1.0
		for i := 0; i < 70000; i++ {
			if err := b.Put([]byte(fmt.Sprintf("%08d", i)), value); err != nil {
				return err
			}
		}
		return nil
	}))
	must(db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("big"))
		for i := 0; i < 70000; i++ {
			if i%1000 == 0 {
				continue
			}
			if err := b.Delete([]byte(fmt.Sprintf("%08d", i))); err != nil {
				return err
			}
		}
		return nil
	}))
	// One more commit so the pending pages of the delete are written as free.
	must(db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("big")).Put([]byte("x"), []byte("y")) }))
	must(db.Close())
	db = open(path, &bolt.Options{ReadOnly: true})
	must(db.View(func(tx *bolt.Tx) error { return dumpBucket(tx.Cursor(), func(k []byte) *bolt.Bucket { return tx.Bucket(k) }, "") }))
	must(db.Close())
}
