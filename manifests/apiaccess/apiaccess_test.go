package apiaccess

import (
	"net/http/httptest"
	"testing"
)

// Requests map to RBAC's attributes as the API server's authorizer sees
// them.
func TestOf(t *testing.T) {
	for _, tc := range []struct {
		method, url string
		want        Access
	}{
		{"GET", "/api/v1/namespaces/prod/pods/web", Access{"", "pods", "get"}},
		{"GET", "/api/v1/namespaces/prod/pods", Access{"", "pods", "list"}},
		{"GET", "/api/v1/pods?watch=true", Access{"", "pods", "watch"}},
		{"GET", "/api/v1/watch/namespaces", Access{"", "namespaces", "watch"}},
		{"GET", "/api/v1/namespaces?labelSelector=a%3Db", Access{"", "namespaces", "list"}},
		{"GET", "/api/v1/namespaces?watch=1&sendInitialEvents=true", Access{"", "namespaces", "watch"}},
		{"GET", "/api/v1/namespaces/shop", Access{"", "namespaces", "get"}},
		{"PUT", "/api/v1/namespaces/shop/finalize", Access{"", "namespaces/finalize", "update"}},
		{"POST", "/api/v1/namespaces/prod/events", Access{"", "events", "create"}},
		{"PATCH", "/api/v1/namespaces/prod/events/web.1", Access{"", "events", "patch"}},
		{"POST", "/apis/events.k8s.io/v1/namespaces/prod/events", Access{"events.k8s.io", "events", "create"}},
		{"PATCH", "/api/v1/namespaces/prod/pods/web/status", Access{"", "pods/status", "patch"}},
		{"DELETE", "/apis/apps/v1/namespaces/x/daemonsets", Access{"apps", "daemonsets", "deletecollection"}},
		{"DELETE", "/apis/apps/v1/namespaces/x/daemonsets/d", Access{"apps", "daemonsets", "delete"}},
	} {
		got, err := Of(httptest.NewRequest(tc.method, tc.url, nil))
		if err != nil || got != tc.want {
			t.Errorf("%s %s: %v, %v; want %v", tc.method, tc.url, got, err, tc.want)
		}
	}
	for _, u := range []string{"/version", "/apis/apps", "/healthz"} {
		if a, err := Of(httptest.NewRequest("GET", u, nil)); err == nil {
			t.Errorf("GET %s: %v, want an error", u, a)
		}
	}
}
