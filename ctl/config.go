package ctl

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// Names of the global flags.
const (
	FlagBPFFS  = "bpffs"
	FlagRoot   = "root"
	FlagPodDir = "pod-dir"
	FlagOutput = "output"
)

// Environment variables, one per global flag. A flag given on the command
// line wins over its variable, which wins over the default.
const (
	EnvBPFFS  = "MESH_ACCEL_BPFFS"
	EnvRoot   = "MESH_ACCEL_ROOT"
	EnvPodDir = "MESH_ACCEL_POD_DIR"
	EnvOutput = "MESH_ACCEL_OUTPUT"
)

// DefaultPodDir is where the CNI plugin records pod metadata: the pods/
// folder of its state directory (plugin.DefaultStateDir).
const DefaultPodDir = "/var/lib/mesh-accel/pods"

// Output formats (-o).
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// Config is the global configuration of one mesh-accelctl run.
type Config struct {
	BPFFS  string // bpffs mount point
	Root   string // mesh-accel's folder under BPFFS
	PodDir string // pod metadata records of the CNI plugin
	Output string // OutputTable or OutputJSON
}

// bindConfig registers the global flags on fs and returns the Config they
// fill when fs is parsed. Each flag's default is its environment variable
// (read with getenv) when set, else the built-in default.
func bindConfig(fs *pflag.FlagSet, getenv func(string) string) *Config {
	c := &Config{}
	def := func(env, builtin string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return builtin
	}
	fs.StringVar(&c.BPFFS, FlagBPFFS, def(EnvBPFFS, bpf.DefaultBPFFS),
		"bpffs mount point holding the node state (env "+EnvBPFFS+")")
	fs.StringVar(&c.Root, FlagRoot, def(EnvRoot, bpf.DefaultRoot),
		"folder of mesh-accel's state under --bpffs (env "+EnvRoot+")")
	fs.StringVar(&c.PodDir, FlagPodDir, def(EnvPodDir, DefaultPodDir),
		"directory of pod records <uid>.json written by the CNI plugin (env "+EnvPodDir+")")
	fs.StringVarP(&c.Output, FlagOutput, "o", def(EnvOutput, OutputTable),
		"output format: table or json (env "+EnvOutput+")")
	return c
}

// validate checks the values the flags and environment gave.
func (c *Config) validate() error {
	if c.Output != OutputTable && c.Output != OutputJSON {
		return usageErrorf("output format %q: want %s or %s", c.Output, OutputTable, OutputJSON)
	}
	if c.BPFFS == "" || c.Root == "" {
		return usageErrorf("--%s and --%s must not be empty", FlagBPFFS, FlagRoot)
	}
	return nil
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// Names of the commands' own flags.
const (
	FlagPod      = "pod"
	FlagDrain    = "drain"
	FlagFile     = "file"
	FlagAddr     = "addr"
	FlagPort     = "port"
	FlagWatch    = "watch"
	FlagSnapLen  = "snaplen"
	FlagCount    = "count"
	FlagDuration = "duration"
	FlagWrite    = "write"
)
