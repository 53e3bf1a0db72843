package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
)

func TestNamespacesFollowLabel(t *testing.T) {
	state := t.TempDir()
	on := map[string]string{nsoptin.Label: "true"}
	c := fakeAPI(namespace("shop", on), namespace("plain", nil),
		namespace("off", map[string]string{nsoptin.Label: "false"}), namespace("kube-system", on))
	// A file of an earlier run, which the first listing replaces.
	if err := nsoptin.Write(state, nsoptin.Set{"stale": true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); NewNamespaces(state, c, testLog(t)).Run(ctx) }()
	defer func() { cancel(); <-done }()
	expect := func(what string, want ...string) {
		t.Helper()
		waitFor(t, what, func() bool { return slices.Equal(optedIn(t, state), want) })
	}
	expect("the labelled namespace", "shop")

	nsAPI := c.Resource(namespacesResource)
	bg := context.Background()
	if _, err := nsAPI.Update(bg, toUnstructured(t, namespace("plain", on)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("label added", "plain", "shop")
	if _, err := nsAPI.Create(bg, toUnstructured(t, namespace("new", on)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("labelled namespace created", "new", "plain", "shop")
	if _, err := nsAPI.Update(bg, toUnstructured(t, namespace("shop", map[string]string{nsoptin.Label: "false"})), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("label set to false", "new", "plain")
	if _, err := nsAPI.Update(bg, toUnstructured(t, namespace("plain", nil)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("label removed", "new")
	if err := nsAPI.Delete(bg, "new", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("namespace deleted")
}

// TestNamespacesKeepFileUntilListed: while the API server has not listed
// the namespaces, the file of the previous run stays.
func TestNamespacesKeepFileUntilListed(t *testing.T) {
	state := t.TempDir()
	if err := nsoptin.Write(state, nsoptin.Set{"shop": true}); err != nil {
		t.Fatal(err)
	}
	c := fakeAPI()
	c.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); NewNamespaces(state, c, testLog(t)).Run(ctx) }()
	waitFor(t, "a list attempt", func() bool { return len(c.Actions()) > 0 })
	cancel()
	<-done
	if got := optedIn(t, state); !slices.Equal(got, []string{"shop"}) {
		t.Errorf("file holds %v, want the previous run's [shop]", got)
	}
}
