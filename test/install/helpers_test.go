package install

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
)

// testVersion is stamped into the installer built for the tests.
const testVersion = "v0.0.0-install-test"

// ourPackages are built besides the chain's plugins (cnichain): the
// installer and the CLI, which the image holds with the plugin.
var ourPackages = []string{
	"github.com/mesh-accel/mesh-accel/installer/cmd/mesh-accel-installer",
	"github.com/mesh-accel/mesh-accel/ctl/cmd/mesh-accelctl",
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

// binaries builds them once per test run, static and stripped as the
// image has them (the same flags as cnichain.BuildPlugins, so that the
// build cache serves both), and returns their folder; TestMain removes it.
func binaries(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "mesh-accel-install-bin-"); build.err != nil {
			return
		}
		if build.err = cnichain.BuildPlugins(build.dir); build.err != nil {
			return
		}
		ldflags := "-s -w -X github.com/mesh-accel/mesh-accel/internal/version.version=" + testVersion
		cmd := exec.Command(cnichain.GoTool(), append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", build.dir + "/"}, ourPackages...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("build the installer and the CLI: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.dir
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(tb testing.TB, p string) string {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func writeFile(tb testing.TB, p, content string, mode os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running mesh-accel-installer.
type proc struct {
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	url  string
	done chan error
}

// startInstaller runs the installer binary with flags; it is killed at the
// test's end if still running, and its log is shown when the test failed.
func startInstaller(tb testing.TB, bin string, flags map[string]string) *proc {
	tb.Helper()
	addr := freeAddr(tb)
	args := []string{"--" + installer.FlagListen + "=" + addr}
	for k, v := range flags {
		args = append(args, "--"+k+"="+v)
	}
	p := &proc{cmd: exec.Command(filepath.Join(bin, "mesh-accel-installer"), args...), out: &testenv.SyncBuffer{},
		url: "http://" + addr, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if tb.Failed() {
			tb.Logf("installer log:\n%s", p.out.String())
		}
	})
	return p
}

// get returns the status and body of a GET of path (0 when unreachable).
func (p *proc) get(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady waits for /readyz to answer 200; a generous deadline, as the
// machine may be busy.
func (p *proc) waitReady(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := p.get(installer.PathReady)
		if code == http.StatusOK {
			return
		}
		select {
		case err := <-p.done:
			tb.Fatalf("installer exited (%v) before ready:\n%s", err, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("installer not ready: %d %s", code, body)
		}
	}
}

// metric scrapes /metrics for an unlabelled metric's value.
func (p *proc) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	code, body := p.get(installer.PathMetrics)
	if code != http.StatusOK {
		tb.Fatalf("/metrics: %d %s", code, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return f
		}
	}
	tb.Fatalf("no %s in /metrics", name)
	return 0
}

// terminate sends SIGTERM, as the kubelet does, and waits for a clean exit.
func (p *proc) terminate(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			tb.Fatalf("installer exited with %v:\n%s", err, p.out.String())
		}
	case <-time.After(time.Minute):
		tb.Fatalf("installer did not exit on SIGTERM:\n%s", p.out.String())
	}
}
