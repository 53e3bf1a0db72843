package ctl

import (
	"fmt"

	"github.com/spf13/pflag"

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
	FlagOutput   = "output"
)

// Output formats (-o).
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// Config is the global configuration of one mesh-accelctl run.
type Config struct {
	nodestate.Location        // where the node's state lives
	Output             string // OutputTable or OutputJSON
}

// bindConfig registers the global flags on fs and returns the Config they
// fill when fs is parsed. Each flag's default is its environment variable
// (nodestate.EnvName, read with getenv) when set, else the built-in
// default.
func bindConfig(fs *pflag.FlagSet, getenv func(string) string) (*Config, *nodestate.Binder) {
	c := &Config{}
	b := &nodestate.Binder{FS: fs, Getenv: getenv}
	b.BindLocation(&c.Location)
	b.StringP(&c.Output, FlagOutput, "o", OutputTable, "output format: table or json")
	return c, b
}

// validate checks the values the flags and environment gave.
func (c *Config) validate() error {
	if c.Output != OutputTable && c.Output != OutputJSON {
		return usageErrorf("output format %q: want %s or %s", c.Output, OutputTable, OutputJSON)
	}
	if err := c.Location.Validate(); err != nil {
		return usageErrorf("%v", err)
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
