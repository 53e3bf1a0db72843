package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// goldenEngine is the fake engine of the golden outputs: two pods, two
// connections, counters that move while status waits.
func goldenEngine() *fakeEngine {
	eng := newFakeEngine()
	eng.dirs = liveDirections()
	eng.counters["rejected_untrusted_readers"] = 500
	eng.onSleep = func() { eng.counters["rejected_untrusted_readers"] += 3 }
	return eng
}

// goldenState is a plugin state folder with the fake engine's pod records
// and two kinds of setup failures.
func goldenState(tb testing.TB) string {
	tb.Helper()
	dir := defaultRecords(tb)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := plugin.Failures{
		plugin.ReasonAnnotation: {Count: 2, LastPod: "shop/web", LastTime: at,
			LastError: `annotation accel.mesh/rules: accel.mesh/rules:1:7: repeated option --ip`},
		plugin.ReasonCgroup: {Count: 1, LastPod: "shop/db", LastTime: at.Add(time.Hour),
			LastError: "cgroup of pod 1234 not found"},
	}
	b, err := json.Marshal(f)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "failures.json"), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// goldenCase is a run whose stdout, stderr and exit code are compared
// with testdata/golden/<name>.txt (UPDATE_GOLDEN=1 rewrites them).
type goldenCase struct {
	name  string
	args  []string
	stdin string
	files map[string]string // written to a temporary folder; $DIR in args names it
}

var goldenCases = []goldenCase{
	{name: "conns", args: []string{"conns"}},
	{name: "conns-wide", args: []string{"conns", "-o", "wide"}},
	{name: "conns-no-headers", args: []string{"conns", "--no-headers"}},
	{name: "conns-json", args: []string{"conns", "-n", "shop", "cart", "-o", "json"}},
	{name: "conns-yaml", args: []string{"conns", "--pod", "shop/cart", "-o", "yaml"}},
	{name: "stats", args: []string{"stats"}},
	{name: "stats-wide", args: []string{"stats", "-o", "wide"}},
	{name: "stats-yaml", args: []string{"stats", "-o", "yaml"}},
	{name: "rules-show", args: []string{"rules", "show"}},
	{name: "rules-show-wide", args: []string{"rules", "show", "-o", "wide"}},
	{name: "rules-show-no-headers", args: []string{"rules", "show", "-n", "shop", "cart", "--no-headers"}},
	{name: "rules-show-yaml", args: []string{"rules", "show", "-o", "yaml"}},
	{name: "status", args: []string{"status"}},
	{name: "status-wide", args: []string{"status", "-o", "wide"}},
	{name: "status-json", args: []string{"status", "-o", "json"}},
	{name: "rules-check-hints", args: []string{"rules", "check", "-f", "$DIR/bad.rules"}, files: map[string]string{
		"bad.rules": "# règles\nchain --ip 10.0.0.0/8 --ip 192.168.0.0/16 -j RETURN\nchain --port=15006 -j RETURN\n" +
			"chain --uid-owner 1337 -j accept\nchain -p 1000:2000 -j RETURN # ünïcode\nchain -g é -p 0 -j ACCEPT\n"}},
	{name: "rules-check-json-errors", args: []string{"rules", "check", "-f", "-", "-o", "json"},
		stdin: "chain -p 80 -j ACCEPT\nchain -u 1337 -j Accept\n"},
	{name: "rules-check-configmap", args: []string{"rules", "check", "-f", "$DIR/cm.yaml"}, files: map[string]string{
		"cm.yaml": configMap("    chain --uid-owner 1337 -j ACCEPT\n    chain --port=15006 -j RETURN\n")}},
	{name: "rules-apply-dry-run", args: []string{"rules", "apply", "--all", "--dry-run", "-f", "-"},
		stdin: "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\nchain --port 9090 -j RETURN\n"},
	{name: "error-typo-command", args: []string{"stauts"}},
	{name: "error-typo-subcommand", args: []string{"rules", "chek"}},
	{name: "error-typo-flag", args: []string{"conns", "--prot", "80"}},
	{name: "error-port-value", args: []string{"conns", "--port", "http"}},
	{name: "error-apply-no-scope", args: []string{"rules", "apply", "-f", "-"}},
	{name: "error-other-node", args: []string{"conns", "-n", "shop", "web"}},
}

// configMap is a ConfigMap manifest like manifests/configmap.yaml with the
// given (indented) rules.
func configMap(rules string) string {
	return "# the node's rules\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mesh-accel-rules\n" +
		"  namespace: mesh-accel\ndata:\n  rules: |\n    # accelerate Envoy\n" + rules
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "$DIR", dir)
			}
			loc := fakeLocator{"shop/web": "node-b"}
			r := runWith(t, ctlRun{eng: goldenEngine(), stateDir: goldenState(t), stdin: tc.stdin, locator: loc}, args...)
			got := fmt.Sprintf("$ mesh-accelctl %s\n%s", strings.Join(tc.args, " "), r.stdout)
			if r.stderr != "" {
				got += "--- stderr\n" + r.stderr
			}
			got += fmt.Sprintf("--- exit %d\n", r.code)
			got = strings.ReplaceAll(got, dir, "$DIR")
			got = strings.ReplaceAll(got, kernelRelease(), "$KERNEL")
			got = timeField.ReplaceAllString(got, `$1"$$TIME"`)
			testenv.Golden(t, filepath.Join("testdata", "golden", tc.name+".txt"), []byte(got))
		})
	}
}

// timeField is a time stamp of now in JSON or YAML output.
var timeField = regexp.MustCompile(`("?time"?: )"[0-9T:.Z+-]+"`)

// fakeLocator knows the nodes of pods by namespace/name.
type fakeLocator map[string]string

func (l fakeLocator) PodNode(_ context.Context, ns, name string) (string, error) {
	node, ok := l[ns+"/"+name]
	if !ok {
		return "", fmt.Errorf("pod %s/%s: %w", ns, name, ErrNoSuchPod)
	}
	return node, nil
}
