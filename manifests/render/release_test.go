package render_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests/render"
)

var release = render.Image{Repository: "registry.example:5000/mesh-accel", Tag: "v1.2.3", Digest: "sha256:" + strings.Repeat("0f", 32)}

// checkRendering checks that every object of a rendering carries the
// release's version label (the DaemonSet's pod template too, its selector
// not) and that every container runs the image by tag and digest; every
// rendering but the monitoring's has the DaemonSet.
func checkRendering(t *testing.T, name string, data []byte) {
	t.Helper()
	var sawDS bool
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if obj.Kind == "" {
			continue
		}
		if v := obj.Metadata.Labels[render.VersionLabel]; v != release.Tag {
			t.Errorf("%s: %s/%s version label %q", name, obj.Kind, obj.Metadata.Name, v)
		}
		if obj.Kind != "DaemonSet" {
			continue
		}
		sawDS = true
		var ds appsv1.DaemonSet
		if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := ds.Spec.Selector.MatchLabels[render.VersionLabel]; ok || ds.Spec.Template.Labels[render.VersionLabel] != release.Tag {
			t.Errorf("%s: selector %v, pod labels %v", name, ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
		}
		for _, c := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
			if c.Image != release.Ref() {
				t.Errorf("%s: container %s image %q, want %q", name, c.Name, c.Image, release.Ref())
			}
		}
	}
	if !sawDS && name != render.MonitoringFile {
		t.Errorf("%s: no DaemonSet", name)
	}
}

// The release files: kustomize's rendering, each component's, the chart's,
// and the packaged chart whose defaults are the release's image.
func TestWriteRelease(t *testing.T) {
	dir := t.TempDir()
	files, err := render.WriteRelease(release, dir)
	if err != nil {
		t.Fatal(err)
	}
	components, err := render.ComponentNames()
	if err != nil || len(components) < 4 {
		t.Fatalf("components %v, %v", components, err)
	}
	want := []string{render.KustomizeFile, render.ChartFile, render.MonitoringFile, "mesh-accel-1.2.3.tgz"}
	for _, c := range components {
		want = append(want, render.ComponentFile(c))
	}
	slices.Sort(want)
	got := slices.Clone(files)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(want) {
		t.Errorf("%d entries in the folder (temporary files left?), want %d", len(entries), len(want))
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".yaml") {
			data, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			checkRendering(t, f, data)
		}
	}
	c, err := loader.Load(filepath.Join(dir, "mesh-accel-1.2.3.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != "1.2.3" || c.Metadata.AppVersion != "v1.2.3" {
		t.Errorf("chart version %s, appVersion %s", c.Metadata.Version, c.Metadata.AppVersion)
	}
	out, err := render.RenderChart(c, "mesh-accel", "mesh-accel", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRendering(t, "packaged chart", out)
}

// A release needs a repository, a semantic version and a digest.
func TestWriteReleaseRefuses(t *testing.T) {
	for _, img := range []render.Image{
		{Repository: release.Repository, Tag: release.Tag},
		{Repository: release.Repository, Tag: "main-abc123", Digest: release.Digest},
		{Repository: release.Repository, Tag: release.Tag, Digest: "sha256:abc"},
		{Tag: release.Tag, Digest: release.Digest},
	} {
		dir := t.TempDir()
		if _, err := render.WriteRelease(img, dir); err == nil {
			t.Errorf("%+v: no error", img)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%+v: files written", img)
		}
	}
}

// The script drops a tag from IMAGE (not a registry's port) and passes
// DIGEST through.
func TestReleaseScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release command")
	}
	out := t.TempDir()
	cmd := exec.Command("./scripts/release-manifests.sh")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "VERSION="+release.Tag, "IMAGE="+release.Repository+":old-tag", "DIGEST="+release.Digest, "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	data, err := os.ReadFile(filepath.Join(out, render.KustomizeFile))
	if err != nil {
		t.Fatal(err)
	}
	checkRendering(t, "script's "+render.KustomizeFile, data)
}

// The release's monitoring file holds the PodMonitor, the alerts and the
// dashboard's ConfigMap.
func TestReleaseMonitoring(t *testing.T) {
	out, err := render.Monitoring(release)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var obj struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, obj.Kind)
	}
	slices.Sort(kinds)
	if want := []string{"ConfigMap", "PodMonitor", "PrometheusRule"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
}

// The released chart pins its image by digest for its own tag only: an
// image.tag given at install renders repository:tag without the release's
// digest (image.digest given with it pins that tag), and another
// repository (a mirror) keeps the digest of the release's tag. The package
// carries the schema, the README and the monitoring files.
func TestReleasedChartImage(t *testing.T) {
	dir := t.TempDir()
	if _, err := render.WriteRelease(release, dir); err != nil {
		t.Fatal(err)
	}
	c, err := loader.Load(filepath.Join(dir, "mesh-accel-1.2.3.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Annotations[render.ImageDigestAnnotation] != release.Digest {
		t.Errorf("annotations %v", c.Metadata.Annotations)
	}
	if d := c.Values["image"].(map[string]any)["digest"]; d != "" {
		t.Errorf("values.yaml image.digest %q: the release's digest belongs to the annotation", d)
	}
	if c.Schema == nil {
		t.Error("the package has no values.schema.json")
	}
	var names []string
	for _, f := range c.Files {
		names = append(names, f.Name)
	}
	for _, want := range []string{"README.md", "files/monitoring/podmonitor.yaml", "files/monitoring/prometheusrule.yaml", "files/monitoring/dashboard.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("the package has no %s (%v)", want, names)
		}
	}
	other := "sha256:" + strings.Repeat("1e", 32)
	for _, tc := range []struct {
		image        map[string]any
		want, labelV string
	}{
		{nil, release.Ref(), "v1.2.3"},
		{map[string]any{"tag": "v1.2.3"}, release.Ref(), "v1.2.3"},
		{map[string]any{"tag": "v1.2.4"}, release.Repository + ":v1.2.4", "v1.2.4"},
		{map[string]any{"tag": "v1.2.4", "digest": other}, release.Repository + ":v1.2.4@" + other, "v1.2.4"},
		{map[string]any{"digest": other}, release.Repository + ":v1.2.3@" + other, "v1.2.3"},
		{map[string]any{"repository": "mirror.example/mesh-accel"}, "mirror.example/mesh-accel:v1.2.3@" + release.Digest, "v1.2.3"},
	} {
		var values map[string]any
		if tc.image != nil {
			values = map[string]any{"image": tc.image}
		}
		out, err := render.RenderChart(c, "mesh-accel", "mesh-accel", values)
		if err != nil {
			t.Fatalf("image %v: %v", tc.image, err)
		}
		ds := daemonSetOf(t, out)
		for _, ctr := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
			if ctr.Image != tc.want {
				t.Errorf("image %v: container %s runs %q, want %q", tc.image, ctr.Name, ctr.Image, tc.want)
			}
		}
		if v := ds.Spec.Template.Labels[render.VersionLabel]; v != tc.labelV {
			t.Errorf("image %v: version label %q, want %q", tc.image, v, tc.labelV)
		}
	}
}

// daemonSetOf decodes the DaemonSet of a rendering.
func daemonSetOf(t *testing.T, data []byte) *appsv1.DaemonSet {
	t.Helper()
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var obj struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "DaemonSet" {
			var ds appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
				t.Fatal(err)
			}
			return &ds
		}
	}
	t.Fatal("no DaemonSet")
	return nil
}
