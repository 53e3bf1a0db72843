package sim

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// TestEnvoyConfigValidates runs Envoy's own validation (--mode validate)
// on a sidecar's bootstrap and listeners, for the Envoy the tests use
// (MESH_ACCEL_ENVOY or PATH; CI also runs it with the oldest Envoy
// supported), so that a field an Envoy release does not know fails here
// and not as a sidecar that never gets ready.
func TestEnvoyConfigValidates(t *testing.T) {
	bin, err := EnvoyPath()
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	dir := t.TempDir()
	var ca meshCA
	certs, err := ca.issue(dir, "p", 2)
	if err != nil {
		t.Fatal(err)
	}
	in := envoyInput{
		Pod: "p", IPv4: netip.MustParseAddr("10.1.2.3"), IPv6: netip.MustParseAddr("fd00::3"),
		Services: DefaultServices, Certs: certs, LDS: filepath.Join(dir, "lds.json"),
	}
	mesh := []meshEndpoint{
		{Pod: "p", IPv4: in.IPv4, IPv6: in.IPv6},
		{Pod: "q", IPv4: netip.MustParseAddr("10.1.2.4")}, // IPv4 only
		{Pod: "r", IPv6: netip.MustParseAddr("fd00::5")},  // IPv6 only
	}
	// Validation does not read xDS files: the listeners go in as static
	// resources of the bootstrap that is validated.
	boot := envoyBootstrap(in)
	delete(boot, "dynamic_resources")
	listeners := envoyListeners(in, mesh, 1)["resources"].([]any)
	for _, l := range listeners {
		delete(l.(obj), "@type")
	}
	boot["static_resources"].(obj)["listeners"] = listeners
	b, err := json.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "envoy.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--mode", "validate", "-c", filepath.Join(dir, "envoy.json"),
		"--log-level", "warning", "--disable-hot-restart").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}
}
