package manifests_test

import (
	"regexp"
	"strconv"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// The chart's default sidecarUID, and the uid its DaemonSet leaves to the
// installer's default, are the installer's (nodestate.DefaultSidecarUID).
func TestChartSidecarUIDDefault(t *testing.T) {
	var values struct {
		SidecarUID int64 `json:"sidecarUID"`
	}
	if err := yaml.Unmarshal(chartFile(t, "values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if values.SidecarUID != nodestate.DefaultSidecarUID {
		t.Errorf("values.yaml sidecarUID %d, want nodestate.DefaultSidecarUID %d", values.SidecarUID, nodestate.DefaultSidecarUID)
	}
	ds := chartFile(t, "templates/daemonset.yaml")
	m := regexp.MustCompile(`if ne \(int64 \.Values\.sidecarUID\) (\d+) `).FindSubmatch(ds)
	if m == nil {
		t.Fatal("templates/daemonset.yaml: no condition on sidecarUID for MESH_ACCEL_SIDECAR_UID")
	}
	if uid, _ := strconv.ParseInt(string(m[1]), 10, 64); uid != nodestate.DefaultSidecarUID {
		t.Errorf("templates/daemonset.yaml sets MESH_ACCEL_SIDECAR_UID unless sidecarUID is %d, want %d", uid, nodestate.DefaultSidecarUID)
	}
}
