package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Roles of the test binary (see roles in helpers_test.go) take a JSON spec
// in their environment variable and print one JSON result line.

// roleError is the error field every role result carries.
type roleError struct {
	Error string
}

func (r *roleError) setErr(err error) {
	if err != nil {
		r.Error = err.Error()
	}
}

// roleMain decodes a role's spec, runs it and prints its result, with the
// run's error in the result's Error.
func roleMain[S, R any, PR interface {
	*R
	setErr(error)
}](js string, run func(S, PR) error) {
	var spec S
	res := PR(new(R))
	err := json.Unmarshal([]byte(js), &spec)
	if err == nil {
		err = run(spec, res)
	}
	res.setErr(err)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

// roleCtx bounds the roles a test starts to a minute; they end with the
// test at the latest.
func roleCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startRole starts the test binary in pod p as the role bound to env, with
// spec, as uid and gid 1000 (an app); with ready it waits for the role's
// "ready" line.
func startRole(t *testing.T, ctx context.Context, p *sim.Pod, env string, spec any, ready bool, extraEnv ...string) *sim.Proc {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	ps := sim.ProcSpec{Argv: []string{p.Exe()}, UID: 1000, GID: 1000, Env: append([]string{env + "=" + string(js)}, extraEnv...)}
	if ready {
		ps.Ready = "ready"
	}
	proc, err := p.Start(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	return proc
}

// waitRole waits for a role to end and decodes its result.
func waitRole[R any](t *testing.T, p *sim.Proc) R {
	t.Helper()
	_ = p.Wait()
	var res R
	if err := json.Unmarshal([]byte(lastLine(p.Stdout())), &res); err != nil {
		t.Fatalf("role output %q (%s): %v", p.Stdout(), p.Stderr(), err)
	}
	return res
}

// lastLine is the last line of a role's output (the result).
func lastLine(out string) string {
	out = strings.TrimSpace(out)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return out
}

// acceptOne listens on addr (plain TCP, TCP_DEFER_ACCEPT when deferSec >
// 0), says "ready" and returns the first connection.
func acceptOne(addr string, deferSec int) (net.Conn, error) {
	ln, err := listenTCP("tcp", addr, deferSec)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	fmt.Println("ready")
	return ln.Accept()
}

// dialRaw connects a blocking IPv4 TCP socket to addr with system calls
// only, as a C program does.
func dialRaw(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}
