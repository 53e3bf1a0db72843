package eventspool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func rec(name string) Record {
	return Record{Namespace: "shop", Name: name, UID: "uid-" + name, Reason: "attach", Message: "boom"}
}

func TestAddAggregates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		r := rec("web")
		r.Last = t0.Add(time.Duration(i) * time.Minute)
		r.Message = fmt.Sprintf("boom %d", i)
		if err := Add(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	other := rec("web")
	other.Reason = "kernel"
	if err := Add(dir, other); err != nil {
		t.Fatal(err)
	}
	recs, err := List(dir)
	if err != nil || len(recs) != 2 {
		t.Fatalf("List = %+v, %v; want 2 records", recs, err)
	}
	r := recs[0]
	if r.Reason != "attach" {
		r = recs[1]
	}
	if r.Reason != "attach" || r.Count != 3 || !r.First.Equal(t0) || !r.Last.Equal(t0.Add(2*time.Minute)) || r.Message != "boom 2" {
		t.Errorf("aggregated record %+v", r)
	}
}

func TestAddBound(t *testing.T) {
	dir := t.TempDir()
	for i := range MaxRecords {
		if err := Add(dir, rec(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := Add(dir, rec("one-more")); err == nil {
		t.Error("a record past the bound was added")
	}
	if err := Add(dir, rec("0")); err != nil {
		t.Errorf("a repeated failure of a spooled pod: %v", err)
	}
}

func TestAddChecksAndCuts(t *testing.T) {
	dir := t.TempDir()
	if err := Add(dir, Record{Name: "web", Reason: "attach"}); err == nil {
		t.Error("a record without namespace was added")
	}
	r := rec("web")
	r.Message = string(make([]byte, 5000))
	if err := Add(dir, r); err != nil {
		t.Fatal(err)
	}
	recs, _ := List(dir)
	if len(recs) != 1 || len(recs[0].Message) != MaxMessage {
		t.Errorf("message of %d bytes, want %d", len(recs[0].Message), MaxMessage)
	}
}

// TestDone: what was posted goes; failures counted after the listing stay.
func TestDone(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r := rec("web")
	r.Last = t0
	if err := Add(dir, r); err != nil {
		t.Fatal(err)
	}
	listed, _ := List(dir)
	later := rec("web")
	later.Last = t0.Add(time.Minute)
	if err := Add(dir, later); err != nil { // while the installer posts
		t.Fatal(err)
	}
	if err := Done(dir, listed[0]); err != nil {
		t.Fatal(err)
	}
	left, _ := List(dir)
	if len(left) != 1 || left[0].Count != 1 || !left[0].Last.Equal(t0.Add(time.Minute)) {
		t.Fatalf("left %+v, want the one later failure", left)
	}
	if err := Done(dir, left[0]); err != nil {
		t.Fatal(err)
	}
	if left, _ := List(dir); len(left) != 0 {
		t.Errorf("left %+v after the last post", left)
	}
}

func TestClean(t *testing.T) {
	dir := t.TempDir()
	if err := Add(dir, rec("web")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for name, content := range map[string]string{"bad.attach.json": "{", ".tmp-x.json-1": "", ".tmp-y.json-2": ""} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != ".tmp-y.json-2" { // a write in progress
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := List(dir); err == nil {
		t.Error("List does not report the corrupt record")
	}
	if err := Clean(dir); err != nil {
		t.Fatal(err)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[.lock .tmp-y.json-2 uid-web.attach.json]" {
		t.Errorf("left %v", names)
	}
}

func TestKeyIsAFileName(t *testing.T) {
	r := Record{Namespace: "a", Name: "b", UID: "../../etc/x", Reason: "r/s"}
	if k := r.Key(); k != "______etc_x.r_s" {
		t.Errorf("key %q", k)
	}
}
