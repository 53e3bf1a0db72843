package render

//go:generate go run ../cmd/mesh-accel-chartgen -chart ../chart/mesh-accel -monitoring ../monitoring -manifests ..

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/monitoring"
)

// The chart's generated files: the values table of its README.md, between
// these two lines, and the copies of manifests/monitoring's files that its
// optional monitoring templates read (chart files cannot reach outside the
// chart's folder). `go generate ./manifests/render` writes them; the tests
// fail when they are stale.
const (
	ValuesTableBegin = "<!-- values table: generated from values.yaml's comments and values.schema.json by `go generate ./manifests/render`; do not edit -->"
	ValuesTableEnd   = "<!-- end of the values table -->"
	// ChartMonitoringDir is the copies' folder in the chart.
	ChartMonitoringDir = "files/monitoring"
)

// MonitoringCopies are the files of manifests/monitoring the chart carries
// a copy of, under ChartMonitoringDir.
var MonitoringCopies = []string{"podmonitor.yaml", "prometheusrule.yaml", "dashboard.json"}

// CheckChartGenerated reports an error when the chart's generated files
// (as package manifests embeds them) are not what `go generate
// ./manifests/render` writes: its README's values table, its copies of
// the monitoring files and its default rules; and the default rules of
// manifests/configmap.yaml.
func CheckChartGenerated() error {
	chart, err := fs.Sub(manifests.Chart, ChartDir)
	if err != nil {
		return err
	}
	return errors.Join(checkGenerated(chart, monitoring.Files), checkConfigMap(manifests.Files))
}

// checkGenerated checks the generated files of the chart in chartFS
// against its values and the monitoring files of monFS.
func checkGenerated(chartFS, monFS fs.FS) error {
	read := func(name string) ([]byte, error) { return fs.ReadFile(chartFS, name) }
	var errs []error
	readme, err := read("README.md")
	if err != nil {
		return err
	}
	values, err := read("values.yaml")
	if err != nil {
		return err
	}
	schema, err := read("values.schema.json")
	if err != nil {
		return err
	}
	want, err := ChartREADME(readme, values, schema)
	if err != nil {
		return err
	}
	if !bytes.Equal(readme, want) {
		errs = append(errs, errors.New("the chart's README.md values table is stale"))
	}
	if err := checkHelpers(chartFS); err != nil {
		errs = append(errs, err)
	}
	for _, name := range MonitoringCopies {
		src, err := fs.ReadFile(monFS, name)
		if err != nil {
			return err
		}
		if cp, err := read(ChartMonitoringDir + "/" + name); err != nil || !bytes.Equal(cp, src) {
			errs = append(errs, fmt.Errorf("the chart's %s/%s differs from manifests/monitoring/%s", ChartMonitoringDir, name, name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: run `go generate ./manifests/render`", err)
	}
	return nil
}

// ChartREADME returns readme with the text between ValuesTableBegin and
// ValuesTableEnd replaced by the table of values.
func ChartREADME(readme, values, schema []byte) ([]byte, error) {
	table, err := ValuesTable(values, schema)
	if err != nil {
		return nil, err
	}
	begin := bytes.Index(readme, []byte(ValuesTableBegin+"\n"))
	end := bytes.Index(readme, []byte(ValuesTableEnd))
	if begin < 0 || end < begin || bytes.Count(readme, []byte(ValuesTableBegin)) != 1 {
		return nil, fmt.Errorf("chart README.md: want one line %q and, after it, %q", ValuesTableBegin, ValuesTableEnd)
	}
	var out bytes.Buffer
	out.Write(readme[:begin+len(ValuesTableBegin)+1])
	out.WriteString(table)
	out.Write(readme[end:])
	return out.Bytes(), nil
}

// ValuesTable is the Markdown table of the chart's values: one row per
// value of values.yaml (a group of values has a row when it has a comment),
// its type and range from values.schema.json, its default, and the comment
// above it. A value the schema does not know, or without a comment, is an
// error.
func ValuesTable(values, schema []byte) (string, error) {
	rows, err := valueRows(values, schema)
	var b strings.Builder
	b.WriteString("| Value | Type | Default | Description |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, cell(r.typ), cell(r.def), cell(r.desc))
	}
	return b.String(), err
}

// ValueKeys are the dotted paths of the values of values.yaml that the
// table shows one by one (not the groups), in the file's order.
func ValueKeys(values, schema []byte) ([]string, error) {
	rows, err := valueRows(values, schema)
	var keys []string
	for _, r := range rows {
		if !r.group {
			keys = append(keys, r.key)
		}
	}
	return keys, err
}

type valueRow struct {
	key, typ, def, desc string
	group               bool
}

func valueRows(values, schema []byte) ([]valueRow, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: want a mapping")
	}
	var root map[string]any
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	s := &schemaDoc{root: root}
	s.rows(doc.Content[0], root, "")
	return s.out, errors.Join(s.errs...)
}

type schemaDoc struct {
	root map[string]any
	out  []valueRow
	errs []error
}

// resolve follows a local $ref ("#/definitions/NAME").
func (s *schemaDoc) resolve(node map[string]any) map[string]any {
	for node != nil {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		defs, _ := s.root["definitions"].(map[string]any)
		node, _ = defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
	}
	return nil
}

// isGroup reports whether a property's schema is a group of values the
// table shows one by one: an object with properties of its own (not a
// $ref, which is one value, such as updateStrategy).
func isGroup(prop map[string]any) bool {
	_, isRef := prop["$ref"]
	_, props := prop["properties"]
	return props && !isRef
}

// rows adds the rows of a mapping of values.yaml whose schema is sch.
func (s *schemaDoc) rows(m *yaml.Node, sch map[string]any, prefix string) {
	props, _ := sch["properties"].(map[string]any)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		prop, _ := props[k.Value].(map[string]any)
		if prop == nil {
			s.errs = append(s.errs, fmt.Errorf("value %s: not in values.schema.json", key))
			continue
		}
		desc := comment(k.HeadComment)
		if isGroup(prop) && v.Kind == yaml.MappingNode {
			if desc != "" {
				s.out = append(s.out, valueRow{key: key, typ: "object", desc: desc, group: true})
			}
			s.rows(v, prop, key+".")
			continue
		}
		if desc == "" {
			s.errs = append(s.errs, fmt.Errorf("value %s: no comment above it in values.yaml", key))
		}
		var def any
		if err := v.Decode(&def); err != nil {
			s.errs = append(s.errs, fmt.Errorf("value %s: %w", key, err))
			continue
		}
		s.out = append(s.out, valueRow{key: key, typ: s.typeOf(s.resolve(prop)), def: "`" + jsonText(def) + "`", desc: desc})
	}
}

// typeOf describes a schema briefly: its type, enum or range.
func (s *schemaDoc) typeOf(node map[string]any) string {
	if node == nil {
		return ""
	}
	if enum, ok := node["enum"].([]any); ok {
		var vals []string
		for _, e := range enum {
			vals = append(vals, "`"+jsonText(e)+"`")
		}
		return "one of " + strings.Join(vals, ", ")
	}
	if alts, ok := node["oneOf"].([]any); ok {
		var kinds []string
		for _, a := range alts {
			if m, ok := a.(map[string]any); ok {
				kinds = append(kinds, s.typeOf(s.resolve(m)))
			}
		}
		return strings.Join(kinds, " or ")
	}
	t, _ := node["type"].(string)
	switch t {
	case "integer", "number":
		lo, hasLo := node["minimum"].(float64)
		hi, hasHi := node["maximum"].(float64)
		switch {
		case hasLo && hasHi:
			return fmt.Sprintf("%s %.0f to %.0f", t, lo, hi)
		case hasLo:
			return fmt.Sprintf("%s from %.0f", t, lo)
		}
	case "array":
		if items, ok := node["items"].(map[string]any); ok {
			return "list of " + s.typeOf(s.resolve(items))
		}
	case "object":
		if add, ok := node["additionalProperties"].(map[string]any); ok {
			return "map of " + s.typeOf(s.resolve(add))
		}
	case "":
		if _, ok := node["properties"]; ok {
			return "object"
		}
	}
	return t
}

// comment is a head comment's text on one line.
func comment(c string) string {
	var words []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if l != "" {
			words = append(words, l)
		}
	}
	return strings.Join(words, " ")
}

// jsonText is a value as compact JSON (map keys sorted).
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// cell escapes a table cell's pipes.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// SchemaKeys returns the dotted paths of the values a schema describes
// one by one (see ValueKeys), sorted. Helm's own "global" is left out.
func SchemaKeys(schema []byte) ([]string, error) {
	var root map[string]any
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	var keys []string
	var walk func(node map[string]any, prefix string)
	walk = func(node map[string]any, prefix string) {
		props, _ := node["properties"].(map[string]any)
		for k, raw := range props {
			prop, _ := raw.(map[string]any)
			switch {
			case prefix == "" && k == "global":
			case isGroup(prop):
				walk(prop, prefix+k+".")
			default:
				keys = append(keys, prefix+k)
			}
		}
	}
	walk(root, "")
	sort.Strings(keys)
	return keys, nil
}
