//go:build meshbench

package demo

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func TestMain(m *testing.M) {
	sim.RoleMain()
	os.Exit(m.Run())
}

// The demo runs end to end, shows both columns and the accelerated hops,
// and leaves nothing behind (the simulator and the bpffs root are checked
// by their own cleanup errors).
func TestDemo(t *testing.T) {
	if err := Preflight(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	var out bytes.Buffer
	if err := Run(context.Background(), Config{Duration: 300 * time.Millisecond, BulkBytes: 8 << 20, Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"no sidecars", "sidecar-hops", "app trusted", "latency the sidecars add, P90 (ms)",
		"CPU per request, apps and sidecars", "what each opt-in gains here", "every byte verified", "127.0.0.1:15001 (uid 1337)",
		"redirected", "chain --port 15006 -j RETURN", ":15006 (uid 1337)",
		"sidecar (uid 1337) configured as istiod configures one: mutual TLS", "mutual TLS handshakes completed by the server sidecars"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// Each opt-in gets a verdict on CPU and on latency, in one of three
	// words, never a bare number.
	verdicts := regexp.MustCompile(`(?m)^    (CPU per request|latency the sidecars add at P90): `+
		`(\d+% (lower|higher) \(in \d of 5 rounds\)|no measurable change on this machine)`).FindAllString(out.String(), -1)
	if len(verdicts) != 4 {
		t.Errorf("want 4 verdicts (CPU and latency for each opt-in), got %q:\n%s", verdicts, out.String())
	}
	t.Logf("demo output:\n%s", out.String())
	if ents, _ := os.ReadDir("/sys/fs/bpf"); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "mesh-accel-demo-") {
				t.Errorf("demo state left: /sys/fs/bpf/%s", e.Name())
			}
		}
	}
}

func TestKernelVersionParse(t *testing.T) {
	for in, want := range map[string]string{"18": "18", "15-rc1": "15", "x": "", "": ""} {
		if got := leadingDigits(in); got != want {
			t.Errorf("leadingDigits(%q) = %q, want %q", in, got, want)
		}
	}
}
