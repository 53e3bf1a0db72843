// Package render renders mesh-accel's install manifests as users get them:
// the kustomization of package manifests with krusty (what `kubectl apply
// -k` runs), its platform components, and the Helm chart with Helm's
// engine (what `helm template` runs). Tests and the release files use it;
// the node binaries do not.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/monitoring"
)

// ChartDir is the chart's folder in [manifests.Chart].
const ChartDir = "chart/mesh-accel"

// VersionLabel is the label that names the release on every object.
const VersionLabel = "app.kubernetes.io/version"

// Image names the image the manifests run. The zero Image keeps the
// manifests' own.
type Image struct {
	Repository string // registry/mesh-accel
	Tag        string // also the version label
	Digest     string // sha256:...; optional
}

// Ref is repository:tag, with @digest when there is one.
func (i Image) Ref() string {
	ref := i.Repository + ":" + i.Tag
	if i.Digest != "" {
		ref += "@" + i.Digest
	}
	return ref
}

func (i Image) check() error {
	if i == (Image{}) {
		return nil
	}
	if i.Repository == "" || i.Tag == "" {
		return fmt.Errorf("image %q: want a repository and a tag", i.Ref())
	}
	if i.Digest != "" && (!strings.HasPrefix(i.Digest, "sha256:") || len(i.Digest) != len("sha256:")+64) {
		return fmt.Errorf("image digest %q: want sha256: and 64 hex digits", i.Digest)
	}
	return nil
}

// Kustomize renders the kustomization with the named components (folders
// of [manifests.Components]) and, unless img is zero, the image and the
// version label replaced.
func Kustomize(img Image, components ...string) ([]byte, error) {
	if err := img.check(); err != nil {
		return nil, err
	}
	mem := filesys.MakeFsInMemory()
	if err := copyFS(mem, manifests.Files, ".", "/base"); err != nil {
		return nil, err
	}
	if err := copyFS(mem, manifests.Components, "components", "/components"); err != nil {
		return nil, err
	}
	dir := "/base"
	if len(components) > 0 || img != (Image{}) {
		k, err := overlay(img, components)
		if err != nil {
			return nil, err
		}
		if err := mem.WriteFile("/overlay/kustomization.yaml", k); err != nil {
			return nil, err
		}
		dir = "/overlay"
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	return res.AsYaml()
}

// Monitoring renders manifests/monitoring's kustomization (the
// PodMonitor, the alerts and the dashboard's ConfigMap) with, unless img
// is zero, the version label of img's tag.
func Monitoring(img Image) ([]byte, error) {
	if err := img.check(); err != nil {
		return nil, err
	}
	mem := filesys.MakeFsInMemory()
	if err := copyFS(mem, monitoring.Files, ".", "/monitoring"); err != nil {
		return nil, err
	}
	dir := "/monitoring"
	if img != (Image{}) {
		k, err := yaml.Marshal(types.Kustomization{
			TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
			Resources: []string{"../monitoring"},
			Labels:    []types.Label{{Pairs: map[string]string{VersionLabel: img.Tag}}},
		})
		if err != nil {
			return nil, err
		}
		if err := mem.WriteFile("/overlay/kustomization.yaml", k); err != nil {
			return nil, err
		}
		dir = "/overlay"
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build of the monitoring: %w", err)
	}
	return res.AsYaml()
}

// overlay is a kustomization of the base with the components, the image
// and the version label.
func overlay(img Image, components []string) ([]byte, error) {
	k := types.Kustomization{
		TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
		Resources: []string{"../base"},
	}
	for _, c := range components {
		if _, err := fs.Stat(manifests.Components, path.Join("components", c, "kustomization.yaml")); err != nil {
			return nil, fmt.Errorf("component %q: %w", c, err)
		}
		k.Components = append(k.Components, "../components/"+c)
	}
	if img != (Image{}) {
		base, err := baseImage()
		if err != nil {
			return nil, err
		}
		k.Images = []types.Image{{Name: base, NewName: img.Repository, NewTag: img.Tag, Digest: img.Digest}}
		k.Labels = []types.Label{{Pairs: map[string]string{VersionLabel: img.Tag}, IncludeTemplates: true}}
	}
	return yaml.Marshal(k)
}

// baseImage is the image reference the base kustomization sets (its
// images' newName).
func baseImage() (string, error) {
	data, err := manifests.Files.ReadFile("kustomization.yaml")
	if err != nil {
		return "", err
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return "", fmt.Errorf("kustomization.yaml: %w", err)
	}
	if len(k.Images) != 1 || k.Images[0].NewName == "" {
		return "", errors.New("kustomization.yaml: want one image with a newName")
	}
	return k.Images[0].NewName, nil
}

// copyFS copies the files under dir of src to the folder to of dst.
func copyFS(dst filesys.FileSystem, src fs.FS, dir, to string) error {
	return fs.WalkDir(src, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		return dst.WriteFile(path.Join(to, rel), data)
	})
}

// LoadChart loads the chart from [manifests.Chart].
func LoadChart() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(manifests.Chart, ChartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(manifests.Chart, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, ChartDir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the chart: %w", err)
	}
	return c, nil
}

// Chart renders the chart as `helm template NAME -n NAMESPACE` does, with
// values merged over the chart's values.yaml.
func Chart(name, namespace string, values map[string]any) ([]byte, error) {
	c, err := LoadChart()
	if err != nil {
		return nil, err
	}
	return RenderChart(c, name, namespace, values)
}

// RenderChart renders a loaded chart: the manifests in the order of their
// template files, each after a "# Source:" line.
func RenderChart(c *chart.Chart, name, namespace string, values map[string]any) ([]byte, error) {
	vals, err := chartutil.ToRenderValues(c, values, chartutil.ReleaseOptions{Name: name, Namespace: namespace, Revision: 1, IsInstall: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	out, err := engine.Render(c, vals)
	if err != nil {
		return nil, fmt.Errorf("render the chart: %w", err)
	}
	names := make([]string, 0, len(out))
	for n, text := range out {
		if strings.HasSuffix(n, ".yaml") && strings.TrimSpace(text) != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		// Trim blank lines only: a block scalar's last line break is content.
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", n, strings.Trim(out[n], "\n"))
	}
	return b.Bytes(), nil
}
