package installer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/mesh-accel/mesh-accel/installer/events"
	"github.com/mesh-accel/mesh-accel/internal/eventspool"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
	"github.com/mesh-accel/mesh-accel/manifests/apiaccess"
)

// apiServer answers the installer's requests as an API server would, for
// the pod prod/web and the namespace shop (labelled), and records what
// each request needs of RBAC into rec. Without watchList it refuses
// client-go's watch-list (a watch with sendInitialEvents), as an API server
// without the WatchList feature does: the client then lists.
func apiServer(tb testing.TB, rec *apiaccess.Recorder, watchList bool) dynamic.Interface {
	tb.Helper()
	rec.Next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := apiaccess.Of(r)
		w.Header().Set("Content-Type", "application/json")
		switch a {
		case apiaccess.Access{Resource: "pods", Verb: "get"}:
			fmt.Fprint(w, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod","uid":"u-1"}}`)
		case apiaccess.Access{Resource: "events", Verb: "create"}:
			w.WriteHeader(http.StatusCreated)
			_, _ = io.Copy(w, r.Body)
		case apiaccess.Access{Resource: "events", Verb: "patch"}:
			fmt.Fprint(w, `{"apiVersion":"v1","kind":"Event","metadata":{"name":"web.1","namespace":"prod"}}`)
		case apiaccess.Access{Resource: "namespaces", Verb: "list"}:
			fmt.Fprintf(w, `{"apiVersion":"v1","kind":"NamespaceList","metadata":{"resourceVersion":"1"},"items":[%s]}`, shopNS)
		case apiaccess.Access{Resource: "namespaces", Verb: "watch"}:
			if r.URL.Query().Get("sendInitialEvents") == "true" && !watchList {
				w.WriteHeader(http.StatusUnprocessableEntity)
				fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","code":422,`+
					`"message":"sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}`)
				return
			}
			w.(http.Flusher).Flush()
			if r.URL.Query().Get("sendInitialEvents") == "true" {
				fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", shopNS)
				fmt.Fprint(w, `{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"resourceVersion":"1",`+
					`"annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n")
				w.(http.Flusher).Flush()
			}
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	})
	srv := httptest.NewServer(rec)
	tb.Cleanup(srv.Close)
	c, err := dynamic.NewForConfig(&rest.Config{Host: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

const shopNS = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","resourceVersion":"1",` +
	`"labels":{"accel.mesh/enabled":"true"}}}`

// The installer's API code (pod Events, the namespace watch, against API
// servers with and without watch-list) makes exactly the requests
// apiaccess.Installer lists, which the manifests' tests hold the
// ClusterRole to: a right the code stops using, or a request it starts
// making, fails here.
func TestAPIAccess(t *testing.T) {
	rec := &apiaccess.Recorder{}
	client := apiServer(t, rec, true)
	// A record without the pod's uid (the uid is read), posted, then a
	// second failure of the pod (the Event's count raised).
	state := t.TempDir()
	e := events.NewPoster(state, client, testLog(t))
	for i := range 2 {
		spool(t, state, eventspool.Record{Namespace: "prod", Name: "web", Reason: "attach", Message: "failed"})
		if err := e.Post(context.Background()); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	watch := apiaccess.Access{Resource: "namespaces", Verb: "watch"}
	followNamespaces(t, client, rec, watch)
	// The fallback: a list, then a watch.
	followNamespaces(t, apiServer(t, rec, false), rec, apiaccess.Access{Resource: "namespaces", Verb: "list"})

	seen, errs := rec.Seen()
	for _, err := range errs {
		t.Errorf("request outside the resource API: %v", err)
	}
	if want := apiaccess.Sorted(apiaccess.Installer); !slices.Equal(seen, want) {
		t.Errorf("the installer's requests need %v; apiaccess.Installer (the ClusterRole's list) has %v", seen, want)
	}
}

// followNamespaces runs the namespace watch until it recorded the labelled
// namespace and made a request that needs a.
func followNamespaces(t *testing.T, client dynamic.Interface, rec *apiaccess.Recorder, a apiaccess.Access) {
	t.Helper()
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cluster.NewNamespaces(state, client, testLog(t)).Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the labelled namespace recorded", func() bool {
		s, err := nsoptin.Read(state)
		return err == nil && slices.Equal(s.Sorted(), []string{"shop"})
	})
	waitFor(t, a.String(), func() bool { return rec.Has(a) })
}
