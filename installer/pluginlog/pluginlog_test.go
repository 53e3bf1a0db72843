package pluginlog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// The helpers shared with the installer's other packages.
var (
	appendLog = installertest.AppendLog
	testLog   = installertest.Log
	waitFor   = installertest.WaitFor
)

// plugin lines as the follower writes them.
func fromPlugin(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(Prefix + l + "\n")
	}
	return b.String()
}

func TestPluginLogFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	appendLog(t, path, "level=INFO msg=old\n")
	var out bytes.Buffer
	p := New(path, &out, testLog(t), nil)
	p.start()
	defer p.close()
	check := func(step string, want string) {
		t.Helper()
		p.step()
		if out.String() != want {
			t.Fatalf("%s: output\n%s\nwant\n%s", step, out.String(), want)
		}
	}
	check("start: no replay", "")
	appendLog(t, path, "level=INFO msg=one\nlevel=INFO msg=tw")
	check("a line and a half", fromPlugin("level=INFO msg=one"))
	appendLog(t, path, "o\n")
	want := fromPlugin("level=INFO msg=one", "level=INFO msg=two")
	check("the rest of the line", want)

	// Rotation as plugin/logging.go does it: rename to .1, a late writer
	// still appends to the renamed file, new lines go to a new file.
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	appendLog(t, path, "msg=before-rotation\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(old, "msg=late\n")
	appendLog(t, path, "msg=new-1\nmsg=new-2\n")
	want += fromPlugin("msg=before-rotation", "msg=late", "msg=new-1", "msg=new-2")
	check("rotation", want)
	fmt.Fprintf(old, "msg=after-switch\n") // in .1 after the follower moved on: not followed
	appendLog(t, path, "msg=new-3\n")
	want += fromPlugin("msg=new-3")
	check("after rotation", want)

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLog(t, path, "msg=x\n")
	want += fromPlugin("msg=x")
	check("truncated in place", want)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check("file gone", want)
	appendLog(t, path, "msg=back\n")
	want += fromPlugin("msg=back")
	check("file back", want)
}

// The follower opens the log as the plugin's writer does (the log folder is
// a hostPath): never through a symlink, nor a file that is not regular or
// not owned by the installer's user. It copies nothing from such a file
// and says why.
func TestPluginLogRefusesLinksAndStrangers(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	appendLog(t, target, "")
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	refused := func(path, text, why string) {
		t.Helper()
		var out, log bytes.Buffer
		p := New(path, &out, slog.New(slog.NewTextHandler(&log, nil)), nil)
		p.start()
		defer p.close()
		if text != "" {
			appendLog(t, path, text)
		}
		p.step()
		if out.String() != "" || !strings.Contains(log.String(), "plugin log not followed") || !strings.Contains(log.String(), why) {
			t.Errorf("%s: copied %q, logged %q; want nothing copied and a warning naming %q", path, out.String(), log.String(), why)
		}
	}
	refused(link, "msg=secret\n", "symbolic link")
	refused(os.DevNull, "", "not a regular file")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root privileges (to give a file to another uid)")
	}
	foreign := filepath.Join(dir, "foreign.log")
	appendLog(t, foreign, "")
	if err := os.Chown(foreign, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	refused(foreign, "msg=forged\n", "owned by uid 4242")
}

func TestPluginLogLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	var out bytes.Buffer
	p := New(path, &out, testLog(t), nil)
	p.start() // no file yet: followed from its start once there
	defer p.close()
	long := strings.Repeat("x", pluginLogMaxLine+10)
	appendLog(t, path, long+"\nmsg=short\n")
	p.step()
	want := fromPlugin(long[:pluginLogMaxLine], "xxxxxxxxxx", "msg=short")
	if out.String() != want {
		t.Errorf("output %d bytes, want %d:\n%.300s", out.Len(), len(want), out.String())
	}
}

// TestPluginLogRun follows a file that a writer appends to and rotates
// while the follower runs, and checks that every line arrives once, in
// order.
func TestPluginLogRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cni.log")
	appendLog(t, path, "msg=history\n")
	var out testenv.SyncBuffer
	p := New(path, &out, testLog(t), nil)
	p.poll = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // the follower is at the end
	var want []string
	for i := range 300 {
		line := fmt.Sprintf("msg=line-%03d", i)
		appendLog(t, path, line+"\n")
		want = append(want, line)
		if i%50 == 49 {
			// The plugin rotates at 10 MiB, so two rotations never come
			// within one poll: let the follower see each.
			waitFor(t, "the lines before the rotation", func() bool { return strings.Count(out.String(), "\n") >= i })
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, "all lines", func() bool { return strings.Count(out.String(), "\n") >= len(want) })
	time.Sleep(50 * time.Millisecond)
	if got := out.String(); got != fromPlugin(want...) {
		t.Errorf("output differs from the lines written:\n%s", got)
	}
}
