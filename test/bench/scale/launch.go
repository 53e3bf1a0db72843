package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// holderProc is a running holder, seen from the benchmark.
type holderProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	conns int             // connections it keeps
	ctx   context.Context // ends it (killed) when done
}

// startHolder starts exe as a holder in the cgroup at cgroupDir and the
// network namespace at netns, as the sidecar's uid, and waits until it
// listens.
func startHolder(ctx context.Context, exe, netns, cgroupDir string) (*holderProc, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	dir, err := os.Open(cgroupDir)
	if err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	defer dir.Close()
	// The sidecar's uid: the default rules accelerate its connections and
	// trust it to read with recvmsg.
	uid := strconv.Itoa(nodestate.DefaultSidecarUID)
	cmd := exec.CommandContext(ctx, nsenter, "--net="+netns, "--setuid", uid, "--setgid", uid, "--", exe, HolderArg)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=1"}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: int(dir.Fd()),
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	h := &holderProc{cmd: cmd, ctx: ctx}
	if h.in, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	h.out = bufio.NewScanner(stdout)
	h.out.Buffer(make([]byte, 64<<10), 16<<20)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start holder in %s: %w", cgroupDir, err)
	}
	if _, err := h.reply(); err != nil {
		return nil, fmt.Errorf("start holder in %s: %w", cgroupDir, h.stop(err))
	}
	return h, nil
}

// call sends one command and returns its answer without "ok".
func (h *holderProc) call(cmd string) (string, error) {
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		return "", fmt.Errorf("holder %q: %w", cmd, err)
	}
	r, err := h.reply()
	if err != nil {
		return "", fmt.Errorf("holder %q: %w", cmd, err)
	}
	return r, nil
}

func (h *holderProc) reply() (string, error) {
	if !h.out.Scan() {
		return "", fmt.Errorf("holder exited (%v)", h.out.Err())
	}
	line := h.out.Text()
	if r, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(r), nil
	}
	return "", fmt.Errorf("holder: %s", strings.TrimPrefix(line, "err "))
}

// open makes the holder open n more connections.
func (h *holderProc) open(n int) error {
	if n == 0 {
		return nil
	}
	if _, err := h.call(fmt.Sprintf("open %d", n)); err != nil {
		return err
	}
	h.conns += n
	return nil
}

// probe returns the times of n new connections in microseconds.
func (h *holderProc) probe(n int) ([]float64, error) {
	r, err := h.call(fmt.Sprintf("probe %d", n))
	if err != nil {
		return nil, err
	}
	var out []float64
	for _, f := range strings.Fields(r) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("holder probe: %q: %w", f, err)
		}
		out = append(out, v)
	}
	if len(out) != n {
		return nil, fmt.Errorf("holder probe: %d times for %d connections", len(out), n)
	}
	return out, nil
}

// stop closes the holder's stdin, which ends it and closes its
// connections, and waits for its exit; err, if any, is returned instead of
// its outcome.
func (h *holderProc) stop(err error) error {
	_ = h.in.Close()
	werr := h.cmd.Wait()
	if err != nil {
		return err
	}
	if werr != nil && h.ctx.Err() == nil { // else killed on purpose: the run was interrupted
		return fmt.Errorf("holder: %w", werr)
	}
	return nil
}
