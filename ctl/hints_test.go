package ctl

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Wrong hints: the image has no shell and no wget, and the pod of a
// DaemonSet must be the one on the node in question.
var wrongHints = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`(?i)\bwget\b`), "the image has no wget (mesh-accelctl health asks /readyz)"},
	{regexp.MustCompile(`\b(exec|logs|attach)\b[^\n|;]*?\b(ds|daemonsets?|daemonset\.apps)/`),
		"kubectl exec/logs on the DaemonSet picks the pod of any node: name the installer pod of the node " +
			"(--field-selector spec.nodeName=NODE)"},
	{regexp.MustCompile(`\bexec\b[^\n|;]*?\s--\s+mesh-accelctl\b`),
		"the image has no PATH to find mesh-accelctl by: name it /mesh-accelctl"},
	{regexp.MustCompile(`\bexec\b[^\n|;]*?\s--\s+(/bin/)?(ba)?sh\b`), "the image has no shell"},
}

// checkHints reports the wrong hints of text, from where.
func checkHints(t *testing.T, where, text string) {
	t.Helper()
	for i, line := range strings.Split(text, "\n") {
		for _, h := range wrongHints {
			if m := h.re.FindString(line); m != "" {
				t.Errorf("%s:%d: %q: %s", where, i+1, m, h.why)
			}
		}
	}
}

// The hints operators get (the CLI's help and messages, the alerts, the
// README and the docs) give commands that work in the installer's image:
// no wget, no shell, /mesh-accelctl by its path, and the installer pod of
// the node rather than kubectl exec ds/... (any node's pod).
func TestHintsWork(t *testing.T) {
	// The rules match what they are meant to.
	for _, bad := range []string{
		"kubectl -n mesh-accel exec ds/mesh-accel-node -- /mesh-accelctl status",
		"kubectl exec -n mesh-accel daemonset/mesh-accel-node -- mesh-accelctl status",
		"kubectl -n mesh-accel logs ds/mesh-accel-node | grep source=plugin",
		"kubectl exec $POD -- wget -qO- localhost:9753/readyz",
		"kubectl exec $POD -- mesh-accelctl status",
		"kubectl exec $POD -- sh -c 'mesh-accelctl dump > /tmp/x'",
	} {
		matched := false
		for _, h := range wrongHints {
			matched = matched || h.re.MatchString(bad)
		}
		if !matched {
			t.Errorf("no rule catches %q", bad)
		}
	}
	for _, good := range []string{
		"kubectl -n mesh-accel exec $POD -- /mesh-accelctl dump -w - > x.pcap",
		"kubectl -n mesh-accel set env ds/mesh-accel-node MESH_ACCEL_REMOVE_BPF_ON_EXIT=true",
		"kubectl -n mesh-accel rollout status ds/mesh-accel-node",
		"kubectl -n shop get pod cart -o yaml | kubectl -n mesh-accel exec -i POD -- /mesh-accelctl rules check -f -",
	} {
		for _, h := range wrongHints {
			if h.re.MatchString(good) {
				t.Errorf("rule %s catches %q", h.re, good)
			}
		}
	}

	// The CLI: every command's help and flags, and the messages that say
	// how to run it.
	a := &app{deps: Deps{}.withDefaults()}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		where := c.CommandPath() + " --help"
		checkHints(t, where, c.Use+"\n"+c.Short+"\n"+c.Long+"\n"+c.Example)
		c.Flags().VisitAll(func(f *pflag.Flag) { checkHints(t, where+" --"+f.Name, f.Usage) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.rootCmd())
	checkHints(t, "ErrNeedsRoot", ErrNeedsRoot.Error())
	checkHints(t, "dump's read-only error", createError(&fs.PathError{Op: "open", Path: "/x.pcap", Err: syscall.EROFS}).Error())
	checkHints(t, "health's error", askReadyz(t.Context(), "http://127.0.0.1:1/readyz").Reason)
	if !strings.Contains(ErrNeedsRoot.Error(), installerPodCmd) {
		t.Errorf("ErrNeedsRoot does not say how to find the installer pod of the node: %s", ErrNeedsRoot)
	}

	// The alerts, the README and the docs, the manifests' texts included.
	files := []string{"../README.md", "../DEVELOPERS.md"}
	docs, _ := filepath.Glob("../docs/*.md")
	files = append(files, docs...)
	err := filepath.WalkDir("../manifests", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".md", ".yaml", ".yml", ".txt", ".tpl", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seen[filepath.ToSlash(f)] = true
		checkHints(t, strings.TrimPrefix(f, "../"), string(b))
	}
	for _, f := range []string{"../README.md", "../manifests/monitoring/prometheusrule.yaml", "../manifests/monitoring/README.md"} {
		if !seen[f] {
			t.Errorf("%s not checked", f)
		}
	}
}
