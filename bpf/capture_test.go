package bpf

import (
	"testing"
	"unsafe"

	"github.com/mesh-accel/mesh-accel/rules"
)

// The hand decoder's offsets are those of the generated struct.
func TestCaptureEventOffsets(t *testing.T) {
	var ev meshCaptureEvent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"from", unsafe.Offsetof(ev.From), evFrom},
		{"to", unsafe.Offsetof(ev.To), evTo},
		{"from_pod", unsafe.Offsetof(ev.FromPod), evFromPod},
		{"to_pod", unsafe.Offsetof(ev.ToPod), evToPod},
		{"len", unsafe.Offsetof(ev.Len), evLen},
		{"caplen", unsafe.Offsetof(ev.Caplen), evCaplen},
		{"data", unsafe.Offsetof(ev.Data), evData},
		{"sock_key", unsafe.Sizeof(ev.From), sockKeySize},
	} {
		if c.got != c.want {
			t.Errorf("offset of %s = %d, decoder uses %d", c.name, c.got, c.want)
		}
	}
}

// Every counter of enum counter has a name and a description.
func TestCounterDefsComplete(t *testing.T) {
	if len(counterDefs) != int(meshCounterC_MAX) {
		t.Fatalf("%d counters named, enum counter has %d", len(counterDefs), meshCounterC_MAX)
	}
	for i, d := range counterDefs {
		if d.name == "" || d.help == "" {
			t.Errorf("counter %d: name %q, help %q", i, d.name, d.help)
		}
	}
}

// The Go-side limits are the C ones.
func TestLimitsMatchC(t *testing.T) {
	var pc meshPodConfig
	if rules.MaxRules != int(meshLimitMAX_RULES) || len(pc.Rules) != rules.MaxRules {
		t.Errorf("rules.MaxRules = %d, MAX_RULES = %d, pod_config holds %d", rules.MaxRules, meshLimitMAX_RULES, len(pc.Rules))
	}
	if DefaultPodQuota > DefaultMapSize {
		t.Errorf("DefaultPodQuota %d exceeds the map size %d", DefaultPodQuota, DefaultMapSize)
	}
}
