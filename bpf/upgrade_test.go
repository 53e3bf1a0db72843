package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
)

// A map whose format changes needs a new LayoutVersion: the states of two
// layouts live side by side during an upgrade, and a new format under the
// old name would make every map update fail on size (and every pod fall
// back). The maps' formats are recorded per LayoutVersion.
func TestLayoutVersionCoversMaps(t *testing.T) {
	got, err := Layout()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "layout-"+LayoutVersion+".txt")
	want, err := os.ReadFile(path)
	if err == nil && string(want) != got && os.Getenv("UPDATE_GOLDEN") == "" {
		t.Fatalf("the maps' formats changed but LayoutVersion is still %q: give it a new value, remove %s and "+
			"record the new formats with UPDATE_GOLDEN=1\ngot:\n%s\nwant:\n%s", LayoutVersion, path, got, want)
	}
	testenv.Golden(t, path, []byte(got))
}

func TestConvertValueByName(t *testing.T) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	u64 := &btf.Int{Name: "u64", Size: 8}
	old := &btf.Struct{Name: "pod_config", Size: 16, Members: []btf.Member{
		{Name: "flags", Type: u32, Offset: 0},
		{Name: "gone", Type: u32, Offset: 32},
		{Name: "quota", Type: u64, Offset: 64},
	}}
	arr := &btf.Array{Type: u32, Nelems: 2}
	nu := &btf.Struct{Name: "pod_config", Size: 24, Members: []btf.Member{
		{Name: "added", Type: u32, Offset: 0},
		{Name: "quota", Type: u32, Offset: 32},
		{Name: "flags", Type: u64, Offset: 64},
		{Name: "list", Type: arr, Offset: 128},
	}}
	src := []byte{7, 0, 0, 0, 9, 9, 9, 9, 0x34, 0x12, 0, 0, 0, 0, 0, 0}
	dst := make([]byte, 24)
	for i := range dst {
		dst[i] = 0xff // every byte is written: missing members become zero
	}
	if err := convertValue(dst, nu, src, old); err != nil {
		t.Fatal(err)
	}
	want := []byte{0xff, 0xff, 0xff, 0xff, 0x34, 0x12, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// Members absent from the old type are left as they were: the caller
	// passes a zeroed value.
	if string(dst) != string(want) {
		t.Fatalf("converted = % x\nwant        % x", dst, want)
	}
	bad := &btf.Struct{Name: "pod_config", Size: 4, Members: []btf.Member{{Name: "quota", Type: arr, Offset: 0}}}
	if err := convertValue(make([]byte, 8), bad, src, old); err == nil {
		t.Fatal("an integer converted into an array")
	}
}

// newTestCgroup makes an empty cgroup for a pod of the test.
func newTestCgroup(t *testing.T) string {
	t.Helper()
	mnt, err := cgroupv2.Mount()
	if err != nil {
		testenv.Missing(t, "cgroup v2: %v", err)
	}
	dir := filepath.Join(mnt, "mesh-accel-test-"+randomName())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// upgradeRoot gives a test its own bpffs root, removed at cleanup.
func upgradeRoot(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	if err := CheckKernel(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	root := "mesh-accel-test-" + randomName()
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, root)) })
	return root
}

func linkProgram(t *testing.T, p string) ebpf.ProgramID {
	t.Helper()
	l, err := link.LoadPinnedLink(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Program
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

var upgradeConfig = PodConfig{Rules: mustParse("chain --port 9000 -j RETURN\nchain --uid-owner 1337 -j ACCEPT"),
	TrustApp: true, SidecarUID: 4242, Quota: 77}

func mustParse(s string) *rules.Set {
	set, err := rules.ParseString("test", s)
	if err != nil {
		panic(err)
	}
	return set
}

// Same layout, another build: the binary's programs replace the pinned
// ones and every pod link is switched to them; a second pass does nothing.
func TestUpgradeReplacesPrograms(t *testing.T) {
	root := upgradeRoot(t)
	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	cg := newTestCgroup(t)
	if err := n.AttachPod("p", cg, upgradeConfig); err != nil {
		t.Fatal(err)
	}
	before := progID(t, n.sockops)
	if err := n.updateGlobal(func(c *meshGlobalConfig) { c.Build ^= 1 }); err != nil { // an older build's state
		t.Fatal(err)
	}
	r, err := n.Upgrade()
	if err != nil || !r.Replaced || r.Relinked != 2 || r.Moved != 0 {
		t.Fatalf("Upgrade = %+v, %v; want the programs replaced and both links switched", r, err)
	}
	after := progID(t, n.sockops)
	if after == before {
		t.Fatal("sockops program not replaced")
	}
	if got := linkProgram(t, filepath.Join(n.podDir("p"), linkSockops)); got != after {
		t.Errorf("pod link runs program %d, want the new %d", got, after)
	}
	pinned, err := ebpf.LoadPinnedProgram(n.progPin(pinSockops), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := progID(t, pinned); got != after {
		t.Errorf("pinned sockops is %d, want %d", got, after)
	}
	pinned.Close()
	if dp, err := n.DataPaths(); err != nil || dp.Skewed() {
		t.Errorf("after the upgrade: %+v, %v; want no skew", dp, err)
	}
	if r, err := n.Upgrade(); err != nil || r.Replaced || r.Relinked != 0 {
		t.Errorf("second Upgrade = %+v, %v; want nothing to do", r, err)
	}
	// A handle opened before the upgrade attaches the new programs too.
	other, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := progID(t, other.sockops); got != after {
		t.Errorf("reopened state loads sockops %d, want %d", got, after)
	}
}

// Another layout: the new state inherits the switch and the flow-control
// bound, takes the pods over with their configuration, and the older state
// stays while a socket is in its socket maps, then goes.
func TestUpgradeAcrossLayouts(t *testing.T) {
	root := upgradeRoot(t)
	old, err := OpenNode(Options{Root: root, layout: "v0-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if err := old.SetBacklogLimit(123456); err != nil {
		t.Fatal(err)
	}
	cg := newTestCgroup(t)
	if err := old.AttachPod("p", cg, upgradeConfig); err != nil {
		t.Fatal(err)
	}
	// A connection paired under the older state: a socket in its map.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var uerr error
	_ = raw.Control(func(fd uintptr) {
		uerr = old.maps.SockRxMap.Update(meshSockKey{LocalPort: 1}, uint64(fd), ebpf.UpdateAny)
	})
	if uerr != nil {
		t.Fatal(uerr)
	}

	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	if on, err := n.Enabled(); err != nil || on {
		t.Errorf("new state Enabled = %v, %v; want the older state's off", on, err)
	}
	if l, err := n.BacklogLimit(); err != nil || l != 123456 {
		t.Errorf("new state BacklogLimit = %d, %v; want the older state's 123456", l, err)
	}
	if !PodAttached(Options{Root: root}, "p") {
		t.Error("PodAttached does not see a pod of the older state")
	}
	r, err := n.Upgrade()
	if err != nil || r.Moved != 1 || len(r.Retiring) != 1 || r.Retiring[0].Sockets != 1 || r.Retiring[0].Pods != 0 {
		t.Fatalf("Upgrade = %+v, %v; want the pod moved and the older state retiring with 1 socket", r, err)
	}
	pods, err := n.Pods()
	if err != nil || len(pods) != 1 || pods[0].ID != "p" {
		t.Fatalf("pods after the upgrade: %+v, %v", pods, err)
	}
	want, _ := encodePodConfig(upgradeConfig)
	got, _ := encodePodConfig(pods[0].Config)
	if *got != *want {
		t.Errorf("moved configuration %+v, want %+v", pods[0].Config, upgradeConfig)
	}
	if got, want := linkProgram(t, filepath.Join(n.podDir("p"), linkSockops)), progID(t, n.sockops); got != want {
		t.Errorf("moved pod link runs %d, want the new sockops %d", got, want)
	}
	if _, err := os.Stat(old.podDir("p")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod still in the older state: %v", err)
	}
	if dp, err := n.DataPaths(); err != nil || len(dp.Older) != 1 || dp.Older[0].Sockets != 1 {
		t.Errorf("DataPaths = %+v, %v; want the older state with its socket", dp, err)
	}

	// A pod an older plugin attached meanwhile is detached by a DEL through
	// the new state.
	cg2 := newTestCgroup(t)
	if err := old.AttachPod("q", cg2, PodConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := n.DetachPod("q"); err != nil {
		t.Fatal(err)
	}
	if PodAttached(Options{Root: root}, "q") {
		t.Error("pod q still attached after DetachPod")
	}

	c.Close() // the socket leaves the map as it closes
	var removed bool
	for i := 0; i < 100 && !removed; i++ {
		time.Sleep(time.Duration(i) * time.Millisecond)
		r, err = n.Upgrade()
		if err != nil {
			t.Fatal(err)
		}
		removed = len(r.Removed) == 1
	}
	if !removed {
		t.Fatalf("older state not removed after its last socket closed: %+v", r)
	}
	if _, err := os.Stat(old.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("older state still at %s: %v", old.Dir(), err)
	}
	if got := linkProgram(t, filepath.Join(n.podDir("p"), linkSockops)); got != progID(t, n.sockops) {
		t.Error("pod link lost its program with the older state")
	}
}
