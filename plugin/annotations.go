package plugin

import (
	"fmt"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// The pod annotations the plugin reads (package annotations names them,
// package podconfig reads them), for the tests and test tools.
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

// podConfig derives a pod's configuration from its annotations on the
// node (package podconfig); a refused annotation is a setup failure of
// reason ReasonAnnotation.
func podConfig(node podconfig.Node, ann map[string]string) (bpf.PodConfig, error) {
	cfg, err := podconfig.Build(node, ann)
	if err != nil {
		return cfg, fail(ReasonAnnotation, err)
	}
	return cfg, nil
}

// nodeSettings are what the node sets for each pod: its rules, the
// sidecar's uid and the pod quota.
func nodeSettings(conf *Config) (podconfig.Node, error) {
	node, err := nodeRules(conf)
	if err != nil {
		return podconfig.Node{}, err
	}
	return podconfig.Node{Rules: node, SidecarUID: conf.SidecarUID, Quota: conf.PodQuota}, nil
}
