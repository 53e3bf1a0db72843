package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpandSlice(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kubepods.slice", "kubepods.slice"},
		{"kubepods-besteffort-pod1234_5678.slice", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice"},
		{"kubepods-pod12_34.slice", "kubepods.slice/kubepods-pod12_34.slice"},
		{"-.slice", ""},
		{"kubepods--x.slice", "error"},
		{"kubepods", "error"},
		{".slice", "error"},
	} {
		got, err := expandSlice(tc.in)
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("expandSlice(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

// The runtime's cgroupPath in every form containerd and CRI-O pass.
func TestCgroupFromRuntime(t *testing.T) {
	k := &kubeCgroups{mount: "/sys/fs/cgroup", root: "/sys/fs/cgroup"}
	for _, tc := range []struct{ in, want string }{
		{"/kubepods/besteffort/pod1234", "/sys/fs/cgroup/kubepods/besteffort/pod1234"},
		{"kubepods/burstable/pod1234", "/sys/fs/cgroup/kubepods/burstable/pod1234"},
		{"/sys/fs/cgroup/kubepods/pod1234", "/sys/fs/cgroup/kubepods/pod1234"},
		{"kubepods-burstable-pod12_34.slice", "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice"},
		{"kubepods-besteffort-pod12_34.slice:cri-containerd:abcdef", "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12_34.slice"},
		{"/kubepods.slice/kubepods-pod12_34.slice", "/sys/fs/cgroup/kubepods.slice/kubepods-pod12_34.slice"},
		{"not-a-slice:crio:abc", "error"},
	} {
		got, err := k.fromRuntime(tc.in)
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("fromRuntime(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
	// A hybrid host mounts cgroup v2 elsewhere.
	h := &kubeCgroups{mount: "/sys/fs/cgroup/unified"}
	if got, _ := h.fromRuntime("/kubepods/pod1"); got != "/sys/fs/cgroup/unified/kubepods/pod1" {
		t.Errorf("hybrid: %s", got)
	}
}

// A pod's cgroup found by uid, for both kubelet drivers and every QoS
// class, under the kubelet's cgroup root.
func TestCgroupByUID(t *testing.T) {
	const uid = "0b6a1c2e-1111-2222-3333-444455556666"
	const u = "0b6a1c2e_1111_2222_3333_444455556666"
	for _, rel := range []string{
		"kubepods.slice/kubepods-pod" + u + ".slice",
		"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + u + ".slice",
		"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u + ".slice",
		"kubepods/pod" + uid,
		"kubepods/burstable/pod" + uid,
		"kubepods/besteffort/pod" + uid,
	} {
		t.Run(rel, func(t *testing.T) {
			mount := t.TempDir()
			k := &kubeCgroups{mount: mount}
			k.root = k.hostPath("kubelet-root")
			dir := filepath.Join(k.root, rel)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			// Another pod's cgroup must not match.
			if err := os.MkdirAll(filepath.Join(k.root, "kubepods", "pod"+uid+"0"), 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := k.resolve("", uid)
			if err != nil || got != dir {
				t.Errorf("resolve = %q, %v; want %q", got, err, dir)
			}
		})
	}
	k := &kubeCgroups{mount: t.TempDir()}
	k.root = k.mount
	if _, err := k.resolve("", uid); reasonOf(err) != ReasonCgroup || !strings.Contains(err.Error(), "kubepods/besteffort/pod"+uid) {
		t.Errorf("missing cgroup: %v", err)
	}
	if _, err := k.resolve("/kubepods/pod"+uid, uid); reasonOf(err) != ReasonCgroup || !strings.Contains(err.Error(), "cgroupPath") {
		t.Errorf("missing runtime cgroup: %v", err)
	}
	if _, err := k.resolve("", ""); reasonOf(err) != ReasonArgs {
		t.Errorf("no uid: %v", err)
	}
}
