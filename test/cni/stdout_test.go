package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// execPlugin runs the mesh-accel binary directly, as a runtime does, for
// pod p (nil for STATUS, GC, VERSION). On a non-zero exit the error is the
// CNI error it printed.
func (c *chain) execPlugin(cmd string, p *cniPod, stdin []byte) (stdout, stderr []byte, err error) {
	c.t.Helper()
	x := exec.Command(filepath.Join(c.bin, plugin.TypeName))
	x.Env = []string{"CNI_COMMAND=" + cmd, "CNI_PATH=" + c.bin, "CNI_IFNAME=eth0"}
	if p != nil {
		x.Env = append(x.Env, "CNI_CONTAINERID="+p.Container, "CNI_NETNS="+p.Netns,
			fmt.Sprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=%s;K8S_POD_UID=%s", p.Name, p.UID))
	}
	var out, errb bytes.Buffer
	x.Stdin, x.Stdout, x.Stderr = bytes.NewReader(stdin), &out, &errb
	if err := x.Run(); err != nil {
		var te types.Error
		if jerr := json.Unmarshal(out.Bytes(), &te); jerr != nil {
			return out.Bytes(), errb.Bytes(), fmt.Errorf("%s: %w, stdout %q, stderr %s", cmd, err, out.Bytes(), errb.Bytes())
		}
		return out.Bytes(), errb.Bytes(), &te
	}
	return out.Bytes(), errb.Bytes(), nil
}

// oneJSON fails unless b is exactly one JSON object (and whitespace).
func oneJSON(t *testing.T, what string, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: stdout is not one JSON object: %v\n%s", what, err, b)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: stdout holds more than one JSON value:\n%s", what, b)
	}
	return v
}

// The plugin prints nothing but its result (or its error) on stdout, in
// every command and version, however much it logs; the logs go to stderr
// and the log file, labelled with the pod.
func TestPluginStdout(t *testing.T) {
	c := newChain(t, "", false)
	a := c.mustAddPod(podSpec{name: "a", ann: accelerated, noApp: true})
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		res, err := a.Result.GetAsVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		conf := c.pluginConf(a, res)
		cmds := []string{"ADD", "CHECK"}
		if v == "0.3.1" {
			cmds = cmds[:1] // CHECK came with 0.4.0
		}
		for _, cmd := range cmds {
			out, stderr, err := c.execPlugin(cmd, a, conf)
			if err != nil {
				t.Fatalf("%s %s: %v", cmd, v, err)
			}
			if cmd == "CHECK" {
				if len(out) != 0 {
					t.Errorf("CHECK %s printed %q", v, out)
				}
				continue
			}
			if r := oneJSON(t, "ADD "+v, out); r["cniVersion"] != v || r["ips"] == nil {
				t.Errorf("ADD %s printed %v", v, r)
			}
			if !strings.Contains(string(stderr), "pod=default/a uid="+a.UID) {
				t.Errorf("ADD %s: stderr lines not labelled with the pod:\n%s", v, stderr)
			}
		}
	}
	out, _, err := c.execPlugin("VERSION", nil, []byte(`{"cniVersion":"1.1.0"}`))
	if v := oneJSON(t, "VERSION", out); err != nil || fmt.Sprint(v["supportedVersions"]) != "[0.3.0 0.3.1 0.4.0 1.0.0 1.1.0]" {
		t.Errorf("VERSION: %v, %v", v, err)
	}
	for _, cmd := range []string{"STATUS", "GC"} {
		out, _, err := c.execPlugin(cmd, nil, c.pluginConf(nil, nil))
		if err != nil || len(out) != 0 {
			t.Errorf("%s: %v, printed %q", cmd, err, out)
		}
	}
	// Errors are one JSON object too.
	out, _, err = c.execPlugin("ADD", a, c.pluginConf(a, nil))
	if !isCode(err, types.ErrInvalidNetworkConfig) || !strings.Contains(err.Error(), "must be called as a chained plugin") {
		t.Errorf("ADD without prevResult: %v", err)
	}
	oneJSON(t, "ADD without prevResult", out)
	out, _, err = c.execPlugin("ADD", a, []byte(`{"cniVersion":"1.1.0","name":"x","type":"mesh-accel","failOnError":"yes"}`))
	if !isCode(err, types.ErrDecodingFailure) || !strings.Contains(err.Error(), "failOnError") {
		t.Errorf("ADD with a malformed config: %v", err)
	}
	oneJSON(t, "malformed config", out)

	log, err := os.ReadFile(c.params.LogFile)
	if err != nil || !strings.Contains(string(log), `msg="pod accelerated" cmd=ADD pod=default/a uid=`+a.UID) {
		t.Errorf("log file %s (%v) lacks the labelled ADD:\n%s", c.params.LogFile, err, log)
	}
	// The ADD's line carries its time since the plugin started, which the
	// installer turns into the ADD latency histogram.
	var setup []time.Duration
	for _, line := range bytes.Split(log, []byte("\n")) {
		if d, ok := nodestate.ParseSetupDuration(line); ok {
			setup = append(setup, d)
		}
	}
	if len(setup) == 0 || setup[0] <= 0 || setup[0] > time.Minute {
		t.Errorf("ADD times in the log: %v, want one between 0 and a minute:\n%s", setup, log)
	}
}

// The conflists the tests drive (golden files; UPDATE_GOLDEN=1 rewrites).
func TestConflistGolden(t *testing.T) {
	p := chainParams{
		Name: "mesh-test", Bridge: "mcb0123456789", Subnet: "10.77.1.0/24", IPAMDir: "/tmp/t/ipam",
		BPFRoot: "/sys/fs/bpf/mesh-accel-test-0123", StateDir: "/tmp/t/state", LogFile: "/tmp/t/log/cni.log",
		LogLevel: "debug", APITimeout: "3s",
	}
	testenv.Golden(t, "testdata/conflist-capabilities.json", conflist(p))
	p.Kubeconfig, p.FailOnError = "/tmp/t/kubeconfig", true
	testenv.Golden(t, "testdata/conflist-api.json", conflist(p))
}
