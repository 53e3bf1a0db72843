package installer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/metrics"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths served.
const (
	PathReady   = "/readyz"
	PathLive    = "/livez" // 200 while the process serves: the liveness probe
	PathMetrics = "/metrics"
)

// readiness answers /readyz: ready only while the node state is in place
// and the primary CNI config holds the entry, both checked at each probe.
type readiness struct {
	mu sync.Mutex
	// inactive is why this node's kernel cannot run the data path: the
	// installer installs nothing and reports ready, so that a rollout or
	// an uninstall does not wait for a node that will never accelerate.
	inactive error
	blocked  error       // why the installer is not ready (uninstalling), or nil
	state    func() bool // whether the node state is complete; nil until open
	entry    func() error
}

func (r *readiness) set(f func(*readiness)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

// check returns why the node is not ready, nil when it is.
func (r *readiness) check() error {
	r.mu.Lock()
	inactive, blocked, state, entry := r.inactive, r.blocked, r.state, r.entry
	r.mu.Unlock()
	switch {
	case inactive != nil && blocked == nil:
		return nil
	case blocked != nil:
		return blocked
	case state == nil:
		return errors.New("node state is not open")
	case !state():
		return errors.New("node state is gone (removed under the installer?)")
	case entry == nil:
		return errors.New("the plugin is not installed yet")
	}
	return entry()
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := r.check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	r.mu.Lock()
	inactive := r.inactive
	r.mu.Unlock()
	if inactive != nil {
		fmt.Fprintf(w, "ok, inactive: %v\n", inactive)
		return
	}
	fmt.Fprintln(w, "ok")
}

// server serves /readyz, /livez and /metrics until stopped.
type server struct {
	srv  *http.Server
	done chan error
}

// startServer serves on ln, or on a listener of addr when ln is nil.
func startServer(addr string, ln net.Listener, ready *readiness, m *metrics.Registry, log *slog.Logger) (*server, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("listen for /readyz and /metrics: %w", err)
		}
	}
	m.SetReadiness(ready.check)
	mux := http.NewServeMux()
	mux.Handle(PathReady, ready)
	mux.HandleFunc(PathLive, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle(PathMetrics, promhttp.HandlerFor(m.Gatherer(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	s := &server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	log.Info("serving", "addr", ln.Addr().String(), "paths", []string{PathReady, PathLive, PathMetrics})
	return s, nil
}

// stop shuts the server down, waiting a little for requests in flight.
func (s *server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, <-s.done)
}
