package plugin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/manifests/apiaccess"
)

// The plugin's API lookup makes exactly the requests apiaccess.Plugin
// lists, which the manifests' tests hold the ClusterRole to.
func TestAPIAccess(t *testing.T) {
	rec := &apiaccess.Recorder{Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, podJSON)
	})}
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	a := &apiPods{kubeconfig: writeKubeconfig(t, srv.URL, serverCA(srv)), timeout: 5 * time.Second, attempts: 1}
	if _, err := a.pod(context.Background(), "prod", "web"); err != nil {
		t.Fatal(err)
	}
	seen, errs := rec.Seen()
	for _, err := range errs {
		t.Errorf("request outside the resource API: %v", err)
	}
	if want := apiaccess.Sorted(apiaccess.Plugin); !slices.Equal(seen, want) {
		t.Errorf("the plugin's requests need %v; apiaccess.Plugin (the ClusterRole's list) has %v", seen, want)
	}
}
