package ctl

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

func (a *app) rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Check, apply and show the rules that choose which connections are accelerated",
		Long: `rules checks a rule file, applies one to attached pods, or shows the rules in force.
The rule language is that of the original tool:

    ` + strings.ReplaceAll(strings.TrimSuffix(rules.DefaultText(nodestate.DefaultSidecarUID), "\n"), "\n", "\n    ") + `

-f takes a rule file, - for stdin, or a YAML manifest: a ConfigMap (its data.rules, like
manifests/configmap.yaml) or a pod or workload annotated accel.mesh/rules. A file with an
error changes nothing; each error names file:line:column in the file given, with a hint
for the common mistakes.`,
		Example: `  mesh-accelctl rules check -f rules.txt
  mesh-accelctl rules show -n shop cart
  mesh-accelctl rules apply -f rules.txt --all --dry-run`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(a.rulesCheckCmd(), a.rulesApplyCmd(), a.rulesShowCmd())
	return cmd
}

// checkResult is what `rules check` found.
type checkResult struct {
	ruleSource
	Valid    bool         `json:"valid"`
	Rules    []string     `json:"rules"`
	Warnings []string     `json:"warnings"`
	Errors   []checkError `json:"errors,omitempty"`
}

// checkError is a rule error in rules check's JSON and YAML output.
type checkError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Token   string `json:"token,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func (a *app) rulesCheckCmd() *cobra.Command {
	var file, nodeRules string
	var annotation bool
	cmd := &cobra.Command{
		Use:   "check -f FILE|-",
		Short: "Validate rules (a rule file, a ConfigMap, a pod's annotation) without applying them",
		Long: `check validates rules without applying them: a rule file, stdin (-f -), a ConfigMap manifest
(its data.rules) or a manifest annotated accel.mesh/rules (a pod, or a workload's pod
template). With --annotation the input is the annotation's value, or the annotation is
taken from a manifest even if it is a ConfigMap. A pod's own rules share the table of 64
with the node's rules (the default 2, or --node-rules FILE) and its Istio exclusions:
check counts them all. Errors name positions in the file given. With -o json or -o yaml
the errors are printed on stdout, and check still exits 1.`,
		Example: `  mesh-accelctl rules check -f rules.txt
  mesh-accelctl rules check -f pod.yaml -o json
  kubectl -n shop get deployment cart -o yaml | mesh-accelctl rules check -f - --node-rules node.rules

  # in the installer pod: the file the installer reads (the ConfigMap's rules), or a manifest on stdin
  ` + execCmd + ` rules check -f /etc/mesh-accel/rules/rules
  kubectl -n shop get deployment cart -o yaml | ` + strings.Replace(execCmd, " exec ", " exec -i ", 1) + ` rules check -f -`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if file == "" {
				return usageErrorf("--%s FILE is required (- reads stdin)", FlagFile)
			}
			return a.checkRules(file, nodeRules, annotation)
		},
	}
	fileFlag(cmd, &file)
	cmd.Flags().BoolVar(&annotation, FlagAnnot, false, "the input is (or holds) the value of the annotation "+annotations.Rules)
	cmd.Flags().StringVar(&nodeRules, FlagNodeRules, "", "the node's rule file, to count a pod's rules against the limit (default: the 2 default rules)")
	return cmd
}

func (a *app) checkRules(file, nodeRules string, annotation bool) error {
	src, err := a.readRules(file, annotation)
	var none *noRulesError
	switch {
	case errors.As(err, &none) && src.ownOnly != nil:
		// A pod annotated accel.mesh/* without rules of its own: its
		// annotations are what there is to check; the node's rules apply.
		d := src.ownOnly
		src.From = "annotations of " + scalar(get(d, "kind")) + " " + objectName(get(d, "metadata"))
		for _, meta := range podMetadata(d) {
			if ann := get(meta, "annotations"); hasOwn(ann) {
				src.pod(ann)
				break
			}
		}
		src.set, err = &rules.Set{}, nil
	case errors.As(err, &none) && len(src.configErrors()) > 0:
		// A ConfigMap without rules, with a bad switch key: that is the
		// error to report.
		src.set, err = &rules.Set{}, nil
	}
	var list rules.ErrorList
	if err != nil && !errors.As(err, &list) {
		return err
	}
	list = append(list, src.configErrors()...)
	var node *rules.Set
	if len(list) == 0 && src.annotation {
		if node, list, err = a.checkPod(src, nodeRules); err != nil {
			return err
		}
	}
	res := checkResult{ruleSource: *src, Valid: len(list) == 0, Rules: ruleStrings(src.set), Warnings: []string{}}
	res.File = src.displayName()
	if len(list) > 0 {
		for _, e := range list {
			res.Errors = append(res.Errors, checkError{e.File, e.Line, e.Col, e.Token, e.Msg, e.Hint})
		}
		if !a.cfg.structured() {
			return rulesError(src, list, "")
		}
		if perr := a.emit(res, nil); perr != nil {
			return perr
		}
		return &reportedError{rulesError(src, list, "")}
	}
	if src.annotation {
		res.Warnings = podWarnings(node, src.set)
	} else {
		res.Warnings = nonNil(src.set.Warnings())
	}
	return a.emit(res, func(w io.Writer) error {
		from := ""
		if src.From != "" {
			from = " (" + src.From + ")"
		}
		if src.annotation && len(res.Rules) == 0 {
			fmt.Fprintf(w, "%s%s: no rules of its own (the node's rules apply), valid\n", src.displayName(), from)
		} else {
			fmt.Fprintf(w, "%s%s: %d rules, valid\n", src.displayName(), from, len(res.Rules))
		}
		for _, r := range res.Rules {
			fmt.Fprintf(w, "  %s\n", r)
		}
		for _, s := range res.Warnings {
			fmt.Fprintf(w, "warning: %s\n", s)
		}
		return nil
	})
}

// checkPod reads the pod's annotations as the CNI plugin does (package
// podconfig) and checks that its rules fit the rule table with the rules
// they follow (the node's, the default ones or those of nodeFile, or its
// profile's under them) and its Istio exclusions; it returns the rules
// its own follow.
func (a *app) checkPod(src *ruleSource, nodeFile string) (*rules.Set, rules.ErrorList, error) {
	node, what := rules.Default(), "default node rules"
	if nodeFile != "" {
		ns, err := a.readRules(nodeFile, false)
		if err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", FlagNodeRules, err)
		}
		node, what = ns.set, "node rules ("+nodeFile+")"
	}
	pod, err := src.podConfig()
	if err != nil { // annotationErrors reported what the plugin refuses
		return nil, nil, fmt.Errorf("%s: %w", src.displayName(), err)
	}
	if pod.Profile == annotations.ProfileSidecarHops {
		what = "rules of profile " + annotations.ProfileSidecarHops + " under the " + what
	}
	var limit *podconfig.LimitError
	if _, err := pod.Config(podconfig.Node{Rules: node}); errors.As(err, &limit) {
		return nil, limitError(src, limit, what), nil
	} else if err != nil {
		return nil, nil, err
	}
	return podconfig.ProfileRules(node, pod.Profile, nodestate.DefaultSidecarUID), nil, nil
}

// limitError says that a pod's rules do not fit the rule table, at its
// first own rule.
func limitError(src *ruleSource, e *podconfig.LimitError, what string) rules.ErrorList {
	line := 1
	if e.Own > 0 {
		line = src.set.Rules[0].Line
	}
	return rules.ErrorList{{File: src.displayName(), Line: line, Col: 1, Hint: rules.LimitHint,
		Msg: fmt.Sprintf("too many rules for the pod: %d %s + %d of %s + %d Istio exclusions = %d, the BPF rule table holds %d",
			e.Node, what, e.Own, annotations.Rules, e.Exclusions, e.Node+e.Own+e.Exclusions, rules.MaxRules)}}
}

// podWarnings are the warnings about a pod's own rules, which follow the
// node's: those about the whole set ("no rules", "no ACCEPT rule") are
// about the pod's complete rules, the node's included.
func podWarnings(node, own *rules.Set) []string {
	w := []string{}
	if !hasAccept(node) && !hasAccept(own) {
		w = append(w, "no ACCEPT rule, neither the node's nor the pod's: no connection of the pod is accelerated")
	}
	if len(own.Rules) == 0 {
		return w
	}
	for _, s := range own.Warnings() {
		if !strings.HasPrefix(s, "no ACCEPT rule") {
			w = append(w, s)
		}
	}
	return w
}

func hasAccept(s *rules.Set) bool {
	for _, r := range s.Rules {
		if r.Target == rules.Accept {
			return true
		}
	}
	return false
}

// rulesError reports the errors of a rule input, one per line, each hint
// on the line after its error.
func rulesError(src *ruleSource, list rules.ErrorList, suffix string) error {
	var b strings.Builder
	from := ""
	if src.From != "" {
		from = " (" + src.From + ")"
	}
	fmt.Fprintf(&b, "%s%s has errors%s:", src.displayName(), from, suffix)
	for _, e := range list {
		h := *e
		h.Hint = ""
		fmt.Fprintf(&b, "\n%s", h.Error())
		if e.Hint != "" {
			fmt.Fprintf(&b, "\n    hint: %s", e.Hint)
		}
	}
	return &ruleErrors{b.String(), list}
}

// ruleErrors is the errors of a rule input, as rulesError words them.
type ruleErrors struct {
	msg  string
	list rules.ErrorList
}

func (e *ruleErrors) Error() string { return e.msg }
func (e *ruleErrors) Unwrap() error { return e.list }

func fileFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVarP(file, FlagFile, "f", "", "the rules: a rule file, - for stdin, or a ConfigMap or annotated manifest (required)")
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
