// Command etcdmvcc drives etcd 3.4's own mvcc package (Debian's golang-etcd-server-dev) for
// Keel's interop tests: one JSON operation per stdin line, one JSON result per stdout line.
//
//	etcdmvcc DBPATH < ops
//
// Operations: put {key,value,index}, del {key,end,index}, txn {ops:[{kind,key,value,end}],index},
// range {key,end,rev,limit}, compact {rev} (waits for the deletes), hashkv {rev}, commit,
// reopen, close. Bytes are base64 (encoding/json's []byte).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"go.etcd.io/etcd/lease"
	"go.etcd.io/etcd/mvcc"
	"go.etcd.io/etcd/mvcc/backend"
	"go.etcd.io/etcd/pkg/traceutil"
	"go.uber.org/zap"
)

type index struct{ value uint64 }

func (i *index) ConsistentIndex() uint64 { return i.value }

type sub struct {
	Kind  string `json:"kind"`
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
	End   []byte `json:"end"`
}

type op struct {
	Op    string `json:"op"`
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
	End   []byte `json:"end"`
	Rev   int64  `json:"rev"`
	Limit int64  `json:"limit"`
	Index uint64 `json:"index"`
	Ops   []sub  `json:"ops"`
}

type kv struct {
	Key     []byte `json:"key"`
	Value   []byte `json:"value"`
	Create  int64  `json:"create"`
	Mod     int64  `json:"mod"`
	Version int64  `json:"version"`
	Lease   int64  `json:"lease"`
}

type result struct {
	Err     string `json:"err,omitempty"`
	Rev     int64  `json:"rev"`
	Count   int    `json:"count"`
	Deleted int64  `json:"deleted"`
	Kvs     []kv   `json:"kvs"`
	Hash    uint32 `json:"hash"`
	Compact int64  `json:"compact"`
}

func main() {
	path := os.Args[1]
	ig := &index{}
	lg := zap.NewNop()
	open := func() (backend.Backend, mvcc.ConsistentWatchableKV) {
		b := backend.NewDefaultBackend(path)
		return b, mvcc.New(lg, b, &lease.FakeLessor{}, nil, ig, mvcc.StoreConfig{})
	}
	b, s := open()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var o op
		if err := json.Unmarshal(in.Bytes(), &o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var r result
		end := gteRange(o.End)
		switch o.Op {
		case "put":
			ig.value = o.Index
			r.Rev = s.Put(o.Key, o.Value, lease.NoLease)
		case "del":
			ig.value = o.Index
			r.Deleted, r.Rev = s.DeleteRange(o.Key, end)
		case "txn":
			ig.value = o.Index
			w := s.Write(traceutil.TODO())
			for _, x := range o.Ops {
				e := gteRange(x.End)
				if x.Kind == "put" {
					w.Put(x.Key, x.Value, lease.NoLease)
				} else {
					w.DeleteRange(x.Key, e)
				}
			}
			w.End()
			r.Rev = s.Rev()
		case "range":
			rr, err := s.Range(o.Key, end, mvcc.RangeOptions{Limit: o.Limit, Rev: o.Rev})
			if err != nil {
				r.Err = err.Error()
				break
			}
			r.Rev, r.Count = rr.Rev, rr.Count
			r.Kvs = []kv{}
			for _, x := range rr.KVs {
				r.Kvs = append(r.Kvs, kv{x.Key, x.Value, x.CreateRevision, x.ModRevision, x.Version, x.Lease})
			}
		case "compact":
			ch, err := s.Compact(traceutil.TODO(), o.Rev)
			if err != nil {
				r.Err = err.Error()
				break
			}
			<-ch
		case "hashkv":
			h, cur, comp, err := s.HashByRev(o.Rev)
			if err != nil {
				r.Err = err.Error()
				break
			}
			r.Hash, r.Rev, r.Compact = h, cur, comp
		case "commit":
			b.ForceCommit()
		case "reopen":
			s.Close()
			b.Close()
			b, s = open()
			r.Rev = s.Rev()
		case "close":
			b.ForceCommit()
			s.Close()
			b.Close()
			out.Encode(r)
			return
		}
		out.Encode(r)
	}
}

// gteRange is what etcd's gRPC layer hands mvcc: an empty range end (proto3's nil bytes) is
// nil, a single key; "\x00" becomes the empty non-nil slice, every key from the start on.
func gteRange(end []byte) []byte {
	if len(end) == 0 {
		return nil
	}
	if len(end) == 1 && end[0] == 0 {
		return []byte{}
	}
	return end
}
