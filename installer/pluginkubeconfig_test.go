package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With --no-plugin-kubeconfig the service account's token stays off the
// host: no kubeconfig is written (one an earlier run left is removed) and
// the entry names none; the node is ready as usual.
func TestNoPluginKubeconfig(t *testing.T) {
	h := newHost(t)
	h.cfg.NoPluginKubeconfig = true
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	writeTree(t, filepath.Dir(h.cfg.KubeconfigPath), map[string]string{filepath.Base(h.cfg.KubeconfigPath): "an earlier run's\n"})
	r := h.start(t, Deps{})
	r.waitReady(t)
	if exists(h.cfg.KubeconfigPath) {
		t.Errorf("kubeconfig %s on the host", h.cfg.KubeconfigPath)
	}
	installed, err := os.ReadFile(filepath.Join(h.cfg.HostCNIConfDir, "10-bridge.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(installed), `"type": "`+PluginType+`"`) || strings.Contains(string(installed), "kubeconfig") {
		t.Errorf("conflist:\n%s", installed)
	}
}
