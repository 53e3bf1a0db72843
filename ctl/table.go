package ctl

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// table writes rows as aligned columns. Empty cells print as "-"; tabs and
// newlines inside a cell become spaces so they cannot break the layout.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(toAny(header)...)
	}
	return t
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// row adds a row; cells are formatted with %v.
func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		v := fmt.Sprint(c)
		if v == "" {
			v = "-"
		}
		s[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(v)
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

// flush writes the table out.
func (t *table) flush() error { return t.tw.Flush() }

// humanBytes formats a byte count with binary units: 512 B, 1.5 KiB, 3.0 GiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// yesNo formats a boolean for tables.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
