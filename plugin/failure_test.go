package plugin

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
)

// spooled reads the event spool of the env's state folder.
func (e *env) spooled() []eventspool.Record {
	e.t.Helper()
	recs, err := eventspool.List(eventspool.Dir(e.stateDir))
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func TestAddFailureSpoolsEvent(t *testing.T) {
	e := newEnv(t)
	p := enabledPod("web")
	e.mkCgroup(p)
	e.eng.attachErr = errors.New("cgroup is not cgroup v2")
	for range 3 { // a pod whose sandbox is created again and again: one record
		if err := e.add(p, nil); err != nil {
			t.Fatalf("ADD = %v, want fail-open success", err)
		}
	}
	recs := e.spooled()
	if len(recs) != 1 {
		t.Fatalf("spool holds %d records, want 1: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.Namespace != "default" || r.Name != "web" || r.UID != "uid-web" || r.Reason != string(ReasonAttach) || r.Count != 3 {
		t.Errorf("record %+v, want default/web uid-web, reason %s, count 3", r, ReasonAttach)
	}
	if !strings.Contains(r.Message, "not cgroup v2") || !strings.Contains(r.Message, hints[ReasonAttach]) {
		t.Errorf("message %q names neither the error nor what to do", r.Message)
	}
	if r.First.After(r.Last) || r.Last.IsZero() {
		t.Errorf("times first %v, last %v", r.First, r.Last)
	}
}

func TestAddFailureNoEvent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env, p *pod) map[string]any
	}{
		{"failOnError", func(e *env, p *pod) map[string]any {
			e.eng.attachErr = errors.New("boom")
			return map[string]any{"failOnError": true}
		}},
		{"API unreachable", func(e *env, p *pod) map[string]any {
			p.ann, e.api.err = nil, failf(ReasonAPI, "connection refused")
			return nil
		}},
		{"not annotated", func(e *env, p *pod) map[string]any {
			e.eng.attachErr = errors.New("boom")
			p.ann = map[string]string{}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := enabledPod("web")
			e.mkCgroup(p)
			_ = e.add(p, tc.setup(e, &p))
			if recs := e.spooled(); len(recs) != 0 {
				t.Errorf("spooled %+v, want nothing", recs)
			}
		})
	}
}

// TestAddFailureSpoolBound fills the spool: failures of further pods are
// dropped (and logged), repeated ones of a spooled pod still count.
func TestAddFailureSpoolBound(t *testing.T) {
	e := newEnv(t)
	e.eng.attachErr = errors.New("boom")
	for i := range eventspool.MaxRecords + 5 {
		p := enabledPod(fmt.Sprintf("web-%d", i))
		e.mkCgroup(p)
		if err := e.add(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.add(enabledPod("web-0"), nil); err != nil {
		t.Fatal(err)
	}
	recs := e.spooled()
	if len(recs) != eventspool.MaxRecords {
		t.Errorf("spool holds %d records, want the bound %d", len(recs), eventspool.MaxRecords)
	}
	ents, _ := os.ReadDir(eventspool.Dir(e.stateDir))
	if len(ents) > eventspool.MaxRecords+1 { // the records and .lock
		t.Errorf("%d files in the spool folder", len(ents))
	}
	for _, r := range recs {
		if r.Name == "web-0" && r.Count != 2 {
			t.Errorf("web-0 counted %d times, want 2", r.Count)
		}
	}
	if !strings.Contains(e.logs.String(), "event spool full") {
		t.Errorf("dropped records not logged:\n%.2000s", e.logs.String())
	}
}
