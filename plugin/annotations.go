package plugin

import (
	"fmt"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
	"github.com/mesh-accel/mesh-accel/rules"
)

// The pod annotations the plugin reads (package annotations names them for
// the tools too).
const (
	AnnotationEnabled                 = annotations.Enabled
	AnnotationRules                   = annotations.Rules
	AnnotationTrustApp                = annotations.TrustApp
	AnnotationProfile                 = annotations.Profile
	AnnotationExcludeInboundPorts     = annotations.ExcludeInboundPorts
	AnnotationExcludeOutboundPorts    = annotations.ExcludeOutboundPorts
	AnnotationExcludeOutboundIPRanges = annotations.ExcludeOutboundIPRanges
)

// The values of AnnotationProfile.
const (
	ProfileDefault     = annotations.ProfileDefault
	ProfileSidecarHops = annotations.ProfileSidecarHops
)

// enabled reports whether the pod is to be accelerated: its annotation
// AnnotationEnabled decides when it has one; else the label of its
// namespace does, as the installer recorded it in the state folder
// (nsoptin.Read; the file is read only for pods without the annotation).
// The caller has already left out the excluded namespaces.
func (d *deps) enabled(conf *Config, namespace string, ann map[string]string) bool {
	if v, ok := ann[AnnotationEnabled]; ok {
		if v != "true" {
			d.log.Debug("annotated " + AnnotationEnabled + ": " + v + ": nothing to do")
		}
		return v == "true"
	}
	if namespace == nsoptin.Never {
		return false
	}
	opted, err := nsoptin.Read(conf.StateDir)
	if err != nil {
		d.log.Warn("namespace labels unknown: only annotated pods are accelerated", "err", err)
		return false
	}
	if !opted[namespace] {
		d.log.Debug("neither the pod is annotated nor its namespace labelled " + AnnotationEnabled + "=true: nothing to do")
		return false
	}
	d.log.Debug("namespace labelled " + AnnotationEnabled + "=true")
	return true
}

// nodeRules returns the node's default rules: the rules file, else
// rules.Default() with its uid rule on the configured sidecar uid.
func nodeRules(conf *Config) (*rules.Set, error) {
	if conf.RulesFile != "" {
		s, err := rules.ParseFile(conf.RulesFile)
		if err != nil {
			return nil, fail(ReasonRulesFile, fmt.Errorf("node rules: %w", err))
		}
		return s, nil
	}
	return rules.DefaultFor(conf.SidecarUID), nil
}

// podConfig derives a pod's configuration: the node's rules (or those of
// the pod's profile, under the node's RETURN rules), then the pod's own,
// then its Istio exclusions; trust from its annotation.
func podConfig(node *rules.Set, ann map[string]string, sidecarUID uint32) (bpf.PodConfig, error) {
	cfg := bpf.PodConfig{SidecarUID: sidecarUID}
	switch v := ann[AnnotationTrustApp]; v {
	case "true":
		cfg.TrustApp = true
	case "false", "":
	default:
		return cfg, failf(ReasonAnnotation, "annotation %s: %q is neither \"true\" nor \"false\"", AnnotationTrustApp, v)
	}
	switch v := ann[AnnotationProfile]; v {
	case "", ProfileDefault:
	case ProfileSidecarHops:
		node = rules.SidecarHopsUnder(node, cfg.SidecarUID)
	default:
		return cfg, failf(ReasonAnnotation, "annotation %s: %q is neither %q nor %q", AnnotationProfile, v,
			ProfileDefault, ProfileSidecarHops)
	}
	var own *rules.Set
	if text, ok := ann[AnnotationRules]; ok {
		s, err := rules.ParseString(AnnotationRules, text)
		if err != nil {
			return cfg, fail(ReasonAnnotation, fmt.Errorf("annotation %s: %w", AnnotationRules, err))
		}
		own = s
	}
	excl, err := exclusions(ann)
	if err != nil {
		return cfg, err
	}
	all, err := rules.Merge(node, own, excl)
	if err != nil {
		return cfg, failf(ReasonAnnotation, "pod rules: %d node rules, %d of %s and %d Istio exclusions: %w",
			count(node), count(own), AnnotationRules, count(excl), err)
	}
	cfg.Rules = all
	return cfg, nil
}

func count(s *rules.Set) int {
	if s == nil {
		return 0
	}
	return len(s.Rules)
}

// exclusions turns Istio's exclusion annotations into RETURN rules, each
// distinct port or prefix once.
func exclusions(ann map[string]string) (*rules.Set, error) {
	var lines []string
	seen := map[string]bool{}
	add := func(line string) {
		if !seen[line] {
			seen[line] = true
			lines = append(lines, line)
		}
	}
	for _, name := range []string{AnnotationExcludeInboundPorts, AnnotationExcludeOutboundPorts} {
		for _, item := range listItems(ann[name]) {
			p, err := strconv.ParseUint(item, 10, 16)
			if err != nil || p == 0 {
				return nil, failf(ReasonAnnotation, "annotation %s: %q is not a port (1-65535)", name, item)
			}
			add(fmt.Sprintf("chain --port %d -j RETURN", p))
		}
	}
	for _, item := range listItems(ann[AnnotationExcludeOutboundIPRanges]) {
		if item == "*" {
			add("chain --ip 0.0.0.0/0 -j RETURN")
			add("chain --ip ::/0 -j RETURN")
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil || a.Zone() != "" {
				return nil, failf(ReasonAnnotation, "annotation %s: %q is not a CIDR: %v", AnnotationExcludeOutboundIPRanges, item, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		add(fmt.Sprintf("chain --ip %s -j RETURN", p.Masked()))
	}
	if len(lines) == 0 {
		return nil, nil
	}
	s, err := rules.ParseString("istio-exclusions", strings.Join(lines, "\n"))
	if err != nil { // the lines are built from checked values
		return nil, fail(ReasonAnnotation, err)
	}
	return s, nil
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
