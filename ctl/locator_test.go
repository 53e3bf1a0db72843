package ctl

import (
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apiServer is a TLS API server that knows the pods shop/web (on node-b)
// and shop/broken (forbidden), and the service account folder of a pod
// that talks to it.
func apiServer(t *testing.T) (getenv func(string) string, saDir string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/namespaces/shop/pods/web":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"Pod","metadata":{"name":"web"},"spec":{"nodeName":"node-b","containers":[]}}`))
		case "/api/v1/namespaces/shop/pods/broken":
			http.Error(w, "forbidden", http.StatusForbidden)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	saDir = t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(saDir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saDir, "token"), []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	env := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	return func(k string) string { return env[k] }, saDir
}

// The in-cluster locator GETs the pod with the service account's token,
// trusting the cluster's CA, and reads its node; 404 is ErrNoSuchPod.
func TestInClusterLocator(t *testing.T) {
	getenv, saDir := apiServer(t)
	loc, err := InClusterLocator(getenv, saDir)
	if err != nil {
		t.Fatal(err)
	}
	if node, err := loc.PodNode(t.Context(), "shop", "web"); err != nil || node != "node-b" {
		t.Errorf("PodNode(shop/web) = %q, %v; want node-b", node, err)
	}
	if _, err := loc.PodNode(t.Context(), "shop", "gone"); !errors.Is(err, ErrNoSuchPod) {
		t.Errorf("PodNode(shop/gone) error %v, want ErrNoSuchPod", err)
	}
	if _, err := loc.PodNode(t.Context(), "shop", "broken"); err == nil || !strings.Contains(err.Error(), "403 Forbidden") {
		t.Errorf("PodNode(shop/broken) error %v, want the status", err)
	}
	// The token is read at each request: the kubelet rotates it.
	if err := os.WriteFile(filepath.Join(saDir, "token"), []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loc.PodNode(t.Context(), "shop", "web"); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("PodNode with another token: %v", err)
	}
}

// The whole command, in a pod: a pod of another node is named with it.
func TestOtherNodeThroughTheAPI(t *testing.T) {
	getenv, saDir := apiServer(t)
	loc, err := InClusterLocator(getenv, saDir)
	if err != nil {
		t.Fatal(err)
	}
	r := runWith(t, ctlRun{eng: newFakeEngine(), stateDir: defaultRecords(t), locator: loc}, "dump", "-n", "shop", "web")
	if r.code != ExitError || !strings.Contains(r.stderr, "pod shop/web runs on node node-b, not on this node (node-a)") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// Outside a pod, or without its CA, there is no API access.
func TestInClusterLocatorOutsideAPod(t *testing.T) {
	getenv, saDir := apiServer(t)
	for _, tc := range []struct {
		getenv func(string) string
		dir    string
		want   string
	}{
		{func(string) string { return "" }, saDir, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod)"},
		{getenv, t.TempDir(), "ca.crt: no such file"},
	} {
		if _, err := InClusterLocator(tc.getenv, tc.dir); err == nil || !strings.Contains(err.Error(), "no API access") ||
			!strings.Contains(err.Error(), tc.want) {
			t.Errorf("InClusterLocator() error %v, want %q", err, tc.want)
		}
	}
}
