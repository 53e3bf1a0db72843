package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// BenchmarkNodeCost measures what the node state costs the installer at
// a scrape and at a sweep pass, on empty maps and on full ones (65,536
// entries in each connection map: an idle node at capacity, nothing
// stale), wall time (ns/op) and CPU time (cpu-ns/op, the process's user
// and system time). scrape is what a scrape reads of the node state
// (MapFill, Counters, Share); scrape-walk the same with the maps walked,
// as every scrape did before the kept counts; status what mesh-accelctl
// status reads (Usage, DataPaths, Pods, Counters); sweep-pass one SweepStep;
// sweep-cycle a whole cycle (Sweep), what every sweep did before the
// passes. docs/benchmark.md, "Cost of the node state".
//
//	sudo go test -run '^$' -bench NodeCost -benchtime 20x ./bpf/
func BenchmarkNodeCost(b *testing.B) {
	testenv.RequireRoot(b)
	if err := CheckKernel(); err != nil {
		testenv.Missing(b, "%v", err)
	}
	for _, fill := range []int{0, DefaultMapSize} {
		root := "mesh-accel-test-" + randomName()
		b.Cleanup(func() { _ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, root)) })
		n, err := OpenNode(Options{Root: root, RegistrationTTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Remove() })
		fillIdle(b, n, fill)
		name := "entries=" + strconv.Itoa(fill)
		b.Run(name+"/scrape", func(b *testing.B) { cpuBench(b, func() error { return scrapeState(n, false) }) })
		b.Run(name+"/scrape-walk", func(b *testing.B) { cpuBench(b, func() error { return scrapeState(n, true) }) })
		b.Run(name+"/status", func(b *testing.B) { cpuBench(b, func() error { return statusState(n) }) })
		b.Run(name+"/sweep-pass", func(b *testing.B) {
			cpuBench(b, func() error { _, err := n.SweepStep(); return err })
		})
		b.Run(name+"/sweep-cycle", func(b *testing.B) { cpuBench(b, func() error { _, err := n.Sweep(); return err }) })
		if tot := n.SweepTotals(); tot.Directions+tot.Pending+tot.Refilled != 0 {
			b.Errorf("%s: the sweeps found the idle state stale: %+v", name, tot)
		}
	}
}

// scrapeState reads what a scrape reads of the node state, the maps'
// fill by the kept counts or (walk) by a walk of every map.
func scrapeState(n *Node, walk bool) error {
	if walk {
		v := []*ebpf.Map{n.maps.SockOpsMap, n.maps.SockRxMap, n.maps.SockProxyMap, n.maps.SockHelperMap,
			n.maps.SockParamMap, n.maps.PodUsage}
		for _, m := range v {
			if _, err := countEntries(m); err != nil {
				return err
			}
		}
	} else if _, err := n.MapFill(); err != nil {
		return err
	}
	if _, err := n.Counters(); err != nil {
		return err
	}
	_, err := n.Share()
	return err
}

// statusState reads what mesh-accelctl status reads of the node state
// (but the counters' rates, which wait for their window).
func statusState(n *Node) error {
	if _, err := n.Usage(); err != nil {
		return err
	}
	if _, err := n.DataPaths(); err != nil {
		return err
	}
	if _, err := n.Pods(); err != nil {
		return err
	}
	_, err := n.Counters()
	return err
}

// cpuBench runs op b.N times and reports the process's CPU time per op.
func cpuBench(b *testing.B, op func() error) {
	var r0, r1 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
	b.ResetTimer()
	for range b.N {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// fillIdle fills each connection map with count entries of an idle node:
// pair directions whose sockets and peers are in both socket maps, and as
// many young registrations of those sockets. Each key has a real socket
// of its own (a socket joins sock_ops_map, whose sk_msg program it runs,
// once), idle; the hash maps are written in batches, and the kept counts
// set to match.
func fillIdle(b *testing.B, n *Node, count int) {
	b.Helper()
	if count == 0 {
		return
	}
	idleSockets(b, n, count)
	keys := make([]meshSockKey, count)
	ends := make([]meshEndpointKey, count)
	for i := range keys {
		keys[i] = idleKey(i)
		ends[i] = meshEndpointKey{Port: uint32(i), Netns: 9}
	}
	dirs := make([]meshProxyVal, count)
	regs := make([]meshHelperVal, count)
	born := monotonicMillis()
	for i := range dirs {
		dirs[i] = meshProxyVal{Peer: keys[i^1], Pod: 1, PeerPod: 1, Flags: proxyActive}
		regs[i] = meshHelperVal{Key: keys[i], Pod: 1, Born: born}
	}
	if _, err := n.maps.SockProxyMap.BatchUpdate(keys, dirs, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := n.maps.SockHelperMap.BatchUpdate(ends, regs, nil); err != nil {
		b.Fatal(err)
	}
	for _, k := range []meshFillKept{meshFillKeptFILL_PROXY, meshFillKeptFILL_HELPER} {
		if err := n.fillAdd(k, int64(count)); err != nil {
			b.Fatal(err)
		}
	}
}

// idleKey is the key of the i-th entry of each connection map that
// fillIdle writes.
func idleKey(i int) meshSockKey { return meshSockKey{LocalPort: uint32(i), RemotePort: 80, Netns: 9} }

const envIdleSockets = "MESH_ACCEL_TEST_IDLE_SOCKETS"

// idleSocketsPerProcess stays under the RLIMIT_NOFILE this machine allows
// (20,000, which root cannot raise here without CAP_SYS_RESOURCE).
const idleSocketsPerProcess = 16384

// TestIdleSocketsHelper is not a test: run by idleSockets with
// MESH_ACCEL_TEST_IDLE_SOCKETS="<maps dir> <first> <count>", it opens
// count idle TCP sockets (connected pairs on loopback), puts socket j in
// the pinned sock_ops_map and sock_rx_map under idleKey(first+j), says
// "ok", and holds them until its stdin closes.
func TestIdleSocketsHelper(t *testing.T) {
	var (
		dir          string
		first, count int
	)
	if _, err := fmt.Sscan(os.Getenv(envIdleSockets), &dir, &first, &count); err != nil {
		return
	}
	if err := holdIdleSockets(dir, first, count); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func holdIdleSockets(dir string, first, count int) error {
	var maps []*ebpf.Map
	for _, name := range []string{meshMapSockOpsMap, meshMapSockRxMap} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			return err
		}
		defer m.Close()
		maps = append(maps, m)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < count {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("connection %d: %w", len(conns), err)
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c, s)
	}
	for j, c := range conns[:count] {
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var uerr error
		err = raw.Control(func(fd uintptr) {
			for _, m := range maps {
				if uerr = m.Update(idleKey(first+j), uint64(fd), ebpf.UpdateNoExist); uerr != nil {
					return
				}
			}
		})
		if err = errors.Join(err, uerr); err != nil {
			return fmt.Errorf("socket %d into the socket maps: %w", first+j, err)
		}
	}
	fmt.Println("ok")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// idleSockets fills the socket maps with count idle sockets under
// idleKey(0..count-1), held by helper processes (TestIdleSocketsHelper)
// until the benchmark ends.
func idleSockets(b *testing.B, n *Node, count int) {
	b.Helper()
	for first := 0; first < count; first += idleSocketsPerProcess {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleSocketsHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", envIdleSockets, n.mapsDir(), first,
			min(idleSocketsPerProcess, count-first)))
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "ok") {
			b.Fatalf("idle sockets %d..: %q %v", first, line, err)
		}
	}
}
