package render

import (
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
)

// Template renders a loaded chart through Helm's install action on the
// client only, as `helm template NAME -n NAMESPACE --kube-version KUBE`
// does: the chart's kubeVersion and values.schema.json are checked, and
// NOTES.txt is rendered. It returns the manifest and the notes.
func Template(c *chart.Chart, name, namespace string, values map[string]any, kubeVersion string) (manifest, notes string, err error) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return "", "", fmt.Errorf("kube version %q: %w", kubeVersion, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.ReleaseName = name
	install.Namespace = namespace
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true
	install.KubeVersion = kv
	rel, err := install.Run(c, values)
	if err != nil {
		return "", "", err
	}
	return rel.Manifest, rel.Info.Notes, nil
}
