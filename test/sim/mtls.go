package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The mesh identity of every simulated workload: Istio's default trust
// domain, namespace and service account. Each pod still gets its own key
// and certificate.
const (
	TrustDomain    = "cluster.local"
	MeshNamespace  = "default"
	ServiceAccount = "default"
)

// SPIFFEID is the identity the sidecars present and verify, as istiod's CA
// writes it into a workload certificate's URI SAN.
var SPIFFEID = "spiffe://" + TrustDomain + "/ns/" + MeshNamespace + "/sa/" + ServiceAccount

// meshCA is the node's root of trust (Istio's self-signed root, RSA 2048 as
// istiod's default) that signs each sidecar's workload certificate.
type meshCA struct {
	once sync.Once
	err  error
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  []byte
}

func (ca *meshCA) init() error {
	ca.once.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			ca.err = fmt.Errorf("mesh CA key: %w", err)
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{Organization: []string{TrustDomain}},
			NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			ca.err = fmt.Errorf("mesh CA certificate: %w", err)
			return
		}
		ca.cert, _ = x509.ParseCertificate(der)
		ca.key = key
		ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	return ca.err
}

// workloadFiles holds the paths of one sidecar's certificate files (what
// Istio's SDS secrets "default" and "ROOTCA" carry).
type workloadFiles struct {
	Chain, Key, Root string
}

// issue writes a workload certificate for pod into dir: key and chain, as
// istiod's CA issues them (URI SAN = SPIFFE identity, client and server
// auth), plus the root. The files are readable by the sidecar's uid only.
func (ca *meshCA) issue(dir, pod string, serial int64) (workloadFiles, error) {
	if err := ca.init(); err != nil {
		return workloadFiles{}, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return workloadFiles{}, fmt.Errorf("workload key of %s: %w", pod, err)
	}
	id, _ := url.Parse(SPIFFEID)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{Organization: []string{TrustDomain}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return workloadFiles{}, fmt.Errorf("workload certificate of %s: %w", pod, err)
	}
	f := workloadFiles{Chain: filepath.Join(dir, "cert-chain.pem"), Key: filepath.Join(dir, "key.pem"), Root: filepath.Join(dir, "root-cert.pem")}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	for path, b := range map[string][]byte{f.Chain: chain, f.Key: keyPEM, f.Root: ca.pem} {
		if err := writeOwned(path, b, SidecarUID, SidecarGID); err != nil {
			return workloadFiles{}, err
		}
	}
	return f, nil
}

// writeOwned writes b to path with mode 0600, owned by uid/gid (when
// running as root; a node needs root anyway).
func writeOwned(path string, b []byte, uid, gid int) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, uid, gid)
}
