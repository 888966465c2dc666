// Command etcdwal is etcd 3.4's own WAL package (Debian's golang-etcd-server-dev) driven by
// Keel's interop tests.
//
//	etcdwal read DIR INDEX TERM       wal.OpenForRead + ReadAll; prints metadata, state, entries
//	etcdwal write DIR N SEGMENT_BYTES  wal.Create, N entries in batches of 7 with hard states,
//	                                  a snapshot record at N/2, then Close
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"

	"go.etcd.io/etcd/raft/raftpb"
	"go.etcd.io/etcd/wal"
	"go.etcd.io/etcd/wal/walpb"
	"go.uber.org/zap"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: etcdwal read|write DIR ...")
		os.Exit(2)
	}
	dir := os.Args[2]
	switch os.Args[1] {
	case "read":
		index, _ := strconv.ParseUint(os.Args[3], 10, 64)
		term, _ := strconv.ParseUint(os.Args[4], 10, 64)
		w, err := wal.OpenForRead(zap.NewNop(), dir, walpb.Snapshot{Index: index, Term: term})
		must(err)
		metadata, state, entries, err := w.ReadAll()
		must(err)
		fmt.Printf("metadata %s\n", hex.EncodeToString(metadata))
		fmt.Printf("state term=%d vote=%d commit=%d\n", state.Term, state.Vote, state.Commit)
		for _, e := range entries {
			fmt.Printf("entry index=%d term=%d type=%d data=%s\n", e.Index, e.Term, e.Type, hex.EncodeToString(e.Data))
		}
		// Close of a WAL opened for reading fails in 3.4 (it syncs a read-only tail): ignore it.
		_ = w.Close()
	case "write":
		n, _ := strconv.Atoi(os.Args[3])
		size, _ := strconv.ParseInt(os.Args[4], 10, 64)
		wal.SegmentSizeBytes = size
		w, err := wal.Create(zap.NewNop(), dir, []byte("keel-metadata"))
		must(err)
		var batch []raftpb.Entry
		for i := 1; i <= n; i++ {
			batch = append(batch, raftpb.Entry{Term: uint64(1 + i/50), Index: uint64(i), Type: raftpb.EntryNormal, Data: []byte(fmt.Sprintf("data-%d", i))})
			if len(batch) == 7 || i == n {
				must(w.Save(raftpb.HardState{Term: uint64(1 + i/50), Vote: 1, Commit: uint64(i)}, batch))
				batch = nil
			}
			if i == n/2 {
				must(w.SaveSnapshot(walpb.Snapshot{Index: uint64(i), Term: uint64(1 + i/50)}))
			}
		}
		must(w.Close())
	default:
		fmt.Fprintln(os.Stderr, "unknown command")
		os.Exit(2)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
