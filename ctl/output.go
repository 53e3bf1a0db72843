package ctl

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// structured reports whether -o asks for JSON or YAML rather than a table.
func (c *Config) structured() bool { return c.Output == OutputJSON || c.Output == OutputYAML }

// wide reports whether tables show their extra columns (-o wide).
func (c *Config) wide() bool { return c.Output == OutputWide }

// emit prints v as JSON or YAML with -o json or -o yaml, else calls table
// (which reads -o wide and --no-headers from the configuration).
func (a *app) emit(v any, table func(w io.Writer) error) error {
	switch a.cfg.Output {
	case OutputJSON:
		enc := json.NewEncoder(a.deps.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	case OutputYAML:
		return writeYAML(a.deps.Stdout, v)
	}
	return table(a.deps.Stdout)
}

// streamer prints one value after the other in the structured format of
// -o: JSON lines, or YAML documents separated by "---".
type streamer struct {
	w      io.Writer
	format string
	n      int
}

func (a *app) streamer(w io.Writer) *streamer { return &streamer{w: w, format: a.cfg.Output} }

func (s *streamer) write(v any) error {
	s.n++
	if s.format == OutputYAML {
		if s.n > 1 {
			if _, err := io.WriteString(s.w, "---\n"); err != nil {
				return err
			}
		}
		return writeYAML(s.w, v)
	}
	enc := json.NewEncoder(s.w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeYAML writes v as YAML, by way of its JSON form (the same field
// names as -o json).
func writeYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode YAML: %w", err)
	}
	_, err = w.Write(b)
	return err
}

// table starts a table on w with header unless --no-headers is given.
func (a *app) table(w io.Writer, header ...string) *table {
	if a.cfg.NoHeaders {
		header = nil
	}
	return newTable(w, header...)
}

// columns returns the columns of a table: base, then wide's with -o wide.
func (a *app) columns(base []string, wide ...string) []string {
	if a.cfg.wide() {
		return append(append([]string{}, base...), wide...)
	}
	return base
}

// cells returns the cells of a row: base, then wide's with -o wide.
func (a *app) cells(base []any, wide ...any) []any {
	if a.cfg.wide() {
		return append(append([]any{}, base...), wide...)
	}
	return base
}
