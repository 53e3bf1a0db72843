package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigMode keeps the token readable by root only.
const kubeconfigMode = 0o600

// FlagAPIHost is the installer's flag of the API server's URL; the
// installer's configuration names it from here.
const FlagAPIHost = "api-host"

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

// Kubeconfigs keeps the plugin's kubeconfig in step with the service
// account's token, which the kubelet rotates (projected tokens expire:
// a kubeconfig with a stale token fails every API lookup, istio#57438).
type Kubeconfigs struct {
	Path      string // the kubeconfig written
	Server    string // the API server's URL
	TokenPath string // the service account's token
	CAPath    string // the service account's CA
}

// Sync writes the kubeconfig when the token or CA differ from what the
// file holds, and reports whether it wrote.
func (k *Kubeconfigs) Sync() (bool, error) {
	if k.Server == "" {
		return false, ErrNoAPIHost
	}
	token, err := os.ReadFile(k.TokenPath)
	if err != nil {
		return false, fmt.Errorf("read service account token: %w", err)
	}
	if len(bytes.TrimSpace(token)) == 0 {
		return false, fmt.Errorf("service account token %s is empty", k.TokenPath)
	}
	ca, err := os.ReadFile(k.CAPath)
	if err != nil {
		return false, fmt.Errorf("read service account CA: %w", err)
	}
	want, err := renderKubeconfig(k.Server, ca, token)
	if err != nil {
		return false, err
	}
	if info, err := os.Stat(k.Path); err == nil && info.Mode().Perm() == kubeconfigMode && fileio.SameContent(k.Path, want) {
		return false, nil
	}
	if err := fileio.WriteAtomicSync(k.Path, want, kubeconfigMode); err != nil {
		return false, fmt.Errorf("write plugin kubeconfig: %w", err)
	}
	return true, nil
}

// NewClient builds the installer's API client from its service account
// (the token file is re-read as the kubelet rotates it). It returns
// ErrNoAPIHost outside a cluster.
func NewClient(apiHost, saToken, saCA string) (dynamic.Interface, error) {
	if apiHost == "" {
		return nil, ErrNoAPIHost
	}
	if _, err := os.Stat(saToken); err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	rc := &rest.Config{
		Host: apiHost, BearerTokenFile: saToken, UserAgent: "mesh-accel-installer",
		TLSClientConfig: rest.TLSClientConfig{CAFile: saCA}, Timeout: 30 * time.Second,
	}
	c, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("API client for %s: %w", apiHost, err)
	}
	return c, nil
}
