package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// liveDirections are two connections: pod a's app to its sidecar (both
// in pod a), and pod a's sidecar to pod b's app.
func liveDirections() []bpf.Direction {
	return []bpf.Direction{
		{From: addrA, To: sideA, FromPod: 100, ToPod: 100, Connecting: true, Redirect: true, Bytes: 10, Messages: 1},
		{From: sideA, To: addrA, FromPod: 100, ToPod: 100},
		{From: inbound, To: appB, FromPod: 100, ToPod: 200, Connecting: true, Redirect: true},
		{From: appB, To: inbound, FromPod: 200, ToPod: 100, Redirect: true},
	}
}

func TestSwitch(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		calls     []string
		drained   int
		remaining int
		text      string
	}{
		{[]string{"disable"}, []string{"SetEnabled(false)"}, 0, 4,
			"acceleration disabled on this node: new connections take the normal stack\n4 pair directions stay accelerated"},
		{[]string{"disable", "--drain"}, []string{"SetEnabled(false)", "Drain(0)", "Drain(0)"}, 4, 0,
			"moved 4 accelerated pair directions back to the normal stack"},
		{[]string{"enable"}, []string{"SetEnabled(true)"}, 0, 4, "acceleration enabled on this node"},
		{[]string{"disable", "--pod", "shop/pay"}, []string{"SetPodEnabled(uid-b, false)"}, 0, 2,
			"acceleration disabled for pod shop/pay (uid uid-b)"},
		{[]string{"disable", "--pod", "uid-b", "--drain"},
			[]string{"SetPodEnabled(uid-b, false)", "Drain(200)", "Drain(200)"}, 2, 0, "moved 2 accelerated"},
		{[]string{"enable", "--pod", "shop/cart"}, []string{"SetPodEnabled(uid-a, true)"}, 0, 4,
			"acceleration enabled for pod shop/cart"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for _, output := range []string{OutputTable, OutputJSON} {
				eng := newFakeEngine()
				eng.dirs = liveDirections()
				out := mustRun(t, eng, defaultRecords(t), append(tc.args, "-o", output)...)
				if !slices.Equal(eng.calls, tc.calls) {
					t.Errorf("calls %q, want %q", eng.calls, tc.calls)
				}
				if output == OutputTable {
					if !strings.Contains(out, tc.text) {
						t.Errorf("output %q does not contain %q", out, tc.text)
					}
					continue
				}
				var res switchResult
				if err := json.Unmarshal([]byte(out), &res); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				if res.Drained != tc.drained || res.Remaining != tc.remaining {
					t.Errorf("drained %d remaining %d, want %d and %d", res.Drained, res.Remaining, tc.drained, tc.remaining)
				}
			}
		})
	}
}

// disable by hand takes the node's switch over from the ConfigMap: the
// installer's record that the ConfigMap's enabled: "false" turned it off
// goes, so that "true" again leaves the switch off until enable. A pod's
// switch and enable leave the record alone.
func TestDisableTakesSwitchFromConfigMap(t *testing.T) {
	for _, tc := range []struct {
		args []string
		kept bool
	}{
		{[]string{"disable"}, false},
		{[]string{"disable", "--drain"}, false},
		{[]string{"disable", "--pod", "shop/pay"}, true},
		{[]string{"enable"}, true},
	} {
		stateDir := defaultRecords(t)
		marker := nodestate.SwitchOffByConfigMapPath(stateDir)
		if err := os.MkdirAll(filepath.Dir(marker), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		eng := newFakeEngine()
		eng.enabled = false // as the ConfigMap left it
		mustRun(t, eng, stateDir, tc.args...)
		if _, err := os.Stat(marker); (err == nil) != tc.kept {
			t.Errorf("%q: the ConfigMap's record: %v, want kept %v", tc.args, err, tc.kept)
		}
	}
}

// Enabling a pod while the node is off says that nothing happens yet.
func TestEnablePodNodeOff(t *testing.T) {
	eng := newFakeEngine()
	eng.enabled = false
	out := mustRun(t, eng, defaultRecords(t), "enable", "--pod", "shop/pay")
	if !strings.Contains(out, "the global switch is off") {
		t.Errorf("no note about the global switch: %q", out)
	}
}

// enable has no --drain: there is nothing to move back.
func TestEnableHasNoDrain(t *testing.T) {
	if r := runCtl(t, newFakeEngine(), "", "enable", "--drain"); r.code != ExitUsage {
		t.Errorf("enable --drain: exit %d, want %d", r.code, ExitUsage)
	}
}
