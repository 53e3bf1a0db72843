package ctl

import (
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/version"
)

// version prints the release; -o json and -o yaml the data path and layout
// too; a bad -o is a usage error.
func TestVersion(t *testing.T) {
	if out := mustRun(t, nil, "", "version"); out != "mesh-accelctl "+version.Version()+"\n" {
		t.Errorf("version: %q", out)
	}
	var v versionReport
	if err := json.Unmarshal([]byte(mustRun(t, nil, "", "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	want := versionReport{Name: "mesh-accelctl", Version: version.Version(), DataPath: bpf.DataPath(), Layout: bpf.LayoutVersion,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if v != want {
		t.Errorf("version -o json: %+v, want %+v", v, want)
	}
	if out := mustRun(t, nil, "", "version", "-o", "yaml"); !strings.Contains(out, "data_path: "+bpf.DataPath()+"\n") {
		t.Errorf("version -o yaml:\n%s", out)
	}
	if r := runCtl(t, nil, "", "version", "-o", "xml"); r.code != ExitUsage || !strings.Contains(r.stderr, `"xml": want one of`) {
		t.Errorf("version -o xml: exit %d, %q", r.code, r.stderr)
	}
}

// complete runs the shell's completion request (what the scripts of
// mesh-accelctl completion run) and returns the candidates.
func complete(t *testing.T, stateDir string, args ...string) []string {
	t.Helper()
	r := runCtl(t, nil, stateDir, append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(line, ":") { // the directive
			name, _, _ := strings.Cut(line, "\t")
			out = append(out, name)
		}
	}
	return out
}

// The shell completes -o with its values, and pods from this node's
// records: NAME with -n, NAMESPACE/NAME without, --pod and -n.
func TestCompletion(t *testing.T) {
	dir := podRecords(t, PodRecord{"shop", "cart", "uid-a"}, PodRecord{"shop", "pay", "uid-b"},
		PodRecord{"bank", "ledger", "uid-c"})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"status", "-o", ""}, outputs},
		{[]string{"conns", "--output", "w"}, []string{"wide"}},
		{[]string{"conns", "-n", "shop", ""}, []string{"cart", "pay"}},
		{[]string{"dump", "-n", "shop", "c"}, []string{"cart"}},
		{[]string{"disable", ""}, []string{"bank/ledger", "shop/cart", "shop/pay"}},
		{[]string{"rules", "show", "shop/"}, []string{"shop/cart", "shop/pay"}},
		{[]string{"enable", "--pod", "b"}, []string{"bank/ledger"}},
		{[]string{"rules", "apply", "-f", "x", "-n", ""}, []string{"bank", "shop"}},
		{[]string{"conns", "-n", "shop", "cart", ""}, nil},
	} {
		if got := complete(t, dir, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("completion of %q: %q, want %q", tc.args, got, tc.want)
		}
	}
	// The completion scripts are there.
	if out := mustRun(t, nil, "", "completion", "bash"); !strings.Contains(out, "__mesh-accelctl_") {
		t.Errorf("completion bash: %.200s", out)
	}
}

// Every command's help has examples, cobra's help and completion commands
// included.
func TestEveryCommandHasExamples(t *testing.T) {
	a := &app{deps: Deps{}.withDefaults()}
	root := a.rootCmd()
	var walk func(*cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 19 {
		t.Errorf("walked %d commands, want them all", n)
	}
	// The examples are in the help.
	if out := mustRun(t, nil, "", "dump", "--help"); !strings.Contains(out, "Examples:\n  mesh-accelctl dump") {
		t.Errorf("dump --help:\n%s", out)
	}
}
