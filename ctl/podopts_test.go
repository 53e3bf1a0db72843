package ctl

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// changeField sets the field of cfg named name to another value; it fails
// the test for a type it does not know, so that a new field is not passed
// over.
func changeField(t *testing.T, cfg *bpf.PodConfig, name string) {
	t.Helper()
	v := reflect.ValueOf(cfg).Elem().FieldByName(name)
	switch {
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.Uint32:
		v.SetUint(v.Uint() + 1001)
	case v.Type() == reflect.TypeFor[*rules.Set]():
		v.Set(reflect.ValueOf(&rules.Set{Rules: []rules.Rule{{PortLo: 1001, PortHi: 1001, HasPort: true, Target: rules.Return}}}))
	default:
		t.Fatalf("bpf.PodConfig.%s: no test value for type %s: teach changeField it", name, v.Type())
	}
}

// Every option that podconfig.Options says mesh-accelctl shows is shown:
// changing the field alone changes its key in the pod report of status and
// rules show (-o json), and the rows of rules show -o wide.
func TestOutputShowsOptions(t *testing.T) {
	typ := reflect.TypeFor[bpf.PodConfig]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		opt, ok := podconfig.Lookup(name)
		if !ok {
			t.Errorf("bpf.PodConfig.%s has no entry in podconfig.Options", name)
			continue
		}
		if opt.Report == "" {
			continue
		}
		base := newFakeEngine()
		changed := newFakeEngine()
		changeField(t, &changed.pods[0].Config, name)
		for _, args := range [][]string{{"status", "-o", "json", "--window", "0"}, {"rules", "show", "-o", "json"}} {
			before, after := reportKey(t, base, opt.Report, args), reportKey(t, changed, opt.Report, args)
			if before == after {
				t.Errorf("%v: key %q is %s whatever bpf.PodConfig.%s", args, opt.Report, before, name)
			}
		}
		wide := []string{"rules", "show", "-o", "wide"}
		if mustRun(t, base, defaultRecords(t), wide...) == mustRun(t, changed, defaultRecords(t), wide...) {
			t.Errorf("%v does not show bpf.PodConfig.%s", wide, name)
		}
	}
}

// reportKey runs mesh-accelctl args on eng and returns the key of the
// first pod's report, as JSON; it fails the test when the key is missing.
func reportKey(t *testing.T, eng *fakeEngine, key string, args []string) string {
	t.Helper()
	out := mustRun(t, eng, defaultRecords(t), args...)
	var pods []map[string]json.RawMessage
	if args[0] == "status" {
		var st struct {
			Pods []map[string]json.RawMessage `json:"pods"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		pods = st.Pods
	} else if err := json.Unmarshal([]byte(out), &pods); err != nil {
		t.Fatal(err)
	}
	if len(pods) == 0 {
		t.Fatalf("%v: no pods in %s", args, out)
	}
	v, ok := pods[0][key]
	if !ok {
		t.Fatalf("%v: no key %q in %s", args, key, out)
	}
	return string(v)
}
