// etcdraft-bench: proposals committed per second in a 3-node in-memory cluster driven through
// etcd 3.4's raft.RawNode (no disk, no network), the workload `keelutl bench raft` runs on
// KeelRaft. Prints one JSON line per in-flight setting.
//
//	etcdraft-bench COUNT INFLIGHT[,INFLIGHT...] ENTRY_BYTES
package main

import (
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/raft"
	pb "go.etcd.io/etcd/raft/raftpb"
)

type node struct {
	rn      *raft.RawNode
	storage *raft.MemoryStorage
}

func newCluster() []*node {
	peers := []uint64{1, 2, 3}
	var ns []*node
	for _, id := range peers {
		s := raft.NewMemoryStorage()
		s.ApplySnapshot(pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 1, Term: 1, ConfState: pb.ConfState{Voters: peers}}})
		rn, err := raft.NewRawNode(&raft.Config{
			ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: s, Applied: 1,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, CheckQuorum: true,
			Logger: &raft.DefaultLogger{Logger: log.New(ioutil.Discard, "", 0)},
		})
		if err != nil {
			panic(err)
		}
		ns = append(ns, &node{rn, s})
	}
	return ns
}

// run drives every node until nothing is left to do; returns entries the leader applied.
func pump(ns []*node, queue *[]pb.Message) int {
	applied := 0
	for {
		busy := false
		for i, n := range ns {
			if !n.rn.HasReady() {
				continue
			}
			busy = true
			rd := n.rn.Ready()
			if !raft.IsEmptyHardState(rd.HardState) {
				n.storage.SetHardState(rd.HardState)
			}
			n.storage.Append(rd.Entries)
			*queue = append(*queue, rd.Messages...)
			if i == 0 {
				for _, e := range rd.CommittedEntries {
					if e.Type == pb.EntryNormal && len(e.Data) > 0 {
						applied++
					}
				}
			}
			n.rn.Advance(rd)
		}
		if len(*queue) > 0 {
			busy = true
			msgs := *queue
			*queue = (*queue)[:0:0]
			for _, m := range msgs {
				ns[m.To-1].rn.Step(m)
			}
		}
		if !busy {
			return applied
		}
	}
}

func main() {
	count, _ := strconv.Atoi(os.Args[1])
	size, _ := strconv.Atoi(os.Args[3])
	for _, f := range strings.Split(os.Args[2], ",") {
		inflight, _ := strconv.Atoi(f)
		ns := newCluster()
		var queue []pb.Message
		ns[0].rn.Campaign()
		pump(ns, &queue)
		if ns[0].rn.Status().RaftState != raft.StateLeader {
			panic("node 1 did not become leader")
		}
		data := make([]byte, size)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		proposed, applied := 0, 0
		for applied < count {
			for proposed-applied < inflight && proposed < count {
				if err := ns[0].rn.Propose(data); err != nil {
					panic(err)
				}
				proposed++
			}
			applied += pump(ns, &queue)
		}
		elapsed := time.Since(start).Seconds()
		runtime.ReadMemStats(&after)
		fmt.Printf("{\"impl\":\"etcd-raft\",\"inflight\":%d,\"count\":%d,\"entry_bytes\":%d,\"seconds\":%.4f,\"ops_per_sec\":%.0f,\"allocs_per_entry\":%.2f,\"bytes_per_entry\":%.0f}\n",
			inflight, count, size, elapsed, float64(count)/elapsed,
			float64(after.Mallocs-before.Mallocs)/float64(count), float64(after.TotalAlloc-before.TotalAlloc)/float64(count))
	}
}
