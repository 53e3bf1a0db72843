package plugin

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
)

// logMaxBytes is the size at which the log file is rotated.
const logMaxBytes = 10 << 20

// newLogger logs to stderr and, unless conf.LogFile is "-", to the log file.
// The returned function closes the file. When the file cannot be opened the
// logger keeps stderr and says so.
func newLogger(conf *Config, stderr io.Writer) (*slog.Logger, func()) {
	opts := &slog.HandlerOptions{Level: conf.logLevel}
	if conf.LogFile == "-" {
		return slog.New(slog.NewTextHandler(stderr, opts)), func() {}
	}
	f, err := openRotating(conf.LogFile, logMaxBytes)
	if err != nil {
		l := slog.New(slog.NewTextHandler(stderr, opts))
		l.Warn("logging to stderr only", "err", err)
		return l, func() {}
	}
	return slog.New(slog.NewTextHandler(io.MultiWriter(stderr, f), opts)), func() { f.Close() }
}

// rotatingFile appends to a log file. Once the file has grown past max it
// is renamed to path.1 (replacing the older one) and a new file started.
// Plugin processes share the file: rotation happens under an flock of
// path.lock, and a process whose file another one rotated just reopens.
// Each Write is one log line, appended with O_APPEND.
type rotatingFile struct {
	path string
	max  int64

	mu sync.Mutex
	f  *os.File
}

func openRotating(path string, max int64) (*rotatingFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log folder: %w", err)
	}
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	return &rotatingFile{path: path, max: max, f: f}, nil
}

// openLog opens the log file for appending as root does safely in a
// hostPath folder others may write (fileio.OpenOwned).
func openLog(path string) (*os.File, error) {
	f, err := fileio.OpenOwned(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write appends b, rotating first when the file is full. A failed rotation
// does not lose the line.
func (r *rotatingFile) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.rotateIfFull()
	return r.f.Write(b)
}

func (r *rotatingFile) rotateIfFull() error {
	st, err := r.f.Stat()
	if err != nil || st.Size() < r.max {
		return err
	}
	unlock, err := fileio.Flock(r.path+".lock", true)
	if err != nil {
		return err
	}
	defer unlock()
	// Rotate only if nobody did since this process opened its file.
	if cur, err := os.Stat(r.path); err == nil && os.SameFile(st, cur) {
		if err := os.Rename(r.path, r.path+".1"); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	f, err := openLog(r.path)
	if err != nil {
		return fmt.Errorf("reopen log: %w", err)
	}
	r.f.Close()
	r.f = f
	return nil
}

// Close closes the file.
func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
