// etcdraft runs a data-driven Raft script (the format of etcd's raft/testdata, without the
// expected output) against etcd 3.4's own raft package through its rafttest interaction
// harness, and prints each directive's output after a "=== <line>" marker. Keel's tests run
// the same script against KeelRaft and compare the two outputs.
//
// Besides the harness's commands it understands: config (prevote=, checkquorum=,
// maxuncommitted=, maxsize=, maxinflight=), transfer-leader N TO, read-index N CTX,
// tick N [COUNT], report-unreachable N ID.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.etcd.io/etcd/raft"
	"go.etcd.io/etcd/raft/raftpb"
	"go.etcd.io/etcd/raft/rafttest"
)

type arg struct {
	key  string
	vals []string
}

func parseArg(w string) arg {
	i := strings.IndexByte(w, '=')
	if i < 0 {
		return arg{key: w}
	}
	v := w[i+1:]
	if strings.HasPrefix(v, "(") && strings.HasSuffix(v, ")") {
		v = v[1 : len(v)-1]
	}
	var vals []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			vals = append(vals, x)
		}
	}
	return arg{key: w[:i], vals: vals}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func u64(s string) uint64 { return uint64(atoi(s)) }

func run(env *rafttest.InteractionEnv, cmd string, args []arg, input string) (err error) {
	idx := func() int { return atoi(args[0].key) - 1 }
	switch cmd {
	case "config":
		var prevote, checkquorum bool
		var maxUncommitted, maxSize uint64
		maxInflight := 0
		for _, a := range args {
			switch a.key {
			case "prevote":
				prevote = a.vals[0] == "true"
			case "checkquorum":
				checkquorum = a.vals[0] == "true"
			case "maxuncommitted":
				maxUncommitted = u64(a.vals[0])
			case "maxsize":
				maxSize = u64(a.vals[0])
			case "maxinflight":
				maxInflight = atoi(a.vals[0])
			}
		}
		env.Options.OnConfig = func(c *raft.Config) {
			c.PreVote = prevote
			c.CheckQuorum = checkquorum
			if maxUncommitted > 0 {
				c.MaxUncommittedEntriesSize = maxUncommitted
			}
			if maxSize > 0 {
				c.MaxSizePerMsg = maxSize
			}
			if maxInflight > 0 {
				c.MaxInflightMsgs = maxInflight
			}
		}
	case "add-nodes":
		var snap raftpb.Snapshot
		for _, a := range args[1:] {
			for _, v := range a.vals {
				switch a.key {
				case "voters":
					snap.Metadata.ConfState.Voters = append(snap.Metadata.ConfState.Voters, u64(v))
				case "learners":
					snap.Metadata.ConfState.Learners = append(snap.Metadata.ConfState.Learners, u64(v))
				case "index":
					snap.Metadata.Index = u64(v)
				case "content":
					snap.Data = []byte(v)
				}
			}
		}
		return env.AddNodes(atoi(args[0].key), snap)
	case "campaign":
		return env.Campaign(nil, idx())
	case "compact":
		return env.Compact(idx(), u64(args[1].key))
	case "deliver-msgs":
		var rs []rafttest.Recipient
		for _, a := range args {
			if len(a.vals) == 0 {
				rs = append(rs, rafttest.Recipient{ID: u64(a.key)})
			}
			if a.key == "drop" {
				for _, v := range a.vals {
					rs = append(rs, rafttest.Recipient{ID: u64(v), Drop: true})
				}
			}
		}
		if env.DeliverMsgs(rs...) == 0 {
			env.Output.WriteString("no messages\n")
		}
	case "process-ready":
		return env.ProcessReady(idx())
	case "log-level":
		return env.LogLevel(args[0].key)
	case "raft-log":
		return env.RaftLog(idx())
	case "stabilize":
		var idxs []int
		for _, a := range args {
			if len(a.vals) == 0 {
				idxs = append(idxs, atoi(a.key)-1)
			}
		}
		return env.Stabilize(idxs...)
	case "status":
		return env.Status(idx())
	case "tick-heartbeat":
		return env.Tick(idx(), env.Nodes[idx()].Config.HeartbeatTick)
	case "tick":
		n := 1
		if len(args) > 1 {
			n = atoi(args[1].key)
		}
		return env.Tick(idx(), n)
	case "propose":
		return env.Propose(idx(), []byte(args[1].key))
	case "propose-conf-change":
		v1 := false
		transition := raftpb.ConfChangeTransitionAuto
		for _, a := range args[1:] {
			for _, v := range a.vals {
				switch a.key {
				case "v1":
					v1 = v == "true"
				case "transition":
					transition = map[string]raftpb.ConfChangeTransition{
						"auto": raftpb.ConfChangeTransitionAuto, "implicit": raftpb.ConfChangeTransitionJointImplicit,
						"explicit": raftpb.ConfChangeTransitionJointExplicit}[v]
				}
			}
		}
		ccs, err := raftpb.ConfChangesFromString(input)
		if err != nil {
			return err
		}
		var c raftpb.ConfChangeI
		if v1 {
			c = raftpb.ConfChange{Type: ccs[0].Type, NodeID: ccs[0].NodeID}
		} else {
			c = raftpb.ConfChangeV2{Transition: transition, Changes: ccs}
		}
		return env.ProposeConfChange(idx(), c)
	case "transfer-leader":
		env.Nodes[idx()].TransferLeader(u64(args[1].key))
	case "read-index":
		env.Nodes[idx()].ReadIndex([]byte(args[1].key))
	case "report-unreachable":
		env.Nodes[idx()].ReportUnreachable(u64(args[1].key))
	default:
		return fmt.Errorf("unknown command")
	}
	return nil
}

func main() {
	env := rafttest.NewInteractionEnv(nil)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			i++
			continue
		}
		start := i + 1
		words := strings.Fields(line)
		var input []string
		i++
		for i < len(lines) && lines[i] != "----" {
			input = append(input, lines[i])
			i++
		}
		i++
		for i < len(lines) && lines[i] != "" {
			i++
		}
		var args []arg
		for _, w := range words[1:] {
			args = append(args, parseArg(w))
		}
		env.Output.Reset()
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			err = run(env, words[0], args, strings.Join(input, "\n"))
		}()
		if err != nil {
			env.Output.WriteString(err.Error())
		}
		res := env.Output.String()
		if res == "" {
			res = "ok"
		} else if env.Output.Lvl == 5 {
			if err != nil {
				res = err.Error()
			} else {
				res = "ok (quiet)"
			}
		}
		fmt.Fprintf(out, "=== %d\n%s\n", start, strings.TrimRight(res, "\n"))
	}
}
