package ctl

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// flagWants says what each flag with a typed value expects, in the words
// of a flag error.
var flagWants = map[string]string{
	FlagPort:     "a port number 1..65535",
	FlagSnapLen:  fmt.Sprintf("a number of bytes 1..%d", bpf.MaxSnapLen),
	FlagCount:    "a number of messages (0: no limit)",
	FlagDuration: "a duration such as 30s or 5m (0: no limit)",
	FlagWatch:    "an interval such as 1s or 500ms",
	FlagWindow:   "a duration such as 1s (0: no rates)",
}

// typeWants is flagWants by value type, for the other flags.
var typeWants = map[string]string{
	"bool":     "true or false",
	"duration": "a duration such as 1s, 500ms or 5m",
	"int":      "a whole number",
	"uint16":   "a number 0..65535",
	"uint32":   "a number 0..4294967295",
}

// flagError turns pflag's errors into messages in our words: which flag,
// which value, what is expected; and "did you mean" for an unknown flag.
// Every flag error is a usage error.
func flagError(cmd *cobra.Command, err error) error {
	var inv *pflag.InvalidValueError
	if errors.As(err, &inv) {
		f := inv.GetFlag()
		want := flagWants[f.Name]
		if want == "" {
			want = typeWants[f.Value.Type()]
		}
		if want == "" {
			want = "another value"
		}
		return usageErrorf("%s %q: want %s", flagName(f), inv.GetValue(), want)
	}
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		if s := suggestFlag(cmd, ne.GetSpecifiedName()); s != "" {
			return usageErrorf("%v\n\nDid you mean this?\n\t%s", err, s)
		}
	}
	return &usageError{err}
}

// flagName spells a flag as its help does: -c, --count or --port.
func flagName(f *pflag.Flag) string {
	if f.Shorthand != "" {
		return "-" + f.Shorthand + ", --" + f.Name
	}
	return "--" + f.Name
}

// suggestFlag returns the flag of cmd (or its parents) whose name is
// closest to name, when it is close enough to be a typo.
func suggestFlag(cmd *cobra.Command, name string) string {
	if len(name) < 3 {
		return ""
	}
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	visit := func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d <= 2 || strings.HasPrefix(f.Name, name) {
			cs = append(cs, cand{f.Name, d})
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if len(cs) == 0 {
		return ""
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	return "--" + cs[0].name
}

// editDistance is the number of single-character insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (optimal
// string alignment distance): "prot" is one edit from "port".
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
