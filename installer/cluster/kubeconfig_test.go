package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// The kubeconfig holds the API server, CA and token inline, is written only
// when they change, always 0600; without a token or API server it is an
// error.
func TestKubeconfig(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"token": "tok-1\n", "ca.crt": "CA"})
	k := &Kubeconfigs{Path: filepath.Join(dir, "out", "kubeconfig"), Server: "https://10.96.0.1:443",
		TokenPath: filepath.Join(dir, "token"), CAPath: filepath.Join(dir, "ca.crt")}
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		token string
		write bool
	}{{"", true}, {"", false}, {"tok-2", true}} {
		if tc.token != "" {
			writeTree(t, dir, map[string]string{"token": tc.token})
		}
		wrote, err := k.Sync()
		if err != nil || wrote != tc.write {
			t.Fatalf("step %d: sync = %v, %v", i, wrote, err)
		}
	}
	cfg, err := clientcmd.LoadFromFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if cfg.AuthInfos[ctx.AuthInfo].Token != "tok-2" || cfg.Clusters[ctx.Cluster].Server != k.Server ||
		string(cfg.Clusters[ctx.Cluster].CertificateAuthorityData) != "CA" || fileMode(t, k.Path) != 0o600 {
		t.Errorf("kubeconfig %+v mode %v", cfg, fileMode(t, k.Path))
	}
	for _, bad := range []func(*Kubeconfigs){
		func(k *Kubeconfigs) { k.Server = "" },
		func(k *Kubeconfigs) { k.TokenPath = filepath.Join(dir, "none") },
		func(k *Kubeconfigs) { writeTree(t, dir, map[string]string{"token": " \n"}) },
	} {
		k2 := *k
		bad(&k2)
		if _, err := k2.Sync(); err == nil {
			t.Errorf("sync without a usable token or server succeeded: %+v", k2)
		}
	}
}
