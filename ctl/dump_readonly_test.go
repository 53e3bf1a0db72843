package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// dump -w on a read-only file system (the installer pod's root) says so,
// and how to get the capture out instead: -w - redirected where kubectl
// runs. The capture is stopped.
func TestDumpReadOnlyTarget(t *testing.T) {
	testenv.RequireRoot(t) // to mount a read-only file system
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "size=64k"); err != nil {
		testenv.Missing(t, "a read-only tmpfs mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	eng := newFakeEngine()
	c := newFakeCapture(eng, captured()...)
	r := runCtl(t, eng, "", "dump", "-c", "2", "-w", filepath.Join(dir, "cart.pcap"))
	for _, want := range []string{"create pcap file: open " + filepath.Join(dir, "cart.pcap") + ": read-only file system",
		"write the pcap to stdout with -w - and redirect it where kubectl runs: " +
			"kubectl -n mesh-accel exec POD -- /mesh-accelctl dump ... -w - > capture.pcap"} {
		if r.code != ExitError || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, ExitError, want)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closes != 1 {
		t.Errorf("capture closed %d times, want once", c.closes)
	}
}

// The read-only message keeps the cause, and another error keeps its words.
func TestCreateError(t *testing.T) {
	ro := createError(&os.PathError{Op: "open", Path: "/cart.pcap", Err: syscall.EROFS})
	if !errors.Is(ro, syscall.EROFS) || !strings.Contains(ro.Error(), "-w -") || strings.Contains(ro.Error(), "/tmp") {
		t.Errorf("read-only: %v", ro)
	}
	other := createError(&os.PathError{Op: "open", Path: "/x/cart.pcap", Err: syscall.ENOENT})
	if other.Error() != "create pcap file: open /x/cart.pcap: no such file or directory" {
		t.Errorf("other: %v", other)
	}
}

// The read-only message suggests no folder of the installer pod, and the
// pod has none for it: a read-only root, and only the host's folders
// mounted (no emptyDir, nothing at /tmp). A DaemonSet that gains a scratch
// folder fails here: suggest it in createError then.
func TestInstallerPodHasNoScratchFolder(t *testing.T) {
	b, err := os.ReadFile("../manifests/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	scratch := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.EmptyDir != nil || v.Ephemeral != nil {
			scratch[v.Name] = true
		}
	}
	found := false
	for _, c := range spec.Containers {
		if c.Name != "installer" {
			continue
		}
		found = true
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("the installer's root file system is not read-only: dump's read-only message is wrong")
		}
		for _, m := range c.VolumeMounts {
			if scratch[m.Name] || m.MountPath == "/tmp" || strings.HasPrefix(m.MountPath, "/tmp/") {
				t.Errorf("the installer pod has a scratch folder %s (volume %s): make dump's read-only message "+
					"(createError) suggest it", m.MountPath, m.Name)
			}
		}
	}
	if !found {
		t.Error("no installer container in the DaemonSet")
	}
}
