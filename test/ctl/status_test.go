package ctltest

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// status reports the node state the engine created, the pods, and
// explains the directions left to the stack for untrusted readers (the
// default configuration) while such connections are being made: the
// warning comes from the rate over status's window, so it is gone once
// the traffic stops.
func TestStatus(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", oneWayCfg)
	b := e.pod("b", oneWayCfg)
	e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})

	const untrusted = "pair directions per second take the normal stack because their reader is not trusted"
	out := e.ok("status", "-o", "wide", "--window", "300ms")
	for _, want := range []string{
		"ready (cgroup v2, sockops, sk_msg",
		"Node state:    " + e.node.Dir() + " (layout " + bpf.LayoutVersion + ", maps of 65536 entries)",
		"Acceleration:  enabled",
		"program  sk_msg",
		"map      sock_proxy_map",
		"Pods (2):",
		"shop/a  enabled  1337         no           2      " + e.uids["a"],
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, untrusted) {
		t.Errorf("status warns about connections made before its window:\n%s", out)
	}
	wait := e.background(a, sim.ClientSpec{Mode: sim.ModeConnRate, Target: b.AppTarget(false), Duration: 3 * time.Second})
	time.Sleep(500 * time.Millisecond)
	out = e.ok("status", "--window", "1s")
	if res := wait(); !res.OK {
		t.Fatalf("connrate client: %v", res.Errors)
	}
	if !strings.Contains(out, untrusted) || !strings.Contains(out, "accel.mesh/app-reads-with-recvmsg") {
		t.Errorf("status lacks the rate warning while connections are made:\n%s", out)
	}

	var r struct {
		Kernel struct{ Ready bool }
		State  struct {
			Present bool
			Dir     string
			Layout  string `json:"layout_version"`
			Objects []ctl.Object
		}
		Enabled  bool
		Pods     []struct{ Name, ID string }
		Warnings []string
	}
	e.json(&r, "status", "--window", "0")
	var names []string
	for _, o := range r.State.Objects {
		names = append(names, o.Kind+":"+o.Name)
		if o.ID == 0 || o.Type == "" {
			t.Errorf("object without id or type: %+v", o)
		}
	}
	for _, want := range []string{"program:sk_msg", "program:sockops", "program:sock_create", "map:sock_ops_map",
		"map:sock_proxy_map", "map:sock_param_map", "map:sock_helper_map", "map:mesh_counters", "map:mesh_capture"} {
		if !slices.Contains(names, want) {
			t.Errorf("status objects lack %s: %v", want, names)
		}
	}
	if !r.Kernel.Ready || !r.State.Present || r.State.Dir != e.node.Dir() || r.State.Layout != bpf.LayoutVersion || !r.Enabled ||
		len(r.Pods) != 2 || r.Pods[0].Name == r.Pods[0].ID {
		t.Errorf("status JSON: %+v", r)
	}
}

// On a node without state status shows the kernel and fails; it creates
// nothing.
func TestStatusNoState(t *testing.T) {
	e := newEnv(t)
	r := e.ctl("status", "--bpf-root", "mesh-accel-nosuch")
	if r.code != ctl.ExitError || !strings.Contains(r.stdout, "Node state:  none at") ||
		!strings.Contains(r.stderr, "no mesh-accel state on this node") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var rep struct{ State struct{ Present bool } }
	r = e.ctl("status", "--bpf-root", "mesh-accel-nosuch", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.State.Present || r.code != ctl.ExitError {
		t.Errorf("JSON status without state: exit %d, %v: %s", r.code, err, r.stdout)
	}
}

// stats shows the counters; --watch prints rates while traffic flows.
func TestStats(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	var s struct{ Counters map[string]uint64 }
	e.json(&s, "stats")
	if _, ok := s.Counters["capture_dropped"]; !ok || len(s.Counters) < 20 {
		t.Fatalf("stats: %v", s.Counters)
	}
	wait := e.background(a, sim.ClientSpec{Mode: sim.ModeRR, Target: b.AppTarget(false), Duration: 2 * time.Second})
	ctx, cancel := contextAfter(1200 * time.Millisecond)
	defer cancel()
	r := e.ctlContext(ctx, nil, "stats", "--watch", "300ms", "-o", "json")
	if res := wait(); !res.OK {
		t.Fatalf("rr client: %v", res.Errors)
	}
	if r.code != ctl.ExitOK {
		t.Fatalf("stats --watch: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	moving := 0
	for _, l := range lines {
		var w struct {
			PerSec map[string]float64 `json:"per_sec"`
		}
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			t.Fatal(err)
		}
		if w.PerSec["messages_redirected"] > 0 {
			moving++
		}
	}
	if len(lines) < 2 || moving == 0 {
		t.Errorf("%d samples, %d with messages redirected per second: %s", len(lines), moving, r.stdout)
	}
	if out := e.ok("stats"); !strings.Contains(out, "bytes_redirected") {
		t.Errorf("stats table: %s", out)
	}
}

// mesh-accelctl run with the installer's environment (as in the
// installer's container, whose variables the DaemonSet sets) finds the
// state the installer made, in a non-default location: the two programs
// name the settings alike.
func TestInstallerEnvironment(t *testing.T) {
	e := newEnv(t)
	e.pod("a", oneWayCfg)
	root := filepath.Dir(e.node.Dir())
	env := map[string]string{
		installer.EnvName(installer.FlagBPFFS):    filepath.Dir(root),
		installer.EnvName(installer.FlagBPFRoot):  filepath.Base(root),
		installer.EnvName(installer.FlagStateDir): e.stateDir,
	}
	var out, errb bytes.Buffer
	code := ctl.Main(context.Background(), []string{"status"}, ctl.Deps{Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }})
	if code != ctl.ExitOK || !strings.Contains(out.String(), "Node state:    "+e.node.Dir()) ||
		!strings.Contains(out.String(), "shop/a  enabled") {
		t.Fatalf("mesh-accelctl with the installer's environment %v: exit %d\n%s%s", env, code, out.String(), errb.String())
	}
}
