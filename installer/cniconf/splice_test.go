package cniconf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSpliceRoundTrip: for any conflist text with plugins and none of ours,
// appending the entry gives valid JSON with the entry last and every other
// plugin unchanged, and removing it gives back the exact bytes.
func FuzzSpliceRoundTrip(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "conflists", "*", "in", "*.conflist"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"plugins":[{"type":"a"}]}`,
		`{"name":"x","plugins":[ {"type":"a"} ,  {"type":"b"} ],"plugins2":[]}`,
		"{\r\n\t\"plugins\": [\r\n\t\t{\"type\": \"a\"}\r\n\t]\r\n}",
		`{"plugins":[{"type":"a"}],"plugins":[{"type":"b"},{"type":"c"}]}`,
		`{"plugins":[1,"two",{"type":"x"}]}`,
	} {
		f.Add([]byte(s))
	}
	entry := Entry{Type: pluginType, Capabilities: map[string]bool{"cgroupPath": true}, RulesFile: "/r"}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := parsePluginList(data)
		if err != nil || len(list.elems) == 0 || list.count(pluginType) > 0 || !json.Valid(data) {
			return
		}
		out, err := appendPlugin(data, entry)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if !json.Valid(out) {
			t.Fatalf("append made invalid JSON:\n%s", out)
		}
		got, err := parsePluginList(out)
		if err != nil || len(got.elems) != len(list.elems)+1 || got.types[len(got.types)-1] != pluginType {
			t.Fatalf("after append: %+v, %v\n%s", got, err, out)
		}
		for i, sp := range list.elems {
			if string(out[got.elems[i].start:got.elems[i].end]) != string(data[sp.start:sp.end]) {
				t.Fatalf("plugin %d changed:\n%s", i, out)
			}
		}
		back, n, err := removePlugins(out, pluginType)
		if err != nil || n != 1 || string(back) != string(data) {
			t.Fatalf("remove = %d, %v:\n%q\nwant\n%q", n, err, back, data)
		}
	})
}

// A CRLF file gets the entry with CRLF line endings.
func TestAppendPluginCRLF(t *testing.T) {
	in := "{\r\n  \"plugins\": [\r\n    {\"type\": \"a\"}\r\n  ]\r\n}\r\n"
	out, err := appendPlugin([]byte(in), map[string]string{"type": pluginType})
	want := "{\r\n  \"plugins\": [\r\n    {\"type\": \"a\"},\r\n    {\r\n      \"type\": \"mesh-accel\"\r\n    }\r\n  ]\r\n}\r\n"
	if err != nil || string(out) != want {
		t.Errorf("appendPlugin = %q, %v\nwant %q", out, err, want)
	}
}

// Removing our entry from anywhere in the list keeps the JSON valid and
// the other plugins in order.
func TestRemovePlugins(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"plugins":[{"type":"mesh-accel"},{"type":"a"}]}`, `{"plugins":[{"type":"a"}]}`},
		{`{"plugins":[{"type":"a"}, {"type":"mesh-accel"}, {"type":"b"}]}`, `{"plugins":[{"type":"a"}, {"type":"b"}]}`},
		{`{"plugins":[{"type":"mesh-accel"},{"type":"a"},{"type":"mesh-accel"}]}`, `{"plugins":[{"type":"a"}]}`},
		{`{"plugins":[{"type":"mesh-accel"}]}`, `{"plugins":[]}`},
		{`{"plugins":[{"type":"a"}],"delegates":[{"type":"mesh-accel"}]}`, `{"plugins":[{"type":"a"}],"delegates":[{"type":"mesh-accel"}]}`},
	} {
		got, _, err := removePlugins([]byte(tc.in), pluginType)
		if err != nil || string(got) != tc.want {
			t.Errorf("removePlugins(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
