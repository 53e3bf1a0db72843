package ctl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Names of the global flags. Where the node's state lives is named as the
// installer names it (package nodestate), with the same environment
// variables, so that mesh-accelctl run in the installer's container finds
// what the installer made.
const (
	FlagBPFFS    = nodestate.FlagBPFFS
	FlagBPFRoot  = nodestate.FlagBPFRoot
	FlagStateDir = nodestate.FlagStateDir
	FlagMapSize  = nodestate.FlagMapSize
	FlagOutput   = "output"
	FlagNoHeader = "no-headers"
	FlagNodeName = "node-name"
)

// Output formats (-o), as kubectl names them.
const (
	OutputTable = "table" // the default
	OutputWide  = "wide"  // the table with more columns
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// outputs lists the formats, for messages.
var outputs = []string{OutputTable, OutputWide, OutputJSON, OutputYAML}

// Config is the global configuration of one mesh-accelctl run.
type Config struct {
	nodestate.Location        // where the node's state lives
	Output             string // one of outputs
	NoHeaders          bool   // tables without their header line
	// NodeName is this node's Kubernetes name; empty: the host name (the
	// installer pod runs in the host network, so it has the node's).
	NodeName string
}

// bindConfig registers the global flags on fs and returns the Config they
// fill when fs is parsed. Each flag's default is its environment variable
// (nodestate.EnvName, read with getenv) when set, else the built-in
// default.
func bindConfig(fs *pflag.FlagSet, getenv func(string) string) (*Config, *nodestate.Binder) {
	c := &Config{}
	b := &nodestate.Binder{FS: fs, Getenv: getenv}
	b.BindLocation(&c.Location)
	b.StringP(&c.Output, FlagOutput, "o", OutputTable, "output format: "+strings.Join(outputs, ", "))
	b.Bool(&c.NoHeaders, FlagNoHeader, "print tables without their header line")
	b.String(&c.NodeName, FlagNodeName, "", "this node's name in Kubernetes, to tell where a pod runs (default: the host name)")
	return c, b
}

// validate checks the values the flags and environment gave.
func (c *Config) validate() error {
	if err := c.validateOutput(); err != nil {
		return err
	}
	if err := c.Location.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	if err := bpf.CheckMapSize(c.MapSize); err != nil {
		return usageErrorf("--%s (or %s) %v", FlagMapSize, nodestate.EnvName(FlagMapSize), err)
	}
	return nil
}

// validateOutput checks -o.
func (c *Config) validateOutput() error {
	if !slices.Contains(outputs, c.Output) {
		return usageErrorf("--%s (or %s) %q: want one of %s", FlagOutput, nodestate.EnvName(FlagOutput), c.Output,
			strings.Join(outputs, ", "))
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
	FlagPod       = "pod"
	FlagNamespace = "namespace"
	FlagAll       = "all"
	FlagDryRun    = "dry-run"
	FlagAnnot     = "annotation"
	FlagNodeRules = "node-rules"
	FlagWindow    = "window"
	FlagDrain     = "drain"
	FlagFile      = "file"
	FlagAddr      = "addr"
	FlagPort      = "port"
	FlagWatch     = "watch"
	FlagSnapLen   = "snaplen"
	FlagCount     = "count"
	FlagDuration  = "duration"
	FlagWrite     = "write"
)
