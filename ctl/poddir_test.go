package ctl

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFileDirectory(t *testing.T) {
	dir := podRecords(t,
		PodRecord{"shop", "cart", "uid-a"},
		PodRecord{"shop", "db-0", "uid-old"}, // a StatefulSet pod recreated: stale record
		PodRecord{"shop", "db-0", "uid-new"},
	)
	for name, content := range map[string]string{
		"uid-bad.json":   "{not json",
		"uid-empty.json": `{"uid":"uid-empty"}`,
		"notes.txt":      `{"namespace":"x","name":"y"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := NewFileDirectory(dir)
	for _, tc := range []struct {
		ref  string
		want []string
	}{
		{"shop/cart", []string{"uid-a"}},
		{"shop/db-0", []string{"uid-new", "uid-old"}},
		{"shop/nosuch", nil},
		{"uid-anything", []string{"uid-anything"}},
		{"x/y", nil},
	} {
		if got := d.Resolve(tc.ref); !slices.Equal(got, tc.want) {
			t.Errorf("Resolve(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
	for id, want := range map[string]string{"uid-a": "shop/cart", "uid-bad": "uid-bad", "uid-empty": "uid-empty",
		"uid-unknown": "uid-unknown"} {
		if got := d.Name(id); got != want {
			t.Errorf("Name(%q) = %q, want %q", id, got, want)
		}
	}
}

// Without the directory every pod is known by its UID.
func TestFileDirectoryMissing(t *testing.T) {
	d := NewFileDirectory(filepath.Join(t.TempDir(), "none"))
	if got := d.Name("uid-a"); got != "uid-a" {
		t.Errorf("Name = %q", got)
	}
	if got := d.Resolve("ns/name"); got != nil {
		t.Errorf("Resolve = %q", got)
	}
}

// --pod resolves names and UIDs to attached pods only.
func TestAttachedPod(t *testing.T) {
	const goneUID = "0b6c3f3e-5d2a-4f43-9c55-7a1de1c0a001"
	dir := podRecords(t, PodRecord{"shop", "cart", "uid-a"}, PodRecord{"shop", "gone", goneUID})
	twins := podRecords(t, PodRecord{"shop", "twin", "uid-a"}, PodRecord{"shop", "twin", "uid-b"})
	for _, tc := range []struct {
		dir, ref, want, err string
	}{
		{ref: "shop/cart", want: "uid-a"},
		{ref: "uid-b", want: "uid-b"},
		{ref: "shop/gone", err: "pod shop/gone: pod not attached on this node (node-a)"},
		{ref: goneUID, err: "pod " + goneUID + ": pod not attached on this node (node-a)"},
		{ref: "cart", err: `pod "cart": no attached pod has this UID, and a pod name needs its namespace: -n NAMESPACE cart, or --pod NAMESPACE/cart`},
		{ref: "shop/none", err: "no record of pod shop/none on this node (node-a); is it scheduled here and annotated accel.mesh/enabled: \"true\"? (records are read from " + dir + "/pods"},
		{dir: twins, ref: "shop/twin", err: "names several attached pods (uid-a, uid-b): give the pod UID"},
	} {
		if tc.dir == "" {
			tc.dir = dir
		}
		r := runCtl(t, newFakeEngine(), tc.dir, "rules", "show", "--pod", tc.ref, "-o", "json")
		switch {
		case tc.err != "" && (r.code != ExitError || !strings.Contains(r.stderr, tc.err)):
			t.Errorf("%s: exit %d, stderr %q, want error %q", tc.ref, r.code, r.stderr, tc.err)
		case tc.err == "" && (r.code != ExitOK || !strings.Contains(r.stdout, `"id": "`+tc.want+`"`)):
			t.Errorf("%s: exit %d, stdout %s, want pod %s (%s)", tc.ref, r.code, r.stdout, tc.want, r.stderr)
		}
	}
}
