package podconfig

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

// Pod is what a pod's annotations ask for.
type Pod struct {
	// TrustApp is the annotation TrustApp's "true".
	TrustApp bool
	// Profile is annotations.ProfileDefault or annotations.ProfileSidecarHops.
	Profile string
	// Rules are the pod's own rules (annotation Rules); nil without it.
	Rules *rules.Set
	// Exclusions are the RETURN rules of Istio's exclusion annotations,
	// each distinct port or prefix once; nil without any.
	Exclusions *rules.Set
}

// Node is what the node sets for each of its pods: the plugin's
// configuration.
type Node struct {
	// Rules are the node's rules, which the pod's own follow.
	Rules *rules.Set
	// SidecarUID is the sidecar's uid (nodestate.DefaultSidecarUID when 0).
	SidecarUID uint32
	// Quota is the pod's quota (bpf.DefaultPodQuota when 0).
	Quota uint32
}

// AnnotationError is an annotation whose value the plugin refuses.
type AnnotationError struct {
	Name string // the annotation
	// Item is the value refused: the whole value, or the comma list's
	// item; empty for the rules, whose Err (a rules.ErrorList) says where.
	Item string
	Err  error
}

func (e *AnnotationError) Error() string { return "annotation " + e.Name + ": " + e.Err.Error() }
func (e *AnnotationError) Unwrap() error { return e.Err }

// LimitError says that a pod's rules do not fit the BPF rule table: the
// node's (or its profile's), its own and its Istio exclusions.
type LimitError struct {
	Node, Own, Exclusions int
	Err                   error // rules.Merge's
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("pod rules: %d node rules, %d of %s and %d Istio exclusions: %v",
		e.Node, e.Own, annotations.Rules, e.Exclusions, e.Err)
}
func (e *LimitError) Unwrap() error { return e.Err }

// Values returns the values an annotation accepts; nil for those that take
// free text or lists (the rules, the exclusions). An empty Profile is
// ProfileDefault.
func Values(name string) []string {
	switch name {
	case annotations.Enabled, annotations.TrustApp:
		return []string{"true", "false"}
	case annotations.Profile:
		return annotations.Profiles()
	}
	return nil
}

// RulesParser parses the text of the annotation Rules; errors name
// file:line:column in the text's source.
type RulesParser func(text string) (*rules.Set, error)

// ParseRules is the plugin's RulesParser: positions are lines and columns
// of the annotation's value, named after the annotation.
func ParseRules(text string) (*rules.Set, error) { return rules.ParseString(annotations.Rules, text) }

// FromAnnotations reads what a pod's annotations ask for; parse reads its
// own rules (nil: ParseRules). Errors are *AnnotationError.
func FromAnnotations(ann map[string]string, parse RulesParser) (*Pod, error) {
	if parse == nil {
		parse = ParseRules
	}
	p := &Pod{Profile: annotations.ProfileDefault}
	switch v := ann[annotations.TrustApp]; v {
	case "true":
		p.TrustApp = true
	case "false", "":
	default:
		return nil, &AnnotationError{annotations.TrustApp, v, fmt.Errorf("%q is neither \"true\" nor \"false\"", v)}
	}
	switch v := ann[annotations.Profile]; v {
	case "", annotations.ProfileDefault:
	case annotations.ProfileSidecarHops:
		p.Profile = v
	default:
		return nil, &AnnotationError{annotations.Profile, v, fmt.Errorf("%q is neither %q nor %q", v,
			annotations.ProfileDefault, annotations.ProfileSidecarHops)}
	}
	if text, ok := ann[annotations.Rules]; ok {
		s, err := parse(text)
		if err != nil {
			return nil, &AnnotationError{Name: annotations.Rules, Err: err}
		}
		p.Rules = s
	}
	excl, err := Exclusions(ann)
	if err != nil {
		return nil, err
	}
	p.Exclusions = excl
	return p, nil
}

// Config returns the pod's configuration on node: the node's rules (or
// those of the pod's profile, under the node's RETURN rules), then the
// pod's own, then its Istio exclusions. A *LimitError says that they do
// not fit the BPF rule table.
func (p *Pod) Config(node Node) (bpf.PodConfig, error) {
	cfg := bpf.PodConfig{TrustApp: p.TrustApp, SidecarUID: node.SidecarUID, Quota: node.Quota}
	if cfg.SidecarUID == 0 {
		cfg.SidecarUID = nodestate.DefaultSidecarUID
	}
	if cfg.Quota == 0 {
		cfg.Quota = bpf.DefaultPodQuota
	}
	under := ProfileRules(node.Rules, p.Profile, cfg.SidecarUID)
	all, err := rules.Merge(under, p.Rules, p.Exclusions)
	if err != nil {
		return cfg, &LimitError{count(under), count(p.Rules), count(p.Exclusions), err}
	}
	cfg.Rules = all
	return cfg, nil
}

// Build is the configuration of a pod annotated ann on node: what the CNI
// plugin attaches. Errors are *AnnotationError or *LimitError.
func Build(node Node, ann map[string]string) (bpf.PodConfig, error) {
	p, err := FromAnnotations(ann, nil)
	if err != nil {
		return bpf.PodConfig{}, err
	}
	return p.Config(node)
}

// ProfileRules returns the rules a pod's own follow under profile: the
// node's, or with ProfileSidecarHops rules.SidecarHopsUnder them for the
// sidecar uid.
func ProfileRules(node *rules.Set, profile string, sidecarUID uint32) *rules.Set {
	if profile == annotations.ProfileSidecarHops {
		return rules.SidecarHopsUnder(node, sidecarUID)
	}
	return node
}

func count(s *rules.Set) int {
	if s == nil {
		return 0
	}
	return len(s.Rules)
}

// ExclusionsFile names the rules made of Istio's exclusion annotations
// (their Rule.File); their Line is their place among them.
const ExclusionsFile = "istio-exclusions"

// Exclusions turns Istio's exclusion annotations into RETURN rules, each
// distinct port or prefix once: nil without any. Errors are
// *AnnotationError naming the item refused.
func Exclusions(ann map[string]string) (*rules.Set, error) {
	out := &rules.Set{}
	add := func(r rules.Rule) {
		r.Target, r.File, r.Line = rules.Return, ExclusionsFile, len(out.Rules)+1
		for _, o := range out.Rules {
			if o.Equal(r) {
				return
			}
		}
		out.Rules = append(out.Rules, r)
	}
	for _, name := range []string{annotations.ExcludeInboundPorts, annotations.ExcludeOutboundPorts} {
		for _, item := range listItems(ann[name]) {
			p, err := strconv.ParseUint(item, 10, 16)
			if err != nil || p == 0 {
				return nil, &AnnotationError{name, item, fmt.Errorf("%q is not a port (1-65535)", item)}
			}
			add(rules.Rule{PortLo: uint16(p), PortHi: uint16(p), HasPort: true})
		}
	}
	for _, item := range listItems(ann[annotations.ExcludeOutboundIPRanges]) {
		prefixes, err := excludedPrefixes(item)
		if err != nil {
			return nil, &AnnotationError{annotations.ExcludeOutboundIPRanges, item, err}
		}
		for _, p := range prefixes {
			add(rules.Rule{Prefix: p, HasIP: true})
		}
	}
	if len(out.Rules) == 0 {
		return nil, nil
	}
	return out, nil
}

// excludedPrefixes reads an item of ExcludeOutboundIPRanges: a CIDR, an
// address (its /32 or /128), or "*" (every address, both families). A
// prefix is stored masked, an IPv4-mapped one as the IPv4 prefix it
// covers, as package rules parses them.
func excludedPrefixes(item string) ([]netip.Prefix, error) {
	if item == "*" {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, nil
	}
	p, err := netip.ParsePrefix(item)
	if err != nil {
		a, aerr := netip.ParseAddr(item)
		if aerr != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not a CIDR: %w", item, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return []netip.Prefix{p.Masked()}, nil
}

// listItems splits a comma list, trimming spaces and dropping empty items.
func listItems(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
