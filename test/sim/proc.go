package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcSpec describes a program to run in a pod ([Pod.Start]).
type ProcSpec struct {
	Argv     []string  // program (looked up in PATH inside the pod) and arguments
	Env      []string  // extra KEY=VALUE entries; PATH, HOME and TMPDIR are set
	UID, GID uint32    // credentials (0, 0: root)
	Stdin    io.Reader // optional
	// Ready, if set, makes Start wait until a line of the program's stdout
	// contains it (for servers that announce they listen).
	Ready string
	// ReadyTimeout bounds the wait for Ready (10 s).
	ReadyTimeout time.Duration
}

// defaultReadyTimeout bounds how long Start waits for a server's ready line.
const defaultReadyTimeout = 10 * time.Second

// maxOutput bounds the stdout and stderr kept in memory per process.
const maxOutput = 16 << 20

// Proc is a process running in a pod. It is killed when the context given to
// Start is done, by Kill, and at the latest by [Node.Close].
type Proc struct {
	// Name identifies the process in errors: "<pod>/<program>".
	Name   string
	cmd    *exec.Cmd
	stdout *outBuffer
	stderr *outBuffer
	done   chan struct{}
	err    error
}

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is collected.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error, if any.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Kill sends SIGKILL to the process's group unless it has already exited.
func (p *Proc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	return nil
}

// Stdout returns what the process printed on stdout so far (at most 16 MiB).
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr returns what the process printed on stderr so far (at most 16 MiB).
func (p *Proc) Stderr() string { return p.stderr.String() }

// launch is everything needed to start a process in a pod.
type launch struct {
	name     string
	nsenter  string
	netns    string
	cgroupFD int
	exe      string // the node's copy of the executable
	role     string
	args     any // JSON arguments of the role
	uid, gid uint32
	env      []string
	stdin    io.Reader
	ready    string
	timeout  time.Duration
}

// start runs l.exe in role l.role, inside the pod's cgroup from the first
// instruction, and in the pod's network namespace as l.uid/l.gid via nsenter.
func start(ctx context.Context, l launch) (*Proc, error) {
	args, err := json.Marshal(l.args)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", l.name, err)
	}
	cmd := exec.CommandContext(ctx, l.nsenter, "--net="+l.netns,
		"--setuid", strconv.FormatUint(uint64(l.uid), 10), "--setgid", strconv.FormatUint(uint64(l.gid), 10),
		"--", l.exe)
	cmd.Env = append(append([]string{}, l.env...),
		envRole+"="+l.role, envArgs+"="+string(args), envParent+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin = l.stdin
	p := &Proc{Name: l.name, cmd: cmd, stdout: newOutBuffer(l.ready), stderr: newOutBuffer(""), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: l.cgroupFD,
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if l.ready == "" {
		return p, nil
	}
	if err := p.waitReady(l.timeout); err != nil {
		_ = p.Kill()
		<-p.done
		return nil, err
	}
	return p, nil
}

// waitReady waits for the ready line, the exit of the process or the timeout.
func (p *Proc) waitReady(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultReadyTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.stdout.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready (%v): stderr: %s; stdout: %s", p.Name, p.err, tail(p.Stderr()), tail(p.Stdout()))
	case <-t.C:
		return fmt.Errorf("%s not ready after %v: stderr: %s", p.Name, timeout, tail(p.Stderr()))
	}
}

// tail shortens long process output for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// outBuffer keeps a process's output and signals the first line that
// contains the ready marker.
type outBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	marker  string
	scanned int // bytes of buf already searched for the marker
	ready   chan struct{}
}

func newOutBuffer(marker string) *outBuffer {
	return &outBuffer{marker: marker, ready: make(chan struct{})}
}

// Write keeps b (up to maxOutput in all) and looks for the marker in the
// lines completed so far.
func (o *outBuffer) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := maxOutput - o.buf.Len(); room > 0 {
		o.buf.Write(b[:min(len(b), room)])
	}
	if o.marker != "" {
		data := o.buf.Bytes()
		if end := bytes.LastIndexByte(data, '\n'); end >= o.scanned {
			if bytes.Contains(data[o.scanned:end], []byte(o.marker)) {
				close(o.ready)
				o.marker = ""
			}
			o.scanned = end + 1
		}
	}
	return len(b), nil
}

// String returns the output kept so far.
func (o *outBuffer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
