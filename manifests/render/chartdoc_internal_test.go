package render

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/monitoring"
)

// A release refuses a chart whose values table or monitoring copies are
// stale, and names what to run.
func TestCheckGenerated(t *testing.T) {
	if err := CheckChartGenerated(); err != nil {
		t.Fatal(err)
	}
	chart := fstest.MapFS{}
	err := fs.WalkDir(manifests.Chart, ChartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(manifests.Chart, p)
		chart[strings.TrimPrefix(p, ChartDir+"/")] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(fstest.MapFS){
		"a changed comment": func(c fstest.MapFS) {
			v := c["values.yaml"]
			c["values.yaml"] = &fstest.MapFile{Data: []byte(strings.Replace(string(v.Data), "# The pods' node selector.", "# Where the pods run.", 1))}
		},
		"a changed default rule": func(c fstest.MapFS) {
			h := c[HelpersFile]
			c[HelpersFile] = &fstest.MapFile{Data: []byte(strings.Replace(string(h.Data), "never port 15006", "never 15006", 1))}
		},
		"a new alert": func(c fstest.MapFS) {
			p := ChartMonitoringDir + "/prometheusrule.yaml"
			c[p] = &fstest.MapFile{Data: []byte(strings.TrimSuffix(string(c[p].Data), "\n") + " (older)\n")}
		},
	} {
		stale := fstest.MapFS{}
		for k, v := range chart {
			stale[k] = v
		}
		edit(stale)
		if err := checkGenerated(stale, monitoring.Files); err == nil || !strings.Contains(err.Error(), "go generate ./manifests/render") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The table needs a comment above every value and the value in the schema;
// it shows a group's comment, types, ranges, enums and defaults as JSON.
func TestValuesTable(t *testing.T) {
	schema := []byte(`{"type": "object", "additionalProperties": false, "properties": {
		"port": {"type": "integer", "minimum": 1, "maximum": 65535},
		"level": {"enum": ["debug", "info"]},
		"group": {"type": "object", "additionalProperties": false, "properties": {"list": {"type": "array", "items": {"type": "string"}}}}}}`)
	table, err := ValuesTable([]byte("# The port | number.\nport: 9753\n# Log.\nlevel: info\n# A group.\ngroup:\n  # Names.\n  list: [a]\n"), schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| `port` | integer 1 to 65535 | `9753` | The port \\| number. |",
		"| `level` | one of `\"debug\"`, `\"info\"` | `\"info\"` | Log. |",
		"| `group` | object |  | A group. |",
		"| `group.list` | list of string | `[\"a\"]` | Names. |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	_, err = ValuesTable([]byte("port: 9753\n# Unknown.\nother: 1\n"), schema)
	if err == nil || !strings.Contains(err.Error(), "value port: no comment") || !strings.Contains(err.Error(), "value other: not in values.schema.json") {
		t.Errorf("error %v", err)
	}
}

// The ConfigMap's data.rules block is made rules.DefaultText, whatever it
// held, and the rest of the file stays; a stale one is refused.
func TestConfigMapRules(t *testing.T) {
	const head = "data:\n  enabled: \"true\"\n  rules: |\n"
	const tail = "  other: x\n"
	want := head + "    # accelerate traffic of uid 1337 (Envoy), never port 15006\n" +
		"    chain --uid-owner 1337 -j ACCEPT\n    chain --port 15006 -j RETURN\n" + tail
	for _, block := range []string{"    chain --port 9 -j ACCEPT\n", "", "    a\n    b\n    c\n    d\n"} {
		got, err := ConfigMap([]byte(head + block + tail))
		if err != nil || string(got) != want {
			t.Errorf("block %q: got %q (%v), want %q", block, got, err, want)
		}
	}
	if _, err := ConfigMap([]byte("data:\n  enabled: \"true\"\n")); err == nil {
		t.Error("a ConfigMap without rules: no error")
	}
	stale := fstest.MapFS{ConfigMapFile: &fstest.MapFile{Data: []byte(head + "    chain -j ACCEPT\n" + tail)}}
	if err := checkConfigMap(stale); err == nil || !strings.Contains(err.Error(), "go generate ./manifests/render") {
		t.Errorf("a stale ConfigMap: %v", err)
	}
	if err := checkConfigMap(manifests.Files); err != nil {
		t.Error(err)
	}
}
