package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/containernetworking/cni/pkg/skel"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
)

func TestAddNeedsPrevResult(t *testing.T) {
	e := newEnv(t)
	delete(e.conf, "prevResult")
	for _, p := range []pod{enabledPod("web"), {}} {
		err := e.add(p, nil)
		if errCode(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "must be called as a chained plugin") {
			t.Errorf("ADD without prevResult = %v, want a chained-plugin error", err)
		}
	}
	if e.stdout.Len() != 0 || e.eng.opens != 0 {
		t.Errorf("printed %q, opened the engine %d times", e.stdout.String(), e.eng.opens)
	}
}

// Pods that are not to be accelerated: the result passes through, nothing
// is opened or recorded.
func TestAddPassThrough(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pod      pod
		conf     map[string]any
		apiCalls int
	}{
		{"not a pod", pod{container: "c1"}, nil, 0},
		{"kube-system by default", pod{ns: "kube-system", name: "dns", uid: "u1", container: "c1", ann: map[string]string{AnnotationEnabled: "true"}}, nil, 0},
		{"excluded namespace", enabledPod("web"), map[string]any{"excludeNamespaces": []string{"default"}}, 0},
		{"no annotation", pod{ns: "default", name: "web", uid: "u1", container: "c1", ann: map[string]string{}}, nil, 0},
		{"other value", pod{ns: "default", name: "web", uid: "u1", container: "c1", ann: map[string]string{AnnotationEnabled: "True"}}, nil, 0},
		{"not annotated in the API", pod{ns: "default", name: "api", uid: "u1", container: "c1"}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.api.pods["default/api"] = &podMeta{UID: "u1", Annotations: map[string]string{"other": "x"}}
			e.mustAdd(tc.pod, tc.conf)
			if e.eng.opens != 0 || len(e.eng.pods) != 0 || e.api.calls != tc.apiCalls {
				t.Errorf("engine opened %d times, %d pods, %d API calls (want %d)", e.eng.opens, len(e.eng.pods), e.api.calls, tc.apiCalls)
			}
			if recs, _ := (store{e.stateDir}).list(); len(recs) != 0 {
				t.Errorf("records: %+v", recs)
			}
		})
	}
}

func TestAddAccelerates(t *testing.T) {
	e := newEnv(t)
	p := enabledPod("web")
	dir := e.mkCgroup(p)
	e.mustAdd(p, nil)
	got, ok := e.eng.pod(p.uid)
	if !ok || got.cgroup != dir || got.cfg.TrustApp || got.cfg.SidecarUID != 1337 || !got.cfg.Rules.Equal(rules.Default()) {
		t.Fatalf("pod state %+v (attached %v), want the default rules on %s", got, ok, dir)
	}
	rec, err := (store{e.stateDir}).get(p.uid)
	if err != nil || rec == nil || rec.ContainerID != p.container || rec.IfName != "eth0" || rec.Network != "net" || rec.CgroupDir != dir {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if !strings.Contains(e.logs.String(), `msg="pod accelerated"`) || !strings.Contains(e.logs.String(), "pod=default/web uid=uid-web") {
		t.Errorf("log lines not labelled with the pod:\n%s", e.logs.String())
	}

	// A repeated ADD updates the configuration.
	p.ann[AnnotationTrustApp] = "true"
	e.mustAdd(p, map[string]any{"sidecarUID": 2000, "podQuota": 500})
	got, _ = e.eng.pod(p.uid)
	if len(e.eng.pods) != 1 || !got.cfg.TrustApp || got.cfg.SidecarUID != 2000 || got.cfg.Rules.Rules[0].UID != 2000 ||
		got.cfg.Quota != 500 {
		t.Fatalf("after a second ADD: %d pods, %+v", len(e.eng.pods), got)
	}
}

// Without the annotations capability the pod comes from the API server,
// which also gives the uid when CNI_ARGS lack it.
func TestAddAnnotationsFromAPI(t *testing.T) {
	e := newEnv(t)
	e.api.pods["prod/web"] = &podMeta{UID: "uid-api", Annotations: map[string]string{AnnotationEnabled: "true"}}
	p := pod{ns: "prod", name: "web", container: "c1"}
	e.mkCgroup(pod{uid: "uid-api"})
	e.mustAdd(p, nil)
	if _, ok := e.eng.pod("uid-api"); !ok || e.api.calls != 1 {
		t.Fatalf("pod not attached under the API's uid (%d API calls): %v", e.api.calls, e.eng.pods)
	}
}

// With the annotations capability declared, an ADD whose runtime passes
// null annotations (containerd, for a pod without any) makes no API call:
// the pod has no annotations, so it is not accelerated.
func TestAddNullAnnotationsNoAPICall(t *testing.T) {
	e := newEnv(t)
	e.api.err = errors.New("the API server must not be asked")
	p := pod{ns: "prod", name: "web", uid: "uid-1", container: "c1"}
	e.mkCgroup(p)
	e.mustAdd(p, map[string]any{"capabilities": map[string]bool{CapPodAnnotations: true}})
	if e.api.calls != 0 || len(e.eng.pods) != 0 {
		t.Fatalf("%d API calls, %d pods attached; want none", e.api.calls, len(e.eng.pods))
	}
	// Without the capability the API server is the source.
	e.api.err = nil
	e.api.pods["prod/web"] = &podMeta{UID: "uid-1"}
	e.mustAdd(p, nil)
	if e.api.calls != 1 {
		t.Fatalf("%d API calls without the capability, want 1", e.api.calls)
	}
}

// Setup failures: fail-open by default (logged, counted, the pod starts),
// CNI errors with failOnError. Nothing is left behind either way.
func TestAddFailures(t *testing.T) {
	rulesFile := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(rulesFile, []byte("chain --port 99999 -j ACCEPT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	many := strings.Repeat("chain --port 80 -j ACCEPT\n", 63)
	for _, tc := range []struct {
		name   string
		reason Reason
		setup  func(e *env, p *pod) map[string]any
		want   string // in the error
	}{
		{"cgroup not found", ReasonCgroup, func(e *env, p *pod) map[string]any {
			e.cgroups.err = failf(ReasonCgroup, "no cgroup of pod uid %s", p.uid)
			return nil
		}, "no cgroup of pod uid"},
		{"no BPF", ReasonKernel, func(e *env, p *pod) map[string]any {
			e.eng.openErr, e.eng.kernelErr = errors.New("operation not permitted"), errors.New("kernel lacks sockops programs")
			return nil
		}, "kernel lacks sockops"},
		{"node state", ReasonNodeState, func(e *env, p *pod) map[string]any {
			e.eng.openErr = errors.New("pinned map is incompatible")
			return nil
		}, "pinned map is incompatible"},
		{"API unreachable", ReasonAPI, func(e *env, p *pod) map[string]any {
			p.ann, e.api.err = nil, failf(ReasonAPI, "connection refused")
			return nil
		}, "connection refused"},
		{"malformed rules annotation", ReasonAnnotation, func(e *env, p *pod) map[string]any {
			p.ann[AnnotationRules] = "chain --port 80 -j ACCEPT\nchain --uid-owner x -j ACCEPT"
			return nil
		}, AnnotationRules + ":2:"},
		{"malformed exclusion", ReasonAnnotation, func(e *env, p *pod) map[string]any {
			p.ann[AnnotationExcludeOutboundIPRanges] = "10.0.0.0/8, 300.1.1.1/32"
			return nil
		}, AnnotationExcludeOutboundIPRanges},
		{"too many rules", ReasonAnnotation, func(e *env, p *pod) map[string]any {
			p.ann[AnnotationRules] = many
			return nil
		}, "65"},
		{"bad rules file", ReasonRulesFile, func(e *env, p *pod) map[string]any {
			return map[string]any{"rulesFile": rulesFile}
		}, rulesFile + ":1:"},
		{"attach", ReasonAttach, func(e *env, p *pod) map[string]any {
			e.eng.attachErr = errors.New("cgroup is not cgroup v2")
			return nil
		}, "not cgroup v2"},
	} {
		for _, failOnError := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: "/failOnError"}[failOnError], func(t *testing.T) {
				e := newEnv(t)
				p := enabledPod("web")
				e.mkCgroup(p)
				conf := tc.setup(e, &p)
				if conf == nil {
					conf = map[string]any{}
				}
				conf["failOnError"] = failOnError
				err := e.add(p, conf)
				switch {
				case failOnError && (errCode(err) != CodeSetupFailed || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("ADD = %v, want code %d naming %q", err, CodeSetupFailed, tc.want)
				case !failOnError && (err != nil || !strings.Contains(e.logs.String(), tc.want) || e.stdout.Len() == 0):
					t.Errorf("ADD = %v (printed %d bytes), want success and a log naming %q:\n%s", err, e.stdout.Len(), tc.want, e.logs.String())
				}
				if c := e.failures()[tc.reason]; c.Count != 1 || !strings.Contains(c.LastError, tc.want) || c.LastPod != "default/web (uid-web)" {
					t.Errorf("failure counters %+v, want one %s", e.failures(), tc.reason)
				}
				if recs, _ := (store{e.stateDir}).list(); len(e.eng.pods) != 0 || len(recs) != 0 {
					t.Errorf("left behind: pods %v, records %+v", e.eng.pods, recs)
				}
			})
		}
	}
}

func TestDel(t *testing.T) {
	e := newEnv(t)
	e.api.err = errors.New("DEL must never ask the API server")
	a, b := enabledPod("a"), enabledPod("b")
	e.mkCgroup(a)
	e.mkCgroup(b)
	e.mustAdd(a, nil)
	e.mustAdd(b, nil)

	// A DEL from another (older) sandbox of the pod leaves it alone.
	stale := a
	stale.container = "c-old"
	if err := e.del(stale, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.eng.pod(a.uid); !ok {
		t.Fatal("DEL of another container detached the pod")
	}
	for i := range 2 { // repeated DEL
		a.ann = nil // DEL needs no annotations
		if err := e.del(a, nil); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if _, ok := e.eng.pod(a.uid); ok || e.stdout.Len() == 0 {
		t.Fatal("DEL left the pod attached")
	}
	if rec, _ := (store{e.stateDir}).get(a.uid); rec != nil {
		t.Errorf("DEL left the record %+v", rec)
	}
	if _, ok := e.eng.pod(b.uid); !ok {
		t.Error("DEL of a detached b")
	}
	// Nothing to delete: the engine is not even opened.
	opens := e.eng.opens
	if err := e.del(enabledPod("never-added"), nil); err != nil || e.eng.opens != opens {
		t.Errorf("DEL of an unknown pod = %v, %d opens", err, e.eng.opens-opens)
	}
	if e.api.calls != 0 {
		t.Errorf("DEL asked the API server %d times", e.api.calls)
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	p := enabledPod("web")
	e.mkCgroup(p)
	check := func() error { return e.call("CHECK", doCheck, e.args(p, nil)) }
	e.eng.exists = true
	if err := check(); errCode(err) != CodeNotAccelerated || !strings.Contains(err.Error(), "has no state") {
		t.Errorf("CHECK before ADD = %v, want code %d", err, CodeNotAccelerated)
	}
	e.mustAdd(p, nil)
	if err := check(); err != nil {
		t.Errorf("CHECK after ADD = %v", err)
	}
	// A broken pod fails its own CHECK, not the others'.
	setBroken := func(own, other bool) {
		e.eng.mu.Lock()
		defer e.eng.mu.Unlock()
		delete(e.eng.pods, "uid-other")
		var cg string
		for id, fp := range e.eng.pods {
			fp.broken, cg = nil, fp.cgroup
			if own {
				fp.broken = fmt.Errorf("%w: pod %s lacks its sockops link", bpf.ErrPodBroken, id)
			}
			e.eng.pods[id] = fp
		}
		if other {
			e.eng.pods["uid-other"] = fakePod{cgroup: cg, broken: bpf.ErrPodBroken}
		}
	}
	setBroken(false, true)
	if err := check(); err != nil {
		t.Errorf("CHECK beside a broken pod = %v", err)
	}
	setBroken(true, false)
	if err := check(); errCode(err) != CodeNotAccelerated || !strings.Contains(err.Error(), "lacks its sockops link") {
		t.Errorf("CHECK of a broken pod = %v, want code %d", err, CodeNotAccelerated)
	}
	setBroken(false, false)
	p.ann[AnnotationTrustApp] = "true"
	if err := check(); errCode(err) != CodeNotAccelerated || !strings.Contains(err.Error(), "trustApp") {
		t.Errorf("CHECK with another annotation = %v, want a difference", err)
	}
	p.ann[AnnotationEnabled] = "false"
	if err := check(); err != nil {
		t.Errorf("CHECK of a pod not to accelerate = %v", err)
	}
	p.ann[AnnotationEnabled] = "true"
	e.eng.exists = false
	if err := check(); errCode(err) != CodeNotAccelerated || !strings.Contains(err.Error(), "node state") {
		t.Errorf("CHECK without node state = %v", err)
	}
}

func TestStatus(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "missing-rules")
	for _, tc := range []struct {
		name  string
		setup func(e *env) map[string]any
		want  string
	}{
		{"ready", func(e *env) map[string]any { return nil }, ""},
		{"no node state", func(e *env) map[string]any { e.eng.exists = false; return nil }, "node state"},
		{"kernel", func(e *env) map[string]any { e.eng.kernelErr = errors.New("kernel lacks sk_msg"); return nil }, "sk_msg"},
		{"rules file", func(e *env) map[string]any { return map[string]any{"rulesFile": bad} }, "missing-rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.eng.exists = true
			err := e.call("STATUS", doStatus, e.args(pod{}, tc.setup(e)))
			if tc.want == "" && err != nil || tc.want != "" && (errCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("STATUS = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	pods := []pod{enabledPod("a"), enabledPod("b"), enabledPod("c"), enabledPod("other")}
	for _, p := range pods {
		e.mkCgroup(p)
		var conf map[string]any
		if p.name == "other" {
			conf = map[string]any{"name": "other-net"}
		}
		e.mustAdd(p, conf)
	}
	st := store{e.stateDir}
	if err := os.WriteFile(st.recordPath("corrupt"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := []map[string]string{{"containerID": "c-a", "ifname": "eth0"}, {"containerID": "c-b", "ifname": "eth0"}, {"containerID": "c-c", "ifname": "eth1"}}
	if err := e.call("GC", doGC, e.args(pod{}, map[string]any{"cni.dev/valid-attachments": valid})); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		_, attached := e.eng.pod(p.uid)
		rec, _ := st.get(p.uid)
		if want := p.name != "c"; attached != want || (rec != nil) != want {
			t.Errorf("pod %s: attached %v, record %v, want %v", p.name, attached, rec != nil, want)
		}
	}
	if _, err := os.Stat(st.recordPath("corrupt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt record kept: %v", err)
	}
}

// The previous result is printed unchanged, in the configuration's
// version (golden files; UPDATE_GOLDEN=1 rewrites them).
func TestPrintPrevResult(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "prevresult-"+v+".json"))
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t)
			e.conf["cniVersion"], e.conf["prevResult"] = v, json.RawMessage(in)
			e.mustAdd(enabledPod("web"), map[string]any{"excludeNamespaces": []string{"default"}})
			testenv.Golden(t, filepath.Join("testdata", "result-"+v+".json"), e.stdout.Bytes())
			var a, b any
			if err := errors.Join(json.Unmarshal(in, &a), json.Unmarshal(e.stdout.Bytes(), &b)); err != nil || !reflect.DeepEqual(a, b) {
				t.Errorf("the result is not the previous result (%v):\n%s", err, e.stdout.String())
			}
		})
	}
}

// The ADD of a new sandbox and the DEL of the pod's old one, run at once
// (as a runtime may when it recreates a sandbox), never leave the pod
// detached: they are serialised per pod uid.
func TestAddAndOldDelConcurrent(t *testing.T) {
	e := newEnv(t)
	e.eng.delay = 2 * time.Millisecond
	p := enabledPod("a")
	e.mkCgroup(p)
	quiet := func(cmd string, do func(*skel.CmdArgs, *Config, *deps) error, args *skel.CmdArgs) error {
		conf, err := parseConfig(args.StdinData)
		if err != nil {
			return err
		}
		return do(args, conf, &deps{engine: e.engine, cgroups: func() (cgroupResolver, error) { return e.cgroups, nil },
			pods: e.api, stdout: io.Discard, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	for i := range 50 {
		old, cur := p, p
		old.container, cur.container = fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i+1)
		if i == 0 {
			e.mustAdd(old, nil)
		}
		delArgs, addArgs := e.args(old, nil), e.args(cur, nil)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); errs[0] = quiet("DEL", doDel, delArgs) }()
		go func() { defer wg.Done(); errs[1] = quiet("ADD", doAdd, addArgs) }()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		rec, err := store{e.stateDir}.get(p.uid)
		if _, ok := e.eng.pod(p.uid); !ok || err != nil || rec == nil || rec.ContainerID != cur.container {
			t.Fatalf("round %d: after DEL of %s and ADD of %s: attached %v, record %+v (%v)", i, old.container,
				cur.container, ok, rec, err)
		}
	}
}
