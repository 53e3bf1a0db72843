package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// cgroupResolver finds a pod's cgroup v2 directory.
type cgroupResolver interface {
	// resolve returns the directory of the pod's cgroup: from the
	// runtime's cgroupPath when it is not empty, else by the pod's uid.
	resolve(cgroupPath, podUID string) (string, error)
}

// kubeCgroups resolves cgroups the way the kubelet names them.
type kubeCgroups struct {
	mount string // the cgroup v2 mount
	root  string // the kubelet's cgroup root, absolute
}

// newKubeCgroups finds the cgroup v2 mount; root is Config.CgroupRoot.
func newKubeCgroups(root string) (*kubeCgroups, error) {
	mount, err := cgroupv2.Mount()
	if errors.Is(err, cgroupv2.ErrNoCgroup2) {
		return nil, fail(ReasonCgroupV1, err)
	}
	if err != nil {
		return nil, fail(ReasonCgroup, err)
	}
	k := &kubeCgroups{mount: filepath.Clean(mount)}
	k.root = k.hostPath(root)
	return k, nil
}

// hostPath turns a path of the cgroup hierarchy ("/kubepods/burstable",
// "kubepods") into a host path under the mount; a path already under the
// mount is kept.
func (k *kubeCgroups) hostPath(p string) string {
	p = filepath.Clean("/" + p)
	if p == k.mount || strings.HasPrefix(p, k.mount+"/") {
		return p
	}
	return filepath.Join(k.mount, p)
}

func (k *kubeCgroups) resolve(cgroupPath, podUID string) (string, error) {
	if cgroupPath == "" {
		return k.byUID(podUID)
	}
	dir, err := k.fromRuntime(cgroupPath)
	if err != nil {
		return "", fail(ReasonCgroup, err)
	}
	if !isDir(dir) {
		return "", failf(ReasonCgroup, "cgroup %s of runtimeConfig.cgroupPath %q not found", dir, cgroupPath)
	}
	return dir, nil
}

// fromRuntime maps the runtime's cgroupPath to a host directory: a path
// (absolute, or relative to the mount), a systemd slice
// ("kubepods-besteffort-pod<uid>.slice") or a systemd cgroupsPath
// ("<slice>:<prefix>:<name>", whose slice is the pod's cgroup).
func (k *kubeCgroups) fromRuntime(p string) (string, error) {
	if slice, _, ok := strings.Cut(p, ":"); ok {
		rel, err := expandSlice(slice)
		if err != nil {
			return "", fmt.Errorf("runtimeConfig.cgroupPath %q: %w", p, err)
		}
		return filepath.Join(k.mount, rel), nil
	}
	if strings.HasSuffix(p, ".slice") && !strings.Contains(p, "/") {
		rel, err := expandSlice(p)
		if err != nil {
			return "", fmt.Errorf("runtimeConfig.cgroupPath %q: %w", p, err)
		}
		return filepath.Join(k.mount, rel), nil
	}
	return k.hostPath(p), nil
}

// expandSlice returns the path of a systemd slice in the hierarchy:
// "a-b-c.slice" lives at "a.slice/a-b.slice/a-b-c.slice".
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q is not a systemd slice name (x-y.slice)", slice)
	}
	if name == "-" {
		return "", nil // the root slice
	}
	parts := strings.Split(name, "-")
	var dirs []string
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("%q is not a systemd slice name (empty part)", slice)
		}
		dirs = append(dirs, strings.Join(parts[:i+1], "-")+".slice")
	}
	return filepath.Join(dirs...), nil
}

// qosClasses are the kubelet's QoS cgroups; guaranteed pods sit directly
// under kubepods.
var qosClasses = []string{"", "burstable", "besteffort"}

// byUID finds the pod's cgroup under the kubelet's root, for both cgroup
// drivers and every QoS class.
func (k *kubeCgroups) byUID(uid string) (string, error) {
	if uid == "" {
		return "", failf(ReasonArgs, "no runtimeConfig.cgroupPath and no K8S_POD_UID: cannot find the pod's cgroup")
	}
	cands := candidates(uid)
	for _, c := range cands {
		if dir := filepath.Join(k.root, c); isDir(dir) {
			return dir, nil
		}
	}
	return "", failf(ReasonCgroup, "no cgroup of pod uid %s under %s (tried %s)", uid, k.root, strings.Join(cands, ", "))
}

// candidates lists where the kubelet puts a pod's cgroup, relative to its
// root: systemd driver first, then cgroupfs.
func candidates(uid string) []string {
	u := strings.ReplaceAll(uid, "-", "_")
	var out []string
	for _, q := range qosClasses {
		if q == "" {
			out = append(out, filepath.Join("kubepods.slice", "kubepods-pod"+u+".slice"))
			continue
		}
		out = append(out, filepath.Join("kubepods.slice", "kubepods-"+q+".slice", "kubepods-"+q+"-pod"+u+".slice"))
	}
	for _, q := range qosClasses {
		out = append(out, filepath.Join("kubepods", q, "pod"+uid))
	}
	return out
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
