//go:build meshbench

package bench

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

func TestMain(m *testing.M) {
	sim.RoleMain()
	os.Exit(m.Run())
}

func TestParseSidecar(t *testing.T) {
	for in, want := range map[string]SidecarKind{"": SidecarEnvoy, "envoy": SidecarEnvoy, " go ": SidecarGo} {
		if got, err := ParseSidecar(in); err != nil || got != want {
			t.Errorf("ParseSidecar(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseSidecar("istio"); err == nil {
		t.Error("ParseSidecar(istio): no error")
	}
	if o := SidecarGo.podOptions("x", true); !o.GoSidecar || o.Sidecar {
		t.Errorf("go sidecar options: %+v", o)
	}
	if o := SidecarEnvoy.podOptions("x", true); o.GoSidecar || !o.Sidecar {
		t.Errorf("envoy sidecar options: %+v", o)
	}
	if o := SidecarEnvoy.podOptions("x", false); o.GoSidecar || o.Sidecar {
		t.Errorf("no sidecar options: %+v", o)
	}
}

// Through Envoy, a measurement to a mesh service passes the mutual TLS
// check, and one whose connections reach the server's sidecar in plain
// text (a port the registry does not list: Istio's passthrough) fails it
// loudly; a round without a handshake fails too.
func TestMeasureChecksMutualTLS(t *testing.T) {
	n := sim.NewTestNode(t, sim.NodeOptions{Prefix: "mt"})
	a := n.AddTestPod(t, sim.PodOptions{Name: "a", Sidecar: true, NoApp: true})
	meshed := &pair{mode: Sidecar, envoy: true, a: a, b: n.AddTestPod(t, sim.PodOptions{Name: "b", Sidecar: true})}
	plain := &pair{mode: Sidecar, envoy: true, a: a, b: n.AddTestPod(t, sim.PodOptions{Name: "c", Sidecar: true, AppPort: 9999})}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Duration: 300 * time.Millisecond}
	i := slices.IndexFunc(measurements, func(m measurement) bool { return m.name == "Go rr 64 B" }) // to the app
	if i < 0 {
		t.Fatal("no measurement Go rr 64 B")
	}
	rr := measurements[i]

	r := Result{}
	if err := meshed.measure(ctx, rr, cfg, r); err != nil {
		t.Fatalf("to the mesh service: %v", err)
	}
	if r[keyHandshakes] == 0 || r[keyHandshakes] != r[keyInboundConns] {
		t.Errorf("to the mesh service: %v handshakes, %v inbound connections", r[keyHandshakes], r[keyInboundConns])
	}
	if err := meshed.checkMTLS(r); err != nil {
		t.Errorf("checkMTLS: %v", err)
	}

	r = Result{}
	err := plain.measure(ctx, rr, cfg, r)
	if err == nil || !strings.Contains(err.Error(), "NO MUTUAL TLS") {
		t.Errorf("to a port outside the registry: error %v, want NO MUTUAL TLS", err)
	} else {
		t.Logf("to a port outside the registry: %v", err)
	}
	if err := plain.checkMTLS(r); err == nil || !strings.Contains(err.Error(), "NO MUTUAL TLS") {
		t.Errorf("checkMTLS of a round in plain text: %v, want NO MUTUAL TLS", err)
	}
}

// fortio's server and load run in the pods through both Envoy sidecars,
// over mutual TLS, and the measurement records its percentiles and the
// CPU per request.
func TestFortioThroughEnvoy(t *testing.T) {
	n := sim.NewTestNode(t, sim.NodeOptions{Prefix: "ft"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := BuildFortio(ctx, n.TempDir)
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{mode: Sidecar, envoy: true, fortio: bin,
		a: n.AddTestPod(t, sim.PodOptions{Name: "a", Sidecar: true, NoApp: true}),
		b: n.AddTestPod(t, sim.PodOptions{Name: "b", Sidecar: true, NoApp: true})}
	if err := p.startFortio(ctx, n.TempDir); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(measurements, func(m measurement) bool { return m.name == "fortio 1000/s" })
	if i < 0 {
		t.Fatal("no measurement fortio 1000/s")
	}
	r := Result{}
	if err := p.measure(ctx, measurements[i], Config{Duration: 500 * time.Millisecond}, r); err != nil {
		t.Fatal(err)
	}
	pods, node := cpuKeys("fortio", "req")
	for _, k := range []string{"fortio_qps", "fortio_p50_ms", "fortio_p999_ms", pods, node, keyHandshakes} {
		if r[k] <= 0 {
			t.Errorf("%s = %v, want > 0 (all: %v)", k, r[k], r)
		}
	}
	t.Logf("fortio 1000/s for 0.5 s through Envoy: %v", r)
}
