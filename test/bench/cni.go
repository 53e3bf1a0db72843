//go:build meshbench

package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// CNIConfig says how to time the CNI plugin.
type CNIConfig struct {
	Plugin string    // path of the mesh-accel plugin binary
	Pods   int       // pods added, then deleted, in that order (100)
	Log    io.Writer // progress lines, or nil
}

// CNIResult is the wall time of the plugin binary's ADD and DEL, as a
// runtime experiences it (fork, exec and exit included), in milliseconds.
// The node state exists beforehand (the installer's job), so the first ADD
// does not pay for creating it. First and last are the medians of the
// first and of the last [cniEdge] ADDs, so that one scheduling hiccup on a
// shared machine does not decide the trend.
type CNIResult struct {
	Pods     int     `json:"pods"`
	AddP50   float64 `json:"add_p50_ms"`
	AddP99   float64 `json:"add_p99_ms"`
	DelP50   float64 `json:"del_p50_ms"`
	DelP99   float64 `json:"del_p99_ms"`
	AddFirst float64 `json:"add_first_ms"`
	AddLast  float64 `json:"add_last_ms"`
}

// cniEdge is how many ADDs at each end make AddFirst and AddLast.
const cniEdge = 5

// CNI floors: what the plugin must stay under.
const (
	MaxAddP50ms   = 15  // ms
	MaxAddGrowth  = 1.5 // AddLast / AddFirst
	cniPrevResult = `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/none"}],` +
		`"ips":[{"address":"10.99.0.2/24","gateway":"10.99.0.1","interface":0}]}`
)

// CheckFloors reports what is over the floors.
func (r *CNIResult) CheckFloors() error {
	var errs []error
	if r.AddP50 >= MaxAddP50ms {
		errs = append(errs, fmt.Errorf("ADD p50 %.1f ms, floor %d ms", r.AddP50, MaxAddP50ms))
	}
	if r.AddLast > MaxAddGrowth*r.AddFirst {
		errs = append(errs, fmt.Errorf("ADD of the last pods %.1f ms > %.1fx the first %.1f ms", r.AddLast, MaxAddGrowth, r.AddFirst))
	}
	return errors.Join(errs...)
}

// MeasureCNI times the plugin binary's ADD of cfg.Pods enabled pods, each
// with its own cgroup under a test cgroup (no network namespace: the
// plugin gets the previous result directly), then their DEL in the same
// order. It needs root, BPF and cgroup v2, and leaves nothing behind.
func MeasureCNI(ctx context.Context, cfg CNIConfig) (*CNIResult, error) {
	if cfg.Pods <= 0 {
		cfg.Pods = 100
	}
	if cfg.Pods < 2*cniEdge {
		return nil, fmt.Errorf("measure cni: %d pods, want at least %d", cfg.Pods, 2*cniEdge)
	}
	r, err := newCNIRun(cfg)
	if err != nil {
		return nil, err
	}
	res, err := r.measure(ctx)
	return res, errors.Join(err, r.close())
}

// cniRun is one timing run: its node state, cgroups and plugin state.
type cniRun struct {
	cfg     CNIConfig
	node    *bpf.Node
	bpfRoot string
	tmp     string // stateDir, log
	cgroup  string
	pods    []string // cgroup dirs
}

func newCNIRun(cfg CNIConfig) (*cniRun, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "mesh-accel-bench-cni-" + hex.EncodeToString(b)
	r := &cniRun{cfg: cfg, bpfRoot: filepath.Join(nodestate.DefaultBPFFS, name)}
	var err error
	if r.tmp, err = os.MkdirTemp("", name); err != nil {
		return nil, fmt.Errorf("measure cni: %w", err)
	}
	if r.node, err = bpf.OpenNode(bpf.Options{Root: name}); err != nil {
		return nil, errors.Join(fmt.Errorf("measure cni: %w", err), r.close())
	}
	mount, err := cgroupv2.Mount()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("measure cni: %w", err), r.close())
	}
	r.cgroup = filepath.Join(mount, name)
	if err := os.Mkdir(r.cgroup, 0o755); err != nil {
		r.cgroup = ""
		return nil, errors.Join(fmt.Errorf("measure cni: %w", err), r.close())
	}
	for i := range cfg.Pods {
		dir := filepath.Join(r.cgroup, fmt.Sprintf("pod%03d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("measure cni: %w", err), r.close())
		}
		r.pods = append(r.pods, dir)
	}
	return r, nil
}

func (r *cniRun) measure(ctx context.Context) (*CNIResult, error) {
	// Warm up: the binary in the page cache, as on a node that runs pods.
	if _, err := r.exec(ctx, "VERSION", 0); err != nil {
		return nil, err
	}
	add := make([]float64, len(r.pods))
	del := make([]float64, len(r.pods))
	for i := range r.pods {
		d, err := r.exec(ctx, "ADD", i)
		if err != nil {
			return nil, err
		}
		add[i] = d
	}
	pods, err := r.node.Pods()
	if err != nil || len(pods) != len(r.pods) {
		return nil, fmt.Errorf("measure cni: %d of %d pods attached after ADD (%v)", len(pods), len(r.pods), err)
	}
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "cni: %d ADDs done\n", len(r.pods))
	}
	for i := range r.pods {
		d, err := r.exec(ctx, "DEL", i)
		if err != nil {
			return nil, err
		}
		del[i] = d
	}
	if pods, err := r.node.Pods(); err != nil || len(pods) != 0 {
		return nil, fmt.Errorf("measure cni: %d pods still attached after DEL (%v)", len(pods), err)
	}
	return &CNIResult{
		Pods:     len(r.pods),
		AddP50:   percentile(add, 50),
		AddP99:   percentile(add, 99),
		DelP50:   percentile(del, 50),
		DelP99:   percentile(del, 99),
		AddFirst: percentile(add[:cniEdge], 50),
		AddLast:  percentile(add[len(add)-cniEdge:], 50),
	}, nil
}

// exec runs the plugin for pod i and returns its wall time in ms.
func (r *cniRun) exec(ctx context.Context, cmd string, i int) (float64, error) {
	conf := map[string]any{
		"cniVersion": "1.1.0", "name": "bench", "type": "mesh-accel",
		"bpfRoot": r.bpfRoot, "stateDir": filepath.Join(r.tmp, "state"), "logFile": filepath.Join(r.tmp, "cni.log"),
		"prevResult": json.RawMessage(cniPrevResult),
		"runtimeConfig": map[string]any{
			"io.kubernetes.cri.pod-annotations": map[string]string{"accel.mesh/enabled": "true"},
			"cgroupPath":                        r.pods[i],
		},
	}
	stdin, err := json.Marshal(conf)
	if err != nil {
		return 0, err
	}
	c := exec.CommandContext(ctx, r.cfg.Plugin)
	c.Env = []string{
		"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + fmt.Sprintf("bench-%03d", i), "CNI_NETNS=/run/netns/none",
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(r.cfg.Plugin),
		fmt.Sprintf("CNI_ARGS=K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod%03d;K8S_POD_UID=bench-uid-%03d", i, i),
	}
	var stdout, stderr bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	start := time.Now()
	err = c.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("measure cni: %s of pod %d: %w: %s %s", cmd, i, err, stdout.Bytes(), stderr.Bytes())
	}
	if cmd == "ADD" && !json.Valid(stdout.Bytes()) {
		return 0, fmt.Errorf("measure cni: ADD of pod %d printed %q", i, stdout.Bytes())
	}
	return float64(d.Microseconds()) / 1000, nil
}

// close removes the node state, the cgroups and the temporary folder.
func (r *cniRun) close() error {
	var errs []error
	if r.node != nil {
		errs = append(errs, r.node.Remove())
	}
	for _, d := range r.pods {
		errs = append(errs, os.Remove(d))
	}
	if r.cgroup != "" {
		errs = append(errs, os.Remove(r.cgroup))
	}
	errs = append(errs, os.RemoveAll(r.tmp))
	return errors.Join(errs...)
}

// percentile is the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
