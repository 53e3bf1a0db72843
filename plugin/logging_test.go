package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// The log is size-capped: one old file is kept, lines are never split.
func TestRotatingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "cni.log")
	const max = 1000
	var wg sync.WaitGroup
	for w := range 2 { // two "processes" share the file
		f, err := openRotating(path, max)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := f.Write([]byte(strings.Repeat("x", 40) + " line " + string(rune('a'+w)) + string(rune('0'+i%10)) + "\n")); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, p := range []string{path, path + ".1"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > max+2*50 {
			t.Errorf("%s has %d bytes, cap %d", p, len(b), max)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if len(l) != 48 {
				t.Fatalf("%s: broken line %q", p, l)
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 3 { // cni.log, cni.log.1, cni.log.lock
		t.Errorf("log folder: %v", ents)
	}
}

// Every line goes to stderr and the file, labelled with the command and
// the pod.
func TestLoggerLabels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	var stderr bytes.Buffer
	l, closeLog := newLogger(&Config{LogFile: path}, &stderr)
	args := &skel.CmdArgs{ContainerID: "0123456789abcdef0123", Args: "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_UID=u-1"}
	labelled(l, "ADD", args).Info("hello")
	labelled(l, "GC", &skel.CmdArgs{}).Debug("hidden at info")
	closeLog()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "msg=hello cmd=ADD pod=prod/web uid=u-1 container=0123456789ab\n"
	if !strings.HasSuffix(stderr.String(), want) || string(file) != stderr.String() {
		t.Errorf("stderr %q, file %q, want lines ending %q", stderr.String(), file, want)
	}

	// An unwritable log file leaves stderr.
	stderr.Reset()
	l, closeLog = newLogger(&Config{LogFile: "/proc/no/such/cni.log"}, &stderr)
	l.Info("still here")
	closeLog()
	if !strings.Contains(stderr.String(), "logging to stderr only") || !strings.Contains(stderr.String(), "still here") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// The log file is never opened through a symlink, nor when it is not a
// regular file owned by the plugin's user: the log folder is a hostPath.
func TestLogFileRefusesLinksAndStrangers(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := openRotating(link, 1<<20); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("log file through a symlink: %v", err)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openRotating(fifo, 1<<20); err == nil {
		t.Error("opened a FIFO as log file")
	}
	if _, err := openRotating(os.DevNull, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("device as log file: %v", err)
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root privileges (to give a file to another uid)")
	}
	foreign := filepath.Join(dir, "foreign.log")
	if err := os.WriteFile(foreign, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(foreign, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := openRotating(foreign, 1<<20); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("log file of another uid: %v", err)
	}
}
