package plugin

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// writeKubeconfig writes a kubeconfig for the TLS server at url with the
// certificate authority caPEM, and returns its path. (client-go sends
// credentials over TLS only.)
func writeKubeconfig(tb testing.TB, url string, caPEM []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: cni
  user:
    token: secret-token
contexts:
- name: test
  context: {cluster: test, user: cni}
current-context: test
`, url, base64.StdEncoding.EncodeToString(caPEM))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// serverCA is the PEM certificate of a TLS test server.
func serverCA(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod","uid":"u-123",
 "annotations":{"accel.mesh/enabled":"true"}},"spec":{"containers":[{"name":"app","image":"x"}]}}`

func TestAPIPods(t *testing.T) {
	var calls, failFirst atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case r.Header.Get("Authorization") != "Bearer secret-token":
			w.WriteHeader(http.StatusUnauthorized)
		case n <= failFirst.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/api/v1/namespaces/prod/pods/web":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, podJSON)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	defer srv.Close()
	a := &apiPods{kubeconfig: writeKubeconfig(t, srv.URL, serverCA(srv)), timeout: 5 * time.Second, attempts: 3, backoff: 10 * time.Millisecond}

	m, err := a.pod(context.Background(), "prod", "web")
	if err != nil || m.UID != "u-123" || m.Annotations[AnnotationEnabled] != "true" {
		t.Fatalf("pod = %+v, %v", m, err)
	}

	// Transient errors are retried, within the bound.
	calls.Store(0)
	failFirst.Store(2)
	if m, err = a.pod(context.Background(), "prod", "web"); err != nil || calls.Load() != 3 {
		t.Errorf("after two failures: %v, %v (%d calls)", m, err, calls.Load())
	}
	calls.Store(0)
	failFirst.Store(10)
	if _, err = a.pod(context.Background(), "prod", "web"); reasonOf(err) != ReasonAPI || calls.Load() != 3 || !strings.Contains(err.Error(), "3 tries") {
		t.Errorf("always failing: %v (%d calls)", err, calls.Load())
	}

	// A missing pod is not retried.
	calls.Store(0)
	failFirst.Store(0)
	if _, err = a.pod(context.Background(), "prod", "gone"); reasonOf(err) != ReasonAPI || calls.Load() != 1 || !strings.Contains(err.Error(), "prod/gone") {
		t.Errorf("missing pod: %v (%d calls)", err, calls.Load())
	}
}

func TestAPIPodsErrors(t *testing.T) {
	// A server that never answers: the lookup ends at the timeout (the bound
	// only tells a timeout from a hang; it is no speed limit).
	block := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	a := &apiPods{kubeconfig: writeKubeconfig(t, srv.URL, serverCA(srv)), timeout: 300 * time.Millisecond, attempts: 3, backoff: 10 * time.Millisecond}
	start := time.Now()
	if _, err := a.pod(context.Background(), "prod", "web"); reasonOf(err) != ReasonAPI || time.Since(start) > 30*time.Second {
		t.Errorf("hanging server: %v after %v", err, time.Since(start))
	}

	for _, tc := range []struct {
		kubeconfig, want string
	}{
		{"", "declare the capability"},
		{"/nonexistent/kubeconfig", "load kubeconfig /nonexistent/kubeconfig"},
		{writeKubeconfig(t, "https://127.0.0.1:1", serverCA(srv)), "connection refused"},
	} {
		a := &apiPods{kubeconfig: tc.kubeconfig, timeout: time.Second, attempts: 2, backoff: time.Millisecond}
		if _, err := a.pod(context.Background(), "prod", "web"); reasonOf(err) != ReasonAPI || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kubeconfig %q: %v, want %q", tc.kubeconfig, err, tc.want)
		}
	}
}
