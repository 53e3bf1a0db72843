package installer

import (
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
)

// What changed, as the main loop handles it.
type change uint8

const (
	changeConflist change = 1 << iota
	changeToken
	changeRules
	changeAll = changeConflist | changeToken | changeRules
)

// watcher watches the directories of the CNI configs, the service account
// and the rules. It watches directories, not files: the kubelet updates a
// projected token or a ConfigMap by swapping a symlink (..data), and the
// primary CNI may replace its file by a rename. A directory that cannot be
// watched yet (not there) is tried again at every re-check; the periodic
// re-check also covers lost events.
type watcher struct {
	fs   *fsnotify.Watcher
	dirs map[string]change
	on   map[string]bool // watched now
	log  *slog.Logger
}

func newWatcher(dirs map[string]change, log *slog.Logger) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{fs: fw, dirs: dirs, on: map[string]bool{}, log: log}
	w.retry()
	return w, nil
}

// channels returns the watch's events and errors; nil channels (never
// ready) for no watcher.
func (w *watcher) channels() (<-chan fsnotify.Event, <-chan error) {
	if w == nil {
		return nil, nil
	}
	return w.fs.Events, w.fs.Errors
}

// retry adds the directories not watched yet.
func (w *watcher) retry() {
	if w == nil {
		return
	}
	for dir := range w.dirs {
		if w.on[dir] {
			continue
		}
		if err := w.fs.Add(dir); err != nil {
			w.log.Debug("cannot watch yet; re-checked periodically", "dir", dir, "err", err)
			continue
		}
		w.on[dir] = true
	}
}

// what maps an event to what changed; our own temporary files change
// nothing.
func (w *watcher) what(ev fsnotify.Event) change {
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, fileio.TempPrefix) {
		return 0
	}
	if ev.Has(fsnotify.Remove) && w.dirs[ev.Name] != 0 {
		// The directory itself went away: watch it again when it is back.
		delete(w.on, ev.Name)
		return w.dirs[ev.Name]
	}
	return w.dirs[filepath.Dir(ev.Name)]
}

func (w *watcher) close() error { return w.fs.Close() }
