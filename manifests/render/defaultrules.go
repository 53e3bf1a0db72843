package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

// The default rules' copies in YAML, generated from rules.DefaultText by
// `go generate ./manifests/render`: the else branch of the chart's
// "mesh-accel.rules" template (HelpersFile), between these two lines, with
// the uid of the value sidecarUID, and the data.rules of
// manifests/configmap.yaml, for nodestate.DefaultSidecarUID.
const (
	RulesBegin = "{{- /* generated from rules.DefaultText by `go generate ./manifests/render`; do not edit */ -}}"
	RulesEnd   = "{{- /* end of the generated rules */}}"
	// HelpersFile is the chart's file that holds the template.
	HelpersFile = "templates/_helpers.tpl"
	// ConfigMapFile is the kustomize ConfigMap, whose "  rules: |" block
	// is generated.
	ConfigMapFile = "configmap.yaml"
)

// templateUID stands for the uid in the text the template is made of: a
// valid uid whose digits appear nowhere else in the text.
const templateUID = 4294967294

// ChartHelpers returns helpers (HelpersFile) with the lines between
// RulesBegin and RulesEnd replaced by rules.DefaultText for the chart's
// sidecarUID.
func ChartHelpers(helpers []byte) ([]byte, error) {
	uid := strconv.FormatUint(templateUID, 10)
	text := rules.DefaultText(templateUID)
	if strings.Count(text, uid) == 0 || strings.Contains(text, "{{") {
		return nil, fmt.Errorf("rules.DefaultText(%s) %q: want the uid in it and no template action", uid, text)
	}
	text = strings.ReplaceAll(text, uid, "{{ int64 .Values.sidecarUID }}")
	// RulesEnd trims the text's last line break; the ConfigMap's block
	// scalar adds one.
	return replaceBetween(HelpersFile, helpers, RulesBegin+"\n", RulesEnd, []byte(text))
}

// ConfigMap returns configmap (ConfigMapFile) with its data.rules block
// scalar made rules.DefaultText(nodestate.DefaultSidecarUID).
func ConfigMap(configmap []byte) ([]byte, error) {
	const key = "\n  rules: |\n"
	begin := bytes.Index(configmap, []byte(key))
	if begin < 0 || bytes.Count(configmap, []byte(key)) != 1 {
		return nil, fmt.Errorf("%s: want one line %q", ConfigMapFile, strings.TrimSpace(key))
	}
	begin += len(key)
	end := begin
	for end < len(configmap) && bytes.HasPrefix(configmap[end:], []byte("    ")) {
		next := bytes.IndexByte(configmap[end:], '\n')
		if next < 0 {
			end = len(configmap)
			break
		}
		end += next + 1
	}
	var out bytes.Buffer
	out.Write(configmap[:begin])
	for _, line := range strings.SplitAfter(rules.DefaultText(nodestate.DefaultSidecarUID), "\n") {
		if line != "" {
			out.WriteString("    " + line)
		}
	}
	out.Write(configmap[end:])
	return out.Bytes(), nil
}

// checkHelpers reports an error when the default rules of the chart in
// chartFS are stale.
func checkHelpers(chartFS fs.FS) error {
	return checkFile(chartFS, HelpersFile, ChartHelpers, "the chart's "+HelpersFile+" default rules are stale")
}

// checkConfigMap reports an error when the default rules of the
// ConfigMap in filesFS (package manifests' Files) are stale.
func checkConfigMap(filesFS fs.FS) error {
	err := checkFile(filesFS, ConfigMapFile, ConfigMap, "manifests/"+ConfigMapFile+"'s default rules are stale")
	if err != nil {
		return fmt.Errorf("%w: run `go generate ./manifests/render`", err)
	}
	return nil
}

func checkFile(fsys fs.FS, name string, generate func([]byte) ([]byte, error), stale string) error {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return err
	}
	want, err := generate(data)
	if err != nil {
		return err
	}
	if !bytes.Equal(data, want) {
		return errors.New(stale)
	}
	return nil
}

// replaceBetween returns data with what lies between begin and end
// replaced by text; each marker must appear once, begin first.
func replaceBetween(name string, data []byte, begin, end string, text []byte) ([]byte, error) {
	b := bytes.Index(data, []byte(begin))
	e := bytes.Index(data, []byte(end))
	if b < 0 || e < b || bytes.Count(data, []byte(begin)) != 1 || bytes.Count(data, []byte(end)) != 1 {
		return nil, fmt.Errorf("%s: want one line %q and, after it, one %q", name, strings.TrimSpace(begin), end)
	}
	var out bytes.Buffer
	out.Write(data[:b+len(begin)])
	out.Write(text)
	out.Write(data[e:])
	return out.Bytes(), nil
}
