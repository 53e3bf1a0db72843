package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecords(t *testing.T) {
	st := store{t.TempDir()}
	unlock, err := st.lock(false)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if r, err := st.get("u1"); r != nil || err != nil {
		t.Fatalf("get of nothing = %v, %v", r, err)
	}
	for _, uid := range []string{"u2", "u1"} {
		if err := st.put(record{Network: "net", ContainerID: "c-" + uid, IfName: "eth0", PodUID: uid}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(st.recordPath("bad"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := st.list()
	if err != nil || len(recs) != 3 || recs[0].PodUID != "bad" || recs[0].Network != "" || recs[1].ContainerID != "c-u1" {
		t.Fatalf("list = %+v, %v", recs, err)
	}
	for _, uid := range []string{"u1", "u1", "bad"} {
		if err := st.remove(uid); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(st.podsDir())
	if len(ents) != 1 {
		t.Errorf("left in the folder: %v (no temporary files expected)", ents)
	}
}

// GC's exclusive lock waits for ADDs' shared locks, which do not wait for
// each other.
func TestStoreLock(t *testing.T) {
	st := store{t.TempDir()}
	a, err := st.lock(false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.lock(false) // a second shared lock (another ADD) is granted at once
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		unlock, err := st.lock(true)
		if err != nil {
			t.Error(err)
		}
		close(got)
		unlock()
	}()
	select {
	case <-got:
		t.Fatal("exclusive lock granted while shared locks are held")
	case <-time.After(50 * time.Millisecond):
	}
	a()
	b()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("exclusive lock not granted after the shared locks went")
	}
}

// Concurrent counting loses no failure (each plugin process counts one).
func TestCountFailures(t *testing.T) {
	st := store{filepath.Join(t.TempDir(), "state")}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reason := ReasonCgroup
			if i%4 == 0 {
				reason = ReasonAPI
			}
			if err := st.countFailure(reason, fmt.Sprintf("ns/p%d (u%d)", i, i), errors.New("boom")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, err := ReadFailures(st.dir)
	if err != nil {
		t.Fatal(err)
	}
	if f[ReasonCgroup].Count != 15 || f[ReasonAPI].Count != 5 || f[ReasonAPI].LastError != "boom" || !strings.HasPrefix(f[ReasonAPI].LastPod, "ns/p") {
		t.Errorf("counters %+v", f)
	}
	if f, err := ReadFailures(t.TempDir()); err != nil || len(f) != 0 {
		t.Errorf("no counters yet: %v, %v", f, err)
	}
}
