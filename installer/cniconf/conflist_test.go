package cniconf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// DefaultEntry is the entry of the DaemonSet's configuration
// (installer.NewEntry of the default installer.Config, which the
// installer's TestEntryOfConfig checks against it).
var DefaultEntry = Entry{
	Type:         plugin.TypeName,
	Capabilities: map[string]bool{plugin.CapPodAnnotations: true, plugin.CapCgroupPath: true},
	Kubeconfig:   "/etc/mesh-accel/kubeconfig",
	RulesFile:    "/etc/mesh-accel/rules",
	LogFile:      plugin.DefaultLogFile,
}

// OptionsEntry is the entry of the configuration of testdata's options
// case: every optional field set (installer.NewEntry of the environment
// in the installer's TestEntryOfConfig).
var OptionsEntry = Entry{
	Type:              plugin.TypeName,
	Capabilities:      map[string]bool{plugin.CapPodAnnotations: true, plugin.CapCgroupPath: true},
	Kubeconfig:        "/etc/mesh-accel/kubeconfig",
	RulesFile:         "/etc/mesh-accel/rules",
	LogFile:           plugin.DefaultLogFile,
	BPFRoot:           "/sys/fs/bpf/mesh-accel-b",
	StateDir:          "/var/lib/mesh-accel-b",
	SidecarUID:        1000690001,
	ExcludeNamespaces: []string{"kube-system", "istio-system"},
	FailOnError:       true,
	PodQuota:          2048,
	MapSize:           262144,
}

func defaultEntry(testing.TB) Entry { return DefaultEntry }

// The helpers shared with the installer's other packages.
var (
	readTree    = installertest.ReadTree
	writeTree   = installertest.WriteTree
	sameTree    = installertest.SameTree
	goldenTree  = installertest.GoldenTree
	fileMode    = installertest.FileMode
	exists      = installertest.Exists
	testLog     = installertest.Log
	replaceWith = installertest.ReplaceWith
)

const bridgeConflist = installertest.BridgeConflist

// newConflists manages the entry in dir, with its backup in state.
func newConflists(tb testing.TB, dir, state string) *Conflists {
	tb.Helper()
	m := &Conflists{Dir: dir, Entry: defaultEntry(tb), BackupPath: filepath.Join(state, "conflist-backup.json"), Log: testLog(tb)}
	if err := m.LoadBackup(); err != nil {
		tb.Fatal(err)
	}
	return m
}

// confDir copies a testdata case's input into a fresh CNI config folder.
func confDir(tb testing.TB, name string) (string, map[string]string) {
	tb.Helper()
	in := readTree(tb, filepath.Join("testdata", "conflists", name, "in"))
	dir := tb.TempDir()
	writeTree(tb, dir, in)
	return dir, in
}

// runtimeList loads the primary config the way containerd does.
func runtimeList(tb testing.TB, dir string) *libcni.NetworkConfigList {
	tb.Helper()
	path, err := primaryPath(dir, "")
	if err != nil {
		tb.Fatal(err)
	}
	l, err := libcni.ConfListFromFile(path)
	if err != nil {
		tb.Fatalf("the runtime cannot load %s: %v", path, err)
	}
	return l
}

// The real-shaped configs of bridge, containerd's sample, Calico, Flannel,
// a Cilium chain (tab-indented), a compact kindnet list and Multus with
// Calico: the entry goes last into the primary only (a .conf becomes a
// .conflist), formatted like its neighbours (golden files); the mode stays;
// a second install writes nothing; the uninstall gives back every byte.
func TestConflistGolden(t *testing.T) {
	for _, tc := range []struct {
		name, primary string
		mode          os.FileMode
	}{
		{"bridge-conf", "10-bridge.conf", 0o644},
		{"containerd-bridge", "10-containerd-net.conflist", 0o644},
		{"calico", "10-calico.conflist", 0o600},
		{"flannel", "10-flannel.conflist", 0o644},
		{"cilium-chain", "05-cilium.conflist", 0o640},
		{"compact", "10-kindnet.conflist", 0o644},
		{"multus", "00-multus.conf", 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, in := confDir(t, tc.name)
			if err := os.Chmod(filepath.Join(dir, tc.primary), tc.mode); err != nil {
				t.Fatal(err)
			}
			m := newConflists(t, dir, t.TempDir())
			if wrote, err := m.Ensure(); err != nil || !wrote {
				t.Fatalf("ensure = %v, %v; want a write", wrote, err)
			}
			goldenTree(t, dir, filepath.Join("testdata", "conflists", tc.name, "out"))
			l := runtimeList(t, dir)
			if last := l.Plugins[len(l.Plugins)-1].Network; last.Type != pluginType || !last.Capabilities[plugin.CapCgroupPath] {
				t.Errorf("last plugin of the runtime's list: %+v", last)
			}
			if got := fileMode(t, m.b.Path); got != tc.mode {
				t.Errorf("mode %v, want %v", got, tc.mode)
			}
			after := readTree(t, dir)
			if wrote, err := newConflists(t, dir, filepath.Dir(m.BackupPath)).Ensure(); err != nil || wrote {
				t.Fatalf("second install = %v, %v; want nothing written", wrote, err)
			}
			sameTree(t, "after a second install", dir, after)
			if n := strings.Count(after[filepath.Base(m.b.Path)], `"type": "`+pluginType+`"`) +
				strings.Count(after[filepath.Base(m.b.Path)], `"type":"`+pluginType+`"`); n != 1 {
				t.Errorf("%d entries of ours", n)
			}
			if err := m.Restore(); err != nil {
				t.Fatal(err)
			}
			sameTree(t, "after uninstall", dir, in)
			if got := fileMode(t, filepath.Join(dir, tc.primary)); got != tc.mode {
				t.Errorf("mode after uninstall %v, want %v", got, tc.mode)
			}
			if exists(m.BackupPath) {
				t.Error("backup left after uninstall")
			}
		})
	}
}

// The primary CNI rewrites its file while we are installed: the entry is
// put back, and the uninstall leaves the file as the primary CNI last
// wrote it: its original bytes when it wrote the same again, its new bytes,
// or (when it kept our entry while editing) its text without our entry.
func TestConflistRepair(t *testing.T) {
	const primary = "10-calico.conflist"
	for _, tc := range []struct {
		name    string
		rewrite func(orig, ours string) string
		want    func(orig, ours string) string // the file after uninstall
	}{
		{"same content", func(orig, _ string) string { return orig }, func(orig, _ string) string { return orig }},
		{"new content", func(orig, _ string) string { return strings.Replace(orig, `"mtu": 0`, `"mtu": 1440`, 1) },
			func(orig, _ string) string { return strings.Replace(orig, `"mtu": 0`, `"mtu": 1440`, 1) }},
		{"edited around our entry", func(_, ours string) string { return strings.Replace(ours, `"mtu": 0`, `"mtu": 9000`, 1) },
			func(orig, _ string) string { return strings.Replace(orig, `"mtu": 0`, `"mtu": 9000`, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, in := confDir(t, "calico")
			m := newConflists(t, dir, t.TempDir())
			if _, err := m.Ensure(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, primary)
			ours := readTree(t, dir)[primary]
			replaceWith(t, path, tc.rewrite(in[primary], ours))
			wrote, err := m.Ensure()
			if err != nil {
				t.Fatal(err)
			}
			l := runtimeList(t, dir)
			if wrote != (tc.name != "edited around our entry") || l.Plugins[len(l.Plugins)-1].Network.Type != pluginType {
				t.Errorf("after the rewrite: wrote %v, plugins %d, last %q", wrote, len(l.Plugins), l.Plugins[len(l.Plugins)-1].Network.Type)
			}
			if err := m.Restore(); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{primary: tc.want(in[primary], ours), "calico-kubeconfig": in["calico-kubeconfig"]}
			sameTree(t, "after uninstall", dir, want)
		})
	}
}

// A restarted installer (after SIGKILL, or an upgrade) finds its entry in
// place: it writes nothing, and its uninstall still gives back the
// original bytes from the backup, a converted .conf included; without the
// backup it removes the entry from the text.
func TestConflistRestart(t *testing.T) {
	for _, tc := range []struct{ name, primary string }{
		{"calico", "10-calico.conflist"}, {"bridge-conf", "10-bridge.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, in := confDir(t, tc.name)
			state := t.TempDir()
			if _, err := newConflists(t, dir, state).Ensure(); err != nil {
				t.Fatal(err)
			}
			installed := readTree(t, dir)
			again := newConflists(t, dir, state)
			if wrote, err := again.Ensure(); err != nil || wrote {
				t.Fatalf("restart: ensure = %v, %v; want nothing written", wrote, err)
			}
			sameTree(t, "after the restart", dir, installed)
			if err := again.Restore(); err != nil {
				t.Fatal(err)
			}
			sameTree(t, "after uninstall", dir, in)
		})
	}
	t.Run("backup lost", func(t *testing.T) {
		dir, in := confDir(t, "calico")
		if _, err := newConflists(t, dir, t.TempDir()).Ensure(); err != nil {
			t.Fatal(err)
		}
		m := newConflists(t, dir, t.TempDir())
		if wrote, err := m.Ensure(); err != nil || wrote {
			t.Fatalf("ensure = %v, %v; want nothing written", wrote, err)
		}
		if err := m.Restore(); err != nil {
			t.Fatal(err)
		}
		sameTree(t, "after uninstall", dir, in)
	})
}

// After converting a .conf, the primary CNI writes its .conf again (it
// sorts first): the entry follows into a new conversion, and the uninstall
// gives back the newest .conf.
func TestConflistConfRewritten(t *testing.T) {
	dir, in := confDir(t, "bridge-conf")
	m := newConflists(t, dir, t.TempDir())
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(in["10-bridge.conf"], "10.88.0.0/16", "10.89.0.0/16", 1)
	writeTree(t, dir, map[string]string{"10-bridge.conf": newer})
	if wrote, err := m.Ensure(); err != nil || !wrote {
		t.Fatalf("ensure = %v, %v; want the entry put back", wrote, err)
	}
	got := readTree(t, dir)
	if _, ok := got["10-bridge.conf"]; ok || !strings.Contains(got["10-bridge.conflist"], "10.89.0.0/16") {
		t.Fatalf("not converted again: %v", got)
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "after uninstall", dir, map[string]string{"10-bridge.conf": newer, "99-loopback.conf": in["99-loopback.conf"]})
}

// Multus installed after us: its config becomes the primary, the entry
// leaves Calico's file (byte for byte as it was) and goes into Multus'
// top level; Multus' delegates are never touched.
func TestConflistMultusArrives(t *testing.T) {
	dir, in := confDir(t, "calico")
	m := newConflists(t, dir, t.TempDir())
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	multus := readTree(t, filepath.Join("testdata", "conflists", "multus", "in"))["00-multus.conf"]
	writeTree(t, dir, map[string]string{"00-multus.conf": multus})
	if wrote, err := m.Ensure(); err != nil || !wrote {
		t.Fatalf("ensure = %v, %v", wrote, err)
	}
	got := readTree(t, dir)
	if got["10-calico.conflist"] != in["10-calico.conflist"] {
		t.Errorf("Calico's config still edited:\n%s", got["10-calico.conflist"])
	}
	l := runtimeList(t, dir)
	if l.Name != "multus-cni-network" || len(l.Plugins) != 2 || l.Plugins[1].Network.Type != pluginType {
		t.Errorf("runtime's list: %s with %d plugins", l.Name, len(l.Plugins))
	}
	if strings.Count(got["00-multus.conflist"], `"type": "`+pluginType+`"`) != 1 || m.DelegatesHoldEntry() {
		t.Errorf("Multus delegates touched:\n%s", got["00-multus.conflist"])
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	in["00-multus.conf"] = multus
	sameTree(t, "after uninstall", dir, in)
}

// --cni-conf-name picks the primary instead of the name order.
func TestConflistNamed(t *testing.T) {
	dir, in := confDir(t, "cilium-chain")
	m := newConflists(t, dir, t.TempDir())
	m.Name = "10-aws.conflist"
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	if got["05-cilium.conflist"] != in["05-cilium.conflist"] || !strings.Contains(got["10-aws.conflist"], pluginType) {
		t.Errorf("wrong file edited: %v", got)
	}
	m.Name = "99-missing.conflist"
	if _, err := m.Ensure(); !errors.Is(err, ErrNoPrimary) {
		t.Errorf("missing named config: %v, want ErrNoPrimary", err)
	}
}

// A missing, zero-byte or invalid primary config (or one in a CNI version
// the plugin does not speak) is never written to, nor skipped for the next
// file: ensure says to wait, and the folder stays exactly as it was.
func TestConflistWaits(t *testing.T) {
	loopback := `{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}`
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  func(error) bool
	}{
		{"empty folder", map[string]string{"README": "not a config"}, func(err error) bool { return errors.Is(err, ErrNoPrimary) }},
		{"zero bytes", map[string]string{"10-calico.conflist": "", "99-lo.conf": loopback}, errorsAs[*InvalidError]},
		{"white space", map[string]string{"10-calico.conflist": "\n \n"}, errorsAs[*InvalidError]},
		{"truncated", map[string]string{"10-calico.conflist": `{"name": "k8s-pod-network", "plugins": [{"type": "cal`}, errorsAs[*InvalidError]},
		{"no plugins", map[string]string{"10-x.conflist": `{"cniVersion": "1.0.0", "name": "x", "plugins": []}`}, errorsAs[*InvalidError]},
		{"conf without type", map[string]string{"10-x.conf": `{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge"}]}`}, errorsAs[*InvalidError]},
		{"unsupported version", map[string]string{"10-x.conflist": `{"cniVersion": "0.2.0", "name": "x", "plugins": [{"type": "bridge"}]}`}, errorsAs[*InvalidError]},
		{"conversion target taken", map[string]string{"10-x.conf": loopback, "10-x.conflist": `{"name": "y", "plugins": [{"type": "ptp"}]}`}, errorsAs[*InvalidError]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.files)
			m := newConflists(t, dir, t.TempDir())
			m.Supported = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}
			wrote, err := m.Ensure()
			if wrote || !tc.want(err) {
				t.Fatalf("ensure = %v, %v", wrote, err)
			}
			t.Logf("reported: %v", err)
			sameTree(t, "after ensure", dir, tc.files)
			if m.Present() == nil {
				t.Error("present() with no entry")
			}
		})
	}
}

// The uninstall leaves no config naming the plugin, with or without a
// backup, and referenced finds configs that still do.
func TestConflistUninstall(t *testing.T) {
	ours := `{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge"}, {"type": "mesh-accel"}]}`
	for _, tc := range []struct {
		name      string
		files     map[string]string
		wantRefs  []string
		wantAfter map[string]string
	}{
		{"entry without backup", map[string]string{"10-x.conflist": ours}, []string{"10-x.conflist"},
			map[string]string{"10-x.conflist": `{"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge"}]}`}},
		{"nothing of ours", map[string]string{"10-x.conflist": bridgeConflist}, nil, map[string]string{"10-x.conflist": bridgeConflist}},
		{"a single-plugin config of ours", map[string]string{"10-x.conflist": bridgeConflist, "20-y.conf": `{"name": "y", "type": "mesh-accel"}`},
			[]string{"20-y.conf"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.files)
			m := newConflists(t, dir, t.TempDir())
			var refs []string
			for _, f := range m.Referenced() {
				refs = append(refs, filepath.Base(f))
			}
			if strings.Join(refs, ",") != strings.Join(tc.wantRefs, ",") {
				t.Errorf("referenced = %v, want %v", refs, tc.wantRefs)
			}
			if err := m.Uninstall(); err != nil {
				t.Fatal(err)
			}
			if tc.wantAfter != nil {
				sameTree(t, "after uninstall", dir, tc.wantAfter)
			}
		})
	}
}

// The primary CNI rewrites its config between the installer's read and its
// rename (install, and uninstall): both edits survive, the uninstall gives
// back the primary's edited bytes.
func TestConflistRaceWithPrimary(t *testing.T) {
	const primary = "10-calico.conflist"
	dir, in := confDir(t, "calico")
	path := filepath.Join(dir, primary)
	edited := strings.Replace(in[primary], `"mtu": 0`, `"mtu": 1440`, 1)
	m := newConflists(t, dir, t.TempDir())
	raced := 0
	beforeConfigRename = func(p string) {
		if raced == 0 && p == path {
			raced++
			replaceWith(t, path, edited) // the primary CNI's write
		}
	}
	t.Cleanup(func() { beforeConfigRename = nil })
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	l := runtimeList(t, dir)
	got := readTree(t, dir)[primary]
	if raced != 1 || !strings.Contains(got, `"mtu": 1440`) || l.Plugins[len(l.Plugins)-1].Network.Type != pluginType {
		t.Fatalf("after a write raced the install (%d): %s", raced, got)
	}
	// And while the entry comes out: the primary edits the file again.
	again := strings.Replace(got, `"mtu": 1440`, `"mtu": 9000`, 1)
	raced = 0
	beforeConfigRename = func(p string) {
		if raced == 0 && p == path {
			raced++
			replaceWith(t, path, again)
		}
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(edited, `"mtu": 1440`, `"mtu": 9000`, 1)
	sameTree(t, "after uninstall", dir, map[string]string{primary: want, "calico-kubeconfig": in["calico-kubeconfig"]})
}

// A primary config that is a symlink (to a file the primary CNI manages
// elsewhere) stays a symlink: the entry goes into its target, and the
// Uninstall gives the target back its bytes.
func TestConflistSymlink(t *testing.T) {
	const primary = "10-calico.conflist"
	_, in := confDir(t, "calico")
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "calico.conflist")
	writeTree(t, elsewhere, map[string]string{"calico.conflist": in[primary]})
	link := filepath.Join(dir, primary)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	m := newConflists(t, dir, t.TempDir())
	if _, err := m.Ensure(); err != nil {
		t.Fatal(err)
	}
	isLink := func(when string) {
		t.Helper()
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s: %s is no longer a symlink (%v)", when, link, err)
		}
	}
	isLink("after install")
	l := runtimeList(t, dir)
	if l.Plugins[len(l.Plugins)-1].Network.Type != pluginType {
		t.Fatalf("entry not in the symlink's target")
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	isLink("after uninstall")
	if b, err := os.ReadFile(target); err != nil || string(b) != in[primary] {
		t.Fatalf("target after uninstall: %v\n%s", err, b)
	}
}

// Settings away from their defaults reach the entry (golden file): a
// sidecar uid, no failing open, excluded namespaces, a pod quota, other
// bpffs and state folders, a map size; the plugin reads them back. (The
// installer's TestEntryOfConfig checks that its settings make this entry.)
func TestConflistGoldenOptions(t *testing.T) {
	dir, in := confDir(t, "options")
	m := &Conflists{Dir: dir, Entry: OptionsEntry, BackupPath: filepath.Join(t.TempDir(), "backup.json"), Log: testLog(t)}
	if wrote, err := m.Ensure(); err != nil || !wrote {
		t.Fatalf("ensure = %v, %v; want a write", wrote, err)
	}
	goldenTree(t, dir, filepath.Join("testdata", "conflists", "options", "out"))
	l := runtimeList(t, dir)
	var got plugin.Config
	if err := json.Unmarshal(l.Plugins[len(l.Plugins)-1].Bytes, &got); err != nil {
		t.Fatal(err)
	}
	if got.SidecarUID != 1000690001 || !got.FailOnError || !slices.Equal(got.ExcludeNamespaces, []string{"kube-system", "istio-system"}) ||
		got.PodQuota != 2048 || got.BPFRoot != "/sys/fs/bpf/mesh-accel-b" || got.StateDir != "/var/lib/mesh-accel-b" ||
		got.MapSize != 262144 {
		t.Errorf("the plugin reads %+v", got)
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "after uninstall", dir, in)
}

// errorsAs is errors.As for a target type, for table-driven checks.
func errorsAs[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}
