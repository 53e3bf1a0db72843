// Command mesh-accel-chartgen writes the chart's generated files: the
// values table of its README.md (from values.yaml's comments and
// values.schema.json), its copies of manifests/monitoring's files, which
// the chart's optional monitoring templates read, and its default rules
// (rules.DefaultText); and the default rules of manifests/configmap.yaml
// (package render). `go generate ./manifests/render` runs it; the tests
// fail when the files are stale.
//
//	mesh-accel-chartgen -chart manifests/chart/mesh-accel -monitoring manifests/monitoring -manifests manifests
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mesh-accel/mesh-accel/manifests/render"
)

func main() {
	chart := flag.String("chart", "manifests/chart/mesh-accel", "the chart's folder")
	monitoring := flag.String("monitoring", "manifests/monitoring", "the folder of the monitoring files")
	manifests := flag.String("manifests", "manifests", "the folder of the kustomize manifests")
	flag.Parse()
	err := generate(*chart, *monitoring)
	if err == nil {
		err = errors.Join(rewrite(filepath.Join(*chart, render.HelpersFile), render.ChartHelpers),
			rewrite(filepath.Join(*manifests, render.ConfigMapFile), render.ConfigMap))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-accel-chartgen:", err)
		os.Exit(1)
	}
}

func generate(chart, monitoring string) error {
	read := func(dir, name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	readme, err := read(chart, "README.md")
	if err != nil {
		return err
	}
	values, err := read(chart, "values.yaml")
	if err != nil {
		return err
	}
	schema, err := read(chart, "values.schema.json")
	if err != nil {
		return err
	}
	out, err := render.ChartREADME(readme, values, schema)
	if err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(chart, "README.md"), out); err != nil {
		return err
	}
	dir := filepath.Join(chart, filepath.FromSlash(render.ChartMonitoringDir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range render.MonitoringCopies {
		data, err := read(monitoring, name)
		if err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// rewrite writes the file at path as generate makes it from its content.
func rewrite(path string, generate func([]byte) ([]byte, error)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := generate(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeIfChanged(path, out)
}

// writeIfChanged writes data to path unless the file holds it already.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}
