package events

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
)

// The helpers shared with the installer's other packages.
var (
	spool     = installertest.Spool
	fakeAPI   = installertest.FakeAPI
	podEvents = installertest.PodEvents
	spooled   = installertest.Spooled
	testLog   = installertest.Log
)

func TestEventsPosted(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI()
	e := NewPoster(state, c, testLog(t))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	first := now.Add(-2 * time.Minute)
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "mesh-accel could not accelerate the pod (attach): boom", First: first, Last: first})
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "mesh-accel could not accelerate the pod (attach): boom again", Last: now.Add(-time.Minute)})
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := podEvents(t, c, "shop")
	if len(evs) != 1 {
		t.Fatalf("%d Events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	want := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web", UID: "uid-web"}
	if ev.InvolvedObject != want || ev.Type != corev1.EventTypeWarning || ev.Reason != Reason ||
		ev.Count != 2 || !ev.FirstTimestamp.Time.Equal(first) || !ev.LastTimestamp.Time.Equal(now.Add(-time.Minute)) ||
		!strings.Contains(ev.Message, "boom again") || ev.Source.Component != eventComponent {
		t.Errorf("Event %+v", ev)
	}
	if recs := spooled(t, state); len(recs) != 0 {
		t.Errorf("posted records left: %+v", recs)
	}

	// The pod fails again: its Event counts it ("x3 over 2m").
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "third", Last: now})
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs = podEvents(t, c, "shop")
	if len(evs) != 1 || evs[0].Count != 3 || evs[0].Message != "third" || !evs[0].LastTimestamp.Time.Equal(now) ||
		!evs[0].FirstTimestamp.Time.Equal(first) {
		t.Errorf("after another failure: %+v", evs)
	}

	// Past the aggregation window the installer forgets the Event (pods
	// come and go: it must not remember every one), and a later failure
	// makes a new one.
	now = now.Add(eventAggregate)
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.posted) != 0 {
		t.Errorf("Events remembered past the aggregation window: %+v", e.posted)
	}
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "fourth", Last: now})
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs = podEvents(t, c, "shop"); len(evs) != 2 {
		t.Errorf("%d Events after a failure past the window, want 2 (a new one)", len(evs))
	}
}

// TestEventsAPIFailure: a failed post keeps the record, and the next try
// posts it.
func TestEventsAPIFailure(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI()
	down := true
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	e := NewPoster(state, c, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "kernel", Message: "m"})
	if err := e.Post(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("post = %v, want the API error", err)
	}
	if recs := spooled(t, state); len(recs) != 1 {
		t.Fatalf("records after a failed post: %+v, want the one kept", recs)
	}
	down = false
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := podEvents(t, c, "shop"); len(evs) != 1 || evs[0].Count != 1 {
		t.Errorf("Events after the retry: %+v", evs)
	}
	if recs := spooled(t, state); len(recs) != 0 {
		t.Errorf("records after the retry: %+v", recs)
	}
}

// TestEventsNoUID: a record without the pod's uid gets it from the API
// server; a record of a pod that is gone is dropped.
func TestEventsNoUID(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "uid-from-api"}})
	e := NewPoster(state, c, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", Reason: "args", Message: "m"})
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "gone", Reason: "args", Message: "m"})
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := podEvents(t, c, "shop")
	if len(evs) != 1 || evs[0].InvolvedObject.Name != "web" || evs[0].InvolvedObject.UID != "uid-from-api" {
		t.Errorf("Events %+v, want one of web with the uid from the API server", evs)
	}
	if recs := spooled(t, state); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
}

// TestEventsNoAPI: without an API client the records stay.
func TestEventsNoAPI(t *testing.T) {
	state := t.TempDir()
	e := NewPoster(state, nil, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "kernel", Message: "m"})
	for range 2 {
		if err := e.Post(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if recs := spooled(t, state); len(recs) != 1 || !e.noAPI {
		t.Errorf("records %+v, noAPI logged %v", recs, e.noAPI)
	}
}

// TestEventsExpired: an Event that expired on the API server is made anew.
func TestEventsExpired(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI()
	e := NewPoster(state, c, testLog(t))
	r := eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "kernel", Message: "m"}
	spool(t, state, r)
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ev := range podEvents(t, c, "shop") {
		if err := c.Resource(eventsResource).Namespace("shop").Delete(context.Background(), ev.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spool(t, state, r)
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := podEvents(t, c, "shop"); len(evs) != 1 || evs[0].Count != 1 {
		t.Errorf("Events %+v, want one new", evs)
	}
}

// TestEventsDropped: a record the API server refuses as invalid, or whose
// namespace is gone, does not hold up the others.
func TestEventsDropped(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI()
	c.PrependReactor("create", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetNamespace() {
		case "bad":
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Event"}, "x", nil)
		case "gone":
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "gone")
		}
		return false, nil, nil
	})
	e := NewPoster(state, c, testLog(t))
	t0 := time.Now()
	for i, ns := range []string{"bad", "gone", "shop"} { // posted in this order
		spool(t, state, eventspool.Record{Namespace: ns, Name: "web", UID: "u-" + ns, Reason: "kernel", Message: "m",
			Last: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := e.Post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := podEvents(t, c, "shop"); len(evs) != 1 {
		t.Errorf("Events of shop: %+v, want one", evs)
	}
	if recs := spooled(t, state); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
}
