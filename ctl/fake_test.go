package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

// fakeEngine is an Engine in memory that logs the calls that change state.
type fakeEngine struct {
	mu       sync.Mutex
	enabled  bool
	pods     []bpf.PodInfo
	dirs     []bpf.Direction
	counters bpf.Counters
	usage    bpf.Usage
	objects  []Object
	capture  *fakeCapture
	calls    []string
	closed   bool
	// dataPaths is what DataPaths reports (both "00000000000000aa" when zero).
	dataPaths bpf.DataPaths
	// onSleep runs while status waits between its two readings of the
	// counters.
	onSleep func()
}

// newFakeEngine has two pods: "uid-a" (cgroup 100) and "uid-b" (cgroup 200).
func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		enabled: true,
		pods: []bpf.PodInfo{
			{ID: "uid-a", CgroupID: 100, Config: bpf.PodConfig{Rules: rules.Default(), TrustApp: true, SidecarUID: 1337,
				Quota: 8192}, Usage: bpf.PodUsage{Entries: 4, Quota: 8192}},
			{ID: "uid-b", CgroupID: 200, Config: bpf.PodConfig{Rules: &rules.Set{}, SidecarUID: 1337, Disabled: true,
				Quota: 8192}, Usage: bpf.PodUsage{Quota: 8192}},
		},
		counters: bpf.Counters{"connections_accepted": 3, "bytes_redirected": 4096},
		usage: bpf.Usage{Sockets: 4, Directions: 4, Pods: 2, Capacity: 65536,
			Share: bpf.Share{Capacity: 65536, Guaranteed: 128, GuaranteedPods: 256, Pool: 32768}},
		objects: []Object{{Kind: "program", Name: "sk_msg", ID: 7, Type: "SkMsg"}},
	}
}

func (f *fakeEngine) log(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeEngine) Dir() string { return "/sys/fs/bpf/fake/v1" }

func (f *fakeEngine) Enabled() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enabled, nil
}

func (f *fakeEngine) SetEnabled(on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("SetEnabled(%v)", on)
	f.enabled = on
	return nil
}

func (f *fakeEngine) Pods() ([]bpf.PodInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bpf.PodInfo(nil), f.pods...), nil
}

func (f *fakeEngine) pod(id string) (*bpf.PodInfo, error) {
	for i := range f.pods {
		if f.pods[i].ID == id {
			return &f.pods[i], nil
		}
	}
	return nil, fmt.Errorf("pod %s: %w", id, bpf.ErrPodNotAttached)
}

func (f *fakeEngine) UpdatePod(id string, cfg bpf.PodConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.pod(id)
	if err != nil {
		return err
	}
	f.log("UpdatePod(%s)", id)
	p.Config = cfg
	return nil
}

func (f *fakeEngine) SetPodEnabled(id string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.pod(id)
	if err != nil {
		return err
	}
	f.log("SetPodEnabled(%s, %v)", id, on)
	p.Config.Disabled = !on
	return nil
}

func (f *fakeEngine) Drain(cg uint64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("Drain(%d)", cg)
	var keep []bpf.Direction
	for _, d := range f.dirs {
		if cg != 0 && d.FromPod != cg && d.ToPod != cg {
			keep = append(keep, d)
		}
	}
	n := len(f.dirs) - len(keep)
	f.dirs = keep
	return n, nil
}

func (f *fakeEngine) Counters() (bpf.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := bpf.Counters{}
	for k, v := range f.counters {
		c[k] = v
	}
	return c, nil
}

func (f *fakeEngine) Directions() ([]bpf.Direction, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bpf.Direction(nil), f.dirs...), nil
}

func (f *fakeEngine) Usage() (bpf.Usage, error) { return f.usage, nil }

func (f *fakeEngine) DataPaths() (bpf.DataPaths, error) {
	if f.dataPaths.Pinned == "" {
		return bpf.DataPaths{Pinned: "00000000000000aa", Binary: "00000000000000aa"}, nil
	}
	return f.dataPaths, nil
}
func (f *fakeEngine) Objects() ([]Object, error) { return f.objects, nil }

func (f *fakeEngine) StartCapture(flt bpf.CaptureFilter) (Capture, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.capture == nil {
		return nil, errors.New("fake: no capture prepared")
	}
	f.log("StartCapture(%+v)", flt)
	return f.capture, nil
}

func (f *fakeEngine) Close() error {
	f.closed = true
	return nil
}

// fakeCapture replays events, then times out at the deadline. Close counts
// its calls and bumps the engine's capture_dropped counter by dropped.
type fakeCapture struct {
	events   chan bpf.CaptureEvent
	done     chan struct{}
	mu       sync.Mutex
	closes   int
	deadline time.Time
	eng      *fakeEngine
	dropped  uint64
}

func newFakeCapture(eng *fakeEngine, evs ...bpf.CaptureEvent) *fakeCapture {
	c := &fakeCapture{events: make(chan bpf.CaptureEvent, len(evs)), done: make(chan struct{}), eng: eng}
	for _, ev := range evs {
		c.events <- ev
	}
	eng.capture = c
	return c
}

func (c *fakeCapture) SetDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
}

func (c *fakeCapture) Read() (bpf.CaptureEvent, error) {
	c.mu.Lock()
	deadline := c.deadline
	c.mu.Unlock()
	select {
	case <-c.done:
		return bpf.CaptureEvent{}, bpf.ErrCaptureClosed
	case ev := <-c.events:
		return ev, nil
	default:
	}
	wait := time.Hour
	if !deadline.IsZero() {
		wait = time.Until(deadline)
	}
	select {
	case ev := <-c.events:
		return ev, nil
	case <-c.done:
		return bpf.CaptureEvent{}, bpf.ErrCaptureClosed
	case <-time.After(wait):
		return bpf.CaptureEvent{}, fmt.Errorf("fake read: %w", os.ErrDeadlineExceeded)
	}
}

func (c *fakeCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	if c.closes == 1 {
		close(c.done)
		c.eng.mu.Lock()
		c.eng.counters["capture_dropped"] += c.dropped
		c.eng.mu.Unlock()
	}
	return nil
}

// result is the outcome of one mesh-accelctl run.
type result struct {
	stdout, stderr string
	code           int
}

// runCtl runs mesh-accelctl on eng with the plugin's state folder
// stateDir (may be "") and an empty environment.
func runCtl(tb testing.TB, eng Engine, stateDir string, args ...string) result {
	tb.Helper()
	return runWith(tb, ctlRun{eng: eng, stateDir: stateDir}, args...)
}

func runCtlContext(ctx context.Context, tb testing.TB, eng Engine, stateDir string, args ...string) result {
	tb.Helper()
	return runWith(tb, ctlRun{ctx: ctx, eng: eng, stateDir: stateDir}, args...)
}

// ctlRun is the surroundings of a mesh-accelctl run in a test.
type ctlRun struct {
	ctx      context.Context // default: background
	eng      Engine
	stateDir string     // the plugin's state folder; "": the default
	stdin    string     // what -f - reads
	locator  PodLocator // nil: no API access
}

// testNode is the name of the node the tests run mesh-accelctl on.
const testNode = "node-a"

func runWith(tb testing.TB, c ctlRun, args ...string) result {
	tb.Helper()
	var out, errb bytes.Buffer
	if c.stateDir != "" {
		args = append([]string{"--" + FlagStateDir, c.stateDir}, args...)
	}
	if c.ctx == nil {
		c.ctx = context.Background()
	}
	code := Main(c.ctx, args, Deps{
		Stdin:  strings.NewReader(c.stdin),
		Stdout: &out, Stderr: &errb,
		Getenv:      func(string) string { return "" },
		Open:        func(Config) (Engine, error) { return c.eng, nil },
		CheckKernel: func() error { return nil },
		Locator: func() (PodLocator, error) {
			if c.locator == nil {
				return nil, errors.New("no API access: not in a pod")
			}
			return c.locator, nil
		},
		NodeName: func() (string, error) { return testNode, nil },
		Sleep: func(context.Context, time.Duration) error {
			if f, ok := c.eng.(*fakeEngine); ok && f.onSleep != nil {
				f.onSleep()
			}
			return nil
		},
	})
	return result{out.String(), errb.String(), code}
}

// mustRun fails the test unless the run succeeds, and returns stdout.
func mustRun(tb testing.TB, eng Engine, stateDir string, args ...string) string {
	tb.Helper()
	r := runCtl(tb, eng, stateDir, args...)
	if r.code != ExitOK {
		tb.Fatalf("mesh-accelctl %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// podRecords writes pod records into a temporary state folder, as the
// plugin does, and returns the folder.
func podRecords(tb testing.TB, recs ...PodRecord) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, r := range recs {
		writeRecord(tb, dir, nodestate.Record{Namespace: r.Namespace, Name: r.Name, PodUID: r.UID})
	}
	return dir
}

// writeRecord writes a pod record where the plugin keeps it.
func writeRecord(tb testing.TB, stateDir string, r nodestate.Record) {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(nodestate.PodsDir(stateDir), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(nodestate.RecordPath(stateDir, r.PodUID), b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// defaultRecords name the fake engine's pods.
func defaultRecords(tb testing.TB) string {
	tb.Helper()
	return podRecords(tb, PodRecord{"shop", "cart", "uid-a"}, PodRecord{"shop", "pay", "uid-b"})
}

var (
	addrA   = netip.MustParseAddrPort("10.0.0.2:40000")
	sideA   = netip.MustParseAddrPort("127.0.0.1:15001")
	inbound = netip.MustParseAddrPort("127.0.0.6:41000")
	appB    = netip.MustParseAddrPort("10.0.0.3:8080")
)
