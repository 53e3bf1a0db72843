package plugin

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// otherValue sets v, a field of bpf.PodConfig, to a value other than the
// one it holds (n makes values of different fields differ); it fails the
// test for a kind it does not know, so that a new field is not passed over.
func otherValue(t *testing.T, name string, v reflect.Value, n int) {
	t.Helper()
	switch {
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.Uint32:
		v.SetUint(v.Uint() + 1000 + uint64(n))
	case v.Type() == reflect.TypeFor[*rules.Set]():
		s := &rules.Set{Rules: []rules.Rule{{PortLo: uint16(1000 + n), PortHi: uint16(1000 + n), HasPort: true, Target: rules.Accept}}}
		if old, _ := v.Interface().(*rules.Set); old != nil {
			s.Rules = append(append([]rules.Rule{}, old.Rules...), s.Rules...)
		}
		v.Set(reflect.ValueOf(s))
	default:
		t.Fatalf("bpf.PodConfig.%s: no test value for type %s: teach otherValue it", name, v.Type())
	}
}

// sameField compares a field of two PodConfigs as the kernel holds it.
func sameField(a, b reflect.Value) bool {
	if s, ok := a.Interface().(*rules.Set); ok {
		return s.Equal(b.Interface().(*rules.Set))
	}
	return a.Equal(b)
}

// CHECK compares every option podconfig.Options marks Checked, and no
// other: each field of bpf.PodConfig, changed alone, makes CHECK fail
// exactly when its entry says so (a field without an entry fails).
func TestCheckComparesOptions(t *testing.T) {
	want := bpf.PodConfig{Rules: rules.Default(), SidecarUID: 1337, Quota: bpf.DefaultPodQuota}
	if err := sameConfig(want, want); err != nil {
		t.Fatalf("the same config: %v", err)
	}
	typ := reflect.TypeFor[bpf.PodConfig]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		opt, ok := podconfig.Lookup(f.Name)
		if !ok {
			t.Errorf("bpf.PodConfig.%s has no entry in podconfig.Options", f.Name)
			continue
		}
		if !f.IsExported() {
			// A benchmark's knob (oneWay): nothing outside package bpf
			// sets it, so CHECK has nothing to compare.
			if opt.Checked {
				t.Errorf("option %s is unexported yet marked Checked", f.Name)
			}
			continue
		}
		got := want
		otherValue(t, f.Name, reflect.ValueOf(&got).Elem().Field(i), i)
		err := sameConfig(got, want)
		if opt.Checked && err == nil {
			t.Errorf("CHECK misses option %s: attached %+v, want %+v", f.Name, got, want)
		}
		if !opt.Checked && err != nil {
			t.Errorf("CHECK compares option %s, which podconfig.Options says it does not: %v", f.Name, err)
		}
	}
}

// The encoder and decoder of the BPF map value carry every field of
// bpf.PodConfig: a pod attached with each field off its default reads
// back the same.
func TestEncodeDecodeEveryOption(t *testing.T) {
	r := newRealEnv(t)
	dir := filepath.Join(r.cgroup, "every-option")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg bpf.PodConfig
	v := reflect.ValueOf(&cfg).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() { // oneWay: the benchmark's, bpf's tests under meshbench
			otherValue(t, v.Type().Field(i).Name, v.Field(i), i)
		}
	}
	if err := r.node.AttachPod("every-option", dir, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.node.DetachPod("every-option") })
	info := r.attached("every-option")
	if info == nil {
		t.Fatal("pod not attached")
	}
	got := reflect.ValueOf(info.Config)
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if !sameField(got.Field(i), v.Field(i)) {
			t.Errorf("bpf.PodConfig.%s: attached %v, read back %v", v.Type().Field(i).Name, v.Field(i), got.Field(i))
		}
	}
}

// everyOption sets, for each option of podconfig.Options that the node or
// the pod's annotations set, a value off its default: the conflist keys
// and the annotations.
var everyOption = map[string]struct {
	conf any               // the value of the option's ConfKey
	ann  map[string]string // its annotations
}{
	"Rules": {"", map[string]string{AnnotationProfile: ProfileSidecarHops, AnnotationRules: "chain -p 8080 -j ACCEPT",
		AnnotationExcludeInboundPorts: "81", AnnotationExcludeOutboundPorts: "82", AnnotationExcludeOutboundIPRanges: "10.0.0.0/8"}},
	"TrustApp":   {nil, map[string]string{AnnotationTrustApp: "true"}},
	"SidecarUID": {4242, nil},
	"Quota":      {777, nil},
}

// An ADD with every option set (through the conflist keys and annotations
// podconfig.Options names) attaches each, and CHECK agrees; CHECK fails
// once any one of them differs.
func TestRealEngineEveryOption(t *testing.T) {
	r := newRealEnv(t)
	rulesFile := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rulesFile, []byte("chain -p 9999 -j RETURN\nchain -u 4242 -j ACCEPT\nchain -p 15006 -j RETURN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := enabledPod("every")
	conf := map[string]any{}
	for _, o := range podconfig.Options() {
		set, ok := everyOption[o.Field]
		if !ok && (o.ConfKey != "" || len(o.Annotations) > 0) {
			t.Fatalf("option %s: no value in everyOption", o.Field)
		}
		if o.ConfKey != "" {
			conf[o.ConfKey] = set.conf
		}
		for _, a := range o.Annotations {
			if set.ann[a] == "" {
				t.Fatalf("option %s: no value for its annotation %s in everyOption", o.Field, a)
			}
			p.ann[a] = set.ann[a]
		}
	}
	conf["rulesFile"] = rulesFile
	r.mkCgroup(p)
	r.mustAdd(p, conf)
	info := r.attached(p.uid)
	want, _ := rules.ParseString("want", "chain --port 9999 -j RETURN\nchain --uid-owner 4242 -j ACCEPT\n"+
		"chain --port 8080 -j ACCEPT\nchain --port 81 -j RETURN\nchain --port 82 -j RETURN\nchain --ip 10.0.0.0/8 -j RETURN")
	if info == nil || !info.Config.TrustApp || info.Config.SidecarUID != 4242 || info.Config.Quota != 777 ||
		!info.Config.Rules.Equal(want) {
		t.Fatalf("attached %+v, want every option set", info)
	}
	if err := r.call("CHECK", doCheck, r.args(p, conf)); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	for _, o := range podconfig.Options() {
		if o.ConfKey != "" && o.ConfKey != "rulesFile" {
			other := map[string]any{}
			for k, v := range conf {
				other[k] = v
			}
			other[o.ConfKey] = 5
			if err := r.call("CHECK", doCheck, r.args(p, other)); errCode(err) != CodeNotAccelerated {
				t.Errorf("CHECK with %s changed = %v, want code %d", o.ConfKey, err, CodeNotAccelerated)
			}
		}
		for _, a := range o.Annotations {
			q := p
			q.ann = map[string]string{AnnotationEnabled: "true"}
			for k, v := range p.ann {
				if k != a {
					q.ann[k] = v
				}
			}
			if err := r.call("CHECK", doCheck, r.args(q, conf)); errCode(err) != CodeNotAccelerated ||
				!strings.Contains(err.Error(), "differ") && !strings.Contains(err.Error(), "want") {
				t.Errorf("CHECK without %s = %v, want code %d", a, err, CodeNotAccelerated)
			}
		}
	}
}
