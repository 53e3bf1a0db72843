package ctl

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
)

func (a *app) rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check, apply and show the rules that choose which connections are accelerated",
		Long: `rules checks a rule file, applies one to the attached pods, or shows the rules in force.
The rule language is that of the original tool:

    # accelerate traffic of uid 1337 (Envoy), never port 15006
    chain --uid-owner 1337 -j ACCEPT
    chain --port 15006 -j RETURN

A file with an error changes nothing; the error names file:line:column.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(a.rulesCheckCmd(), a.rulesApplyCmd(), a.rulesShowCmd())
	return cmd
}

// checkResult is what `rules check` found.
type checkResult struct {
	File     string   `json:"file"`
	Rules    []string `json:"rules"`
	Warnings []string `json:"warnings"`
}

func (a *app) rulesCheckCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "check -f FILE",
		Short: "Validate a rule file without applying it",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if file == "" {
				return usageErrorf("--%s FILE is required", FlagFile)
			}
			set, err := parseRules(file)
			if err != nil {
				return err
			}
			res := checkResult{File: file, Rules: ruleStrings(set), Warnings: nonNil(set.Warnings())}
			return a.emit(res, func(w io.Writer) error {
				fmt.Fprintf(w, "%s: %d rules, valid\n", file, len(res.Rules))
				for _, r := range res.Rules {
					fmt.Fprintf(w, "  %s\n", r)
				}
				for _, s := range res.Warnings {
					fmt.Fprintf(w, "warning: %s\n", s)
				}
				return nil
			})
		},
	}
	fileFlag(cmd, &file)
	return cmd
}

func fileFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVarP(file, FlagFile, "f", "", "the rule file (required)")
}

// parseRules parses a rule file; its errors name file:line:column.
func parseRules(file string) (*rules.Set, error) {
	set, err := rules.ParseFile(file)
	var list rules.ErrorList
	if errors.As(err, &list) {
		return nil, fmt.Errorf("%s has errors, nothing was applied:\n%w", file, err)
	}
	return set, err
}

func ruleStrings(s *rules.Set) []string {
	out := []string{}
	if s != nil {
		for _, r := range s.Rules {
			out = append(out, r.String())
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// applyResult is what `rules apply` did.
type applyResult struct {
	File     string   `json:"file"`
	Rules    []string `json:"rules"`
	Pods     []string `json:"pods"` // display names of the pods updated
	Warnings []string `json:"warnings"`
}

func (a *app) rulesApplyCmd() *cobra.Command {
	var file, pod string
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--pod POD]",
		Short: "Replace the rules in force with those of a file, in one pod or in every attached pod",
		Long: `apply validates FILE and makes its rules the complete rule set in force: in the pod given by
--pod, or, without --pod, in EVERY pod attached on this node. Each pod's rules are swapped
in one map update, so a connection is judged either by the old rules or by the new ones;
the pods are updated one after the other. The pods keep their switch, their trusted
sidecar uid and whether their app is trusted. A file with an error changes nothing.
Rules decide when a connection is established: open connections keep their verdict.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if file == "" {
				return usageErrorf("--%s FILE is required", FlagFile)
			}
			res, err := a.applyRules(file, pod)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) error {
				fmt.Fprintf(w, "applied %d rules from %s to %d pods\n", len(res.Rules), file, len(res.Pods))
				for _, p := range res.Pods {
					fmt.Fprintf(w, "  %s\n", p)
				}
				for _, s := range res.Warnings {
					fmt.Fprintf(w, "warning: %s\n", s)
				}
				return nil
			})
		},
	}
	fileFlag(cmd, &file)
	cmd.Flags().StringVar(&pod, FlagPod, "", "only this pod: namespace/name or pod UID (default: every attached pod)")
	return cmd
}

// applyRules swaps the rules of the pod named by podRef, or of every
// attached pod, keeping the rest of their configuration.
func (a *app) applyRules(file, podRef string) (*applyResult, error) {
	set, err := parseRules(file)
	if err != nil {
		return nil, err
	}
	if len(set.Rules) > rules.MaxRules {
		return nil, fmt.Errorf("%s: %d rules, at most %d fit a pod: nothing was applied", file, len(set.Rules), rules.MaxRules)
	}
	eng, pods, err := a.selectPods(podRef)
	if err != nil {
		return nil, err
	}
	res := &applyResult{File: file, Rules: ruleStrings(set), Pods: []string{}, Warnings: nonNil(set.Warnings())}
	for _, p := range pods {
		cfg := p.Config
		cfg.Rules = set
		err := eng.UpdatePod(p.ID, cfg)
		if errors.Is(err, bpf.ErrPodNotAttached) && podRef == "" {
			continue // detached meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("apply rules to pod %s (applied to %d pods before it): %w",
				a.directory().Name(p.ID), len(res.Pods), err)
		}
		res.Pods = append(res.Pods, a.directory().Name(p.ID))
	}
	if len(pods) == 0 {
		a.note("no pod is attached on this node: nothing to apply the rules to")
	}
	return res, nil
}

func (a *app) rulesShowCmd() *cobra.Command {
	var pod string
	cmd := &cobra.Command{
		Use:   "show [--pod POD]",
		Short: "Show the rules in force, per attached pod",
		Long: `show prints the rules in force as the kernel holds them, per attached pod (or only --pod),
with the pod's switch and trust settings. Pods without rules accelerate every connection.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			pods, err := a.showRules(pod)
			if err != nil {
				return err
			}
			return a.emit(pods, func(w io.Writer) error {
				if len(pods) == 0 {
					fmt.Fprintln(w, "no pod is attached on this node")
				}
				renderPods(w, pods)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&pod, FlagPod, "", "only this pod: namespace/name or pod UID")
	return cmd
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
