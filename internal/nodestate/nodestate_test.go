package nodestate

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// A flag beats its variable, which beats the default; a malformed variable
// is an error naming it.
func TestBinder(t *testing.T) {
	env := map[string]string{"MESH_ACCEL_BPF_ROOT": "from-env", "MESH_ACCEL_STATE_DIR": "/env/state",
		"MESH_ACCEL_SIDECAR_UID": "2000"}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	b := &Binder{FS: fs, Getenv: func(k string) string { return env[k] }}
	var l Location
	var uid uint32
	b.BindLocation(&l)
	b.Uint32(&uid, FlagSidecarUID, DefaultSidecarUID, "uid")
	if err := fs.Parse([]string{"--state-dir", "/flag/state"}); err != nil {
		t.Fatal(err)
	}
	want := Location{BPFFS: DefaultBPFFS, BPFRoot: "from-env", StateDir: "/flag/state", MapSize: DefaultMapSize}
	if l != want || uid != 2000 || len(b.Errs) != 0 {
		t.Fatalf("got %+v uid %d errs %v, want %+v uid 2000", l, uid, b.Errs, want)
	}
	if !strings.Contains(fs.Lookup(FlagBPFRoot).Usage, "MESH_ACCEL_BPF_ROOT") {
		t.Errorf("usage does not name the variable: %q", fs.Lookup(FlagBPFRoot).Usage)
	}

	bad := &Binder{FS: pflag.NewFlagSet("t", pflag.ContinueOnError),
		Getenv: func(k string) string { return map[string]string{"MESH_ACCEL_SIDECAR_UID": "envoy"}[k] }}
	bad.Uint32(&uid, FlagSidecarUID, DefaultSidecarUID, "uid")
	if len(bad.Errs) != 1 || !strings.Contains(bad.Errs[0].Error(), `MESH_ACCEL_SIDECAR_UID="envoy"`) {
		t.Errorf("malformed variable: %v", bad.Errs)
	}
	if err := (Location{BPFFS: "/b", StateDir: "/s"}).Validate(); err == nil || !strings.Contains(err.Error(), "--bpf-root") {
		t.Errorf("empty --bpf-root: %v", err)
	}
}

// Records are listed by uid; a corrupt one comes back with its uid only,
// reported; a missing folder holds none.
func TestRecords(t *testing.T) {
	dir := t.TempDir()
	if recs, err := ListRecords(dir); recs != nil || err != nil {
		t.Fatalf("no folder: %v, %v", recs, err)
	}
	if err := os.MkdirAll(PodsDir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	for uid, text := range map[string]string{
		"u-2": `{"uid":"u-2","namespace":"shop","name":"pay"}`,
		"u-1": `{"uid":"u-1","namespace":"shop","name":"cart"}`,
		"u-3": `{not json`,
	} {
		if err := os.WriteFile(RecordPath(dir, uid), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := ListRecords(dir)
	if err == nil || !strings.Contains(err.Error(), "u-3.json") {
		t.Errorf("corrupt record not reported: %v", err)
	}
	if len(recs) != 3 || recs[0].Name != "cart" || recs[1].Name != "pay" || recs[2] != (Record{PodUID: "u-3"}) {
		t.Errorf("records %+v", recs)
	}
	if r, err := ReadRecord(dir, "u-9"); r != nil || err != nil {
		t.Errorf("missing record: %v, %v", r, err)
	}
}
