// Package monitoring holds mesh-accel's optional monitoring objects
// (kubectl apply -k manifests/monitoring/): a PodMonitor, a PrometheusRule
// and a Grafana dashboard, see README.md in this folder. The files are
// embedded so that tests check exactly what users apply: every metric an
// expression names must be one a running installer exports.
package monitoring

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"

	"sigs.k8s.io/yaml"
)

// Files are the kustomization, the objects it lists and the dashboard.
//
//go:embed *.yaml dashboard.json
var Files embed.FS

// OtherExporters are the metrics the expressions use that the installer
// does not export: Prometheus's own, cAdvisor's (kubelet) and
// kube-state-metrics'.
var OtherExporters = map[string]bool{
	"up":                                 true,
	"container_memory_working_set_bytes": true,
	"kube_pod_container_resource_limits": true,
}

// Rule is one alert of the PrometheusRule, the fields a check needs.
type Rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// PrometheusRule is the PrometheusRule object, decoded strictly.
type PrometheusRule struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// Metadata is the part of an object's metadata the files set.
type Metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// Rules decodes prometheusrule.yaml; a field it does not know is an error.
func Rules() (*PrometheusRule, error) {
	var pr PrometheusRule
	if err := decodeStrict("prometheusrule.yaml", &pr); err != nil {
		return nil, err
	}
	return &pr, nil
}

// decodeStrict decodes the embedded YAML file name into v, refusing
// unknown fields.
func decodeStrict(name string, v any) error {
	b, err := Files.ReadFile(name)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

// dashboard is the part of the Grafana JSON model that holds queries.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// labelValues is Grafana's label_values(METRIC_EXPR, LABEL) query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// Expressions returns every PromQL expression of the alerts and the
// dashboard (panel targets and query variables' selectors), keyed by where
// it is.
func Expressions() (map[string]string, error) {
	out := map[string]string{}
	pr, err := Rules()
	if err != nil {
		return nil, err
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	b, err := Files.ReadFile("dashboard.json")
	if err != nil {
		return nil, err
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode dashboard.json: %w", err)
	}
	for _, p := range d.Panels {
		for i, t := range p.Targets {
			out[fmt.Sprintf("panel %q target %d", p.Title, i)] = t.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			return nil, fmt.Errorf("dashboard.json: variable %s: %w", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			return nil, fmt.Errorf("dashboard.json: variable %s: query %q is not label_values(METRIC, LABEL)", v.Name, q.Query)
		}
		out["variable "+v.Name] = m[1]
	}
	return out, nil
}
