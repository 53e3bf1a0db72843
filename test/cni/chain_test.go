package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// directionsDuring runs a request/response client for a while and returns
// the largest snapshot of the recorded pair directions.
func (c *chain) directionsDuring(p *cniPod, target string) []bpf.Direction {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type outcome struct {
		res *sim.ClientResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := p.RunClient(ctx, sim.ClientSpec{Mode: sim.ModeRR, Target: target, Duration: time.Second})
		done <- outcome{res, err}
	}()
	var best []bpf.Direction
	for {
		select {
		case o := <-done:
			if o.err != nil || !o.res.OK {
				c.t.Fatalf("rr client: %v %+v", o.err, o.res)
			}
			c.waitNoConns()
			return best
		case <-time.After(50 * time.Millisecond):
			d, err := c.node.Directions()
			if err != nil {
				c.t.Fatal(err)
			}
			if len(d) > len(best) {
				best = d
			}
		}
	}
}

// Annotated pods (the sidecar-hops profile) are accelerated on the
// sidecar-to-sidecar hop, both ways, into the sidecars only; pods without
// the annotation are left alone. The chain's result is the bridge's,
// passed through.
func TestChainAccelerates(t *testing.T) {
	c := newChain(t, "", false)
	a := c.mustAddPod(podSpec{name: "a", ann: accelerated, sidecar: true, noApp: true})
	b := c.mustAddPod(podSpec{name: "b", ann: accelerated, sidecar: true})
	x := c.mustAddPod(podSpec{name: "x", sidecar: true, noApp: true})
	y := c.mustAddPod(podSpec{name: "y", sidecar: true})
	c.wantAttached(a)
	c.wantAttached(b)
	for _, p := range []*cniPod{x, y} {
		if c.attached(p) != nil {
			t.Errorf("pod %s attached without the annotation", p.Name)
		}
	}
	if len(a.Result.IPs) != 1 || !strings.HasPrefix(a.Result.IPs[0].Address.String(), strings.TrimSuffix(c.params.Subnet, "0/24")) ||
		len(a.Result.Interfaces) < 3 || a.Result.Interfaces[0].Name != c.params.Bridge {
		t.Errorf("chain result is not the bridge's: %+v", a.Result)
	}

	ds := c.directionsDuring(a, b.AppTarget(false))
	var toSidecars int
	for _, d := range ds {
		if d.FromPod != a.CgroupID && d.FromPod != b.CgroupID {
			t.Errorf("a direction outside the annotated pods: %+v", d)
		}
		if d.Redirect {
			toSidecars++
			if d.ToUID != sim.SidecarUID {
				t.Errorf("data redirected into an untrusted app: %+v", d)
			}
		}
	}
	if len(ds) != 2 || toSidecars != 2 {
		t.Fatalf("want 1 pair (outbound sidecar <-> inbound sidecar), both directions redirected; got %+v", ds)
	}
	_, got := c.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, MaxWrite: 64 << 10})
	// The stream is redirected on the sidecar hop: all 4 MiB, unless flow
	// control held the direction while the inbound Envoy fell behind (it
	// then carries part on the stack).
	if got["connections_accepted"] != 1 || got["bytes_redirected"] == 0 ||
		(got["flow_control_held"] == 0 && got["bytes_redirected"] < 4<<20) {
		t.Errorf("annotated pods: counters %v, want 1 pair and the stream redirected", got)
	}
	if rc, err := b.RedirectCounts(); err != nil || rc.Inbound4 == 0 {
		t.Errorf("traffic did not pass b's sidecar: %+v, %v", rc, err)
	}

	_, got = c.run(x, sim.ClientSpec{Mode: sim.ModeBulk, Target: y.AppTarget(false), Bytes: 1 << 20})
	if got["sockets_tagged"] != 0 || got["connections_seen"] != 0 || got["bytes_redirected"] != 0 {
		t.Errorf("pods without the annotation touched the data path: %v", got)
	}

	ctx := context.Background()
	if err := c.CNI.CheckNetworkList(ctx, c.List, a.RT); err != nil {
		t.Errorf("CHECK of an accelerated pod: %v", err)
	}
	if err := c.CNI.CheckNetworkList(ctx, c.List, x.RT); err != nil {
		t.Errorf("CHECK of a pod left alone: %v", err)
	}
	if err := c.CNI.GetStatusNetworkList(ctx, c.List); err != nil {
		t.Errorf("STATUS: %v", err)
	}
}

// DEL removes everything of the pod; a repeated ADD and a repeated DEL
// are safe; CHECK notices a pod whose acceleration went missing.
func TestChainDel(t *testing.T) {
	c := newChain(t, "", false)
	a := c.mustAddPod(podSpec{name: "a", ann: accelerated, sidecar: true, noApp: true})
	b := c.mustAddPod(podSpec{name: "b", ann: accelerated, sidecar: true})

	// ADD again, as a runtime retrying would: the plugin alone, with the
	// chain's result (the bridge would refuse a second eth0).
	for range 2 {
		out, _, err := c.execPlugin("ADD", b, c.pluginConf(b, b.Result))
		if err != nil || !strings.Contains(string(out), c.params.Bridge) {
			t.Fatalf("repeated ADD: %v, %s", err, out)
		}
	}
	c.wantAttached(b)
	res, _ := c.run(a, sim.ClientSpec{Mode: sim.ModeEcho, Target: b.AppTarget(false), Bytes: 1 << 20})
	if res.Bytes == 0 {
		t.Fatal("no traffic after a repeated ADD")
	}

	for i := range 2 {
		if err := c.del(b); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	c.wantGone(b)
	c.wantAttached(a)
	// CHECK of the plugin alone (the bridge's would fail first: no eth0).
	if _, _, err := c.execPlugin("CHECK", b, c.pluginConf(b, b.Result)); !isCode(err, plugin.CodeNotAccelerated) ||
		!strings.Contains(err.Error(), "has no state") {
		t.Errorf("CHECK of a deleted pod = %v, want code %d 'has no state'", err, plugin.CodeNotAccelerated)
	}
	// DEL after everything is gone, without annotations and with the
	// netns gone, still succeeds.
	b.RT.NetNS = "/run/netns/mesh-accel-gone-" + randHex(4)
	b.RT.CapabilityArgs = map[string]any{}
	if err := c.del(b); err != nil {
		t.Errorf("DEL with the netns gone: %v", err)
	}
	if f, err := plugin.ReadFailures(c.params.StateDir); err != nil || len(f) != 0 {
		t.Errorf("failures counted: %+v, %v", f, err)
	}
}

// 20 pods added at once all get their network and their acceleration,
// and all go at once without a trace.
func TestChainParallel(t *testing.T) {
	c := newChain(t, "", false)
	const n = 20
	pods := make([]*cniPod, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pods[i], errs[i] = c.addPod(podSpec{name: fmt.Sprintf("p%02d", i), ann: accelerated, sidecar: true})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		c.wantAttached(p)
	}

	// Every pod talks to the next one, all at once, through both sidecars.
	before := c.counters()
	results := make([]*sim.ClientResult, n)
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			results[i], errs[i] = p.RunClient(ctx, sim.ClientSpec{Mode: sim.ModePeer, Target: pods[(i+1)%n].AppTarget(false)})
		}()
	}
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil || !r.OK || r.Peer == nil || r.Peer.Pod != pods[(i+1)%n].Name || r.Peer.Remote == "" ||
			!strings.HasPrefix(r.Peer.Remote, sim.InboundSourceV4.String()+":") {
			t.Errorf("pod %d: %v %+v", i, errs[i], r)
		}
	}
	c.waitNoConns()
	if got := c.counters().Sub(before); got["connections_accepted"] != n {
		t.Errorf("connections_accepted = %d, want %d (the sidecar hop of each connection): %v", got["connections_accepted"], n, got)
	}

	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.del(p)
		}()
	}
	wg.Wait()
	for i, p := range pods {
		if errs[i] != nil {
			t.Errorf("DEL %s: %v", p.Name, errs[i])
		}
		c.wantGone(p)
	}
	if ents, _ := os.ReadDir(filepath.Join(c.params.StateDir, "pods")); len(ents) != 0 {
		t.Errorf("records left: %v", ents)
	}
}

// GC removes the state of pods whose attachment the runtime no longer
// lists, and keeps the others; STATUS fails without node state.
func TestChainGCStatus(t *testing.T) {
	c := newChain(t, "", false)
	a := c.mustAddPod(podSpec{name: "a", ann: accelerated, noApp: true})
	b := c.mustAddPod(podSpec{name: "b", ann: accelerated, noApp: true})
	// A runtime with an empty cache: only the plugins' own GC runs.
	gc := libcni.NewCNIConfigWithCacheDir([]string{c.bin}, t.TempDir(), nil)
	valid := []types.GCAttachment{{ContainerID: a.Container, IfName: "eth0"}}
	if err := gc.GCNetworkList(context.Background(), c.List, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatal(err)
	}
	c.wantAttached(a)
	c.wantGone(b)

	// STATUS of a conflist whose node state is missing.
	p := c.params
	p.BPFRoot = filepath.Join(nodestate.DefaultBPFFS, "mesh-accel-absent-"+randHex(4))
	list, err := libcni.ConfListFromBytes(conflist(p))
	if err != nil {
		t.Fatal(err)
	}
	err = c.CNI.GetStatusNetworkList(context.Background(), list)
	if !isCode(err, types.ErrPluginNotAvailable) || !strings.Contains(err.Error(), "node state") {
		t.Errorf("STATUS without node state = %v, want error 50", err)
	}
	if fileExists(p.BPFRoot) {
		t.Errorf("STATUS created %s", p.BPFRoot)
	}
}

// isCode reports whether err is a CNI error with that code.
func isCode(err error, code uint) bool {
	var te *types.Error
	return errors.As(err, &te) && te.Code == code
}
