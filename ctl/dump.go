package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// dumpOptions are the flags of dump.
type dumpOptions struct {
	sel       podSel
	pod, addr string // pod: the reference sel and the argument give
	port      uint16
	snapLen   uint32
	count     int
	duration  time.Duration
	write     string // pcap file; "-" is stdout; empty: live output
}

// dumpEvent is a captured message in JSON live output.
type dumpEvent struct {
	Type    string         `json:"type"` // "message"
	Time    time.Time      `json:"time"`
	From    netip.AddrPort `json:"from"`
	To      netip.AddrPort `json:"to"`
	FromPod string         `json:"from_pod"`
	ToPod   string         `json:"to_pod"`
	Len     uint32         `json:"len"`
	Data    []byte         `json:"data"` // the captured head, base64
}

// dumpSummary ends a dump.
type dumpSummary struct {
	Type     string `json:"type"` // "summary"
	Messages int    `json:"messages"`
	Bytes    uint64 `json:"bytes"`   // total length of the messages
	Dropped  uint64 `json:"dropped"` // lost in the kernel: ring buffer full
	File     string `json:"file,omitempty"`
}

func (a *app) dumpCmd() *cobra.Command {
	o := dumpOptions{}
	cmd := &cobra.Command{
		Use:   "dump [NAME -n NAMESPACE | --pod POD] [--addr IP] [--port PORT] [--snaplen N] [-c N] [--duration D] [-w FILE]",
		Short: "Capture the bytes that sk_msg redirects, live or into a pcap file",
		Long: `dump captures the messages that the data path redirects from one socket to its local peer:
traffic that never crosses a network device, so tcpdump on an interface cannot see it. Each
message is printed live with its time, both ends' local addresses, pods, length and a hex/ASCII
dump of its first --snaplen bytes; with -o json, one JSON object per line.

With -w FILE the messages are written as a pcap file that tcpdump -r and Wireshark read as
the TCP conversations they belong to: the packets are synthesised (IPv4 or IPv6 and TCP
headers with consistent per-direction sequence numbers starting at 1, ACK flags, checksums
over what was captured), since a redirected message never was a packet. The file is created
with mode 0600, as a new file (dump refuses an existing file or a symbolic link): it holds
application data. -w - writes the pcap to stdout instead, the notes staying on stderr: the
way out of the installer pod, whose root file system is read-only and which has no scratch
folder, is to redirect kubectl's output on your side (see the examples).

The capture ends after -c messages, after --duration, or on Ctrl-C. At the end dump reports how
many messages the kernel dropped because the capture ring buffer was full. One capture runs on
a node at a time. Messages on the normal stack (not redirected) are not captured.`,
		Example: `  mesh-accelctl dump -n shop cart -c 20
  mesh-accelctl dump --port 8080 --duration 10s -w cart.pcap

  # in the installer pod (read-only root): the pcap on stdout, into a file where kubectl runs
  ` + execCmd + ` dump -n shop cart --duration 10s -w - > cart.pcap
  ` + execCmd + ` dump --port 8080 -c 100 -w - | tcpdump -r - -A`,
		Args: podArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.pod, err = o.sel.ref(args); err != nil {
				return err
			}
			return a.dump(cmd.Context(), o)
		},
	}
	a.connFilterFlags(cmd, &o.sel, &o.addr, &o.port)
	f := cmd.Flags()
	f.Uint32Var(&o.snapLen, FlagSnapLen, bpf.DefaultSnapLen, fmt.Sprintf("payload bytes kept per message, 1..%d", bpf.MaxSnapLen))
	f.IntVarP(&o.count, FlagCount, "c", 0, "stop after this many messages (0: no limit)")
	f.DurationVar(&o.duration, FlagDuration, 0, "stop after this long (0: no limit)")
	f.StringVarP(&o.write, FlagWrite, "w", "", "write a pcap file (- for stdout) instead of printing")
	return cmd
}

func (o dumpOptions) validate() error {
	switch {
	case o.snapLen < 1 || o.snapLen > bpf.MaxSnapLen:
		return usageErrorf("--%s %d: want 1..%d", FlagSnapLen, o.snapLen, bpf.MaxSnapLen)
	case o.count < 0:
		return usageErrorf("--%s must not be negative", FlagCount)
	case o.duration < 0:
		return usageErrorf("--%s must not be negative", FlagDuration)
	}
	return nil
}

// dump runs a capture until the count, the duration or ctx ends it.
func (a *app) dump(ctx context.Context, o dumpOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	eng, err := a.engine()
	if err != nil {
		return err
	}
	pods, err := eng.Pods()
	if err != nil {
		return err
	}
	f, err := a.filter(pods, o.pod, o.addr, o.port)
	if err != nil {
		return err
	}
	before, err := eng.Counters()
	if err != nil {
		return err
	}
	c, err := eng.StartCapture(bpf.CaptureFilter{Pod: f.Pod, Addr: f.Addr, Port: f.Port, SnapLen: o.snapLen})
	if errors.Is(err, bpf.ErrCaptureBusy) {
		return fmt.Errorf("%w: wait for the other dump to end", err)
	}
	if err != nil {
		return err
	}
	sink, err := a.dumpSink(o, a.podNames(pods)) // after the start: a busy node leaves -w's file alone
	if err != nil {
		return errors.Join(err, c.Close())
	}
	defer sink.close()
	a.note("capturing redirected messages%s, %d bytes each; Ctrl-C stops", describeFilter(o), o.snapLen)
	sum, err := capture(ctx, c, o, sink.write)
	if ferr := sink.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	after, err := eng.Counters()
	if err != nil {
		return err
	}
	sum.Dropped = after[bpf.CounterCaptureDropped] - before[bpf.CounterCaptureDropped]
	sum.File = o.write
	return a.dumpReport(sum, o)
}

// Timing of a capture's reads.
const (
	// capturePoll bounds a Read, so that Ctrl-C and --duration are seen
	// within this time.
	capturePoll = 100 * time.Millisecond
	// captureDrain bounds the reading of what the ring buffer still holds
	// once the capture is stopped.
	captureDrain = 3 * time.Second
)

// capture reads messages into write until o's count is reached or ctx is
// done (Ctrl-C, --duration). Once ctx is done it still reads what the ring
// buffer holds (messages redirected before the stop) for at most
// captureDrain. It closes c.
func capture(ctx context.Context, c Capture, o dumpOptions, write func(bpf.CaptureEvent) error) (dumpSummary, error) {
	sum := dumpSummary{Type: "summary"}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var err error
	var drainEnd time.Time
	for o.count == 0 || sum.Messages < o.count {
		now := time.Now()
		if drainEnd.IsZero() && ctx.Err() != nil {
			drainEnd = now.Add(captureDrain)
		}
		if !drainEnd.IsZero() && now.After(drainEnd) {
			break
		}
		if drainEnd.IsZero() {
			c.SetDeadline(now.Add(capturePoll))
		} else {
			c.SetDeadline(now) // what is buffered, then a timeout
		}
		var ev bpf.CaptureEvent
		ev, err = c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = nil
			if drainEnd.IsZero() {
				continue
			}
			break
		}
		if err != nil {
			break
		}
		sum.Messages++
		sum.Bytes += uint64(ev.Len)
		if err = write(ev); err != nil {
			break
		}
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return sum, err
}

func describeFilter(o dumpOptions) string {
	var s []string
	if o.pod != "" {
		s = append(s, "pod "+o.pod)
	}
	if o.addr != "" {
		s = append(s, "address "+o.addr)
	}
	if o.port != 0 {
		s = append(s, fmt.Sprintf("port %d", o.port))
	}
	if len(s) == 0 {
		return " (every pod)"
	}
	return " (" + strings.Join(s, ", ") + ")"
}

func (a *app) dumpReport(sum dumpSummary, o dumpOptions) error {
	if a.cfg.structured() && o.write != "-" {
		s := a.streamer(a.deps.Stdout)
		s.n = 1 // after the messages' documents: YAML starts a new one
		return s.write(sum)
	}
	where := ""
	if o.write != "" && o.write != "-" {
		where = " into " + o.write
	}
	a.note("%d messages captured (%s)%s; %d dropped by the kernel", sum.Messages, humanBytes(sum.Bytes), where, sum.Dropped)
	if sum.Dropped > 0 {
		a.note("the capture ring buffer overflowed: narrow the capture with --%s/--%s/--%s or lower --%s",
			FlagPod, FlagAddr, FlagPort, FlagSnapLen)
	}
	return nil
}

// dumpSink is where captured messages go.
type dumpSink struct {
	write func(bpf.CaptureEvent) error
	flush func() error
	close func()
}

// dumpSink opens the output of a dump: a pcap file or stream, or live
// lines (text or JSON) on stdout.
func (a *app) dumpSink(o dumpOptions, names podNames) (*dumpSink, error) {
	out, closeOut := a.deps.Stdout, func() {}
	if o.write != "" && o.write != "-" {
		// A new file only: never through a symlink, never another's mode.
		f, err := os.OpenFile(o.write, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("create pcap file: %s already exists (a file or a symbolic link): "+
				"dump writes only a new file; remove it or name a new file", o.write)
		}
		if err != nil {
			return nil, createError(err)
		}
		out, closeOut = f, func() { _ = f.Close() }
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	s := &dumpSink{flush: bw.Flush, close: closeOut}
	// A file is flushed at the end; a terminal or a pipe (Wireshark reading
	// stdin) at every message.
	each := o.write == "" || o.write == "-"
	var write func(bpf.CaptureEvent) error
	switch {
	case o.write != "":
		pw, err := newPcapWriter(bw)
		if err != nil {
			closeOut()
			return nil, err
		}
		write = pw.write
	case a.cfg.structured():
		enc := a.streamer(bw)
		write = func(ev bpf.CaptureEvent) error {
			return enc.write(dumpEvent{Type: "message", Time: ev.Time, From: ev.From, To: ev.To,
				FromPod: names.of(ev.FromPod), ToPod: names.of(ev.ToPod), Len: ev.Len, Data: ev.Data})
		}
	default:
		write = func(ev bpf.CaptureEvent) error { return writeMessage(bw, ev, names) }
	}
	s.write = func(ev bpf.CaptureEvent) error {
		if err := write(ev); err != nil {
			return err
		}
		if each {
			return bw.Flush()
		}
		return nil
	}
	return s, nil
}

// createError explains why the pcap file could not be created. On a
// read-only file system, the installer pod's root, it says how to get the
// capture out of the pod instead: that pod has no folder meant for it (its
// writable mounts are the host's CNI, BPF, state and log folders; a test
// checks the DaemonSet), so the pcap goes to stdout, redirected where
// kubectl runs.
func createError(err error) error {
	if errors.Is(err, unix.EROFS) {
		return fmt.Errorf("create pcap file: %w: in the installer pod the root file system is read-only and no "+
			"folder is meant for captures; write the pcap to stdout with -w - and redirect it where kubectl runs: "+
			"%s dump ... -w - > capture.pcap", err, execCmd)
	}
	return fmt.Errorf("create pcap file: %w", err)
}

// writeMessage prints one message: a header line and a hex/ASCII dump of
// what was captured.
func writeMessage(w io.Writer, ev bpf.CaptureEvent, names podNames) error {
	pods := ""
	if from, to := names.of(ev.FromPod), names.of(ev.ToPod); from == to && from != "-" {
		pods = " [" + from + "]"
	} else if from != "-" || to != "-" {
		pods = " [" + from + " > " + to + "]"
	}
	fmt.Fprintf(w, "%s %s > %s%s len %d\n", ev.Time.Format("15:04:05.000000"), ev.From, ev.To, pods, ev.Len)
	hexDump(w, ev.Data)
	if missing := int(ev.Len) - len(ev.Data); missing > 0 {
		_, err := fmt.Fprintf(w, "  ... %d more bytes not captured\n", missing)
		return err
	}
	return nil
}

// hexDump writes data as lines of 16 bytes: offset, hex in two groups of
// eight, and the printable ASCII characters (others as '.').
func hexDump(w io.Writer, data []byte) {
	for off := 0; off < len(data); off += 16 {
		line := data[off:min(off+16, len(data))]
		var hex, text strings.Builder
		for i := range 16 {
			if i == 8 {
				hex.WriteByte(' ')
			}
			if i < len(line) {
				fmt.Fprintf(&hex, "%02x ", line[i])
			} else {
				hex.WriteString("   ")
			}
		}
		for _, b := range line {
			if b >= 0x20 && b < 0x7f {
				text.WriteByte(b)
			} else {
				text.WriteByte('.')
			}
		}
		fmt.Fprintf(w, "  %04x  %s |%s|\n", off, hex.String(), text.String())
	}
}
