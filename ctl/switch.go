package ctl

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// switchResult is what enable and disable did.
type switchResult struct {
	Pod     string `json:"pod,omitempty"`    // display name; empty for the global switch
	PodID   string `json:"pod_id,omitempty"` // engine pod id
	Enabled bool   `json:"enabled"`
	// Drained is the number of pair directions moved back to the stack
	// (disable --drain).
	Drained int `json:"drained"`
	// Remaining is the number of pair directions still accelerated in the
	// switch's scope (they stay so until they close).
	Remaining int `json:"remaining"`
	// NodeEnabled is the global switch after the command.
	NodeEnabled bool `json:"node_enabled"`
}

func (a *app) switchCmd(on bool) *cobra.Command {
	var sel podSel
	var drain bool
	cmd := &cobra.Command{
		Use:   "enable [NAME -n NAMESPACE | --pod POD]",
		Short: "Accelerate new connections again, on the whole node or in one pod",
		Long: `enable turns the global switch on, or for one pod (NAME -n NAMESPACE, or --pod) clears one pod's switch. New connections are
accelerated again (as the rules say); connections opened while acceleration was off stay on
the normal stack until they close.`,
		Example: `  mesh-accelctl enable
  mesh-accelctl enable -n shop cart
  ` + execCmd + ` enable`,
		Args: podArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			pod, err := sel.ref(args)
			if err != nil {
				return err
			}
			res, err := a.setSwitch(pod, on, drain)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) error { return renderSwitch(w, res) })
		},
	}
	if !on {
		cmd.Use = "disable [NAME -n NAMESPACE | --pod POD] [--drain]"
		cmd.Short = "Stop accelerating new connections, on the whole node or in one pod; --drain also moves live ones back"
		cmd.Long = `disable turns the global switch off, or for one pod (NAME -n NAMESPACE, or --pod) sets one pod's switch off: from now on no new
connection (of that pod) is accelerated. Connections already accelerated stay so until they
close, unless --drain is given: then they are moved back to the normal stack at once. Neither
loses, duplicates or reorders a byte of live traffic: data already redirected is read before
what then arrives through the stack. The node's switch turned off by hand stays off, whatever
the ConfigMap's enabled key says, until enable.`
		cmd.Example = `  mesh-accelctl disable
  mesh-accelctl disable --drain
  mesh-accelctl disable -n shop cart --drain
  ` + execCmd + ` disable`
		cmd.Flags().BoolVar(&drain, FlagDrain, false, "also move the connections accelerated now back to the normal stack")
	}
	a.podFlags(cmd, &sel, "only this pod")
	return cmd
}

// setSwitch sets the global switch (podRef empty) or a pod's, and drains
// what is in its scope when asked.
func (a *app) setSwitch(podRef string, on, drain bool) (*switchResult, error) {
	eng, err := a.engine()
	if err != nil {
		return nil, err
	}
	res := &switchResult{Enabled: on}
	var cg uint64 // scope: 0 is every pod
	if podRef == "" {
		if err := eng.SetEnabled(on); err != nil {
			return nil, err
		}
		if !on {
			if err := a.takeSwitchFromConfigMap(); err != nil {
				return nil, err
			}
		}
	} else {
		pods, err := eng.Pods()
		if err != nil {
			return nil, err
		}
		p, err := a.attachedPod(pods, podRef)
		if err != nil {
			return nil, err
		}
		if cg, err = podCgroup(p); err != nil {
			return nil, err // 0 would drain every pod
		}
		res.Pod, res.PodID = a.directory().Name(p.ID), p.ID
		if err := eng.SetPodEnabled(p.ID, on); err != nil {
			return nil, err
		}
	}
	if drain {
		// Twice: the second pass takes the pairs that a sockops program
		// which read the switch before it changed recorded during the first.
		for range 2 {
			n, err := eng.Drain(cg)
			res.Drained += n
			if err != nil {
				return nil, fmt.Errorf("switch set, but drain failed after %d pair directions: %w", res.Drained, err)
			}
		}
	}
	if res.Remaining, err = countDirections(eng, cg); err != nil {
		return nil, err
	}
	if res.NodeEnabled, err = eng.Enabled(); err != nil {
		return nil, err
	}
	return res, nil
}

// takeSwitchFromConfigMap makes a global switch turned off by hand stay
// off until enable: it removes the installer's record that the ConfigMap's
// enabled: "false" turned it off, after which "true" would turn it on.
func (a *app) takeSwitchFromConfigMap() error {
	path := nodestate.SwitchOffByConfigMapPath(a.cfg.StateDir)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("switch off, but the ConfigMap's enabled: \"true\" would turn it on again: %w; "+
			"remove %s", err, path)
	}
	return nil
}

// countDirections counts the recorded pair directions of pod cgroup cg
// (0: all).
func countDirections(eng Engine, cg uint64) (int, error) {
	ds, err := eng.Directions()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range ds {
		if cg == 0 || d.FromPod == cg || d.ToPod == cg {
			n++
		}
	}
	return n, nil
}

func renderSwitch(w io.Writer, r *switchResult) error {
	scope := "on this node"
	if r.Pod != "" {
		scope = fmt.Sprintf("for pod %s", r.Pod)
		if r.Pod != r.PodID {
			scope += " (uid " + r.PodID + ")"
		}
	}
	if r.Enabled {
		fmt.Fprintf(w, "acceleration enabled %s: new connections are accelerated as the rules say; "+
			"connections opened while it was off stay on the normal stack\n", scope)
	} else {
		fmt.Fprintf(w, "acceleration disabled %s: new connections take the normal stack\n", scope)
		if r.Drained > 0 {
			fmt.Fprintf(w, "moved %d accelerated pair directions back to the normal stack\n", r.Drained)
		}
		if r.Remaining > 0 {
			fmt.Fprintf(w, "%d pair directions stay accelerated until their connections close "+
				"(--%s moves them back now)\n", r.Remaining, FlagDrain)
		}
	}
	if r.Enabled && r.Pod != "" && !r.NodeEnabled {
		fmt.Fprintln(w, "note: the global switch is off, so nothing is accelerated until `mesh-accelctl enable`")
	}
	return nil
}
