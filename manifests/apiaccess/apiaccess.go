// Package apiaccess lists the Kubernetes API requests mesh-accel's programs
// make, as RBAC sees them (API group, resource, verb), and records the
// requests a client makes to a test API server, so that tests can hold the
// list, the code and the ClusterRole of the manifests to each other:
//
//   - the tests of package installer and package plugin run their API code
//     against a [Recorder] and check that it makes exactly the requests
//     listed here ([Installer], [Plugin]);
//   - the tests of package manifests check that the ClusterRole of the
//     kustomization and of the chart grants exactly [All].
//
// A right that no code uses, or a request that no rule grants, fails one of
// them. Only tests use this package.
package apiaccess

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Access is one right as RBAC grants it: a verb on a resource of an API
// group ("" is the core group).
type Access struct {
	Group, Resource, Verb string
}

func (a Access) String() string {
	g := a.Group
	if g == "" {
		g = "core"
	}
	return a.Verb + " " + g + "/" + a.Resource
}

// Installer is what the installer asks of the API server, with the
// DaemonSet's service account:
//   - get pods: the uid of a pod whose Event record lacks it (a runtime
//     that passes no K8S_POD_UID), for the Event's involvedObject;
//   - create events: the Warning Event AccelerationSetupFailed of a pod;
//   - patch events: the count of that Event when the pod fails again within
//     10 minutes ("x5 over 2m"), as the kubelet's recorder aggregates;
//   - list and watch namespaces: the namespaces labelled
//     accel.mesh/enabled=true (selected by label; RBAC cannot narrow that).
//
// mesh-accelctl, run in the installer's pod, uses its get pods (the node
// that runs a pod).
var Installer = []Access{
	{"", "pods", "get"},
	{"", "events", "create"},
	{"", "events", "patch"},
	{"", "namespaces", "list"},
	{"", "namespaces", "watch"},
}

// Plugin is what the CNI plugin asks, with the token of the kubeconfig the
// installer writes on the node: get pods, the pod's annotations and uid
// when its conflist entry does not declare the pod-annotations capability.
var Plugin = []Access{
	{"", "pods", "get"},
}

// All is every right the service account needs, sorted, each once.
func All() []Access {
	return Sorted(append(append([]Access(nil), Installer...), Plugin...))
}

// Sorted returns the accesses sorted by group, resource and verb, each
// once.
func Sorted(as []Access) []Access {
	out := slices.Clone(as)
	slices.SortFunc(out, func(a, b Access) int {
		return strings.Compare(a.Group+"\x00"+a.Resource+"\x00"+a.Verb, b.Group+"\x00"+b.Resource+"\x00"+b.Verb)
	})
	return slices.Compact(out)
}

// Of returns the access an API request needs, as the API server's
// authorizer sees it (k8s.io/apiserver's RequestInfo): the group and
// resource from the path, the verb from the method, a name and the watch
// parameter. It fails for paths that are not resource requests.
func Of(r *http.Request) (Access, error) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:] // api/v1
	case len(parts) >= 4 && parts[0] == "apis":
		group, parts = parts[1], parts[3:] // apis/GROUP/VERSION
	default:
		return Access{}, fmt.Errorf("%s %s: not a resource request", r.Method, r.URL.Path)
	}
	watch := false
	if parts[0] == "watch" { // the deprecated /watch/ paths
		watch, parts = true, parts[1:]
	}
	// namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]], except the namespaces'
	// own subresources.
	if len(parts) >= 3 && parts[0] == "namespaces" && parts[2] != "status" && parts[2] != "finalize" {
		parts = parts[2:]
	}
	if len(parts) == 0 || parts[0] == "" {
		return Access{}, fmt.Errorf("%s %s: no resource", r.Method, r.URL.Path)
	}
	// RESOURCE[/NAME[/SUBRESOURCE]]
	resource, named := parts[0], len(parts) >= 2
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
		watch = true
	}
	var verb string
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		return Access{}, fmt.Errorf("%s %s: unknown method", r.Method, r.URL.Path)
	}
	return Access{Group: group, Resource: resource, Verb: verb}, nil
}

// Recorder is an http.Handler that records the access of each request and
// passes it on to Next.
type Recorder struct {
	Next http.Handler

	mu   sync.Mutex
	seen []Access
	errs []error
}

func (rec *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, err := Of(r)
	rec.mu.Lock()
	if err != nil {
		rec.errs = append(rec.errs, err)
	} else {
		rec.seen = append(rec.seen, a)
	}
	rec.mu.Unlock()
	rec.Next.ServeHTTP(w, r)
}

// Seen returns the accesses of the requests so far (sorted, each once) and
// the requests that were not resource requests.
func (rec *Recorder) Seen() ([]Access, []error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return Sorted(rec.seen), slices.Clone(rec.errs)
}

// Has reports whether a request needed a.
func (rec *Recorder) Has(a Access) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Contains(rec.seen, a)
}
