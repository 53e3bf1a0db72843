package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces live (as with "ip netns").
const netnsDir = "/run/netns"

// createNetns creates a network namespace kept alive by a bind mount at
// path, like "ip netns add", without switching the caller's namespace.
// Unlike testutils.NewNS it takes a name; like it, the work happens on a
// dedicated locked thread that is put back into its namespace afterwards.
// /run/netns is created if missing but not turned into a shared mount point.
func createNetns(path string) error {
	f, err := createInDir(netnsDir, path, 0o444)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- unshareAndMount(path)
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create netns %s: %w", path, err)
	}
	return nil
}

// unshareAndMount runs on a locked thread. It unlocks the thread only if the
// thread is back in its original namespace; otherwise the runtime discards
// the thread when the goroutine ends.
func unshareAndMount(path string) error {
	orig, err := ns.GetCurrentNS()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
	merr := unix.Mount(self, path, "none", unix.MS_BIND, "")
	if err := orig.Set(); err != nil {
		return errors.Join(merr, fmt.Errorf("return to the original netns: %w", err))
	}
	runtime.UnlockOSThread()
	if merr != nil {
		return fmt.Errorf("bind mount: %w", merr)
	}
	return nil
}

// removeNetns unmounts and removes a named network namespace.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// netnsPath names a pod's namespace after its node.
func netnsPath(node, pod string) string {
	return filepath.Join(netnsDir, node+"-"+pod)
}
