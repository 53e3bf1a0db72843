package podconfig

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
)

// Options lists every field of bpf.PodConfig once, in order, and no other;
// an option that nothing sets, shows or checks says why.
func TestOptionsCoverPodConfig(t *testing.T) {
	typ := reflect.TypeFor[bpf.PodConfig]()
	opts := Options()
	var fields, listed []string
	for i := range typ.NumField() {
		fields = append(fields, typ.Field(i).Name)
	}
	for _, o := range opts {
		listed = append(listed, o.Field)
		set := len(o.Annotations) > 0 || o.ConfKey != ""
		if (!set || o.Report == "" || !o.Checked) && o.Note == "" {
			t.Errorf("option %s is not set, shown or checked everywhere, and its Note does not say why", o.Field)
		}
		if (o.HelmValue != "" || o.Flag != "") && o.ConfKey == "" {
			t.Errorf("option %s: a Helm value or flag without the conflist key that brings it to the plugin", o.Field)
		}
		if o.Default == "" {
			t.Errorf("option %s has no Default", o.Field)
		}
	}
	if !slices.Equal(fields, listed) {
		t.Errorf("bpf.PodConfig's fields are %q, podconfig.Options lists %q", fields, listed)
	}
	if _, ok := Lookup("NoSuchField"); ok {
		t.Error("Lookup found a field that does not exist")
	}
}

// annotations.Known (what mesh-accelctl rules check accepts under
// accel.mesh/) is the switch Enabled and the own annotations of Options;
// and every annotation of Options is read: a value it refuses fails
// FromAnnotations with an error naming it.
func TestOptionAnnotationsAreRead(t *testing.T) {
	own := []string{annotations.Enabled}
	for _, o := range Options() {
		for _, name := range o.Annotations {
			if annotations.Own(name) {
				own = append(own, name)
			}
			_, err := FromAnnotations(map[string]string{name: "nonsense!"}, nil)
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Name != name {
				t.Errorf("annotation %s of option %s: FromAnnotations = %v, want an error naming it", name, o.Field, err)
			}
		}
	}
	known := annotations.Known()
	slices.Sort(own)
	slices.Sort(known)
	if !slices.Equal(own, known) {
		t.Errorf("annotations.Known() = %q, but Enabled and the options' own annotations are %q", known, own)
	}
}

// Values lists what FromAnnotations accepts of each annotation with a
// fixed set of values, and only that.
func TestValues(t *testing.T) {
	for _, name := range []string{annotations.TrustApp, annotations.Profile} {
		vals := Values(name)
		if len(vals) == 0 {
			t.Fatalf("Values(%s) is empty", name)
		}
		for _, v := range vals {
			if _, err := FromAnnotations(map[string]string{name: v}, nil); err != nil {
				t.Errorf("%s=%q, one of Values: %v", name, v, err)
			}
		}
		if _, err := FromAnnotations(map[string]string{name: vals[0] + "x"}, nil); err == nil {
			t.Errorf("%s=%q accepted", name, vals[0]+"x")
		}
	}
	if Values(annotations.Rules) != nil {
		t.Errorf("Values(%s) = %q, want nil (free text)", annotations.Rules, Values(annotations.Rules))
	}
}
