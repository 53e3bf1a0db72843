// Package cluster keeps the node in step with the cluster's settings: the
// namespaces opted in by their label (namespaces.go, the file package
// nsoptin owns), the plugin's kubeconfig from the rotating service account
// token (kubeconfig.go), the rules ConfigMap's node defaults, copied for
// the plugin and applied to attached pods (rules.go), and its key enabled,
// the cluster-wide switch (killswitch.go).
package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
)

// Namespaces keeps the node's file of opted-in namespaces (package
// nsoptin) in step with the namespaces labelled nsoptin.Label=true: it
// watches them through the API server (a list and watch of the labelled
// namespaces only), and the plugin reads the file at a pod's ADD.
//
// The file is rewritten only once the watch has listed the namespaces:
// until then (the API server unreachable at start) the file of the previous
// run stays in force.
type Namespaces struct {
	client   dynamic.Interface
	stateDir string
	log      *slog.Logger

	mu      sync.Mutex
	written []string // the namespaces in the file; nil before the first write
}

// NewNamespaces returns the watch of the labelled namespaces, which keeps
// the file of stateDir.
func NewNamespaces(stateDir string, client dynamic.Interface, log *slog.Logger) *Namespaces {
	return &Namespaces{client: client, stateDir: stateDir, log: log}
}

// selector picks the opted-in namespaces.
var selector = nsoptin.Label + "=true"

// namespacesResource is the API's namespaces, read with the dynamic
// client (see package events for why not the typed clientset).
var namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// Run watches until ctx is done.
func (n *Namespaces) Run(ctx context.Context) {
	nsAPI := n.client.Resource(namespacesResource)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return nsAPI.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return nsAPI.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, n.client),
		&unstructured.Unstructured{}, 0, cache.Indexers{})
	store := inf.GetStore()
	var synced atomic.Bool
	update := func(any) {
		if synced.Load() {
			n.sync(store)
		}
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: update, UpdateFunc: func(_, o any) { update(o) }, DeleteFunc: update,
	})
	if err != nil {
		n.log.Error("namespace labels not followed", "err", err)
		return
	}
	done := make(chan struct{})
	go func() { defer close(done); inf.RunWithContext(ctx) }()
	defer func() { <-done }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	synced.Store(true)
	n.sync(store)
}

// sync writes the file when the opted-in namespaces changed.
func (n *Namespaces) sync(store cache.Store) {
	n.mu.Lock()
	defer n.mu.Unlock()
	set := nsoptin.Set{}
	for _, o := range store.List() {
		if ns, ok := o.(*unstructured.Unstructured); ok && ns.GetLabels()[nsoptin.Label] == "true" &&
			ns.GetDeletionTimestamp() == nil {
			set[ns.GetName()] = true
		}
	}
	list := set.Sorted()
	if n.written != nil && slices.Equal(list, n.written) {
		return
	}
	if err := nsoptin.Write(n.stateDir, set); err != nil {
		n.log.Error("opted-in namespaces not recorded for the plugin", "err", err)
		return
	}
	n.written = list
	n.log.Info("namespaces whose pods are accelerated by their label", "label", selector, "namespaces", list)
}
