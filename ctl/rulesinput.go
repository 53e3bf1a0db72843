package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// ruleSource is a rule set read for check or apply: from a rule file,
// stdin (-f -), the rules key of a ConfigMap, or a pod's rule annotation.
type ruleSource struct {
	File string `json:"file"` // as given; "-" is stdin
	// From says where in File the rules are: "" for a rule file,
	// "ConfigMap mesh-accel/mesh-accel-rules, data.rules" or "annotation
	// accel.mesh/rules of Pod shop/cart".
	From string `json:"from,omitempty"`
	set  *rules.Set
	// annotation is set when the rules are a pod's own (they follow the
	// node's rules, or those of the pod's profile, and precede its Istio
	// exclusions); podAnn is then the pod's annotation map in the
	// manifest, nil when the input is the annotation's value alone.
	annotation bool
	podAnn     *yaml.Node
	// podAnnotations are the annotation maps of the pods (and pod
	// templates) of a manifest, whose own annotations (accel.mesh/*) rules
	// check validates; configData the data of its ConfigMaps (their
	// enabled key).
	podAnnotations []*yaml.Node
	configData     []*yaml.Node
	// ownOnly is the first pod of a manifest annotated accel.mesh/* but
	// not accel.mesh/rules (rules check validates its annotations).
	ownOnly *yaml.Node
}

// displayName names the input in messages.
func (s *ruleSource) displayName() string {
	if s.File == "-" {
		return "<stdin>"
	}
	return s.File
}

// readRules reads and parses the rules of file ("-": stdin). A YAML
// manifest is recognised: a ConfigMap gives its data.rules, another object
// (or any with annotation set) its accel.mesh/rules annotation, on the pod
// or on a workload's pod template. Other input is a rule file, or with
// annotation the value of the annotation. Errors name positions in file.
func (a *app) readRules(file string, annotation bool) (*ruleSource, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(a.deps.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	src := &ruleSource{File: file, annotation: annotation}
	value, err := src.locate(b)
	if err != nil {
		return src, err
	}
	if value == nil { // a rule file
		src.set, err = rules.ParseString(src.displayName(), string(b))
		return src, err
	}
	first, indent := position(value, b)
	src.set, err = rules.ParseAt(src.displayName(), strings.NewReader(value.Value), first, indent)
	return src, err
}

// manifestKeys are keys of which one makes YAML input a manifest.
var manifestKeys = []string{"apiVersion", "kind", "metadata", "data"}

// locate finds the rules in a manifest b: the YAML node of their value,
// nil when b is not a manifest.
func (s *ruleSource) locate(b []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil // not YAML: a rule file
		}
		if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
			docs = append(docs, doc.Content[0])
		}
	}
	isManifest := false
	for _, d := range docs {
		for _, k := range manifestKeys {
			isManifest = isManifest || get(d, k) != nil
		}
	}
	if !isManifest {
		return nil, nil
	}
	for _, d := range docs {
		if scalar(get(d, "kind")) == "ConfigMap" && !s.annotation {
			if data := get(d, "data"); data != nil {
				s.configData = append(s.configData, data)
			}
			continue
		}
		for _, meta := range podMetadata(d) {
			if ann := get(meta, "annotations"); ann != nil {
				s.podAnnotations = append(s.podAnnotations, ann)
				if s.ownOnly == nil && get(ann, annotations.Rules) == nil && hasOwn(ann) {
					s.ownOnly = d
				}
			}
		}
	}
	for _, d := range docs {
		if v := get(d, "data", "rules"); v != nil && !s.annotation && scalar(get(d, "kind")) == "ConfigMap" {
			s.From = "ConfigMap " + objectName(get(d, "metadata")) + ", data.rules"
			return v, nil
		}
		for _, meta := range podMetadata(d) {
			ann := get(meta, "annotations")
			if v := get(ann, annotations.Rules); v != nil {
				s.From = "annotation " + annotations.Rules + " of " + scalar(get(d, "kind")) + " " + objectName(get(d, "metadata"))
				s.pod(ann)
				return v, nil
			}
		}
	}
	return nil, &noRulesError{fmt.Sprintf("%s holds no rules: want a ConfigMap with data.rules, or an object annotated %s",
		s.displayName(), annotations.Rules)}
}

// noRulesError says that a manifest holds no rules.
type noRulesError struct{ msg string }

func (e *noRulesError) Error() string { return e.msg }

// pod takes the annotations ann of the pod whose own rules are checked:
// its profile and Istio exclusions count with them.
func (s *ruleSource) pod(ann *yaml.Node) {
	s.annotation = true
	s.podAnn = ann
}

// podConfig reads the pod's annotations as the CNI plugin does (package
// podconfig), its own rules being those already read (src.set, parsed at
// their place in the file).
func (s *ruleSource) podConfig() (*podconfig.Pod, error) {
	ann := stringValues(s.podAnn)
	ann[annotations.Rules] = ""
	return podconfig.FromAnnotations(ann, func(string) (*rules.Set, error) { return s.set, nil })
}

// stringValues returns the string values of the YAML mapping ann, as the
// API server would give them (annotationErrors reports the others).
func stringValues(ann *yaml.Node) map[string]string {
	out := map[string]string{}
	for i := 0; ann != nil && ann.Kind == yaml.MappingNode && i+1 < len(ann.Content); i += 2 {
		if v := ann.Content[i+1]; v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
			out[ann.Content[i].Value] = v.Value
		}
	}
	return out
}

// podMetadata returns the metadata of the pods a manifest object d makes:
// its own (a pod), its pod template's (a workload), or its job template's
// pod template's (a CronJob).
func podMetadata(d *yaml.Node) []*yaml.Node {
	return []*yaml.Node{get(d, "metadata"), get(d, "spec", "template", "metadata"),
		get(d, "spec", "jobTemplate", "spec", "template", "metadata")}
}

// hasOwn reports whether the annotations ann hold one of mesh-accel's own
// (accel.mesh/*).
func hasOwn(ann *yaml.Node) bool {
	for i := 0; ann != nil && ann.Kind == yaml.MappingNode && i+1 < len(ann.Content); i += 2 {
		if annotations.Own(ann.Content[i].Value) {
			return true
		}
	}
	return false
}

// get follows keys through YAML mappings; nil when one is missing.
func get(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// objectName is namespace/name of a manifest's object (name alone when it
// has no namespace).
func objectName(meta *yaml.Node) string {
	name, ns := scalar(get(meta, "name")), scalar(get(meta, "namespace"))
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// position returns where the rules of the YAML value v start in the file
// b: a literal block (|) maps line for line, its lines indented by the
// block's indentation; other styles are mapped to the line the value
// starts on, with the columns of the value.
func position(v *yaml.Node, b []byte) (firstLine, indent int) {
	if v.Style == yaml.LiteralStyle {
		return v.Line + 1, blockIndent(b, v.Line)
	}
	return v.Line, 0
}

// blockIndent returns the indentation of the first non-blank line after
// line (1-based) of b: that of a literal block starting there.
func blockIndent(b []byte, line int) int {
	lines := strings.Split(string(b), "\n")
	for _, l := range lines[min(line, len(lines)):] {
		if t := strings.TrimLeft(l, " "); strings.TrimSpace(t) != "" {
			return len(l) - len(t)
		}
	}
	return 0
}
