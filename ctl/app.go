package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Deps is what mesh-accelctl takes from its surroundings. Zero fields get
// the production values: os.Stdin, os.Stdout, os.Stderr, os.Getenv,
// [OpenEngine], a [FileDirectory] on --state-dir, bpf.CheckKernel,
// [InClusterLocator] (with Getenv and [ServiceAccountDir]), os.Hostname and
// a sleep that ends with its context.
type Deps struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Open           func(Config) (Engine, error)
	Directory      func(Config) PodDirectory
	CheckKernel    func() error
	// Locator finds the node of a pod that this node has no record of;
	// it fails when there is no API access (not run in a pod).
	Locator func() (PodLocator, error)
	// NodeName names this node when --node-name is not given (the
	// installer pod shares the node's host name: it runs in the host
	// network).
	NodeName func() (string, error)
	// Sleep waits d (status compares counters over a window) or until ctx
	// is done.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (d Deps) withDefaults() Deps {
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.NodeName == nil {
		d.NodeName = os.Hostname
	}
	if d.Sleep == nil {
		d.Sleep = sleep
	}
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
	if d.Locator == nil {
		getenv := d.Getenv
		d.Locator = func() (PodLocator, error) { return InClusterLocator(getenv, ServiceAccountDir) }
	}
	return d
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
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
	err = needsRoot(errors.Join(err, a.close()))
	if err == nil {
		return ExitOK
	}
	var silent *reportedError
	if !errors.As(err, &silent) {
		fmt.Fprintf(a.deps.Stderr, "%s: %v\n", root.Name(), err)
	}
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

A pod is named as kubectl names it, NAME with -n NAMESPACE (or --pod NAMESPACE/NAME), or by its pod
UID; names come from the records of the CNI plugin in --state-dir. Every command prints a table by
default (-o wide adds columns, --no-headers drops the header line), JSON with -o json and YAML with
-o yaml. Exit status: 0 on success, 1 when the command failed, 2 when the command line is wrong.

Most commands need root (CAP_BPF and CAP_NET_ADMIN): run mesh-accelctl with sudo on the node, or in
the installer pod of the node. Its image has no shell: name the binary by its path, /mesh-accelctl,
and redirect output on your side of kubectl (dump -w - > capture.pcap). Find the pod by its node
(naming the DaemonSet instead would pick the pod of any node):

    POD=$(` + installerPodCmd + `)
    ` + strings.Replace(execCmd, "POD", "$POD", 1) + ` status`,
		Example: `  # the installer pod on the node of pod shop/cart, then its view of that pod
  NODE=$(kubectl -n shop get pod cart -o jsonpath='{.spec.nodeName}')
  POD=$(` + strings.Replace(installerPodCmd, "NODE", "$NODE", 1) + `)
  ` + strings.Replace(execCmd, "POD", "$POD", 1) + ` conns -n shop cart
  ` + strings.Replace(execCmd, "POD", "$POD", 1) + ` health

  # on the node itself
  sudo mesh-accelctl status`,
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
	root.SetFlagErrorFunc(flagError)
	root.SuggestionsMinimumDistance = 2
	root.AddCommand(a.statusCmd(), a.healthCmd(), a.switchCmd(true), a.switchCmd(false), a.rulesCmd(),
		a.connsCmd(), a.statsCmd(), a.dumpCmd())
	root.AddCommand(a.versionCmd())
	a.completions(root)
	return root
}

// groupRun runs a command that only groups others: help without
// arguments, a usage error with an unknown subcommand that suggests the
// subcommands it may be a typo of (cobra does that only for a root
// without Run).
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		cmd.SuggestionsMinimumDistance = 2
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return &usageError{errors.New(msg)}
	}
	return cmd.Help()
}

// reportedError is a failure whose report the command printed already
// (rules check -o json puts its errors on stdout): Main exits 1 without
// printing it again.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }

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

// note prints a remark for people on stderr (never with -o json on stdout).
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.deps.Stderr, format+"\n", args...)
}

// podNames maps pod cgroup ids to display names.
type podNames map[uint64]string

func (a *app) podNames(pods []bpf.PodInfo) podNames {
	n := make(podNames, len(pods))
	for _, p := range pods {
		if p.CgroupID != 0 { // a broken pod may have none
			n[p.CgroupID] = a.directory().Name(p.ID)
		}
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
