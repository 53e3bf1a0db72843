// Package pluginlog is the installer's follower of the CNI plugin's log
// file: the plugin's lines go to the installer's stdout, prefixed
// [Prefix], across the plugin's rotations, and the ADD times they report
// feed the installer's latency histogram.
package pluginlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Defaults of the plugin log's follower.
const (
	// pluginLogPoll is how often the follower looks for new lines.
	pluginLogPoll = 250 * time.Millisecond
	// pluginLogMaxLine cuts longer lines (the plugin writes short ones).
	pluginLogMaxLine = 64 << 10
	// Prefix marks a line as the plugin's: its lines are slog
	// text records, and the prefix keeps them one (key=value first).
	Prefix = "source=plugin "
)

// Follower copies the lines the CNI plugin appends to its log file to out
// (the installer's stdout), each prefixed with Prefix, as
// istio-cni does: the plugin runs as a child of the container runtime,
// whose output nobody reads, and `kubectl logs` of the installer then shows
// the plugin's lines too.
//
// It starts at the file's end: what the plugin logged before the installer
// started is in the file on the host, and a restarted installer (an
// upgrade, a crash) would otherwise repeat it.
//
// The plugin rotates its file by renaming it to path.1 and starting a new
// one (plugin/logging.go), and a plugin process that has not noticed yet
// may still append a line to the renamed file. The follower keeps reading
// the file it has open, whatever its name, and only when the path names
// another file does it read its old file to the end and move to the new
// one from its start: no line is lost or repeated by a rotation. A file
// truncated in place is read again from its start.
type Follower struct {
	path string
	out  io.Writer
	log  *slog.Logger
	poll time.Duration
	// setup receives the ADD time of each "pod accelerated" line
	// (nodestate.ParseSetupDuration); nil: not read.
	setup func(time.Duration)

	f       *os.File
	off     int64  // read up to here in f
	partial []byte // a line not ended yet
	missing bool   // the file's absence was logged
}

// New returns the follower of the log file at path, copying to out; setup,
// when not nil, receives the ADD time of each "pod accelerated" line
// (nodestate.ParseSetupDuration).
func New(path string, out io.Writer, log *slog.Logger, setup func(time.Duration)) *Follower {
	return &Follower{path: path, out: out, log: log, poll: pluginLogPoll, setup: setup}
}

// Run follows the file until ctx is done.
func (p *Follower) Run(ctx context.Context) {
	p.start()
	defer p.close()
	t := time.NewTicker(p.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.step() // the lines written until now
			return
		case <-t.C:
			p.step()
		}
	}
}

// start opens the file and skips what it holds.
func (p *Follower) start() {
	if !p.open() {
		return
	}
	if st, err := p.f.Stat(); err == nil {
		p.off = st.Size()
	}
}

// open opens the file at the path; false when there is none (yet), or
// when it is refused (a symlink, a file not the installer's user's).
func (p *Follower) open() bool {
	f, err := fileio.OpenOwned(p.path, os.O_RDONLY, 0) // as the plugin writes it
	if err != nil {
		if !p.missing {
			p.missing = true
			if errors.Is(err, fs.ErrNotExist) {
				p.log.Debug("no plugin log yet: followed once the plugin writes it", "path", p.path)
			} else {
				p.log.Warn("plugin log not followed", "path", p.path, "err", err)
			}
		}
		return false
	}
	p.missing = false
	p.f, p.off, p.partial = f, 0, nil
	return true
}

// step copies the new lines, and moves to a new file after a rotation.
func (p *Follower) step() {
	if p.f == nil {
		if !p.open() {
			return
		}
	}
	p.copy()
	cur, err := os.Stat(p.path)
	if err != nil {
		return // rotating right now: the new file is looked for next time
	}
	if st, err := p.f.Stat(); err == nil && os.SameFile(st, cur) {
		return
	}
	p.copy() // the last lines appended to the rotated file
	p.flushPartial()
	p.close()
	if p.open() {
		p.copy()
	}
}

// copy writes the complete lines between the offset and the file's end.
func (p *Follower) copy() {
	if st, err := p.f.Stat(); err == nil && st.Size() < p.off {
		p.off, p.partial = 0, nil // truncated in place
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := p.f.ReadAt(buf, p.off)
		p.off += int64(n)
		p.lines(buf[:n])
		if n == 0 || err != nil {
			return
		}
	}
}

// lines writes the complete lines of b, keeping the rest for later.
func (p *Follower) lines(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			if len(p.partial) >= pluginLogMaxLine {
				p.flushPartial()
			}
			return
		}
		p.emit(append(p.partial, b[:i]...))
		p.partial = p.partial[:0]
		b = b[i+1:]
	}
}

// flushPartial writes a line that will not be ended: the file was rotated
// after it, or it is too long.
func (p *Follower) flushPartial() {
	if len(p.partial) > 0 {
		p.emit(p.partial)
		p.partial = p.partial[:0]
	}
}

func (p *Follower) emit(line []byte) {
	if len(line) > pluginLogMaxLine {
		line = line[:pluginLogMaxLine]
	}
	if p.setup != nil {
		if d, ok := nodestate.ParseSetupDuration(line); ok {
			p.setup(d)
		}
	}
	out := make([]byte, 0, len(Prefix)+len(line)+1)
	out = append(append(append(out, Prefix...), line...), '\n')
	_, _ = p.out.Write(out)
}

func (p *Follower) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
}
