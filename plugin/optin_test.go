package plugin

import (
	"os"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
)

// TestAddNamespaceOptIn: a namespace the installer recorded as labelled
// accelerates its pods without the annotation; the pod's annotation and
// the excluded namespaces win.
func TestAddNamespaceOptIn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ns      string
		ann     map[string]string
		exclude []string // excludeNamespaces; nil: the default
		want    bool
	}{
		{"labelled namespace", "shop", map[string]string{}, nil, true},
		{"runtime passes no annotations", "shop", nil, nil, true},
		{"pod says false", "shop", map[string]string{AnnotationEnabled: "false"}, nil, false},
		{"pod says something else", "shop", map[string]string{AnnotationEnabled: "yes"}, nil, false},
		{"pod says true elsewhere", "other", map[string]string{AnnotationEnabled: "true"}, nil, true},
		{"namespace not labelled", "other", map[string]string{}, nil, false},
		{"excluded namespace", "shop", map[string]string{}, []string{"shop"}, false},
		{"kube-system never by label", "kube-system", map[string]string{}, []string{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if err := nsoptin.Write(e.stateDir, nsoptin.Set{"shop": true, "kube-system": true}); err != nil {
				t.Fatal(err)
			}
			p := pod{ns: tc.ns, name: "web", uid: "uid-web", container: "c-web", ann: tc.ann}
			e.mkCgroup(p)
			extra := map[string]any{"capabilities": map[string]bool{CapPodAnnotations: true}}
			if tc.exclude != nil {
				extra["excludeNamespaces"] = tc.exclude
			}
			e.mustAdd(p, extra)
			if _, got := e.eng.pod("uid-web"); got != tc.want {
				t.Errorf("accelerated = %v, want %v\nlogs:\n%s", got, tc.want, e.logs.String())
			}
			if e.api.calls != 0 {
				t.Errorf("%d API calls, want none", e.api.calls)
			}
		})
	}
}

// TestAddNoNamespaceFile: without the installer's file only annotated pods
// are accelerated; a corrupt file is logged, not fatal.
func TestAddNoNamespaceFile(t *testing.T) {
	e := newEnv(t)
	p := pod{ns: "shop", name: "web", uid: "uid-web", container: "c-web", ann: map[string]string{}}
	e.mkCgroup(p)
	e.mustAdd(p, nil)
	if _, ok := e.eng.pod("uid-web"); ok {
		t.Error("accelerated without annotation or namespace file")
	}
	if err := os.WriteFile(nsoptin.Path(e.stateDir), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustAdd(p, nil)
	if _, ok := e.eng.pod("uid-web"); ok {
		t.Error("accelerated with a corrupt namespace file")
	}
	if !strings.Contains(e.logs.String(), "namespace labels unknown") {
		t.Errorf("corrupt file not logged:\n%s", e.logs.String())
	}
}
