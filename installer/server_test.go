package installer

import (
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/mesh-accel/mesh-accel/installer/metrics"
)

// /livez answers 200 while the process serves, even when /readyz says the
// node is not ready: a liveness probe must not restart an installer that
// waits for the primary CNI.
func TestLivez(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := startServer("", ln, &readiness{}, metrics.New(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if live, ready := get(PathLive), get(PathReady); live != http.StatusOK || ready != http.StatusServiceUnavailable {
		t.Errorf("%s %d, %s %d; want 200 and 503", PathLive, live, PathReady, ready)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + PathLive); err == nil {
		t.Errorf("%s answers after the server stopped", PathLive)
	}
}
