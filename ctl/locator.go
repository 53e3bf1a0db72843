package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// PodLocator finds where pods run (the API server).
type PodLocator interface {
	// PodNode returns the node pod namespace/name is scheduled on, "" when
	// it is not scheduled yet, or an error wrapping ErrNoSuchPod.
	PodNode(ctx context.Context, namespace, name string) (string, error)
}

// ErrNoSuchPod is returned by a PodLocator for a pod that does not exist.
var ErrNoSuchPod = errors.New("no such pod")

// ServiceAccountDir is where Kubernetes mounts a pod's service account
// token and the cluster's CA.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterLocator returns a PodLocator with the credentials of the pod
// mesh-accelctl runs in (the installer's service account may get pods):
// the API server from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT
// (read with getenv), the token and CA from saDir. It fails outside a pod.
//
// It speaks HTTP itself, as it needs one GET: client-go's REST client
// would double the size of mesh-accelctl.
func InClusterLocator(getenv func(string) string, saDir string) (PodLocator, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("no API access: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod)")
	}
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("no API access: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no API access: no certificate in %s", filepath.Join(saDir, "ca.crt"))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}
	return &apiLocator{
		base:      "https://" + net.JoinHostPort(host, port),
		client:    &http.Client{Transport: tr, Timeout: apiTimeout},
		tokenFile: filepath.Join(saDir, "token"),
	}, nil
}

// apiLocator GETs pods from the API server at base and decodes only their
// node name.
type apiLocator struct {
	base      string
	client    *http.Client
	tokenFile string // read at each request: the kubelet rotates it
}

func (l *apiLocator) PodNode(ctx context.Context, namespace, name string) (string, error) {
	token, err := os.ReadFile(l.tokenFile)
	if err != nil {
		return "", fmt.Errorf("read service account token: %w", err)
	}
	u := l.base + "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("User-Agent", "mesh-accelctl")
	resp, err := l.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("pod %s/%s: %w", namespace, name, ErrNoSuchPod)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("get pod %s/%s: the API server answered %s", namespace, name, resp.Status)
	}
	var pod struct {
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&pod); err != nil {
		return "", fmt.Errorf("decode pod %s/%s: %w", namespace, name, err)
	}
	return pod.Spec.NodeName, nil
}
