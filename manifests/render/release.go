package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/mesh-accel/mesh-accel/manifests"
)

// Release files, in the release folder.
const (
	KustomizeFile  = "mesh-accel.yaml"            // kubectl apply -f: the kustomization's objects
	ChartFile      = "mesh-accel-helm.yaml"       // the chart's objects (namespace.create)
	MonitoringFile = "mesh-accel-monitoring.yaml" // manifests/monitoring's objects (Prometheus Operator)
)

// ImageDigestAnnotation is the annotation of a released chart's Chart.yaml
// that holds the digest of the release's image: the chart applies it when
// the image's tag is the chart's appVersion and image.digest is empty.
const ImageDigestAnnotation = "accel.mesh/image-digest"

// ComponentFile is the release file of a platform component.
func ComponentFile(component string) string { return "mesh-accel-" + component + ".yaml" }

// WriteRelease writes the manifests of a release into dir: the
// kustomization's objects, those of every platform component, the
// monitoring objects, the chart's objects, and the chart packaged as
// mesh-accel-VERSION.tgz with the image as its default. img.Tag is the
// release's version (v1.2.3: the chart's version is 1.2.3); every object
// refers to the image by tag and digest. It returns the files written,
// each written atomically.
func WriteRelease(img Image, dir string) ([]string, error) {
	if img.Repository == "" || img.Tag == "" || img.Digest == "" {
		return nil, fmt.Errorf("release image %q: want a repository, a version and a digest", img.Ref())
	}
	if err := img.check(); err != nil {
		return nil, err
	}
	if err := CheckChartGenerated(); err != nil {
		return nil, err
	}
	sv, err := semver.StrictNewVersion(strings.TrimPrefix(img.Tag, "v"))
	if err != nil {
		return nil, fmt.Errorf("release version %q: want a semantic version such as v1.2.3: %w", img.Tag, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	if files[KustomizeFile], err = Kustomize(img); err != nil {
		return nil, err
	}
	if files[MonitoringFile], err = Monitoring(img); err != nil {
		return nil, err
	}
	components, err := ComponentNames()
	if err != nil {
		return nil, err
	}
	for _, c := range components {
		if files[ComponentFile(c)], err = Kustomize(img, c); err != nil {
			return nil, err
		}
	}
	c, err := releaseChart(img, sv.String())
	if err != nil {
		return nil, err
	}
	values := map[string]any{"namespace": map[string]any{"create": true}}
	if files[ChartFile], err = RenderChart(c, "mesh-accel", "mesh-accel", values); err != nil {
		return nil, err
	}
	var written []string
	for _, name := range sortedKeys(files) {
		if err := writeFileAtomic(filepath.Join(dir, name), files[name]); err != nil {
			return written, err
		}
		written = append(written, name)
	}
	tgz, err := saveChart(c, dir)
	if err != nil {
		return written, err
	}
	return append(written, tgz), nil
}

// ComponentNames are the platform components, by name.
func ComponentNames() ([]string, error) {
	entries, err := fs.ReadDir(manifests.Components, "components")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// releaseChart is the chart with the release's version as its version and
// appVersion (the default image tag), the image's repository as the
// default of its values.yaml (the text is edited, so that its comments
// stay), and the image's digest as its ImageDigestAnnotation: the chart
// applies that digest to the appVersion's tag only, so that an image.tag
// given at install does not keep it.
func releaseChart(img Image, version string) (*chart.Chart, error) {
	c, err := LoadChart()
	if err != nil {
		return nil, err
	}
	c.Metadata.Version = version
	c.Metadata.AppVersion = img.Tag
	if c.Metadata.Annotations == nil {
		c.Metadata.Annotations = map[string]string{}
	}
	c.Metadata.Annotations[ImageDigestAnnotation] = img.Digest
	for _, f := range c.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		old := "\n  repository: " + c.Values["image"].(map[string]any)["repository"].(string) + "\n"
		if bytes.Count(f.Data, []byte(old)) != 1 {
			return nil, fmt.Errorf("chart values.yaml: want one line %q", strings.TrimSpace(old))
		}
		f.Data = bytes.Replace(f.Data, []byte(old), []byte("\n  repository: "+img.Repository+"\n"), 1)
		vals, err := chartutil.ReadValues(f.Data)
		if err != nil {
			return nil, fmt.Errorf("chart values.yaml after the edit: %w", err)
		}
		c.Values = vals
		return c, nil
	}
	return nil, fmt.Errorf("chart has no %s", chartutil.ValuesfileName)
}

// saveChart packages the chart into dir through a temporary folder, so
// that the archive appears whole.
func saveChart(c *chart.Chart, dir string) (string, error) {
	tmp, err := os.MkdirTemp(dir, ".chart-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	path, err := chartutil.Save(c, tmp)
	if err != nil {
		return "", fmt.Errorf("package the chart: %w", err)
	}
	name := filepath.Base(path)
	if err := os.Rename(path, filepath.Join(dir, name)); err != nil {
		return "", err
	}
	return name, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, renamed over path once complete.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
