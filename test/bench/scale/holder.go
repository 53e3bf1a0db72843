package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The holder is the benchmark binary re-executed inside a pod's cgroup and
// the run's network namespace, as the sidecar's uid: it opens and keeps
// connections, all to its own listener on loopback (both ends in the pod,
// both read by a trusted reader, as the hop between an app and its
// sidecar), answering one command line at a time on stdin:
//
//	open N    open N more connections, one byte each way on each, keep them
//	live K    K more connections that exchange 64 bytes every 10 ms until exit
//	pin C     run every thread (and so every later one) on CPU C only
//	probe N   N new connections one after the other: connect, one byte out,
//	          its echo back, close; prints each one's time in microseconds
//
// Each answer is one line, "ok ..." or "err ...". The holder exits when its
// stdin closes (the benchmark ended or died).

// HolderArg is the first argument that makes the benchmark binary a holder.
const HolderArg = "scale-holder"

// maxHolderConns is how many connections one holder keeps: two descriptors
// each, under the RLIMIT_NOFILE hard limit a sandbox may keep at 20,000.
const maxHolderConns = 9000

// HolderMain runs the holder on stdin and stdout and exits.
func HolderMain() {
	if err := runHolder(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHolder(in io.Reader, out io.Writer) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	if err := raiseNofile(); err != nil {
		return err
	}
	return serveHolder(in, out)
}

// serveHolder answers the commands of in on out until in closes.
func serveHolder(in io.Reader, out io.Writer) error {
	h, err := newHolder()
	if err != nil {
		return err
	}
	defer h.close()
	fmt.Fprintln(out, "ok ready")
	s := bufio.NewScanner(in)
	for s.Scan() {
		reply, err := h.do(s.Text())
		if err != nil {
			reply = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Fprintln(out, reply)
	}
	return s.Err()
}

// raiseNofile raises the soft limit of open files to the hard one.
func raiseNofile() error {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	l.Cur = l.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", l.Max, err)
	}
	return nil
}

type holder struct {
	ln    *net.TCPListener
	mu    sync.Mutex
	conns []net.Conn
}

// Plain TCP on both ends, as Envoy's: Go's default MPTCP listener hands
// over sockets the kernel made, which are never accelerated.
var (
	listenConfig = func() *net.ListenConfig { var lc net.ListenConfig; lc.SetMultipathTCP(false); return &lc }()
	dialer       = func() *net.Dialer { var d net.Dialer; d.SetMultipathTCP(false); return &d }()
)

func newHolder() (*holder, error) {
	ln, err := listenConfig.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	h := &holder{ln: ln.(*net.TCPListener)}
	go h.accept()
	return h, nil
}

// accept echoes every byte of every accepted connection, so that a new
// connection's first byte comes back and a live one's messages too.
func (h *holder) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		go echoAll(c)
	}
}

// echoAll sends back what it reads with read and write (io.Copy would
// splice, which a trusted reader must not), until the peer closes.
func echoAll(c net.Conn) {
	defer c.Close()
	b := make([]byte, 512)
	for {
		n, err := c.Read(b)
		if n > 0 {
			if _, werr := c.Write(b[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close closes the listener and the connections it opened (their peers,
// the accepted ones, then read EOF and close).
func (h *holder) close() {
	h.ln.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}

func (h *holder) keep(c net.Conn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
}

func (h *holder) do(line string) (string, error) {
	verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, err := strconv.Atoi(arg)
	if err != nil || n < 0 {
		return "", fmt.Errorf("command %q: want a count", line)
	}
	switch verb {
	case "open":
		return "ok", h.open(n)
	case "live":
		return "ok", h.live(n)
	case "pin":
		return "ok", pinProcess(n)
	case "probe":
		us, err := h.probe(n)
		return "ok " + strings.Join(us, " "), err
	}
	return "", fmt.Errorf("unknown command %q", line)
}

// dial connects to the listener and checks one byte's echo.
func (h *holder) dial() (net.Conn, error) {
	c, err := dialer.Dial("tcp4", h.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	if err := echo(c, 1); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// echo writes n bytes and reads them back.
func echo(c net.Conn, n int) error {
	b := make([]byte, n)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	return c.SetDeadline(time.Time{})
}

// open opens n connections, four at a time.
func (h *holder) open(n int) error {
	const workers = 4
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n && errs[w] == nil; i += workers {
				c, err := h.dial()
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				h.keep(c)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// live opens k connections that exchange 64 bytes every 10 ms.
func (h *holder) live(k int) error {
	for range k {
		c, err := h.dial()
		if err != nil {
			return err
		}
		h.keep(c)
		go func() {
			for range time.Tick(10 * time.Millisecond) {
				if echo(c, 64) != nil {
					return
				}
			}
		}()
	}
	return nil
}

// probe times n new connections from connect to the first byte's echo.
func (h *holder) probe(n int) ([]string, error) {
	out := make([]string, 0, n)
	for range n {
		start := time.Now()
		c, err := h.dial()
		if err != nil {
			return nil, err
		}
		out = append(out, strconv.FormatInt(time.Since(start).Microseconds(), 10))
		c.Close()
	}
	return out, nil
}

// pinProcess sets the CPU affinity of every thread of the process to cpu;
// threads started later inherit it from their creator.
func pinProcess(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}
