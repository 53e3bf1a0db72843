package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Deps is what mesh-accelctl takes from its surroundings. Zero fields get
// the production values: os.Stdout, os.Stderr, os.Getenv, [OpenEngine],
// a [FileDirectory] on --state-dir and bpf.CheckKernel.
type Deps struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Open           func(Config) (Engine, error)
	Directory      func(Config) PodDirectory
	CheckKernel    func() error
}

func (d Deps) withDefaults() Deps {
	if d.Stdout == nil {
		d.Stdout = os.Stdout
	}
	if d.Stderr == nil {
		d.Stderr = os.Stderr
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	if d.Open == nil {
		d.Open = OpenEngine
	}
	if d.Directory == nil {
		d.Directory = func(c Config) PodDirectory { return NewFileDirectory(c.StateDir) }
	}
	if d.CheckKernel == nil {
		d.CheckKernel = bpf.CheckKernel
	}
	return d
}

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1 // the command failed
	ExitUsage = 2 // the command line is wrong
)

// Main runs mesh-accelctl with args (without the program name) until it
// ends or ctx is done (Ctrl-C), and returns the process's exit code. Errors
// are printed on d.Stderr.
func Main(ctx context.Context, args []string, d Deps) int {
	a := &app{deps: d.withDefaults()}
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	err = errors.Join(err, a.close())
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(a.deps.Stderr, "%s: %v\n", root.Name(), err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.deps.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitError
}

// app is the state of one run: the configuration, and the engine and pod
// directory, opened when a command first needs them.
type app struct {
	deps Deps
	cfg  *Config
	eng  Engine
	dir  PodDirectory
}

func (a *app) rootCmd() *cobra.Command {
	var binder *nodestate.Binder
	root := &cobra.Command{
		Use:   "mesh-accelctl",
		Short: "Inspect and control mesh-accel (sockmap acceleration of sidecar traffic) on this node",
		Long: `mesh-accelctl inspects and controls mesh-accel on this node: the kernel's support, the node
state under bpffs, the global and per-pod switches, the rules in force, the accelerated
connections, the counters, and a capture of the bytes that are redirected.

Pods are named by namespace/name (from the records of the CNI plugin in --state-dir) or by pod UID.
Every command prints a table by default and JSON with -o json. Exit status: 0 on success, 1 when
the command failed, 2 when the command line is wrong. Most commands need root.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRun,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if err := errors.Join(binder.Errs...); err != nil {
				return usageErrorf("%v", err)
			}
			return a.cfg.validate()
		},
	}
	a.cfg, binder = bindConfig(root.PersistentFlags(), a.deps.Getenv)
	root.SetOut(a.deps.Stdout)
	root.SetErr(a.deps.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(a.statusCmd(), a.switchCmd(true), a.switchCmd(false), a.rulesCmd(),
		a.connsCmd(), a.statsCmd(), a.dumpCmd())
	return root
}

// groupRun runs a command that only groups others: help without
// arguments, a usage error with an unknown subcommand.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// usageArgs makes the errors of an argument check usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// engine opens the node state at first use.
func (a *app) engine() (Engine, error) {
	if a.eng == nil {
		e, err := a.deps.Open(*a.cfg)
		if err != nil {
			return nil, err
		}
		a.eng = e
	}
	return a.eng, nil
}

func (a *app) directory() PodDirectory {
	if a.dir == nil {
		a.dir = a.deps.Directory(*a.cfg)
	}
	return a.dir
}

func (a *app) close() error {
	if a.eng == nil {
		return nil
	}
	err := a.eng.Close()
	a.eng = nil
	if err != nil {
		return fmt.Errorf("close node state: %w", err)
	}
	return nil
}

// emit prints v as JSON with -o json, else calls table.
func (a *app) emit(v any, table func(w io.Writer) error) error {
	if a.cfg.Output == OutputJSON {
		enc := json.NewEncoder(a.deps.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return table(a.deps.Stdout)
}

// note prints a remark for people on stderr (never with -o json on stdout).
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.deps.Stderr, format+"\n", args...)
}

// attachedPod finds the attached pod that ref (a --pod value) names.
func (a *app) attachedPod(pods []bpf.PodInfo, ref string) (bpf.PodInfo, error) {
	ids := a.directory().Resolve(ref)
	var found []bpf.PodInfo
	for _, p := range pods {
		if slices.Contains(ids, p.ID) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		names := make([]string, len(found))
		for i, p := range found {
			names[i] = p.ID
		}
		return bpf.PodInfo{}, fmt.Errorf("pod %s names several attached pods (%s): give the pod UID",
			ref, strings.Join(names, ", "))
	case len(ids) == 0:
		return bpf.PodInfo{}, fmt.Errorf("pod %s: no record of it in %s (--%s): give the pod UID instead",
			ref, nodestate.PodsDir(a.cfg.StateDir), FlagStateDir)
	}
	return bpf.PodInfo{}, fmt.Errorf("pod %s: %w on this node", ref, bpf.ErrPodNotAttached)
}

// podNames maps pod cgroup ids to display names.
type podNames map[uint64]string

func (a *app) podNames(pods []bpf.PodInfo) podNames {
	n := make(podNames, len(pods))
	for _, p := range pods {
		n[p.CgroupID] = a.directory().Name(p.ID)
	}
	return n
}

// of names the pod of cgroup id cg: "-" for none, cgroup:N for a pod that
// is no longer attached.
func (n podNames) of(cg uint64) string {
	if s, ok := n[cg]; ok {
		return s
	}
	if cg == 0 {
		return "-"
	}
	return fmt.Sprintf("cgroup:%d", cg)
}
