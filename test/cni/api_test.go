package cni

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// apiServer answers GET /api/v1/namespaces/NS/pods/NAME with the pods it
// was given, as the Kubernetes API server does.
type apiServer struct {
	*httptest.Server
	mu   sync.Mutex
	pods map[string]string // "ns/name" -> Pod JSON
	gets map[string]int
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	s := &apiServer{pods: map[string]string{}, gets: map[string]int{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ns, name string
	if _, err := fmt.Sscanf(strings.ReplaceAll(r.URL.Path, "/", " "), " api v1 namespaces %s pods %s", &ns, &name); err != nil ||
		r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer cni-token" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.gets[ns+"/"+name]++
	w.Header().Set("Content-Type", "application/json")
	pod, ok := s.pods[ns+"/"+name]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"pods %q not found"}`, name)
		return
	}
	fmt.Fprint(w, pod)
}

// addPod serves a pod object for p with the annotations.
func (s *apiServer) addPod(ns, name, uid string, ann map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a []string
	for k, v := range ann {
		a = append(a, fmt.Sprintf("%q:%q", k, v))
	}
	s.pods[ns+"/"+name] = fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q,"uid":%q,`+
		`"annotations":{%s}},"spec":{"containers":[{"name":"app","image":"app"}]},"status":{"phase":"Pending"}}`,
		name, ns, uid, strings.Join(a, ","))
}

// kubeconfig writes a kubeconfig (0600) for server url with the server's
// certificate authority.
func (s *apiServer) kubeconfig(t *testing.T, url string) string {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n"+
		"    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    token: cni-token\n"+
		"contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
		url, base64.StdEncoding.EncodeToString(ca))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Without the annotations capability the plugin reads the pod from the
// API server; an unreachable API server or an unknown pod does not stop the
// pod (fail-open, counted), unless failOnError says so.
func TestChainAPIFallback(t *testing.T) {
	api := newAPIServer(t)
	c := newChain(t, api.kubeconfig(t, api.URL), false)
	a := c.mustAddPod(podSpec{name: "a", noApp: true, sidecar: true})
	b, err := c.addPodServed(api, podSpec{name: "b", ann: acceleratedTrusted, sidecar: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.addPodServed(api, podSpec{name: "n", sidecar: true})
	if err != nil {
		t.Fatal(err)
	}
	c.wantAttached(b)
	if c.attached(a) != nil || c.attached(n) != nil {
		t.Error("a pod without the annotation (or unknown to the API server) was attached")
	}
	api.mu.Lock()
	gets := fmt.Sprint(api.gets)
	api.mu.Unlock()
	if gets != "map[default/a:1 default/b:1 default/n:1]" {
		t.Errorf("API server GETs: %s, want one per pod", gets)
	}
	f, err := plugin.ReadFailures(c.params.StateDir)
	if err != nil || f[plugin.ReasonAPI].Count != 1 || !strings.Contains(f[plugin.ReasonAPI].LastError, "get pod default/a") {
		t.Errorf("failures %+v, %v: want pod a's lookup counted", f, err)
	}
	// Request/response: b's inbound sidecar and its app (declared a recvmsg
	// reader) are paired.
	_, got := c.run(a, sim.ClientSpec{Mode: sim.ModeRR, Target: b.AppTarget(false), Duration: 300 * time.Millisecond})
	if got["connections_accepted"] != 1 || got["bytes_redirected"] == 0 {
		t.Errorf("b (annotated in the API server) not accelerated: %v", got)
	}
	if err := c.del(b); err != nil {
		t.Fatal(err)
	}
	c.wantGone(b)
}

// With failOnError an unreachable API server fails the ADD with a CNI error
// naming the reason.
func TestChainAPIUnreachable(t *testing.T) {
	api := newAPIServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + l.Addr().String()
	l.Close() // nothing listens there
	c := newChain(t, api.kubeconfig(t, url), true)
	_, err = c.addPod(podSpec{name: "a", noApp: true})
	if err == nil || !strings.Contains(err.Error(), "mesh-accel (api)") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("ADD with the API server unreachable and failOnError = %v", err)
	}
}

// addPodServed adds a pod that the API server knows, with annotations.
func (c *chain) addPodServed(api *apiServer, s podSpec) (*cniPod, error) {
	s.uid = "uid-" + s.name + "-" + randHex(4)
	api.addPod("default", s.name, s.uid, s.ann)
	return c.addPod(s)
}

func bulkTo(p *cniPod) sim.ClientSpec {
	return sim.ClientSpec{Mode: sim.ModeBulk, Target: p.AppTarget(false), Bytes: 1 << 20}
}
