package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// seccompSource is the container runtime whose RuntimeDefault seccomp
// profile a container gets.
type seccompSource struct {
	name    string
	profile func(t *testing.T, s *specs.Spec) *specs.LinuxSeccomp
}

// containerdModule is the module of containerd's current profile, in
// go.mod.
const containerdModule = "github.com/containerd/containerd/v2"

// currentContainerd makes the profile as containerd's CRI plugin does
// today: contrib/seccomp.DefaultProfile of the spec, whose capabilities
// decide which capability-gated syscalls it allows (bpf() with CAP_BPF
// since v1.6.9 and v1.7.0).
var currentContainerd = seccompSource{
	name: "containerd " + moduleVersion(containerdModule) + " (" + containerdModule + "/contrib/seccomp)",
	profile: func(_ *testing.T, s *specs.Spec) *specs.LinuxSeccomp {
		return seccomp.DefaultProfile(s)
	},
}

// olderProfileFile is containerd v1.6.8's profile for the DaemonSet's
// capabilities, which seccompgen wrote (see its doc for how to regenerate
// it).
const olderProfileFile = "testdata/containerd-v1.6.8-seccomp.json"

// olderContainerd gives the profile of containerd v1.6.8, the last
// release whose profile allows bpf() only with CAP_SYS_ADMIN, from
// testdata (one go.mod cannot hold two containerd versions). The file was
// made for one capability set and one architecture: a spec with other
// capabilities fails the test, which names the command that regenerates it.
var olderContainerd = seccompSource{
	name: "containerd v1.6.8 (" + olderProfileFile + ")",
	profile: func(t *testing.T, s *specs.Spec) *specs.LinuxSeccomp {
		t.Helper()
		f := readOlderProfile(t)
		if goruntime.GOARCH != f.GOARCH {
			testenv.Missing(t, "%s holds the %s syscall table; regenerate it on %s: "+
				"cd test/runtime/seccompgen && go run . -o ../testdata/containerd-v1.6.8-seccomp.json", olderProfileFile, f.GOARCH, goruntime.GOARCH)
		}
		caps := slices.Sorted(slices.Values(s.Process.Capabilities.Bounding))
		if !slices.Equal(caps, slices.Sorted(slices.Values(f.Capabilities))) {
			t.Fatalf("%s was generated for capabilities %v, the container has %v: regenerate it with "+
				"cd test/runtime/seccompgen && go run . -caps %s -o ../testdata/containerd-v1.6.8-seccomp.json",
				olderProfileFile, f.Capabilities, caps, joinComma(caps))
		}
		return f.Seccomp
	},
}

// olderProfile is the file seccompgen writes.
type olderProfile struct {
	Module       string              `json:"module"`
	Version      string              `json:"version"`
	GOARCH       string              `json:"goarch"`
	Capabilities []string            `json:"capabilities"`
	Seccomp      *specs.LinuxSeccomp `json:"seccomp"`
}

func readOlderProfile(t *testing.T) olderProfile {
	t.Helper()
	b, err := os.ReadFile(olderProfileFile)
	if err != nil {
		t.Fatal(err)
	}
	var f olderProfile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", olderProfileFile, err)
	}
	if f.Module != "github.com/containerd/containerd" || f.Version != "v1.6.8" || f.Seccomp == nil {
		t.Fatalf("%s: %s %s, profile %v; want containerd v1.6.8's", olderProfileFile, f.Module, f.Version, f.Seccomp != nil)
	}
	return f
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// moduleVersion is the version of module path that the main module's
// go.mod requires (go test's build info of the test binary lists no
// dependencies).
func moduleVersion(path string) string {
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		return "(unknown version)"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == path {
			return f[1]
		} else if len(f) >= 3 && f[0] == "require" && f[1] == path {
			return f[2]
		}
	}
	return "(unknown version)"
}

// allows reports whether profile lets syscall through unconditionally (a
// rule without argument conditions whose action is allow).
func allows(p *specs.LinuxSeccomp, syscall string) bool {
	if p.DefaultAction == specs.ActAllow {
		return true
	}
	for _, r := range p.Syscalls {
		if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, syscall) {
			return true
		}
	}
	return false
}

// The two profiles differ where the test needs them to, for the
// DaemonSet's capability set: containerd's current profile allows bpf()
// and perf_event_open() to CAP_BPF and CAP_PERFMON, v1.6.8's does not
// (only CAP_SYS_ADMIN would open them). Neither allows them without the
// capabilities.
func TestSeccompProfiles(t *testing.T) {
	caps := []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}
	spec := func(caps []string) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps}}, Linux: &specs.Linux{}}
	}
	cur := currentContainerd.profile(t, spec(caps))
	for _, sc := range []string{"bpf", "perf_event_open"} {
		if !allows(cur, sc) {
			t.Errorf("%s: %s not allowed with %v", currentContainerd.name, sc, caps)
		}
		if allows(currentContainerd.profile(t, spec([]string{"CAP_NET_ADMIN"})), sc) {
			t.Errorf("%s: %s allowed without CAP_BPF and CAP_PERFMON", currentContainerd.name, sc)
		}
	}
	old := olderContainerd.profile(t, spec(caps))
	for _, sc := range []string{"bpf", "perf_event_open"} {
		if allows(old, sc) {
			t.Errorf("%s: %s allowed with %v", olderContainerd.name, sc, caps)
		}
	}
	for _, sc := range []string{"read", "connect", "setsockopt"} {
		if !allows(old, sc) || !allows(cur, sc) {
			t.Errorf("%s not allowed by both profiles", sc)
		}
	}
}
