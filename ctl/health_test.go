package ctl

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// health reads the installer's /readyz: ready, ready but inactive, not
// ready with the installer's reason; exit 0 only when ready.
func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		code   int
		out    string
		report healthReport
	}{
		{"ready", 200, "ok\n", ExitOK, "ready\n", healthReport{Ready: true, State: HealthReady, Status: 200}},
		{"inactive", 200, "ok, inactive: the node cannot run mesh-accel, it lacks: BTF\n", ExitOK,
			"ready, INACTIVE: the node cannot run mesh-accel, it lacks: BTF\n",
			healthReport{Ready: true, State: HealthInactive, Reason: "the node cannot run mesh-accel, it lacks: BTF", Status: 200}},
		{"not ready", 503, "not ready: no CNI config in /host/etc/cni/net.d\n", ExitError,
			"NOT READY: no CNI config in /host/etc/cni/net.d\n",
			healthReport{State: HealthNotReady, Reason: "no CNI config in /host/etc/cni/net.d", Status: 503}},
		{"unexpected", 500, "boom", ExitError, "NOT READY: unexpected answer of ",
			healthReport{State: HealthNotReady, Status: 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/readyz" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			r := runCtl(t, nil, "", "health", "--listen", addr)
			if r.code != tc.code || !strings.HasPrefix(r.stdout, tc.out) || r.stderr != "" {
				t.Errorf("health: exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.out)
			}
			r = runCtl(t, nil, "", "health", "--listen", addr, "-o", "json")
			var got healthReport
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != tc.code {
				t.Fatalf("health -o json: exit %d, %v: %s", r.code, err, r.stdout)
			}
			tc.report.URL = srv.URL + "/readyz"
			if tc.name == "unexpected" {
				tc.report.Reason = got.Reason
			}
			if got != tc.report {
				t.Errorf("health -o json: %+v, want %+v", got, tc.report)
			}
		})
	}
}

// An installer that does not answer: not ready, exit 1, and the address
// asked named.
func TestHealthUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runCtl(t, nil, "", "health", "--listen", addr, "-o", "json")
	var got healthReport
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitError || got.Ready ||
		got.State != HealthUnreachable || !strings.Contains(got.Reason, "the installer does not answer at http://"+addr+"/readyz") {
		t.Errorf("exit %d, %v, %+v", r.code, err, got)
	}
}

// The address is the installer's --listen: its variable, as the DaemonSet
// sets it in the container ("[$(HOST_IP)]:9753"); an address of every
// interface is asked on loopback.
func TestReadyzURL(t *testing.T) {
	for listen, want := range map[string]string{
		":9753":             "http://127.0.0.1:9753/readyz",
		"0.0.0.0:9753":      "http://127.0.0.1:9753/readyz",
		"[::]:9753":         "http://[::1]:9753/readyz",
		"[10.0.0.5]:9753":   "http://10.0.0.5:9753/readyz",
		"10.0.0.5:9753":     "http://10.0.0.5:9753/readyz",
		"[fd00::1]:9753":    "http://[fd00::1]:9753/readyz",
		"node-a.local:9753": "http://node-a.local:9753/readyz",
	} {
		if got, err := readyzURL(listen); err != nil || got != want {
			t.Errorf("readyzURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	for _, bad := range []string{"9753", "fd00::1:9753", "host:"} {
		if got, err := readyzURL(bad); err == nil {
			t.Errorf("readyzURL(%q) = %q, want an error", bad, got)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	defer srv.Close()
	var out, errb strings.Builder
	env := map[string]string{"MESH_ACCEL_LISTEN": "[" + strings.Replace(strings.TrimPrefix(srv.URL, "http://"), ":", "]:", 1)}
	code := Main(t.Context(), []string{"health"}, Deps{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	if code != ExitOK || out.String() != "ready\n" {
		t.Errorf("health with %v: exit %d, %q %q", env, code, out.String(), errb.String())
	}
}
