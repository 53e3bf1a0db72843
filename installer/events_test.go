package installer

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// spool adds a failure record to the spool of stateDir.
func spool(tb testing.TB, stateDir string, r eventspool.Record) {
	tb.Helper()
	if err := eventspool.Add(eventspool.Dir(stateDir), r); err != nil {
		tb.Fatal(err)
	}
}

// fakeAPI is an API server holding objs, as the dynamic client sees it.
func fakeAPI(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClient(scheme.Scheme, objs...)
}

// toUnstructured converts a typed object for the dynamic client.
func toUnstructured(tb testing.TB, obj runtime.Object) *unstructured.Unstructured {
	tb.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		tb.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// podEvents lists the Events of a namespace.
func podEvents(tb testing.TB, c *dynamicfake.FakeDynamicClient, ns string) []corev1.Event {
	tb.Helper()
	l, err := c.Resource(eventsResource).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]corev1.Event, len(l.Items))
	for i, u := range l.Items {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

func spooled(tb testing.TB, stateDir string) []eventspool.Record {
	tb.Helper()
	recs, err := eventspool.List(eventspool.Dir(stateDir))
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

func TestEventsPosted(t *testing.T) {
	state := t.TempDir()
	c := fakeAPI()
	e := newEvents(state, c, testLog(t))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	first := now.Add(-2 * time.Minute)
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "mesh-accel could not accelerate the pod (attach): boom", First: first, Last: first})
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "mesh-accel could not accelerate the pod (attach): boom again", Last: now.Add(-time.Minute)})
	if err := e.post(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := podEvents(t, c, "shop")
	if len(evs) != 1 {
		t.Fatalf("%d Events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	want := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web", UID: "uid-web"}
	if ev.InvolvedObject != want || ev.Type != corev1.EventTypeWarning || ev.Reason != EventReason ||
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
	if err := e.post(context.Background()); err != nil {
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
	if err := e.post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.posted) != 0 {
		t.Errorf("Events remembered past the aggregation window: %+v", e.posted)
	}
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "attach",
		Message: "fourth", Last: now})
	if err := e.post(context.Background()); err != nil {
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
	e := newEvents(state, c, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "uid-web", Reason: "kernel", Message: "m"})
	if err := e.post(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("post = %v, want the API error", err)
	}
	if recs := spooled(t, state); len(recs) != 1 {
		t.Fatalf("records after a failed post: %+v, want the one kept", recs)
	}
	down = false
	if err := e.post(context.Background()); err != nil {
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
	e := newEvents(state, c, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", Reason: "args", Message: "m"})
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "gone", Reason: "args", Message: "m"})
	if err := e.post(context.Background()); err != nil {
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
	e := newEvents(state, nil, testLog(t))
	spool(t, state, eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "kernel", Message: "m"})
	for range 2 {
		if err := e.post(context.Background()); err != nil {
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
	e := newEvents(state, c, testLog(t))
	r := eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "kernel", Message: "m"}
	spool(t, state, r)
	if err := e.post(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ev := range podEvents(t, c, "shop") {
		if err := c.Resource(eventsResource).Namespace("shop").Delete(context.Background(), ev.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spool(t, state, r)
	if err := e.post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := podEvents(t, c, "shop"); len(evs) != 1 || evs[0].Count != 1 {
		t.Errorf("Events %+v, want one new", evs)
	}
}

// TestRunCompanions: a running installer copies the plugin's log lines to
// its stdout, posts the spooled Events and records the labelled
// namespaces.
func TestRunCompanions(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	c := fakeAPI(namespace("shop", map[string]string{nsoptin.Label: "true"}))
	var stdout testenv.SyncBuffer
	r := h.start(t, Deps{Kube: c, PluginLogOut: &stdout})
	r.waitReady(t)

	waitFor(t, "the opted-in namespaces", func() bool { return slices.Equal(optedIn(t, h.cfg.StateDir), []string{"shop"}) })
	spool(t, h.cfg.StateDir, eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "attach", Message: "m"})
	waitFor(t, "the Event", func() bool { return len(podEvents(t, c, "shop")) == 1 && len(spooled(t, h.cfg.StateDir)) == 0 })
	waitFor(t, "the plugin log followed", func() bool {
		appendLog(t, h.cfg.PluginLogFile, "level=INFO msg=\"pod accelerated\"\n")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(stdout.String(), pluginLogPrefix+"level=INFO msg=\"pod accelerated\"\n")
	})
	// An ADD's line with its time feeds the ADD latency histogram.
	appendLog(t, h.cfg.PluginLogFile, "time=x level=INFO msg=\"pod accelerated\" cmd=ADD pod=shop/web setup=7ms\n")
	waitFor(t, "the ADD time in "+MetricCNIAddDuration, func() bool {
		f := scrape(t, r)[MetricCNIAddDuration]
		if f == nil || len(f.Metric) != 1 {
			return false
		}
		hist := f.Metric[0].GetHistogram()
		return hist.GetSampleCount() == 1 && math.Abs(hist.GetSampleSum()-0.007) < 1e-9
	})
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
	e := newEvents(state, c, testLog(t))
	t0 := time.Now()
	for i, ns := range []string{"bad", "gone", "shop"} { // posted in this order
		spool(t, state, eventspool.Record{Namespace: ns, Name: "web", UID: "u-" + ns, Reason: "kernel", Message: "m",
			Last: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := e.post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := podEvents(t, c, "shop"); len(evs) != 1 {
		t.Errorf("Events of shop: %+v, want one", evs)
	}
	if recs := spooled(t, state); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
}
