package installer

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/ctl"
)

// mesh-accelctl health, run beside the installer as in its pod, says what
// the installer's /readyz says (the same readiness, not a second
// computation of it): not ready with its reason, ready, or ready but
// inactive with the kernel's reason; its exit status is 0 exactly when
// mesh_accel_ready is 1.
func TestHealthCommand(t *testing.T) {
	health := func(t *testing.T, r *run) (int, string) {
		t.Helper()
		var out, errb bytes.Buffer
		env := map[string]string{EnvName(FlagListen): strings.TrimPrefix(r.url, "http://")}
		code := ctl.Main(t.Context(), []string{"health"}, ctl.Deps{Stdout: &out, Stderr: &errb,
			Getenv: func(k string) string { return env[k] }})
		if errb.Len() > 0 {
			t.Errorf("health: stderr %q", errb.String())
		}
		return code, out.String()
	}
	same := func(t *testing.T, r *run, wantCode, wantReady int, wantOut func(body string) string) {
		t.Helper()
		status, body := r.get(t, PathReady)
		code, out := health(t, r)
		if status != wantCode || code != map[int]int{http.StatusOK: ctl.ExitOK}[status]+
			map[int]int{http.StatusServiceUnavailable: ctl.ExitError}[status] || out != wantOut(body) {
			t.Errorf("/readyz %d %q; health exit %d %q, want %q", status, body, code, out, wantOut(body))
		}
		if got := metricValue(t, r, MetricReady, ""); got != float64(wantReady) {
			t.Errorf("%s = %v with health exit %d", MetricReady, got, code)
		}
	}

	t.Run("waiting for the primary CNI config", func(t *testing.T) {
		h := newHost(t)
		r := h.start(t, Deps{})
		waitFor(t, "/readyz naming the missing primary config", func() bool {
			_, body := r.get(t, PathReady)
			return strings.Contains(body, "no CNI config")
		})
		same(t, r, http.StatusServiceUnavailable, 0, func(body string) string {
			return "NOT READY: " + strings.TrimPrefix(body, "not ready: ")
		})
		writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
		r.waitReady(t)
		same(t, r, http.StatusOK, 1, func(string) string { return "ready\n" })
	})
	t.Run("inactive", func(t *testing.T) {
		h := newHost(t)
		eng := newFakeEngine(t)
		eng.kernelErr = errors.New("no BTF")
		r := h.start(t, Deps{Engine: eng})
		r.waitReady(t)
		same(t, r, http.StatusOK, 1, func(body string) string {
			return "ready, INACTIVE: " + strings.TrimPrefix(body, "ok, inactive: ")
		})
		if _, out := health(t, r); !strings.Contains(out, "no BTF") {
			t.Errorf("health does not name the kernel's reason: %q", out)
		}
	})
}

// mesh-accelctl health's default address is the installer's.
func TestHealthDefaults(t *testing.T) {
	if ctl.DefaultListen != DefaultListen || ctl.FlagListen != FlagListen {
		t.Errorf("mesh-accelctl health asks --%s %s, the installer listens on --%s %s", ctl.FlagListen,
			ctl.DefaultListen, FlagListen, DefaultListen)
	}
}
