package scale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// run is one benchmark run: its simulated node (cgroups, namespace,
// janitor), node state, installer, pods and holders.
type run struct {
	cfg     Config
	sim     *sim.Node
	net     *sim.Pod // the network namespace of the holders, and the executable's copy
	node    *bpf.Node
	tmp     string
	cni     cniRunner
	inst    *installerProc
	pods    []string        // cgroups of the attached pods, in ADD order
	holders [][]*holderProc // per pod, for the first connPods pods
	plain   *holderProc     // in a cgroup that is not attached
	lock    *os.File        // held while the run's node state exists (leftovers.go)
	res     Result
}

// Run runs the benchmark and returns what it measured, even when the
// clean-up that follows the measurements failed (the error says so). It
// needs root, BPF, cgroup v2 and nsenter, and leaves nothing behind: the
// simulator's janitor removes the cgroups, namespace and processes even if
// the benchmark is killed, and the next run removes the node state
// (/sys/fs/bpf/mesh-accel-bench-scale-*) of a run killed outright.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	if err := r.setup(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("bench-scale: %w", err), r.close())
	}
	if err := r.measure(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("bench-scale: %w", err), r.close())
	}
	r.res.LoadEnd = firstLine("/proc/loadavg")
	r.res.JudgeFloors()
	if err := r.close(); err != nil {
		return &r.res, fmt.Errorf("bench-scale: clean up after the measurements: %w", err)
	}
	return &r.res, nil
}

func (r *run) setup(ctx context.Context) error {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := rootPrefix + hex.EncodeToString(b)
	var err error
	if r.lock, err = lockRun(name); err != nil {
		return err
	}
	if err := sweepLeftovers(); err != nil {
		r.cfg.Log("%v", err) // an earlier run's state that resists does not stop this one
	}
	if r.sim, err = sim.NewNode(sim.NodeOptions{Prefix: "bs"}); err != nil {
		return err
	}
	loopback := func(*sim.Pod) (netip.Addr, netip.Addr, error) {
		return netip.MustParseAddr("127.0.0.1"), netip.Addr{}, nil
	}
	if r.net, err = r.sim.AddPod(sim.PodOptions{Name: "net", NoApp: true, Network: loopback}); err != nil {
		return err
	}
	if r.tmp, err = os.MkdirTemp("", name); err != nil {
		return err
	}
	if r.node, err = bpf.OpenNode(bpf.Options{Root: name, MapSize: r.cfg.MapSize}); err != nil {
		return err
	}
	r.cni = cniRunner{plugin: r.cfg.Plugin, bpfRoot: filepath.Join(nodestate.DefaultBPFFS, name),
		stateDir: filepath.Join(r.tmp, "state"), logFile: filepath.Join(r.tmp, "cni.log"), netns: r.net.Netns, mapSize: r.cfg.MapSize}
	if r.inst, err = startInstaller(r.cfg.Installer, r.tmp, name, r.cni.stateDir, r.cni.logFile, r.cfg.Plugin, r.cfg.MapSize); err != nil {
		return err
	}
	plain := filepath.Join(r.sim.CgroupDir, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		return err
	}
	if r.plain, err = startHolder(ctx, r.net.Exe(), r.net.Netns, plain); err != nil {
		return err
	}
	if _, err := r.plain.call(fmt.Sprintf("pin %d", probeCPU)); err != nil {
		return err
	}
	if err := r.warmUp(ctx); err != nil {
		return err
	}
	fills, err := r.node.MapFill()
	if err != nil {
		return err
	}
	for _, f := range fills {
		if f.Name == pairMap {
			r.res.Capacity = int(f.MaxEntries / 2)
		}
	}
	r.res.Date, r.res.CPUs, r.res.ConnPods = time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), r.cfg.connPods()
	r.res.PodSteps, r.res.Probes, r.res.Live = r.cfg.Pods, r.cfg.Probes, r.cfg.Live
	for _, c := range r.cfg.Conns {
		if c == Capacity {
			c = r.res.Capacity
		}
		r.res.ConnSteps = append(r.res.ConnSteps, c)
	}
	r.res.Kernel, r.res.LoadStart = firstLine("/proc/sys/kernel/osrelease"), firstLine("/proc/loadavg")
	return nil
}

// probeCPU is the CPU of the two processes that time new connections: the
// same for both, so that what else runs on the machine slows both alike.
// It is the last CPU this process may run on.
var probeCPU = func() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	last := 0
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			last = cpu
		}
	}
	return last
}()

// pairMap is the map of pair directions: two entries per accelerated
// connection.
const pairMap = "sock_proxy_map"

// measure runs the three phases, then deletes the pods.
func (r *run) measure(ctx context.Context) error {
	for _, p := range r.cfg.Pods {
		if p <= r.res.ConnPods {
			if err := r.podsStep(ctx, PhasePods, p); err != nil {
				return err
			}
		}
	}
	for _, c := range r.res.ConnSteps {
		if err := r.connsStep(ctx, c); err != nil {
			return err
		}
	}
	for _, p := range r.cfg.Pods {
		if p > r.res.ConnPods {
			if err := r.podsStep(ctx, PhaseMore, p); err != nil {
				return err
			}
		}
	}
	return r.deleteAll(ctx)
}

// podsStep adds pods up to n, timing each ADD, then measures.
func (r *run) podsStep(ctx context.Context, phase string, n int) error {
	first := len(r.pods)
	for i := first; i < n; i++ {
		dir := filepath.Join(r.sim.CgroupDir, fmt.Sprintf("p%04d", i+1))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		d, err := r.cni.exec(ctx, "ADD", i+1, dir)
		if err != nil {
			return err
		}
		r.pods = append(r.pods, dir)
		r.res.AddMs = append(r.res.AddMs, d)
	}
	if len(r.holders) == 0 { // pod 1's holder probes new connections at every step
		h, err := startHolder(ctx, r.net.Exe(), r.net.Netns, r.pods[0])
		if err != nil {
			return err
		}
		if _, err := h.call(fmt.Sprintf("pin %d", probeCPU)); err != nil {
			return err
		}
		r.holders = [][]*holderProc{{h}}
	}
	s, err := r.measureStep(ctx, phase, r.connsHeld())
	if err != nil {
		return err
	}
	s.Add = dist(r.res.AddMs[first:])
	r.res.Steps = append(r.res.Steps, s)
	return nil
}

func (r *run) connsHeld() int {
	n := 0
	for _, hs := range r.holders {
		for _, h := range hs {
			n += h.conns
		}
	}
	return n
}

// warmUp adds and deletes a pod that is not counted, so that pod 1's ADD
// is not the first run of the plugin's code paths (the binary and what it
// reads in the page cache, as on a node that runs pods).
func (r *run) warmUp(ctx context.Context) error {
	dir := filepath.Join(r.sim.CgroupDir, "warm-up")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, cmd := range []string{"ADD", "DEL"} {
		if _, err := r.cni.exec(ctx, cmd, 0, dir); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// firstLine is the first line of a small file, "" if it cannot be read.
func firstLine(path string) string {
	b, _ := os.ReadFile(path)
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}
