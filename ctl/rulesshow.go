package ctl

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
)

func (a *app) rulesShowCmd() *cobra.Command {
	var sel podSel
	cmd := &cobra.Command{
		Use:   "show [NAME -n NAMESPACE | --pod POD]",
		Short: "Show the rules in force, per attached pod",
		Long: `show prints the rules in force as the kernel holds them, one row per rule of each attached
pod (or only of the pod named), with the pod's switch; -o wide adds the pod's UID, cgroup,
trusted sidecar uid, whether its app is trusted and its quota of connection-map entries.
Pods without rules accelerate every connection.`,
		Example: `  mesh-accelctl rules show
  mesh-accelctl rules show -n shop cart -o wide`,
		Args: podArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			pod, err := sel.ref(args)
			if err != nil {
				return err
			}
			pods, err := a.showRules(pod)
			if err != nil {
				return err
			}
			return a.emit(pods, func(w io.Writer) error {
				if len(pods) == 0 {
					fmt.Fprintln(w, "no pod is attached on this node")
					return nil
				}
				return a.renderPodRules(w, pods)
			})
		},
	}
	a.podFlags(cmd, &sel, "only this pod")
	return cmd
}

// noRules is the rule cell of a pod without rules.
const noRules = "(none: every connection is accelerated)"

// renderPodRules prints one row per rule of each pod.
func (a *app) renderPodRules(w io.Writer, pods []podReport) error {
	t := a.table(w, a.columns([]string{"POD", "STATE", "RULE"}, "UID", "CGROUP", "SIDECAR UID", "APP TRUSTED", "QUOTA")...)
	for _, p := range pods {
		rs := p.Rules
		if len(rs) == 0 {
			rs = []string{noRules}
		}
		for _, r := range rs {
			t.row(a.cells([]any{p.Name, podState(p), r}, p.ID, p.CgroupID, p.SidecarUID, yesNo(p.TrustApp), p.Quota)...)
		}
	}
	return t.flush()
}

func podState(p podReport) string {
	switch {
	case p.Broken != "":
		return "BROKEN"
	case p.Enabled:
		return "enabled"
	}
	return "DISABLED"
}

func (a *app) showRules(podRef string) ([]podReport, error) {
	_, pods, err := a.selectPods(podRef)
	if err != nil {
		return nil, err
	}
	out := []podReport{}
	for _, p := range pods {
		out = append(out, a.podReport(p))
	}
	return out, nil
}

// selectPods opens the engine and returns the attached pods, or only the
// one podRef names when it is set.
func (a *app) selectPods(podRef string) (Engine, []bpf.PodInfo, error) {
	eng, err := a.engine()
	if err != nil {
		return nil, nil, err
	}
	pods, err := eng.Pods()
	if err != nil {
		return nil, nil, err
	}
	if podRef != "" {
		p, err := a.attachedPod(pods, podRef)
		if err != nil {
			return nil, nil, err
		}
		pods = []bpf.PodInfo{p}
	}
	return eng, pods, nil
}
