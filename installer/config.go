package installer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/mesh-accel/mesh-accel/installer/kernelcheck"
	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// Flag names. Each flag is bound to one environment variable, [EnvPrefix]
// followed by the flag's name in upper case with dashes as underscores
// (--host-cni-bin-dir: MESH_ACCEL_HOST_CNI_BIN_DIR). A flag given on the
// command line wins over its variable, which wins over the default.
const (
	FlagHostCNIBinDir      = "host-cni-bin-dir"
	FlagHostCNIConfDir     = "host-cni-conf-dir"
	FlagCNIConfName        = "cni-conf-name"
	FlagPluginBinary       = "plugin-binary"
	FlagKubeconfigPath     = "kubeconfig-path"
	FlagHostKubeconfigPath = "host-kubeconfig-path"
	FlagRulesFile          = "rules-file"
	FlagRulesCopyPath      = "rules-copy-path"
	FlagHostRulesFile      = "host-rules-file"
	FlagBPFFS              = nodestate.FlagBPFFS
	FlagBPFRoot            = nodestate.FlagBPFRoot
	FlagStateDir           = nodestate.FlagStateDir
	FlagSidecarUID         = nodestate.FlagSidecarUID
	FlagMapSize            = nodestate.FlagMapSize
	FlagPluginLogFile      = "plugin-log-file"
	FlagCgroupRoot         = "cgroup-root"
	FlagListen             = "listen"
	FlagRemoveBPFOnExit    = "remove-bpf-on-exit"
	FlagSAToken            = "sa-token"
	FlagSACA               = "sa-ca"
	FlagAPIHost            = cluster.FlagAPIHost
	FlagLogLevel           = "log-level"
	FlagMountBPFFS         = kernelcheck.FlagMountBPFFS
	FlagVersion            = "version"
	FlagSweepInterval      = "sweep-interval"
	FlagFailOnError        = "fail-on-error"
	FlagExcludeNamespaces  = "exclude-namespaces"
	FlagPodQuota           = "pod-quota"
	FlagBacklogLimit       = "backlog-limit"
	FlagNoPluginKubeconfig = "no-plugin-kubeconfig"
)

// NoNamespaces is the value of --exclude-namespaces that excludes no
// namespace (an empty variable means "unset", so "" cannot say it).
const NoNamespaces = "-"

// EnvName returns the environment variable bound to the flag (the rule of
// package nodestate, shared with mesh-accelctl).
func EnvName(flag string) string { return nodestate.EnvName(flag) }

// Defaults: the paths of the DaemonSet in manifests/, where the host's
// directories are mounted under /host and the image holds the plugin.
const (
	DefaultHostCNIBinDir      = "/host/opt/cni/bin"
	DefaultHostCNIConfDir     = "/host/etc/cni/net.d"
	DefaultPluginBinary       = "/opt/mesh-accel/mesh-accel"
	DefaultKubeconfigPath     = "/host/etc/mesh-accel/kubeconfig"
	DefaultHostKubeconfigPath = "/etc/mesh-accel/kubeconfig"
	DefaultRulesFile          = "/etc/mesh-accel/rules/rules"
	DefaultRulesCopyPath      = "/host/etc/mesh-accel/rules"
	DefaultHostRulesFile      = "/etc/mesh-accel/rules"
	DefaultStateDir           = nodestate.DefaultStateDir
	DefaultPluginLogFile      = plugin.DefaultLogFile
	DefaultCgroupRoot         = "/host/sys/fs/cgroup"
	DefaultListen             = ":9753"
	DefaultSAToken            = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultSACA               = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// Config is the installer's configuration, built by [NewConfig].
//
// Paths named Host* (and BPFFS, StateDir, PluginLogFile) are what the
// plugin sees on the host; the others are where the installer reads or
// writes them in its container. BPFFS and StateDir are mounted at the same
// path in the container as on the host.
type Config struct {
	HostCNIBinDir  string // the plugin binary goes here
	HostCNIConfDir string // the primary CNI config is here
	// CNIConfName names the primary config file in HostCNIConfDir; empty:
	// the lexicographically first .conf, .conflist or .json file.
	CNIConfName        string
	PluginBinary       string // the plugin binary to copy
	KubeconfigPath     string // where the plugin's kubeconfig is written
	HostKubeconfigPath string // the same file as the plugin sees it
	RulesFile          string // the node's default rules (the ConfigMap)
	RulesCopyPath      string // where the valid rules are copied
	HostRulesFile      string // the same copy as the plugin sees it
	BPFFS              string // bpffs mount point
	BPFRoot            string // mesh-accel's folder under BPFFS
	// SidecarUID is the sidecar's uid: it reaches the plugin's entry and
	// the built-in default rules.
	SidecarUID uint32
	// StateDir is shared with the plugin (its pod records are in pods/);
	// the installer keeps its own files in StateDir/installer.
	StateDir      string
	PluginLogFile string // the plugin's log file
	CgroupRoot    string // the host's cgroup root (for the kernel check)
	// Listen is the address of /readyz, /livez and /metrics, host:port
	// (a host in brackets, IPv6 or not: the DaemonSet passes
	// "[$(status.hostIP)]:9753"); an empty host listens on every address.
	Listen          string
	RemoveBPFOnExit bool   // remove the node's BPF state on SIGTERM
	SAToken         string // service account token (projected, rotates)
	SACA            string // service account CA bundle
	// APIHost is the API server URL written into the kubeconfig; by default
	// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
	APIHost string
	// NoPluginKubeconfig keeps the service account's token off the node's
	// disk: no kubeconfig for the plugin, none named in its entry. The
	// plugin reads pods only when its entry lacks the pod-annotations
	// capability, which the installer's entry declares.
	NoPluginKubeconfig bool
	LogLevel           slog.Level
	// MountBPFFS only mounts bpffs at BPFFS (when nothing is mounted there)
	// and exits: the job of the DaemonSet's privileged init container.
	MountBPFFS  bool
	ShowVersion bool // print the version and exit
	// SweepInterval is the period of the node state's maintenance: the
	// sweep of closed sockets' entries and the upgrade pass.
	SweepInterval time.Duration
	// FailOnError, ExcludeNamespaces and PodQuota reach the plugin's entry
	// (plugin.Config) when they differ from the plugin's defaults.
	FailOnError       bool
	ExcludeNamespaces []string // never nil; empty: no namespace excluded
	PodQuota          uint32
	// BacklogLimit is the flow-control bound in bytes (bpf.Options): the
	// most a receiving socket may hold unread before its direction takes
	// the stack. It is applied to the node state at every start.
	BacklogLimit uint32
	// MapSize is the entries of each connection map (bpf.Options.MapSize).
	// It names the node state and reaches the plugin's entry: started
	// with another size than the node's state, the installer makes a new
	// state and moves the pods to it as an upgrade does.
	MapSize uint32
}

// NewConfig builds the configuration from the command line args (without
// the program name) and the environment, read with getenv. Usage and
// errors are written to out. It returns pflag.ErrHelp for --help.
func NewConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	fs := pflag.NewFlagSet("mesh-accel-installer", pflag.ContinueOnError)
	fs.SetOutput(out)
	c := &Config{}
	b := &nodestate.Binder{FS: fs, Getenv: getenv}
	b.String(&c.HostCNIBinDir, FlagHostCNIBinDir, DefaultHostCNIBinDir, "host's CNI bin directory, where the plugin binary goes")
	b.String(&c.HostCNIConfDir, FlagHostCNIConfDir, DefaultHostCNIConfDir, "host's CNI config directory")
	b.String(&c.CNIConfName, FlagCNIConfName, "", "primary CNI config file name (empty: the first .conf/.conflist/.json by name, as the runtime chooses)")
	b.String(&c.PluginBinary, FlagPluginBinary, DefaultPluginBinary, "the plugin binary to install")
	b.String(&c.KubeconfigPath, FlagKubeconfigPath, DefaultKubeconfigPath, "where to write the plugin's kubeconfig")
	b.String(&c.HostKubeconfigPath, FlagHostKubeconfigPath, DefaultHostKubeconfigPath, "the kubeconfig's path on the host, as the plugin sees it")
	b.String(&c.RulesFile, FlagRulesFile, DefaultRulesFile, "the node's default rules (mounted ConfigMap)")
	b.String(&c.RulesCopyPath, FlagRulesCopyPath, DefaultRulesCopyPath, "where to copy the valid rules for the plugin")
	b.String(&c.HostRulesFile, FlagHostRulesFile, DefaultHostRulesFile, "the rules copy's path on the host, as the plugin sees it")
	b.String(&c.BPFFS, FlagBPFFS, nodestate.DefaultBPFFS, "bpffs mount point (the same path on the host)")
	b.String(&c.BPFRoot, FlagBPFRoot, nodestate.DefaultBPFRoot, "mesh-accel's folder under --"+FlagBPFFS)
	b.String(&c.StateDir, FlagStateDir, DefaultStateDir, "state directory shared with the plugin (the same path on the host)")
	b.Uint32(&c.SidecarUID, FlagSidecarUID, nodestate.DefaultSidecarUID, "the sidecar's uid: trusted to read with recvmsg, accelerated by the built-in rules")
	b.String(&c.PluginLogFile, FlagPluginLogFile, DefaultPluginLogFile, "the plugin's log file on the host")
	b.String(&c.CgroupRoot, FlagCgroupRoot, DefaultCgroupRoot, "the host's cgroup root, for the kernel check")
	b.String(&c.Listen, FlagListen, DefaultListen, "host:port serving /readyz, /livez and /metrics (host in brackets for IPv6; no host: every address)")
	b.Bool(&c.RemoveBPFOnExit, FlagRemoveBPFOnExit, "remove the node's BPF state on SIGTERM (uninstall); keep it for upgrades when false")
	b.String(&c.SAToken, FlagSAToken, DefaultSAToken, "service account token for the plugin's kubeconfig")
	b.String(&c.SACA, FlagSACA, DefaultSACA, "service account CA bundle for the plugin's kubeconfig")
	b.String(&c.APIHost, FlagAPIHost, defaultAPIHost(getenv), "API server URL for the plugin's kubeconfig (default from KUBERNETES_SERVICE_HOST/PORT)")
	b.Bool(&c.NoPluginKubeconfig, FlagNoPluginKubeconfig, "write no kubeconfig (the service account's token) for the plugin on the host; "+
		"the plugin then cannot read pods from the API server, which it does only when its entry lacks the pod-annotations capability")
	level := new(string)
	b.String(level, FlagLogLevel, "info", "log level: debug, info, warn or error")
	b.Bool(&c.MountBPFFS, FlagMountBPFFS, "only mount bpffs at --"+FlagBPFFS+" if nothing is mounted there, then exit (init container)")
	b.Bool(&c.ShowVersion, FlagVersion, "print the version and exit")
	b.Duration(&c.SweepInterval, FlagSweepInterval, bpf.DefaultSweepInterval, "period of the node state's maintenance: "+
		"one sweep pass (a slice of each map: closed sockets' entries are found within a cycle of passes), "+
		"moving pods to this release's data path, removing older state once its connections closed")
	excluded := new(string)
	c.bindPlugin(b, excluded)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.ExcludeNamespaces = splitNamespaces(*excluded)
	if err := errors.Join(b.Errs...); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--%s %q: want debug, info, warn or error", FlagLogLevel, *level)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// bindPlugin binds the settings that go into the plugin's entry, the
// node state's flow-control bound and the maps' size.
func (c *Config) bindPlugin(b *nodestate.Binder, excluded *string) {
	b.Bool(&c.FailOnError, FlagFailOnError, "fail a pod's ADD when its acceleration cannot be set up (default: log, count, start the pod)")
	b.String(excluded, FlagExcludeNamespaces, strings.Join(plugin.DefaultExcludeNamespaces, ","),
		"comma-separated namespaces never accelerated; "+NoNamespaces+" for none")
	b.Uint32(&c.PodQuota, FlagPodQuota, bpf.DefaultPodQuota, "the most connection-map entries one pod's outgoing connections may hold")
	b.Uint32(&c.BacklogLimit, FlagBacklogLimit, bpf.DefaultBacklogLimit,
		"flow-control bound: bytes a receiving socket may hold unread before its direction takes the kernel stack")
	b.Uint32(&c.MapSize, FlagMapSize, nodestate.DefaultMapSize, fmt.Sprintf("entries of each connection map, a power of two from %d to %d; "+
		"another size than the node state's makes a new state and moves the pods to it (docs/design.md: kernel memory per size)",
		bpf.MinMapSize, bpf.MaxMapSize))
}

// splitNamespaces parses --exclude-namespaces: a comma-separated list,
// blanks trimmed, [NoNamespaces] for none.
func splitNamespaces(s string) []string {
	out := []string{}
	if strings.TrimSpace(s) == NoNamespaces {
		return out
	}
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// defaultAPIHost is the in-cluster API server URL, empty outside a cluster.
func defaultAPIHost(getenv func(string) string) string {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return ""
	}
	return "https://" + net.JoinHostPort(host, port)
}

// validate checks the paths and names.
func (c *Config) validate() error {
	if c.MountBPFFS || c.ShowVersion {
		return nil
	}
	var errs []error
	for _, p := range []struct{ flag, path string }{
		{FlagHostCNIBinDir, c.HostCNIBinDir}, {FlagHostCNIConfDir, c.HostCNIConfDir},
		{FlagPluginBinary, c.PluginBinary}, {FlagKubeconfigPath, c.KubeconfigPath},
		{FlagHostKubeconfigPath, c.HostKubeconfigPath}, {FlagRulesFile, c.RulesFile},
		{FlagRulesCopyPath, c.RulesCopyPath}, {FlagHostRulesFile, c.HostRulesFile},
		{FlagBPFFS, c.BPFFS}, {FlagStateDir, c.StateDir}, {FlagPluginLogFile, c.PluginLogFile},
		{FlagSAToken, c.SAToken}, {FlagSACA, c.SACA},
	} {
		if !filepath.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("--%s %q is not an absolute path", p.flag, p.path))
		}
	}
	if c.CgroupRoot != "" && !filepath.IsAbs(c.CgroupRoot) {
		errs = append(errs, fmt.Errorf("--%s %q is not an absolute path", FlagCgroupRoot, c.CgroupRoot))
	}
	if c.BPFRoot == "" || strings.Contains(c.BPFRoot, "/") || c.BPFRoot == "." || c.BPFRoot == ".." {
		errs = append(errs, fmt.Errorf("--%s %q: want a folder name such as %q", FlagBPFRoot, c.BPFRoot, nodestate.DefaultBPFRoot))
	}
	if strings.Contains(c.CNIConfName, "/") {
		errs = append(errs, fmt.Errorf("--%s %q: want a file name in --%s", FlagCNIConfName, c.CNIConfName, FlagHostCNIConfDir))
	}
	if c.Listen == "" {
		errs = append(errs, fmt.Errorf("--%s must not be empty", FlagListen))
	} else if err := checkListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--%s %q: %w", FlagListen, c.Listen, err))
	}
	for _, ns := range c.ExcludeNamespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			errs = append(errs, fmt.Errorf("--%s: %q is not a namespace name (want a comma-separated list, or %s for none)",
				FlagExcludeNamespaces, ns, NoNamespaces))
		}
	}
	if c.PodQuota == 0 {
		errs = append(errs, fmt.Errorf("--%s must be at least 1 (default %d)", FlagPodQuota, bpf.DefaultPodQuota))
	}
	if c.BacklogLimit == 0 {
		errs = append(errs, fmt.Errorf("--%s must be at least 1 byte (default %d)", FlagBacklogLimit, bpf.DefaultBacklogLimit))
	}
	if err := bpf.CheckMapSize(c.MapSize); err != nil {
		errs = append(errs, fmt.Errorf("--%s (%s) %w", FlagMapSize, EnvName(FlagMapSize), err))
	}
	return errors.Join(errs...)
}

// checkListen checks a --listen address: host:port, the host empty, a
// name or an IP address (in brackets for IPv6), the port a number.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, an IPv6 address in brackets (\"[fd00::1]:9753\"): %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	if strings.ContainsAny(host, "$()[] ") {
		return fmt.Errorf("host %q is not an address (an unset variable of the DaemonSet?)", host)
	}
	return nil
}

// bpfOptions locate the node state, and the host's cgroup v2 hierarchy
// where an upgrade finds the pods' cgroups.
func (c *Config) bpfOptions() bpf.Options {
	return bpf.Options{BPFFS: c.BPFFS, Root: c.BPFRoot, BacklogLimit: c.BacklogLimit, MapSize: c.MapSize,
		CgroupRoot: hostCgroup2(c.CgroupRoot)}
}

// hostCgroup2 is the cgroup v2 hierarchy under the host's cgroup root:
// the root itself, or its unified/ folder on a hybrid host; "" (this
// process's own mount) when root is unset or holds neither.
func hostCgroup2(root string) string {
	for _, p := range []string{root, filepath.Join(root, "unified")} {
		if root != "" && cgroupv2.IsCgroup2(p) {
			return p
		}
	}
	return ""
}

// installerDir holds the installer's own state: the conflist backup and the
// last applied rules.
func (c *Config) installerDir() string { return nodestate.InstallerDir(c.StateDir) }
