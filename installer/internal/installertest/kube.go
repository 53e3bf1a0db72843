package installertest

import (
	"context"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
)

// Spool adds a failure record to the spool of stateDir.
func Spool(tb testing.TB, stateDir string, r eventspool.Record) {
	tb.Helper()
	if err := eventspool.Add(eventspool.Dir(stateDir), r); err != nil {
		tb.Fatal(err)
	}
}

// FakeAPI is an API server holding objs, as the dynamic client sees it.
func FakeAPI(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClient(scheme.Scheme, objs...)
}

// ToUnstructured converts a typed object for the dynamic client.
func ToUnstructured(tb testing.TB, obj runtime.Object) *unstructured.Unstructured {
	tb.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		tb.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// PodEvents lists the Events of a namespace.
func PodEvents(tb testing.TB, c *dynamicfake.FakeDynamicClient, ns string) []corev1.Event {
	tb.Helper()
	l, err := c.Resource(schema.GroupVersionResource{Version: "v1", Resource: "events"}).Namespace(ns).List(context.Background(), metav1.ListOptions{})
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

// Spooled lists the records of the spool of stateDir.
func Spooled(tb testing.TB, stateDir string) []eventspool.Record {
	tb.Helper()
	recs, err := eventspool.List(eventspool.Dir(stateDir))
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// Namespace is a namespace with labels.
func Namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// OptedIn reads the file as the plugin does.
func OptedIn(tb testing.TB, stateDir string) []string {
	tb.Helper()
	s, err := nsoptin.Read(stateDir)
	if err != nil {
		tb.Fatal(err)
	}
	return s.Sorted()
}

// AppendLog appends text to the file at path, as a plugin process does.
func AppendLog(tb testing.TB, path, text string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		tb.Fatal(err)
	}
}
