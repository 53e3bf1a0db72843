package ctl

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// configErrors checks, besides the rules, what else of a manifest
// mesh-accel reads: the pods' own annotations (accel.mesh/*) and the
// ConfigMaps' switch key. Errors name positions in the file, in the order
// of the file.
func (s *ruleSource) configErrors() rules.ErrorList {
	var list rules.ErrorList
	for _, ann := range s.podAnnotations {
		list = append(list, annotationErrors(s.displayName(), ann)...)
	}
	for _, data := range s.configData {
		if k, v := entry(data, switchKey); k != nil {
			list = append(list, switchKeyErrors(s.displayName(), k, v)...)
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		return list[i].Line < list[j].Line || list[i].Line == list[j].Line && list[i].Col < list[j].Col
	})
	return list
}

// annotationErrors checks the annotations of a pod's map ann that the CNI
// plugin reads, as it reads them (package podconfig): a name under
// accel.mesh/ the plugin does not know (which it ignores: a typo leaves the
// pod as if unannotated), a value that is not a string (the API server
// refuses the manifest), and values the plugin refuses or ignores (an
// Istio exclusion's item, named by its position in the file).
func annotationErrors(file string, ann *yaml.Node) rules.ErrorList {
	var list rules.ErrorList
	if ann == nil || ann.Kind != yaml.MappingNode {
		return nil
	}
	known, read := annotations.Known(), podconfig.Annotations()
	for i := 0; i+1 < len(ann.Content); i += 2 {
		k, v := ann.Content[i], ann.Content[i+1]
		name := k.Value
		switch {
		case annotations.Own(name) && !slices.Contains(known, name):
			list = append(list, unknownAnnotation(file, k, known))
		case !slices.Contains(read, name):
		case notString(file, name, v) != nil:
			list = append(list, notString(file, name, v))
		case podconfig.Values(name) != nil:
			if e := valueError(file, name, v); e != nil {
				list = append(list, e)
			}
		case name != annotations.Rules: // the rules are parsed as rules
			list = append(list, exclusionErrors(file, name, v)...)
		}
	}
	return list
}

// unknownAnnotation reports the name k under accel.mesh/, which the
// plugin ignores.
func unknownAnnotation(file string, k *yaml.Node, known []string) *rules.Error {
	e := &rules.Error{File: file, Line: k.Line, Col: k.Column, Token: k.Value,
		Msg:  fmt.Sprintf("unknown annotation %s: the CNI plugin ignores it", k.Value),
		Hint: "mesh-accel's annotations are " + joinOr(known)}
	if s := closest(k.Value, known); s != "" {
		e.Hint = "did you mean " + s + "? " + e.Hint
	}
	return e
}

// refusedHint says what the plugin does with a pod whose annotation it
// refuses.
const refusedHint = "the CNI plugin refuses to set the pod up (it starts unaccelerated, setup failure reason annotation)"

// valueError checks the value v of an annotation with a fixed set of
// values (podconfig.Values).
func valueError(file, name string, v *yaml.Node) *rules.Error {
	want := podconfig.Values(name)
	if slices.Contains(want, v.Value) || name == annotations.Profile && v.Value == "" {
		return nil
	}
	e := &rules.Error{File: file, Line: v.Line, Col: v.Column, Token: v.Value, Hint: refusedHint,
		Msg: fmt.Sprintf("annotation %s: %q is not a valid value; valid values: %s", name, v.Value,
			strings.Join(quoteAll(want), ", "))}
	switch name {
	case annotations.Enabled:
		e.Hint = `the CNI plugin accelerates the pod only for "true"`
	case annotations.Profile:
		if s := closest(v.Value, want); s != "" {
			e.Hint = fmt.Sprintf("did you mean %q? ", s) + e.Hint
		}
	}
	return e
}

// exclusionErrors checks the value v of an Istio exclusion annotation as
// the plugin reads it: each item the plugin refuses, at the value's place.
func exclusionErrors(file, name string, v *yaml.Node) rules.ErrorList {
	_, err := podconfig.Exclusions(map[string]string{name: v.Value})
	var ae *podconfig.AnnotationError
	if !errors.As(err, &ae) {
		return nil
	}
	return rules.ErrorList{{File: file, Line: v.Line, Col: itemColumn(v, ae.Item), Token: ae.Item, Msg: ae.Error(),
		Hint: refusedHint}}
}

// itemColumn returns the column of item in the one-line scalar v: plain,
// or quoted without escapes; else that of the value.
func itemColumn(v *yaml.Node, item string) int {
	i := strings.Index(v.Value, item)
	if i < 0 || strings.ContainsAny(v.Value, "\n\\'") {
		return v.Column
	}
	switch v.Style {
	case 0:
		return v.Column + utf8.RuneCountInString(v.Value[:i])
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return v.Column + 1 + utf8.RuneCountInString(v.Value[:i])
	}
	return v.Column
}

// switchKey is the rules ConfigMap's key that switches every node's
// acceleration (installer.KillSwitchKey).
const switchKey = "enabled"

// switchKeyErrors checks the ConfigMap's switch key k, value v, as the
// installers read it (strconv.ParseBool after trimming blanks): another
// value leaves every node's switch as it is, and raises the metric
// mesh_accel_configmap_enabled_invalid.
func switchKeyErrors(file string, k, v *yaml.Node) rules.ErrorList {
	if e := notString(file, "data."+switchKey, v); e != nil {
		return rules.ErrorList{e}
	}
	if _, err := strconv.ParseBool(strings.TrimSpace(v.Value)); err == nil {
		return nil
	}
	return rules.ErrorList{{File: file, Line: v.Line, Col: v.Column, Token: v.Value,
		Msg: fmt.Sprintf("data.%s: %q is neither \"true\" nor \"false\"", switchKey, v.Value),
		Hint: "the installers leave every node's switch as it is (metric mesh_accel_configmap_enabled_invalid, " +
			"alert MeshAccelSwitchKeyInvalid)"}}
}

// notString reports a value of name that YAML reads as another type than a
// string (true, 8080): the API server refuses it in annotations and in a
// ConfigMap's data.
func notString(file, name string, v *yaml.Node) *rules.Error {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		return nil
	}
	return &rules.Error{File: file, Line: v.Line, Col: v.Column, Token: v.Value,
		Msg:  fmt.Sprintf("%s: the value must be a string", name),
		Hint: fmt.Sprintf("quote it: %q", v.Value)}
}

// entry returns the key and value nodes of key in the mapping n.
func entry(n *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			k, v = n.Content[i], n.Content[i+1]
		}
	}
	return k, v
}

// closest returns the word of known nearest to s when it is close enough
// to be a typo of it: at most a third of its characters off (two for short
// words), the annotations' common prefix aside.
func closest(s string, known []string) string {
	best, bestD, bestLen := "", 0, 0
	for _, k := range known {
		a, b := s, k
		if annotations.Own(a) && annotations.Own(b) {
			a, b = strings.TrimPrefix(a, annotations.Prefix), strings.TrimPrefix(b, annotations.Prefix)
		}
		if d := editDistance(a, b); best == "" || d < bestD {
			best, bestD, bestLen = k, d, len(b)
		}
	}
	if best == "" || bestD > max(2, bestLen/3) {
		return ""
	}
	return best
}

// joinOr joins words as "a, b or c".
func joinOr(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = strconv.Quote(w)
	}
	return out
}
