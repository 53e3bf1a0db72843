package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// container is the installer running under runc, as containerd's shim
// runs it (the shim's `runc create` and `runc start` are one `runc run`
// here): a bundle of the spec and the image's root file system, stopped
// with `runc kill` (SIGTERM, as the kubelet asks), removed with `runc
// delete`.
type container struct {
	t        *testing.T
	stopTook time.Duration // from SIGTERM to the exit
	id       string
	runcRoot string // runc's state folder for this container (--root)
	bundle   string
	out      *testenv.SyncBuffer // the installer's stdout and stderr
	cmd      *exec.Cmd           // runc run, in the foreground
	done     chan error
	exited   bool
}

// runContainer writes spec into a bundle and runs it with runc, in the
// foreground (runc passes its stdout and stderr to the container, as the
// shim does with its log pipes). The container is killed and deleted at
// the test's end; its output is shown when the test failed.
func runContainer(t *testing.T, id string, spec *specs.Spec) *container {
	t.Helper()
	c := &container{t: t, id: id, runcRoot: filepath.Join(runcRoots, fmt.Sprintf("%d-%s", os.Getpid(), id)),
		bundle: filepath.Join(t.TempDir(), "bundle"), out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("runc", "--root", c.runcRoot, "run", "--bundle", c.bundle, id)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if !c.exited {
			_ = c.runc("kill", id, "KILL")
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				t.Errorf("runc run of %s did not end after SIGKILL", id)
			}
		}
		if err := c.runc("delete", "--force", id); err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("runc delete: %v", err)
		}
		_ = os.RemoveAll(c.runcRoot)
		if t.Failed() {
			t.Logf("installer's output (%s):\n%s", id, c.out.String())
		}
	})
	return c
}

// runcRoots holds runc's state folder of each container (--root), named
// after the test process and the container, so that a run killed outright
// leaves its containers where the next run finds them (sweepStale).
const runcRoots = "/run/mesh-accel-runtime-test"

// sweepStale removes what runs of this package that were killed outright
// left: their containers (killed, deleted: runc removes their cgroups)
// and their image folders. A folder whose process still runs is another
// run's, and stays.
func sweepStale() {
	ents, _ := os.ReadDir(runcRoots)
	for _, e := range ents {
		pid, id, ok := strings.Cut(e.Name(), "-")
		if !ok || alive(pid) {
			continue
		}
		root := filepath.Join(runcRoots, e.Name())
		_ = exec.Command("runc", "--root", root, "kill", id, "KILL").Run()
		_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		_ = os.RemoveAll(root)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), imageDirPrefix+"*"))
	for _, d := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), imageDirPrefix), "-")
		if !alive(pid) {
			_ = os.RemoveAll(d)
		}
	}
}

// alive reports whether the process pid runs.
func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	return err == nil && n > 0 && syscall.Kill(n, 0) == nil
}

// runc runs a runc command on the container's state folder.
func (c *container) runc(args ...string) error {
	_, err := c.runcOutput(args...)
	return err
}

func (c *container) runcOutput(args ...string) (string, error) {
	cmd := exec.Command("runc", append([]string{"--root", c.runcRoot}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("runc %s: %w\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// pid is the host's pid of the container's first process.
func (c *container) pid() int {
	c.t.Helper()
	out, err := c.runcOutput("state", c.id)
	if err != nil {
		c.t.Fatal(err)
	}
	var st struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("runc state: %v\n%s", err, out)
	}
	if st.Status != "running" || st.Pid <= 0 {
		c.t.Fatalf("container %s: %s, pid %d", c.id, st.Status, st.Pid)
	}
	return st.Pid
}

// exec runs args in the container with its process settings (runc exec
// takes the container's environment, capabilities, no_new_privs and
// seccomp filter, as CRI's exec does: kubectl exec), and returns the
// output and the exit error.
func (c *container) exec(args ...string) (string, error) {
	cmd := exec.Command("runc", append([]string{"--root", c.runcRoot, "exec", c.id}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// get requests url (0 and the error when it cannot be reached).
func get(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitProbe waits until url answers 200, as the readiness probe does, and
// returns the body; a generous deadline, as the machine may be busy.
func (c *container) waitProbe(url string) string {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body := get(url)
		if code == http.StatusOK {
			return body
		}
		select {
		case err := <-c.done:
			c.exited = true
			c.t.Fatalf("the container exited (%v) before its readiness probe passed (last: %d %s)", err, code, body)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("readiness probe %s: %d %s", url, code, body)
		}
	}
}

// stop sends SIGTERM to the container's first process, as the kubelet
// asks the runtime to, and waits for its exit; it returns the exit status
// (runc run exits with the container's status).
func (c *container) stop() int {
	c.t.Helper()
	start := time.Now()
	if err := c.runc("kill", c.id, "TERM"); err != nil {
		c.t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.exited, c.stopTook = true, time.Since(start)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			c.t.Fatalf("runc run: %v", err)
		}
		return 0
	case <-time.After(60 * time.Second): // within terminationGracePeriodSeconds (30) and some
		c.t.Fatalf("the installer did not exit on SIGTERM:\n%s", c.out.String())
	}
	return -1
}

// procStatus is the fields of /proc/PID/status the runtime's settings show
// in: the capability sets, no_new_privs and the seccomp mode.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// mountOptions are the options of the mount at path as the process pid
// sees it (/proc/PID/mountinfo, the last mount there), "" when none.
func mountOptions(t *testing.T, pid int, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == path {
			opts = f[5]
		}
	}
	return opts
}

// memoryLimit is the memory limit of the process pid's cgroup, in bytes,
// as the kernel enforces it: the v1 memory controller's limit where one is
// mounted (hybrid hosts), else cgroup v2's memory.max. 0 when unlimited
// or not found.
func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// mountOf finds the mount point of a cgroup file system: v1 with the
	// controller among its super options, or cgroup2.
	mountOf := func(fstype, controller string) string {
		for _, line := range strings.Split(string(mounts), "\n") {
			_, post, ok := strings.Cut(line, " - ")
			f, pf := strings.Fields(line), strings.Fields(post)
			if !ok || len(f) < 5 || len(pf) < 3 || pf[0] != fstype {
				continue
			}
			if controller == "" || slices.Contains(strings.Split(pf[2], ","), controller) {
				return f[4]
			}
		}
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			if m := mountOf("cgroup", "memory"); m != "" {
				file = filepath.Join(m, parts[2], "memory.limit_in_bytes")
			}
		case parts[0] == "0" && parts[1] == "":
			if m := mountOf("cgroup2", ""); m != "" && !unifiedHasNoMemory(m) {
				file = filepath.Join(m, parts[2], "memory.max")
			}
		}
		if file == "" {
			continue
		}
		v, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err == nil {
			return n
		}
	}
	return 0
}

// unifiedHasNoMemory reports whether the cgroup v2 hierarchy at m lacks
// the memory controller (hybrid hosts, where v1 has it).
func unifiedHasNoMemory(m string) bool {
	b, err := os.ReadFile(filepath.Join(m, "cgroup.controllers"))
	return err != nil || !slices.Contains(strings.Fields(string(b)), "memory")
}
