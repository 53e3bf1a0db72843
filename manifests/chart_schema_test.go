package manifests_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/render"
)

// setValues parses --set arguments as the helm command does (numbers are
// numbers, true and false booleans, {a,b} lists).
func setValues(t *testing.T, sets ...string) map[string]any {
	t.Helper()
	values := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, values); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	return values
}

// chartFile reads a file of the chart as the tests embed it.
func chartFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := manifests.Chart.ReadFile(render.ChartDir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The values that passed the chart silently before it had a schema (and
// rendered uid 0, or crash-looped every node once rolled out), and other
// values the installer or Kubernetes would refuse: the chart refuses each,
// through `helm template`'s path (Helm's install action) as through the
// engine, with a message that names the value (its path in the values)
// and what it should be.
func TestChartRefusesBadValues(t *testing.T) {
	c, err := render.LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set        string
		path, want string
	}{
		// The list.
		{"sidecarUID=abc", "/sidecarUID", "got string, want integer"},
		{"metrics.port=70000", "/metrics/port", "maximum"},
		{"metrics.address=fd00::1", "/metrics/address", "an IPv6 address in brackets, such as [fd00::1]"},
		{"logLevel=verbose", "/logLevel", "'debug', 'info', 'warn', 'error'"},
		{"removeBPFOnExit=yes", "/removeBPFOnExit", "got string, want boolean"},
		{"podQuota=-1", "/podQuota", "minimum"},
		{"imagePullSecrets={regcred}", "/imagePullSecrets/0", "got string, want object"},
		// The installer's and the plugin's ranges.
		{"sidecarUID=0", "/sidecarUID", "minimum"},
		{"sidecarUID=4294967295", "/sidecarUID", "maximum"},
		{"sidecarUID=1337.5", "/sidecarUID", "want integer"},
		{"podQuota=4294967296", "/podQuota", "maximum"},
		{"backlogLimit=-1", "/backlogLimit", "minimum"},
		{"backlogLimit=4MiB", "/backlogLimit", "want integer"},
		{"mapSize=100000", "/mapSize", "value must be one of 1024, 2048,"},
		{"mapSize=512", "/mapSize", "one of"},
		{"mapSize=2097152", "/mapSize", "one of"},
		{"mapSize=0", "/mapSize", "one of"},
		{"mapSize=64k", "/mapSize", "one of"},
		{"metrics.port=0", "/metrics/port", "minimum"},
		{"metrics.port=9753x", "/metrics/port", "want integer"},
		{"metrics.address=::", "/metrics/address", "in brackets"},
		{"metrics.address=fe80::1%eth0", "/metrics/address", "in brackets"},
		{"metrics.address=127.0.0.1:9753", "/metrics/address", "without a port"},
		{"metrics.address=[::1]:9753", "/metrics/address", "does not match"},
		{"metrics.address=$(HOST_IP)", "/metrics/address", "does not match"},
		{"metrics.address=10.0.0.256", "/metrics/address", "does not match"},
		{"logLevel=Info", "/logLevel", "one of"},
		{"excludeNamespaces={kube-system,Kube_System}", "/excludeNamespaces/1", "does not match"},
		{"cni.binDir=opt/cni/bin", "/cni/binDir", "does not match"},
		{"cni.confName=net.d/10-bridge.conflist", "/cni/confName", "does not match"},
		{"enabled=off", "/enabled", "want boolean"},
		{"failOnError=1", "/failOnError", "want boolean"},
		// Kubernetes' enums and forms.
		{"seccompProfile=Localhost", "/seccompProfile", "'RuntimeDefault', 'Unconfined'"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy", "one of"},
		{"image.digest=sha256:abc", "/image/digest", "does not match"},
		{"image.repository=registry.example/mesh-accel:v1", "/image/repository", "does not match"},
		{"imagePullSecrets[0].nam=regcred", "/imagePullSecrets/0", "'nam' not allowed"},
		{"tolerations[0].operator=Maybe", "/tolerations/0/operator", "one of"},
		{"resources.installer.limits.memory=lots", "/resources/installer/limits/memory", "does not match"},
		{"updateStrategy.type=Recreate", "/updateStrategy/type", "one of"},
		{"updateStrategy.rollingUpdate.maxSurge=1", "/updateStrategy/rollingUpdate/maxSurge", "one of 0"},
		{"updateStrategy.rollingUpdate.maxUnavailable=ten", "/updateStrategy/rollingUpdate/maxUnavailable", "oneOf"},
		{"podLabels.app\\.kubernetes\\.io/name=other", "/podLabels/app.kubernetes.io~1name", "the chart sets this label"},
		{"podAnnotations.a=1", "/podAnnotations/a", "want string"},
		{"extraEnv[0].name=MESH_ACCEL_LISTEN", "/extraEnv/0/name", "the chart does not set"},
		{"extraEnv[0].name=GODEBUG,extraEnv[0].value=1", "/extraEnv/0/value", "want string"},
		{"affinity.nodeAfinity.a=b", "/affinity", "'nodeAfinity' not allowed"},
		{"monitoring.podMonitor.enabled=yes", "/monitoring/podMonitor/enabled", "want boolean"},
		// Misspelt keys.
		{"podQuote=1", "", "'podQuote' not allowed"},
		{"metrics.adress=127.0.0.1", "/metrics", "'adress' not allowed"},
		{"image.tags=v1", "/image", "'tags' not allowed"},
	} {
		values := setValues(t, tc.set)
		wantAt := fmt.Sprintf("at '%s': ", tc.path)
		_, err := render.Chart("mesh-accel", "mesh-accel", values)
		if err == nil {
			t.Errorf("--set %s: rendered", tc.set)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, wantAt) || !strings.Contains(msg, tc.want) {
			t.Errorf("--set %s: error %q, want %q and %q", tc.set, msg, wantAt, tc.want)
		}
		if _, _, err := render.Template(c, "mesh-accel", "mesh-accel", values, "1.33.0"); err == nil || !strings.Contains(err.Error(), wantAt) {
			t.Errorf("--set %s: helm template: %v", tc.set, err)
		}
	}
}

// The forms the installer accepts pass the schema and reach it as they
// should: metrics addresses (a name, IPv4 in brackets, an IPv6 zone), both
// cases of the log levels, the ranges' ends.
func TestChartAcceptsGoodValues(t *testing.T) {
	for _, tc := range []struct {
		sets  []string
		check func(t *testing.T, r rendered)
	}{
		{[]string{"metrics.address=localhost"}, listenIs("localhost:9753")},
		{[]string{"metrics.address=[127.0.0.1]"}, listenIs("[127.0.0.1]:9753")},
		{[]string{"metrics.address=[fe80::1%eth0]", "metrics.port=1"}, listenIs("[fe80::1%eth0]:1")},
		{[]string{"metrics.address=192.168.255.254", "metrics.port=65535"}, listenIs("192.168.255.254:65535")},
		{[]string{"logLevel=ERROR"}, func(t *testing.T, r rendered) {
			if cfg := installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0]); cfg.LogLevel.String() != "ERROR" {
				t.Errorf("log level %s", cfg.LogLevel)
			}
		}},
		{[]string{"sidecarUID=4294967294", "podQuota=4294967295", "backlogLimit=1"}, func(t *testing.T, r rendered) {
			cfg := installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0])
			if cfg.SidecarUID != 4294967294 || cfg.PodQuota != 4294967295 || cfg.BacklogLimit != 1 {
				t.Errorf("config %+v", cfg)
			}
		}},
		{[]string{"mapSize=1024"}, mapSizeIs(1024)},
		{[]string{"mapSize=1048576"}, mapSizeIs(1048576)},
		{[]string{"mapSize=65536"}, func(t *testing.T, r rendered) {
			c := r.daemonSet(t).Spec.Template.Spec.Containers[0]
			for _, e := range c.Env {
				if e.Name == "MESH_ACCEL_MAP_SIZE" {
					t.Errorf("the default map size rendered as %s=%s", e.Name, e.Value)
				}
			}
			mapSizeIs(65536)(t, r)
		}},
		{[]string{"updateStrategy.rollingUpdate.maxUnavailable=10%", "updateStrategy.rollingUpdate.maxSurge=0%"}, nil},
		{[]string{"imagePullSecrets[0].name=regcred", "priorityClassName=", "tolerations=null"}, nil},
		{[]string{"resources.installer.limits.memory=1.5Gi", "resources.installer.requests.cpu=0.5"}, nil},
	} {
		values := setValues(t, tc.sets...)
		out, err := render.Chart("mesh-accel", "mesh-accel", values)
		if err != nil {
			t.Errorf("--set %v: %v", tc.sets, err)
			continue
		}
		r := decodeAll(t, "chart", out)
		if tc.check != nil {
			tc.check(t, r)
		}
	}
}

// mapSizeIs checks the map size the installer and the plugin's entry get.
func mapSizeIs(want uint32) func(t *testing.T, r rendered) {
	return func(t *testing.T, r rendered) {
		t.Helper()
		cfg := installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0])
		wantEntry := want
		if want == 65536 {
			wantEntry = 0 // the plugin's default stays out of its entry
		}
		if cfg.MapSize != want || installer.NewEntry(cfg).MapSize != wantEntry {
			t.Errorf("--map-size %d, entry %d; want %d", cfg.MapSize, installer.NewEntry(cfg).MapSize, want)
		}
	}
}

func listenIs(want string) func(t *testing.T, r rendered) {
	return func(t *testing.T, r rendered) {
		t.Helper()
		if cfg := installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0]); cfg.Listen != want {
			t.Errorf("--listen %q, want %q", cfg.Listen, want)
		}
	}
}

// The schema covers every value of values.yaml and no other (each value
// one by one, where the table of the chart's README has a row), every
// object that lists its properties refuses others (a misspelt key fails),
// and the defaults and the tests' nonDefault values pass it.
func TestChartSchemaCoversValues(t *testing.T) {
	values, schema := chartFile(t, "values.yaml"), chartFile(t, "values.schema.json")
	got, err := render.ValueKeys(values, schema)
	if err != nil {
		t.Fatal(err)
	}
	want, err := render.SchemaKeys(schema)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("values.yaml has %v,\nthe schema %v", got, want)
	}
	var root map[string]any
	if err := json.Unmarshal(schema, &root); err != nil {
		t.Fatal(err)
	}
	var strictObjects func(path string, node any)
	strictObjects = func(path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if _, ok := n["properties"]; ok {
				if _, ok := n["additionalProperties"]; !ok {
					t.Errorf("schema %s: properties without additionalProperties", path)
				}
			}
			for k, v := range n {
				strictObjects(path+"/"+k, v)
			}
		case []any:
			for i, v := range n {
				strictObjects(fmt.Sprintf("%s/%d", path, i), v)
			}
		}
	}
	strictObjects("#", root)
	for name, v := range map[string]map[string]any{"defaults": nil, "nonDefault": nonDefault, "monitoring": withMonitoring(nonDefault)} {
		if _, err := render.Chart("mesh-accel", "mesh-accel", v); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// withMonitoring is values with every monitoring object on.
func withMonitoring(values map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range values {
		out[k] = v
	}
	out["monitoring"] = map[string]any{
		"podMonitor":     map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		"dashboard":      map[string]any{"enabled": true, "namespace": "grafana", "labels": map[string]any{"team": "mesh"}, "annotations": map[string]any{"grafana_folder": "mesh"}},
	}
	return out
}
