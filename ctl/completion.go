package ctl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// outputHelp describes each -o value in completions.
var outputHelp = map[string]string{
	OutputTable: "a table (the default)",
	OutputWide:  "the table with more columns",
	OutputJSON:  "JSON",
	OutputYAML:  "YAML",
}

// completions sets up shell completion (mesh-accelctl completion bash|zsh|
// fish|powershell) of the values of -o (podFlags sets up that of pods). It
// also adds cobra's help and completion commands now, rather than at
// Execute, to give them examples as every command has.
func (a *app) completions(root *cobra.Command) {
	_ = root.RegisterFlagCompletionFunc(FlagOutput, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, o := range outputs {
			if strings.HasPrefix(o, toComplete) {
				out = append(out, cobra.CompletionWithDesc(o, outputHelp[o]))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	// Find, not Commands, which would sort the commands: "did you mean"
	// lists them in the order they were added.
	root.InitDefaultHelpCmd()
	if c, _, err := root.Find([]string{"help"}); err == nil && c != root {
		c.Example = "  mesh-accelctl help dump\n  mesh-accelctl help rules check"
	}
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Example = "  source <(mesh-accelctl completion bash)\n  mesh-accelctl completion zsh > \"${fpath[1]}/_mesh-accelctl\""
	}
	for sh, example := range completionExamples {
		if c, _, err := root.Find([]string{"completion", sh}); err == nil && c.Name() == sh {
			c.Example = example
		}
	}
}

// completionExamples are the examples of the completion command of each
// shell.
var completionExamples = map[string]string{
	"bash":       "  source <(mesh-accelctl completion bash)\n  mesh-accelctl completion bash > /etc/bash_completion.d/mesh-accelctl",
	"zsh":        "  mesh-accelctl completion zsh > \"${fpath[1]}/_mesh-accelctl\"",
	"fish":       "  mesh-accelctl completion fish > ~/.config/fish/completions/mesh-accelctl.fish",
	"powershell": "  mesh-accelctl completion powershell | Out-String | Invoke-Expression",
}

// podCompletions completes the pod of cmd, a command that takes one (NAME
// with -n, NAMESPACE/NAME, or --pod), from this node's pod records (those
// of --state-dir): the NAME argument is a name of the namespace -n gives,
// else NAMESPACE/NAME; --pod is NAMESPACE/NAME; -n a namespace.
func (a *app) podCompletions(cmd *cobra.Command) {
	cmd.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 || c.Flags().Changed(FlagPod) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, _ := c.Flags().GetString(FlagNamespace)
		return a.completePods(ns, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	_ = cmd.RegisterFlagCompletionFunc(FlagPod, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return a.completePods("", toComplete), cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc(FlagNamespace, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, r := range a.podRecords() {
			if strings.HasPrefix(r.Namespace, toComplete) && !slices.Contains(out, r.Namespace) {
				out = append(out, r.Namespace)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}

// completePods lists the pods that start with prefix: their names in
// namespace ns, or NAMESPACE/NAME when ns is empty, each described by its
// UID.
func (a *app) completePods(ns, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, r := range a.podRecords() {
		name := r.Namespace + "/" + r.Name
		if ns != "" {
			if r.Namespace != ns {
				continue
			}
			name = r.Name
		}
		if strings.HasPrefix(name, prefix) {
			out = append(out, cobra.CompletionWithDesc(name, fmt.Sprintf("pod UID %s", r.UID)))
		}
	}
	return out
}

// podRecords lists the pods this node has records of; none when the
// directory cannot list them.
func (a *app) podRecords() []PodRecord {
	if l, ok := a.directory().(interface{ Records() []PodRecord }); ok {
		return l.Records()
	}
	return nil
}
