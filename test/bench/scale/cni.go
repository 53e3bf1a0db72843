package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/mesh-accel/mesh-accel/plugin"
)

// cniPrevResult is the primary plugin's result the plugin is chained after.
const cniPrevResult = `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/none"}],` +
	`"ips":[{"address":"10.99.0.2/24","gateway":"10.99.0.1","interface":0}]}`

// cniRunner runs the plugin binary as a runtime does.
type cniRunner struct {
	plugin   string // the binary
	bpfRoot  string // absolute: <bpffs>/<root>
	stateDir string
	logFile  string
	netns    string
	mapSize  uint32 // the plugin's mapSize (0: the default, not written)
}

// exec runs cmd (ADD, DEL, VERSION) for the pod numbered i whose cgroup is
// cgroup, through CNI's invoke as a runtime does, and returns its wall time
// in milliseconds (fork, exec and exit included).
func (c cniRunner) exec(ctx context.Context, cmd string, i int, cgroup string) (float64, error) {
	conf := map[string]any{
		"cniVersion": "1.1.0", "name": "bench-scale", "type": "mesh-accel",
		"bpfRoot": c.bpfRoot, "stateDir": c.stateDir, "logFile": c.logFile,
		"prevResult": json.RawMessage(cniPrevResult),
		"runtimeConfig": map[string]any{
			"io.kubernetes.cri.pod-annotations": map[string]string{plugin.AnnotationEnabled: "true"},
			"cgroupPath":                        cgroup,
		},
	}
	if c.mapSize != 0 {
		conf["mapSize"] = c.mapSize // else the plugin looks for the default size's state
	}
	stdin, err := json.Marshal(conf)
	if err != nil {
		return 0, err
	}
	args := invoke.Args{
		Command: cmd, ContainerID: fmt.Sprintf("bench-scale-%04d", i), NetNS: c.netns, IfName: "eth0",
		Path:          filepath.Dir(c.plugin),
		PluginArgsStr: fmt.Sprintf("K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod%04d;K8S_POD_UID=bench-scale-uid-%04d", i, i),
	}
	start := time.Now()
	stdout, err := (&invoke.RawExec{}).ExecPlugin(ctx, c.plugin, stdin, args.AsEnv())
	d := time.Since(start)
	if err != nil { // with the plugin's CNI error, or its stderr
		return 0, fmt.Errorf("%s of pod %d: %w", cmd, i, err)
	}
	if cmd == "ADD" && !json.Valid(stdout) {
		return 0, fmt.Errorf("ADD of pod %d printed %q", i, stdout)
	}
	return ms(d), nil
}
