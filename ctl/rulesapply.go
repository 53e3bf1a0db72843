package ctl

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
)

// applyResult is what `rules apply` did, or would do with --dry-run.
type applyResult struct {
	File     string      `json:"file"`
	DryRun   bool        `json:"dry_run"`
	Rules    []string    `json:"rules"`
	Pods     []string    `json:"pods"` // display names of the pods updated (or to update)
	Changes  []podChange `json:"changes,omitempty"`
	Warnings []string    `json:"warnings"`
}

// podChange is what apply changes in one pod's rules: Diff holds the
// lines of both, each prefixed by "-" (removed), "+" (added) or " ".
type podChange struct {
	Pod  string   `json:"pod"`
	ID   string   `json:"id"`
	Diff []string `json:"diff"`
}

// applyOptions are the flags of rules apply.
type applyOptions struct {
	file   string
	sel    podSel
	all    bool
	dryRun bool
}

func (a *app) rulesApplyCmd() *cobra.Command {
	var o applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILE|- (NAME -n NAMESPACE | --pod POD | --all) [--dry-run]",
		Short: "Replace the rules in force with those of a file, in one pod or (--all) in every attached pod",
		Long: `apply validates FILE and makes its rules the complete rule set in force: in one pod (NAME
-n NAMESPACE, or --pod), or with --all in EVERY pod attached on this node. Each pod's rules
are swapped in one map update, so a connection is judged either by the old rules or by the
new ones; the pods are updated one after the other. The pods keep their switch, their
trusted sidecar uid and whether their app is trusted. A file with an error changes nothing.
Rules decide when a connection is established: open connections keep their verdict.
--dry-run changes nothing and prints, per pod, the rules in force (-) and the new ones (+).`,
		Example: `  mesh-accelctl rules apply -f rules.txt --all --dry-run
  mesh-accelctl rules apply -f rules.txt -n shop cart
  kubectl -n mesh-accel get configmap mesh-accel-rules -o yaml | ` + strings.Replace(execCmd, " exec ", " exec -i ", 1) + ` rules apply -f - --all`,
		Args: podArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			pod, err := o.sel.ref(args)
			switch {
			case err != nil:
				return err
			case o.file == "":
				return usageErrorf("--%s FILE is required (- reads stdin)", FlagFile)
			case pod == "" && !o.all:
				return usageErrorf("name the pod (NAME -n NAMESPACE, or --%s), or give --%s for every attached pod", FlagPod, FlagAll)
			case pod != "" && o.all:
				return usageErrorf("--%s and pod %s: give one", FlagAll, pod)
			}
			res, err := a.applyRules(o, pod)
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) error { return renderApply(w, res) })
		},
	}
	fileFlag(cmd, &o.file)
	a.podFlags(cmd, &o.sel, "only this pod")
	cmd.Flags().BoolVar(&o.all, FlagAll, false, "every pod attached on this node")
	cmd.Flags().BoolVar(&o.dryRun, FlagDryRun, false, "change nothing; print what would change, per pod")
	return cmd
}

func renderApply(w io.Writer, res *applyResult) error {
	if res.DryRun {
		fmt.Fprintf(w, "dry run: %s would change the rules of %d pods (nothing was applied)\n", res.File, len(res.Changes))
		for _, c := range res.Changes {
			fmt.Fprintf(w, "--- %s (rules in force)\n+++ %s (rules of %s)\n", c.Pod, c.Pod, res.File)
			for _, l := range c.Diff {
				fmt.Fprintln(w, l)
			}
		}
		for _, p := range res.Pods {
			if !changed(res.Changes, p) {
				fmt.Fprintf(w, "%s: no change\n", p)
			}
		}
	} else {
		fmt.Fprintf(w, "applied %d rules from %s to %d pods\n", len(res.Rules), res.File, len(res.Pods))
		for _, p := range res.Pods {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	for _, s := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	return nil
}

func changed(cs []podChange, pod string) bool {
	for _, c := range cs {
		if c.Pod == pod {
			return true
		}
	}
	return false
}

// applyRules swaps the rules of the pod named by podRef, or of every
// attached pod, keeping the rest of their configuration; with dryRun it
// only computes the changes.
func (a *app) applyRules(o applyOptions, podRef string) (*applyResult, error) {
	src, err := a.readRules(o.file, false)
	var list rules.ErrorList
	if errors.As(err, &list) {
		return nil, rulesError(src, list, ", nothing was applied")
	}
	if err != nil {
		return nil, err
	}
	if src.annotation {
		return nil, fmt.Errorf("%s holds the %s: a pod's own rules, which the CNI plugin puts after the node's rules "+
			"and before its Istio exclusions; apply makes a file the complete rule set in force: give a rule file "+
			"or a ConfigMap (rules check -f checks an annotation)", src.displayName(), src.From)
	}
	set := src.set
	if len(set.Rules) > rules.MaxRules {
		return nil, fmt.Errorf("%s: %d rules, at most %d fit a pod: nothing was applied", src.displayName(), len(set.Rules), rules.MaxRules)
	}
	eng, pods, err := a.selectPods(podRef)
	if err != nil {
		return nil, err
	}
	res := &applyResult{File: src.displayName(), DryRun: o.dryRun, Rules: ruleStrings(set), Pods: []string{},
		Warnings: nonNil(set.Warnings())}
	for _, p := range pods {
		name := a.directory().Name(p.ID)
		if o.dryRun {
			if d := diffRules(ruleStrings(p.Config.Rules), res.Rules); d != nil {
				res.Changes = append(res.Changes, podChange{Pod: name, ID: p.ID, Diff: d})
			}
			res.Pods = append(res.Pods, name)
			continue
		}
		cfg := p.Config
		cfg.Rules = set
		err := eng.UpdatePod(p.ID, cfg)
		if errors.Is(err, bpf.ErrPodNotAttached) && podRef == "" {
			continue // detached meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("apply rules to pod %s (applied to %d pods before it): %w", name, len(res.Pods), err)
		}
		res.Pods = append(res.Pods, name)
	}
	if len(pods) == 0 {
		a.note("no pod is attached on this node: nothing to apply the rules to")
	}
	return res, nil
}

// diffRules compares the rules in force old with new, line by line: nil
// when they are the same, else every line of both in order, removed ones
// prefixed "-", added ones "+", common ones " " (a longest common
// subsequence; rule sets have at most rules.MaxRules lines).
func diffRules(old, new []string) []string {
	n, m := len(old), len(new)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if old[i] == new[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	if lcs[0][0] == n && n == m {
		return nil
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && old[i] == new[j]:
			out = append(out, " "+old[i])
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "-"+old[i])
			i++
		default:
			out = append(out, "+"+new[j])
			j++
		}
	}
	return out
}
