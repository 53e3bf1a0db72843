package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Defaults of the plugin configuration.
const (
	DefaultBPFRoot    = nodestate.DefaultBPFFS + "/" + nodestate.DefaultBPFRoot
	DefaultStateDir   = nodestate.DefaultStateDir
	DefaultLogFile    = "/var/log/mesh-accel/cni.log"
	DefaultAPITimeout = 5 * time.Second
)

// DefaultExcludeNamespaces are the namespaces never accelerated when the
// configuration does not name any.
var DefaultExcludeNamespaces = []string{"kube-system"}

// Capability names, as the conflist declares them and runtimeConfig carries
// them.
const (
	CapPodAnnotations = "io.kubernetes.cri.pod-annotations"
	CapCgroupPath     = "cgroupPath"
)

// Config is the plugin's entry in the conflist, as the runtime passes it on
// stdin. Unknown fields are ignored (runtimes add their own); known fields
// are checked.
type Config struct {
	types.NetConf

	// RuntimeConfig carries what the declared capabilities bring.
	RuntimeConfig RuntimeConfig `json:"runtimeConfig"`

	// RulesFile holds the node's default rules; rules.Default() when empty.
	RulesFile string `json:"rulesFile,omitempty"`
	// Kubeconfig is used to read a pod's annotations from the API server
	// when the runtime does not pass them.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// ExcludeNamespaces are never accelerated; DefaultExcludeNamespaces
	// when absent, none when [].
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// FailOnError fails the ADD (and DEL) when acceleration cannot be set
	// up; by default the reason is logged and counted and the pod starts.
	FailOnError bool `json:"failOnError,omitempty"`
	// LogFile receives the log besides stderr, rotated at 10 MiB with one
	// old file kept (LogFile.1); DefaultLogFile when empty, "-" for none.
	LogFile string `json:"logFile,omitempty"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// BPFRoot is the folder of the node state under bpffs; DefaultBPFRoot
	// when empty. Its parent must be (or become) a bpffs mount.
	BPFRoot string `json:"bpfRoot,omitempty"`
	// StateDir holds the plugin's attachment records and failure counters;
	// DefaultStateDir when empty.
	StateDir string `json:"stateDir,omitempty"`
	// CgroupRoot is where the kubelet's kubepods hierarchy lives (the
	// kubelet's --cgroup-root), searched when the runtime passes no
	// cgroupPath: the cgroup v2 mount when empty; a relative path is
	// relative to the mount.
	CgroupRoot string `json:"cgroupRoot,omitempty"`
	// SidecarUID is the sidecar's uid: trusted to read with recvmsg and
	// accelerated by the default rules; nodestate.DefaultSidecarUID when 0.
	SidecarUID uint32 `json:"sidecarUID,omitempty"`
	// PodQuota is the most connection-map entries each pod's outgoing
	// connections may hold (bpf.PodConfig.Quota); bpf.DefaultPodQuota
	// when 0.
	PodQuota uint32 `json:"podQuota,omitempty"`
	// MapSize is the entries of the node's connection maps, which name
	// the node state the plugin attaches pods to (bpf.Options.Layout);
	// bpf.DefaultMapSize when 0. The installer writes its --map-size.
	MapSize uint32 `json:"mapSize,omitempty"`
	// APITimeout bounds the whole API server lookup, retries included: a
	// Go duration, "5s" by default.
	APITimeout string `json:"apiTimeout,omitempty"`

	logLevel   slog.Level
	apiTimeout time.Duration
}

// RuntimeConfig is what the runtime passes for the declared capabilities.
type RuntimeConfig struct {
	// PodAnnotations is nil when the runtime passed none: with the
	// capability declared the pod has none, else they come from the API
	// server.
	PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
	CgroupPath     string            `json:"cgroupPath,omitempty"`
}

// parseConfig decodes and checks the configuration on stdin, applies the
// defaults and parses the previous result (when there is one) in the
// configuration's CNI version. Errors are CNI errors naming the field.
func parseConfig(stdin []byte) (*Config, error) {
	conf := &Config{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "parse mesh-accel config: "+jsonError(err), "")
	}
	if err := conf.validate(); err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid mesh-accel config: "+err.Error(), "")
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.NetConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "parse prevResult: "+err.Error(), "")
		}
	}
	return conf, nil
}

// jsonError names the field of a decoding error.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	return err.Error()
}

// validate checks the known fields and applies the defaults.
func (c *Config) validate() error {
	if c.ExcludeNamespaces == nil {
		c.ExcludeNamespaces = DefaultExcludeNamespaces
	}
	for i, ns := range c.ExcludeNamespaces {
		if ns == "" {
			return fmt.Errorf("excludeNamespaces[%d] is empty", i)
		}
	}
	if c.BPFRoot == "" {
		c.BPFRoot = DefaultBPFRoot
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.LogFile == "" {
		c.LogFile = DefaultLogFile
	}
	for _, f := range []struct{ name, path string }{
		{"bpfRoot", c.BPFRoot}, {"stateDir", c.StateDir}, {"rulesFile", c.RulesFile}, {"kubeconfig", c.Kubeconfig},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s %q is not an absolute path", f.name, f.path)
		}
	}
	if c.LogFile != "-" && !filepath.IsAbs(c.LogFile) {
		return fmt.Errorf("logFile %q is not an absolute path (or \"-\" for none)", c.LogFile)
	}
	if filepath.Clean(c.BPFRoot) == "/" || filepath.Dir(filepath.Clean(c.BPFRoot)) == "/" {
		return fmt.Errorf("bpfRoot %q must be a folder under a bpffs mount, e.g. %s", c.BPFRoot, DefaultBPFRoot)
	}
	if err := c.logLevel.UnmarshalText([]byte(c.LogLevel)); c.LogLevel != "" && err != nil {
		return fmt.Errorf("logLevel %q: want debug, info, warn or error", c.LogLevel)
	}
	c.apiTimeout = DefaultAPITimeout
	if c.APITimeout != "" {
		d, err := time.ParseDuration(c.APITimeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("apiTimeout %q: want a positive duration such as \"5s\"", c.APITimeout)
		}
		c.apiTimeout = d
	}
	if c.SidecarUID == 0 {
		c.SidecarUID = nodestate.DefaultSidecarUID
	}
	if c.SidecarUID == ^uint32(0) {
		return errors.New("sidecarUID 4294967295 is not a uid")
	}
	if c.MapSize != 0 {
		if err := bpf.CheckMapSize(c.MapSize); err != nil {
			return fmt.Errorf("mapSize: %w", err)
		}
	}
	return nil
}

// bpfOptions locate the node state.
func (c *Config) bpfOptions() bpf.Options {
	root := filepath.Clean(c.BPFRoot)
	return bpf.Options{BPFFS: filepath.Dir(root), Root: filepath.Base(root), MapSize: c.MapSize}
}

// excluded reports whether pods of the namespace are never accelerated.
func (c *Config) excluded(namespace string) bool {
	for _, ns := range c.ExcludeNamespaces {
		if ns == namespace {
			return true
		}
	}
	return false
}

// printPrevResult writes the previous result, in the configuration's
// version, as this plugin's result.
func (c *Config) printPrevResult(w io.Writer) error {
	res, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return fmt.Errorf("convert prevResult: %w", err)
	}
	out, err := res.GetAsVersion(c.CNIVersion)
	if err != nil {
		return fmt.Errorf("convert prevResult to version %s: %w", c.CNIVersion, err)
	}
	return out.PrintTo(w)
}
