package plugin

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig([]byte(`{"cniVersion":"1.1.0","name":"k8s","type":"mesh-accel","someRuntimeField":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"BPFRoot": "/sys/fs/bpf/mesh-accel", "StateDir": "/var/lib/mesh-accel", "LogFile": "/var/log/mesh-accel/cni.log",
		"ExcludeNamespaces": []string{"kube-system"}, "SidecarUID": uint32(1337), "FailOnError": false,
	}
	v := reflect.ValueOf(*c)
	for f, w := range want {
		if got := v.FieldByName(f).Interface(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v, want %v", f, got, w)
		}
	}
	if c.apiTimeout != 5*time.Second || c.PrevResult != nil {
		t.Errorf("apiTimeout %v, prevResult %v", c.apiTimeout, c.PrevResult)
	}
	if o := c.bpfOptions(); o.BPFFS != "/sys/fs/bpf" || o.Root != "mesh-accel" || o.MapSize != 0 {
		t.Errorf("bpf options %+v", o)
	}
}

func TestParseConfigFields(t *testing.T) {
	c, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"k8s","type":"mesh-accel",
		"rulesFile":"/etc/mesh-accel/rules","kubeconfig":"/etc/kc","excludeNamespaces":[],"failOnError":true,
		"logFile":"-","logLevel":"DEBUG","bpfRoot":"/sys/fs/bpf/test-root/","stateDir":"/tmp/s","cgroupRoot":"kubelet.slice",
		"sidecarUID":2000,"apiTimeout":"750ms","mapSize":262144,
		"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":"b"},"cgroupPath":"kubepods.slice"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExcludeNamespaces) != 0 || c.excluded("kube-system") || !c.FailOnError || c.SidecarUID != 2000 ||
		c.apiTimeout != 750*time.Millisecond || c.logLevel.String() != "DEBUG" || c.bpfOptions().Root != "test-root" ||
		c.bpfOptions().MapSize != 262144 ||
		c.RuntimeConfig.PodAnnotations["a"] != "b" || c.RuntimeConfig.CgroupPath != "kubepods.slice" {
		t.Errorf("parsed %+v", c)
	}
}

// Malformed configurations are CNI errors that name the field.
func TestParseConfigErrors(t *testing.T) {
	base := `"cniVersion":"1.1.0","name":"k8s","type":"mesh-accel"`
	for _, tc := range []struct {
		json string
		code uint
		want string
	}{
		{`{` + base + `,`, types.ErrDecodingFailure, "JSON"},
		{`{` + base + `,"failOnError":"yes"}`, types.ErrDecodingFailure, "field failOnError: want bool"},
		{`{` + base + `,"sidecarUID":-1}`, types.ErrDecodingFailure, "field sidecarUID"},
		{`{` + base + `,"excludeNamespaces":"kube-system"}`, types.ErrDecodingFailure, "field excludeNamespaces"},
		{`{` + base + `,"runtimeConfig":{"cgroupPath":3}}`, types.ErrDecodingFailure, "field runtimeConfig.cgroupPath"},
		{`{` + base + `,"apiTimeout":5}`, types.ErrDecodingFailure, "field apiTimeout"},
		{`{` + base + `,"apiTimeout":"soon"}`, types.ErrInvalidNetworkConfig, `apiTimeout "soon"`},
		{`{` + base + `,"apiTimeout":"-1s"}`, types.ErrInvalidNetworkConfig, "apiTimeout"},
		{`{` + base + `,"logLevel":"loud"}`, types.ErrInvalidNetworkConfig, `logLevel "loud"`},
		{`{` + base + `,"stateDir":"var/lib"}`, types.ErrInvalidNetworkConfig, "stateDir"},
		{`{` + base + `,"bpfRoot":"/sys"}`, types.ErrInvalidNetworkConfig, "bpfRoot"},
		{`{` + base + `,"logFile":"cni.log"}`, types.ErrInvalidNetworkConfig, "logFile"},
		{`{` + base + `,"rulesFile":"rules"}`, types.ErrInvalidNetworkConfig, "rulesFile"},
		{`{` + base + `,"excludeNamespaces":["a",""]}`, types.ErrInvalidNetworkConfig, "excludeNamespaces[1]"},
		{`{` + base + `,"sidecarUID":4294967295}`, types.ErrInvalidNetworkConfig, "sidecarUID"},
		{`{` + base + `,"mapSize":1000}`, types.ErrInvalidNetworkConfig, "mapSize: 1000 entries: want a power of two"},
		{`{` + base + `,"mapSize":-1}`, types.ErrDecodingFailure, "field mapSize"},
		{`{` + base + `,"prevResult":{"ips":"x"}}`, types.ErrDecodingFailure, "prevResult"},
	} {
		_, err := parseConfig([]byte(tc.json))
		if errCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%s) = %v (code %d), want code %d naming %q", tc.json, err, errCode(err), tc.code, tc.want)
		}
	}
}

func TestParsePodArgs(t *testing.T) {
	for in, want := range map[string]podArgs{
		"": {},
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=x": {"ns", "web", "u-1"},
		"K8S_POD_NAME=web;garbage;K8S_POD_NAMESPACE=ns":                                                      {"ns", "web", ""},
	} {
		if got := parsePodArgs(in); got != want {
			t.Errorf("parsePodArgs(%q) = %+v, want %+v", in, got, want)
		}
	}
}
