package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// stateDir holds one manifest and one lock file per live node. Manifests are
// written before the resources they list are created.
const stateDir = "/run/mesh-accel-sim"

// tempPrefix starts the name of every node's temporary directory.
const tempPrefix = "mesh-accel-sim-"

// manifest lists what a node created, for whoever cleans up.
type manifest struct {
	Name      string
	Bridge    string
	CgroupDir string
	TempDir   string
	Netns     []string // paths under /run/netns
	Veths     []string // host-side names
	// NetnsDirCreated records that /run/netns did not exist before the node;
	// cleanup then removes it if it is empty.
	NetnsDirCreated bool
}

// stateFiles are a node's manifest and lock. The lock is held (flock) by the
// node's process and inherited by its janitor: a lock nobody holds marks a
// dead node.
type stateFiles struct {
	name string
	lock *os.File
}

func lockPath(name string) string { return filepath.Join(stateDir, name+".lock") }
func jsonPath(name string) string { return filepath.Join(stateDir, name+".json") }

// createState creates and locks the state of a new node.
func createState(name string) (*stateFiles, error) {
	f, err := createInDir(stateDir, lockPath(name), 0o600)
	if err != nil {
		return nil, fmt.Errorf("create lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return &stateFiles{name: name, lock: f}, nil
}

// save replaces the manifest atomically.
func (s *stateFiles) save(m manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	tmp := jsonPath(s.name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	if err := os.Rename(tmp, jsonPath(s.name)); err != nil {
		return fmt.Errorf("save manifest: %w", err)
	}
	return nil
}

// remove deletes the manifest, then the lock, then releases it.
func (s *stateFiles) remove() error {
	err := errors.Join(removeIfExists(jsonPath(s.name)), removeIfExists(lockPath(s.name)))
	removeEmptyDir(stateDir)
	return errors.Join(err, s.lock.Close())
}

// createInDir creates the new file path (O_EXCL) in dir, creating dir if
// needed; it retries if another process removes dir meanwhile because it
// found it empty.
func createInDir(dir, path string, mode os.FileMode) (*os.File, error) {
	for range 10 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create %s: %w", path, fs.ErrNotExist)
}

// removeEmptyDir removes dir if it is empty (and not a mount point).
func removeEmptyDir(dir string) {
	_ = syscall.Rmdir(dir)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func loadManifest(name string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(jsonPath(name))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse manifest %s: %w", name, err)
	}
	return m, m.check()
}

// check refuses a manifest that lists anything not named like a node's own
// resource, so that a damaged file cannot make cleanup delete foreign state.
func (m manifest) check() error {
	ok := m.Name != "" && m.Bridge == m.Name &&
		(m.CgroupDir == "" || strings.HasPrefix(filepath.Base(m.CgroupDir), cgroupPrefix+m.Name)) &&
		(m.TempDir == "" || strings.HasPrefix(filepath.Base(m.TempDir), tempPrefix+m.Name))
	for _, p := range m.Netns {
		ok = ok && filepath.Dir(p) == netnsDir && strings.HasPrefix(filepath.Base(p), m.Name+"-")
	}
	for _, v := range m.Veths {
		ok = ok && strings.HasPrefix(v, m.Name)
	}
	if !ok {
		return fmt.Errorf("manifest of %q lists foreign resources: %+v", m.Name, m)
	}
	return nil
}

// cleanup removes everything m lists; what is already gone is fine.
func cleanup(m manifest) error {
	var errs []error
	if m.CgroupDir != "" {
		errs = append(errs, killCgroup(m.CgroupDir, 5*time.Second))
	}
	for _, v := range append(append([]string{}, m.Veths...), m.Bridge) {
		errs = append(errs, deleteLink(v))
	}
	for _, p := range m.Netns {
		errs = append(errs, removeNetns(p))
	}
	if m.CgroupDir != "" {
		errs = append(errs, removeCgroupTree(m.CgroupDir))
	}
	if m.TempDir != "" {
		errs = append(errs, os.RemoveAll(m.TempDir))
	}
	if m.NetnsDirCreated {
		removeEmptyDir(netnsDir)
	}
	return errors.Join(errs...)
}

func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// Sweep removes what nodes of dead processes left behind: every manifest
// under /run/mesh-accel-sim whose lock no live process (node owner or
// janitor) holds. [NewNode] calls it; leftovers that cannot be removed are
// reported here and do not prevent a new node.
func Sweep() error {
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".lock"); ok {
			errs = append(errs, sweepOne(name))
		}
	}
	return errors.Join(errs...)
}

func sweepOne(name string) error {
	f, err := os.OpenFile(lockPath(name), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep %s: %w", name, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil // alive
	}
	st := &stateFiles{name: name, lock: f}
	m, err := loadManifest(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("sweep %s: %w", name, err)
	default:
		if err := cleanup(m); err != nil {
			return fmt.Errorf("sweep %s: %w", name, err)
		}
	}
	return st.remove()
}

// janitor is the process that cleans up after a node whose process died
// without Close: it waits for EOF on its stdin, the write end of which only
// the node's process holds.
type janitor struct {
	cmd  *exec.Cmd
	pipe *os.File
}

func startJanitor(exe string, st *stateFiles) (*janitor, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start janitor: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(exe)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), envRole + "=" + roleJanitor, envArgs + "=" + st.name}
	cmd.Stdin = pr
	cmd.ExtraFiles = []*os.File{st.lock} // keeps the node's lock held while it runs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start janitor: %w", err)
	}
	return &janitor{cmd: cmd, pipe: pw}, nil
}

// stop tells the janitor that the node closed normally and waits for it.
func (j *janitor) stop() error {
	j.pipe.Close()
	done := make(chan error, 1)
	go func() { done <- j.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = j.cmd.Process.Kill()
		return errors.Join(errors.New("janitor did not exit"), <-done)
	}
}

// runJanitor is the janitor role: it survives Ctrl-C and the death of the
// node's process, and then removes the node's leftovers.
func runJanitor(name string) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	_, _ = io.Copy(io.Discard, os.Stdin)
	m, err := loadManifest(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // closed normally
	}
	if err != nil {
		return err
	}
	if err := cleanup(m); err != nil {
		return err // a later Sweep retries
	}
	err = errors.Join(removeIfExists(jsonPath(name)), removeIfExists(lockPath(name)))
	removeEmptyDir(stateDir)
	return err
}
