package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/rules"
)

// Flags, their environment variables and the defaults feed one Config; a
// flag beats its variable, which beats the default.
func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*Config) bool
		err   string
	}{
		{name: "defaults", check: func(c *Config) bool {
			return c.HostCNIBinDir == "/host/opt/cni/bin" && c.HostCNIConfDir == "/host/etc/cni/net.d" && c.CNIConfName == "" &&
				c.PluginBinary == "/opt/mesh-accel/mesh-accel" && c.KubeconfigPath == "/host/etc/mesh-accel/kubeconfig" &&
				c.HostKubeconfigPath == "/etc/mesh-accel/kubeconfig" && c.RulesFile == "/etc/mesh-accel/rules/rules" &&
				c.BPFFS == "/sys/fs/bpf" && c.BPFRoot == "mesh-accel" && c.Listen == ":9753" && !c.RemoveBPFOnExit &&
				c.SAToken == "/var/run/secrets/kubernetes.io/serviceaccount/token" && c.APIHost == "" && c.LogLevel == slog.LevelInfo
		}},
		{name: "env", env: map[string]string{"MESH_ACCEL_HOST_CNI_CONF_DIR": "/x/net.d", "MESH_ACCEL_REMOVE_BPF_ON_EXIT": "true",
			"MESH_ACCEL_LOG_LEVEL": "debug", "MESH_ACCEL_CNI_CONF_NAME": "10-calico.conflist"},
			check: func(c *Config) bool {
				return c.HostCNIConfDir == "/x/net.d" && c.RemoveBPFOnExit && c.LogLevel == slog.LevelDebug && c.CNIConfName == "10-calico.conflist"
			}},
		{name: "flag beats env", args: []string{"--host-cni-conf-dir=/flag", "--remove-bpf-on-exit=false"},
			env:   map[string]string{"MESH_ACCEL_HOST_CNI_CONF_DIR": "/env", "MESH_ACCEL_REMOVE_BPF_ON_EXIT": "1"},
			check: func(c *Config) bool { return c.HostCNIConfDir == "/flag" && !c.RemoveBPFOnExit }},
		{name: "api host from the service env", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			check: func(c *Config) bool { return c.APIHost == "https://10.96.0.1:443" }},
		{name: "api host IPv6", env: map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
			check: func(c *Config) bool { return c.APIHost == "https://[fd00::1]:6443" }},
		{name: "api host given", args: []string{"--api-host", "https://api:6443"}, env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			check: func(c *Config) bool { return c.APIHost == "https://api:6443" }},
		{name: "version skips the checks", args: []string{"--version", "--bpffs=relative"}, check: func(c *Config) bool { return c.ShowVersion }},
		{name: "sidecar uid", env: map[string]string{"MESH_ACCEL_SIDECAR_UID": "1000690000"},
			check: func(c *Config) bool {
				e := NewEntry(c)
				return c.SidecarUID == 1000690000 && e.SidecarUID == 1000690000 &&
					strings.Contains(rules.DefaultText(c.SidecarUID), "--uid-owner 1000690000 -j ACCEPT")
			}},
		{name: "sidecar uid default stays out of the entry", check: func(c *Config) bool {
			return c.SidecarUID == 1337 && NewEntry(c).SidecarUID == 0
		}},
		{name: "plugin settings at their defaults stay out of the entry", check: func(c *Config) bool {
			e := NewEntry(c)
			return !c.FailOnError && slices.Equal(c.ExcludeNamespaces, []string{"kube-system"}) && c.PodQuota == bpf.DefaultPodQuota &&
				c.BacklogLimit == bpf.DefaultBacklogLimit && c.bpfOptions().BacklogLimit == bpf.DefaultBacklogLimit &&
				!e.FailOnError && e.ExcludeNamespaces == nil && e.PodQuota == 0
		}},
		{name: "plugin settings from env", env: map[string]string{"MESH_ACCEL_FAIL_ON_ERROR": "true",
			"MESH_ACCEL_EXCLUDE_NAMESPACES": " kube-system, istio-system ,", "MESH_ACCEL_POD_QUOTA": "512", "MESH_ACCEL_BACKLOG_LIMIT": "1048576"},
			check: func(c *Config) bool {
				e := NewEntry(c)
				return e.FailOnError && slices.Equal(e.ExcludeNamespaces, []string{"kube-system", "istio-system"}) && e.PodQuota == 512 &&
					c.bpfOptions().BacklogLimit == 1<<20
			}},
		{name: "map size default stays out of the entry", check: func(c *Config) bool {
			return c.MapSize == bpf.DefaultMapSize && NewEntry(c).MapSize == 0 && c.bpfOptions().Layout() == bpf.LayoutVersion
		}},
		{name: "map size from env", env: map[string]string{"MESH_ACCEL_MAP_SIZE": "262144"}, check: func(c *Config) bool {
			return c.MapSize == 262144 && NewEntry(c).MapSize == 262144 && c.bpfOptions().MapSize == 262144 &&
				c.bpfOptions().Layout() == bpf.LayoutVersion+"-262144"
		}},
		{name: "map size flag beats env", args: []string{"--map-size=1024"}, env: map[string]string{"MESH_ACCEL_MAP_SIZE": "2048"},
			check: func(c *Config) bool { return c.MapSize == 1024 && NewEntry(c).MapSize == 1024 }},
		{name: "map size not a power of two", args: []string{"--map-size=100000"},
			err: "--map-size (MESH_ACCEL_MAP_SIZE) 100000 entries: want a power of two from 1024 to 1048576 (default 65536)"},
		{name: "map size too small", env: map[string]string{"MESH_ACCEL_MAP_SIZE": "512"}, err: "--map-size (MESH_ACCEL_MAP_SIZE) 512 entries"},
		{name: "map size too large", args: []string{"--map-size=2097152"}, err: "--map-size (MESH_ACCEL_MAP_SIZE) 2097152 entries"},
		{name: "map size zero", args: []string{"--map-size=0"}, err: "--map-size (MESH_ACCEL_MAP_SIZE) 0 entries"},
		{name: "map size not a number", env: map[string]string{"MESH_ACCEL_MAP_SIZE": "64k"}, err: "MESH_ACCEL_MAP_SIZE=\"64k\""},
		{name: "no namespace excluded", args: []string{"--exclude-namespaces=-"}, env: map[string]string{"MESH_ACCEL_EXCLUDE_NAMESPACES": "a"},
			check: func(c *Config) bool {
				e := NewEntry(c)
				return e.ExcludeNamespaces != nil && len(e.ExcludeNamespaces) == 0
			}},
		{name: "bad namespace", args: []string{"--exclude-namespaces=kube-system,Bad_NS"}, err: "--exclude-namespaces: \"Bad_NS\""},
		{name: "zero pod quota", env: map[string]string{"MESH_ACCEL_POD_QUOTA": "0"}, err: "--pod-quota must be at least 1"},
		{name: "zero backlog limit", args: []string{"--backlog-limit=0"}, err: "--backlog-limit must be at least 1"},
		{name: "bad uint env", env: map[string]string{"MESH_ACCEL_SIDECAR_UID": "envoy"}, err: "MESH_ACCEL_SIDECAR_UID"},
		{name: "bad bool env", env: map[string]string{"MESH_ACCEL_REMOVE_BPF_ON_EXIT": "yes please"}, err: "MESH_ACCEL_REMOVE_BPF_ON_EXIT"},
		{name: "relative path", args: []string{"--state-dir=var/lib"}, err: "--state-dir \"var/lib\" is not an absolute path"},
		{name: "bpf root with a slash", args: []string{"--bpf-root=a/b"}, err: "--bpf-root"},
		{name: "conf name with a slash", args: []string{"--cni-conf-name=../x.conf"}, err: "--cni-conf-name"},
		{name: "bad log level", args: []string{"--log-level=loud"}, err: "--log-level"},
		{name: "unknown flag", args: []string{"--nope"}, err: "unknown flag"},
		{name: "extra argument", args: []string{"now"}, err: "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("config %+v", c)
			}
		})
	}
}

// Every flag is documented with its environment variable.
func TestConfigHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := NewConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range []string{FlagHostCNIBinDir, FlagHostCNIConfDir, FlagCNIConfName, FlagPluginBinary, FlagKubeconfigPath,
		FlagHostKubeconfigPath, FlagRulesFile, FlagRulesCopyPath, FlagHostRulesFile, FlagBPFFS, FlagBPFRoot, FlagStateDir,
		FlagPluginLogFile, FlagCgroupRoot, FlagListen, FlagRemoveBPFOnExit, FlagSAToken, FlagSACA, FlagAPIHost, FlagLogLevel,
		FlagMountBPFFS, FlagVersion, FlagSweepInterval, FlagFailOnError, FlagExcludeNamespaces, FlagPodQuota, FlagBacklogLimit,
		FlagNoPluginKubeconfig, FlagMapSize} {
		if !strings.Contains(out.String(), "--"+f) || !strings.Contains(out.String(), "(env "+EnvName(f)+")") {
			t.Errorf("help lacks --%s or its variable %s", f, EnvName(f))
		}
	}
}

// Main: --version prints and exits 0, a bad command line exits 2.
func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--version"}, 0, "mesh-accel-installer ", ""},
		{[]string{"--bogus"}, 2, "", "unknown flag: --bogus"},
		{[]string{"--listen="}, 2, "", "--listen must not be empty"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, func(string) string { return "" }, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q", tc.args, code, stdout.String(), stderr.String())
		}
	}
}

// --backlog-limit reaches the node state at every start: when the state is
// created and when a later installer reuses it.
func TestBacklogLimitReachesNode(t *testing.T) {
	testenv.RequireRoot(t)
	root := fmt.Sprintf("mesh-accel-test-backlog-%d", os.Getpid())
	open := func(limit string) *bpf.Node {
		t.Helper()
		c, err := NewConfig([]string{"--bpf-root=" + root, "--backlog-limit=" + limit}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		n, err := BPFEngine{}.OpenNode(c.bpfOptions())
		if err != nil {
			testenv.Missing(t, "BPF node state: %v", err)
		}
		return n.(*bpf.Node)
	}
	n := open("65536")
	t.Cleanup(func() { _ = n.Remove(); _ = n.Close() })
	if got, err := n.BacklogLimit(); err != nil || got != 65536 {
		t.Errorf("new state: bound %d, %v; want 65536", got, err)
	}
	again := open("131072")
	defer again.Close()
	if got, err := n.BacklogLimit(); err != nil || got != 131072 {
		t.Errorf("reused state: bound %d, %v; want 131072", got, err)
	}
}

// --map-size names the node state the installer opens: another size than
// the node's state makes a new state beside it (which the start's upgrade
// pass fills, bpf.TestUpgradeMapSize), with maps of that size and the
// fair share derived from it.
func TestMapSizeReachesNode(t *testing.T) {
	root := bpftest.UniqueRoot()
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, root)) })
	open := func(args ...string) *bpf.Node {
		t.Helper()
		c, err := NewConfig(append([]string{"--bpf-root=" + root}, args...), func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		testenv.RequireRoot(t)
		n, err := BPFEngine{}.OpenNode(c.bpfOptions())
		if err != nil {
			testenv.Missing(t, "BPF node state: %v", err)
		}
		return n.(*bpf.Node)
	}
	def := open()
	defer def.Close()
	big := open("--map-size=262144")
	defer func() { _ = big.Remove() }()
	if filepath.Base(def.Dir()) != bpf.LayoutVersion || filepath.Base(big.Dir()) != bpf.LayoutVersion+"-262144" {
		t.Fatalf("states at %s and %s; want %s and %s-262144 side by side", def.Dir(), big.Dir(), bpf.LayoutVersion, bpf.LayoutVersion)
	}
	for _, c := range []struct {
		n          *bpf.Node
		size, g, p uint32
	}{{def, 65536, 128, 32768}, {big, 262144, 512, 131072}} {
		sh, err := c.n.Share()
		if err != nil {
			t.Fatal(err)
		}
		if sh.Capacity != c.size || sh.Guaranteed != c.g || sh.GuaranteedPods != 256 || sh.Pool != c.p {
			t.Errorf("share of %s: %+v; want %d entries, %d guaranteed to 256 pods, a pool of %d", c.n.Dir(), sh, c.size, c.g, c.p)
		}
	}
}

// --listen takes host:port, the host an address in brackets (what the
// DaemonSet passes for the node's IPv4 or IPv6 address), a name or nothing;
// an IPv6 address without brackets, a variable the kubelet did not expand
// and a bad port are refused at start, with the reason.
func TestListenAddress(t *testing.T) {
	for _, tc := range []struct {
		listen, err string
	}{
		{":9753", ""},
		{"[10.1.2.3]:9753", ""},
		{"[fd00::1]:9753", ""},
		{"10.1.2.3:19753", ""},
		{"localhost:9753", ""},
		{"fd00::1:9753", "too many colons"},
		{"[$(MESH_ACCEL_HOST_IP)]:9753", "not an address"},
		{"10.1.2.3", "missing port"},
		{"10.1.2.3:0", "want a number from 1"},
		{"10.1.2.3:metrics", "want a number from 1"},
	} {
		_, err := NewConfig(nil, func(k string) string {
			if k == EnvName(FlagListen) {
				return tc.listen
			}
			return ""
		}, io.Discard)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("--listen %q: %v, want %q", tc.listen, err, tc.err)
		}
	}
}

// --no-plugin-kubeconfig (MESH_ACCEL_NO_PLUGIN_KUBECONFIG) takes the
// kubeconfig out of the plugin's entry; by default the entry names it.
func TestNoPluginKubeconfigEntry(t *testing.T) {
	for env, want := range map[string]string{"": DefaultHostKubeconfigPath, "true": ""} {
		c, err := NewConfig(nil, func(k string) string {
			if k == EnvName(FlagNoPluginKubeconfig) {
				return env
			}
			return ""
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := NewEntry(c).Kubeconfig; got != want || c.NoPluginKubeconfig != (env == "true") {
			t.Errorf("%s=%q: entry kubeconfig %q, want %q", EnvName(FlagNoPluginKubeconfig), env, got, want)
		}
	}
}

// The DaemonSet's configuration, and one with every optional setting, make
// the entries whose splicing package cniconf checks against its golden
// files (cniconf's DefaultEntry and OptionsEntry).
func TestEntryOfConfig(t *testing.T) {
	caps := map[string]bool{plugin.CapPodAnnotations: true, plugin.CapCgroupPath: true}
	base := Entry{Type: PluginType, Capabilities: caps, Kubeconfig: DefaultHostKubeconfigPath,
		RulesFile: DefaultHostRulesFile, LogFile: plugin.DefaultLogFile}
	options := base
	options.BPFRoot, options.StateDir, options.SidecarUID = "/sys/fs/bpf/mesh-accel-b", "/var/lib/mesh-accel-b", 1000690001
	options.ExcludeNamespaces, options.FailOnError = []string{"kube-system", "istio-system"}, true
	options.PodQuota, options.MapSize = 2048, 262144
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Entry
	}{
		{"defaults", nil, base},
		{"options", map[string]string{
			"MESH_ACCEL_SIDECAR_UID": "1000690001", "MESH_ACCEL_FAIL_ON_ERROR": "true",
			"MESH_ACCEL_EXCLUDE_NAMESPACES": "kube-system,istio-system", "MESH_ACCEL_POD_QUOTA": "2048",
			"MESH_ACCEL_BPF_ROOT": "mesh-accel-b", "MESH_ACCEL_STATE_DIR": "/var/lib/mesh-accel-b", "MESH_ACCEL_MAP_SIZE": "262144",
		}, options},
	} {
		c, err := NewConfig(nil, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := NewEntry(c); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: entry %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
