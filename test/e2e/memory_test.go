package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// pageSize is the unit of /proc/net/sockstat's and tcp_mem's figures.
const pageSize = 4096

// memPeak is what a memSampler saw.
type memPeak struct {
	// TCPPages is the node's peak TCP memory (/proc/net/sockstat "mem"),
	// StartPages its level at the first sample: what other sockets of the
	// node (earlier tests' still closing) held when the run began.
	TCPPages, StartPages int64
	// Backlog is the largest receive memory of a socket whose stack
	// receive queue was empty (ss: Recv-Q 0): unread redirected bytes,
	// exactly.
	Backlog int64
	// Upper is the largest receive memory less the stack bytes unread
	// (ss: r minus Recv-Q) over every sample: at least the unread
	// redirected bytes (stack bytes take their truesize, more than Recv-Q).
	Upper   int64
	Samples int // socket samples with an empty stack queue
}

// sampleMemory samples the node's TCP memory and, with ss, the receive
// memory of every established socket in pods until the returned function
// is called, which returns the peaks.
func sampleMemory(t *testing.T, pods ...*sim.Pod) func() memPeak {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		peak memPeak
		errs []error
	)
	sample := func() {
		pages, err := tcpMemPages()
		var socks []ssSocket
		for _, p := range pods {
			s, serr := ssSockets(ctx, p.Netns)
			err = errors.Join(err, serr)
			socks = append(socks, s...)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
		if peak.TCPPages == 0 {
			peak.StartPages = pages
		}
		peak.TCPPages = max(peak.TCPPages, pages)
		for _, s := range socks {
			peak.Upper = max(peak.Upper, s.rmem-s.recvQ)
			if s.recvQ == 0 {
				peak.Backlog = max(peak.Backlog, s.rmem)
				peak.Samples++
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			sample()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() memPeak {
		cancel()
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("sampling memory: %v", errs[0])
		}
		return peak
	}
}

// Growth is how far the node's TCP memory rose above its level when the
// sampling began: the run's own memory, whatever the node held before.
func (p memPeak) Growth() int64 { return max(p.TCPPages-p.StartPages, 0) }

// tcpMemPages reads the node's TCP memory in pages.
func tcpMemPages() (int64, error) {
	f, err := os.Open("/proc/net/sockstat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(fields); i += 2 {
			if fields[i] == "mem" {
				return strconv.ParseInt(fields[i+1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/net/sockstat: no TCP mem")
}

// tcpMemPressure is tcp_mem's first value (pages): above it TCP squeezes
// every socket of the node.
func tcpMemPressure(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type ssSocket struct {
	recvQ, rmem int64
}

// ssSockets lists the established TCP sockets of a network namespace with
// their Recv-Q and receive memory (ss -tm's skmem r), as `ss` shows them.
func ssSockets(ctx context.Context, netns string) ([]ssSocket, error) {
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+netns, "ss", "-tmnHO", "state", "established").Output()
	if err != nil {
		return nil, fmt.Errorf("ss in %s: %w", netns, err)
	}
	var socks []ssSocket
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		var s ssSocket
		if s.recvQ, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
			return nil, fmt.Errorf("ss line %q: %w", line, err)
		}
		i := strings.Index(line, "skmem:(r")
		if i < 0 {
			return nil, fmt.Errorf("ss line %q: no skmem", line)
		}
		rest := line[i+len("skmem:(r"):]
		if j := strings.IndexByte(rest, ','); j >= 0 {
			rest = rest[:j]
		}
		if s.rmem, err = strconv.ParseInt(rest, 10, 64); err != nil {
			return nil, fmt.Errorf("ss line %q: %w", line, err)
		}
		socks = append(socks, s)
	}
	return socks, nil
}
