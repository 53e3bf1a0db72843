package podconfig_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	yaml "go.yaml.in/yaml/v3"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// The Helm value, installer flag and conflist key of each option exist:
// the chart's values.yaml has the value, the installer the flag, and the
// plugin's configuration the key.
func TestOptionSettingsExist(t *testing.T) {
	b, err := os.ReadFile("../../manifests/chart/mesh-accel/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var help bytes.Buffer
	if _, err := installer.NewConfig([]string{"--help"}, func(string) string { return "" }, &help); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("installer --help: %v", err)
	}
	keys := map[string]bool{}
	typ := reflect.TypeFor[plugin.Config]()
	for i := range typ.NumField() {
		keys[strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]] = true
	}
	for _, o := range podconfig.Options() {
		if _, ok := values[o.HelmValue]; o.HelmValue != "" && !ok {
			t.Errorf("option %s: the chart has no value %s", o.Field, o.HelmValue)
		}
		if o.Flag != "" && !strings.Contains(help.String(), "--"+o.Flag+" ") {
			t.Errorf("option %s: the installer has no flag --%s", o.Field, o.Flag)
		}
		if o.ConfKey != "" && !keys[o.ConfKey] {
			t.Errorf("option %s: the plugin's configuration has no key %s", o.Field, o.ConfKey)
		}
	}
}
