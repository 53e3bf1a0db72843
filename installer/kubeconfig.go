package installer

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigMode keeps the token readable by root only.
const kubeconfigMode = 0o600

// ErrNoAPIHost is returned when no API server URL is configured.
var ErrNoAPIHost = errors.New("no API server URL (--" + FlagAPIHost + ", or KUBERNETES_SERVICE_HOST/PORT)")

// renderKubeconfig returns a kubeconfig for the plugin: the API server, its
// CA and the service account token, all inline, because the plugin runs on
// the host, where the installer's projected token is not mounted.
func renderKubeconfig(server string, ca, token []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["mesh-accel"] = &clientcmdapi.AuthInfo{Token: string(bytes.TrimSpace(token))}
	cfg.Contexts["mesh-accel"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "mesh-accel"}
	cfg.CurrentContext = "mesh-accel"
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encode kubeconfig: %w", err)
	}
	return out, nil
}

// kubeconfigs keeps the plugin's kubeconfig in step with the service
// account's token, which the kubelet rotates (projected tokens expire:
// a kubeconfig with a stale token fails every API lookup, istio#57438).
type kubeconfigs struct {
	path, server, tokenPath, caPath string
}

// sync writes the kubeconfig when the token or CA differ from what the
// file holds, and reports whether it wrote.
func (k *kubeconfigs) sync() (bool, error) {
	if k.server == "" {
		return false, ErrNoAPIHost
	}
	token, err := os.ReadFile(k.tokenPath)
	if err != nil {
		return false, fmt.Errorf("read service account token: %w", err)
	}
	if len(bytes.TrimSpace(token)) == 0 {
		return false, fmt.Errorf("service account token %s is empty", k.tokenPath)
	}
	ca, err := os.ReadFile(k.caPath)
	if err != nil {
		return false, fmt.Errorf("read service account CA: %w", err)
	}
	want, err := renderKubeconfig(k.server, ca, token)
	if err != nil {
		return false, err
	}
	if info, err := os.Stat(k.path); err == nil && info.Mode().Perm() == kubeconfigMode && fileio.SameContent(k.path, want) {
		return false, nil
	}
	if err := fileio.WriteAtomicSync(k.path, want, kubeconfigMode); err != nil {
		return false, fmt.Errorf("write plugin kubeconfig: %w", err)
	}
	return true, nil
}
