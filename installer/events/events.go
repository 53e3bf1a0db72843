// Package events is the installer's poster of the plugin's failures: the
// records the plugin spools under the state folder (package eventspool)
// become Warning Events of their pods, aggregated as the kubelet's
// recorder does, and leave the spool once posted.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
)

// Reason is the reason of the Warning Event a pod gets when the plugin
// could not set up its acceleration (the pod runs without it).
const Reason = "AccelerationSetupFailed"

// eventComponent is the Events' source.
const eventComponent = "mesh-accel"

// Timing of the event poster.
const (
	// eventPoll is how often the spool is looked at.
	eventPoll = 2 * time.Second
	// eventRetryMax bounds the wait after failed posts (doubling from
	// eventPoll).
	eventRetryMax = time.Minute
	// eventAggregate is how long later failures of a pod add to its
	// Event ("x5 over 2m") instead of making a new one.
	eventAggregate = 10 * time.Minute
)

// The resources the installer uses. The installer reads and writes them
// with client-go's dynamic client, as unstructured objects: the typed
// clientset would link every API group's types into the binary (three
// times its size).
var (
	eventsResource = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	podsResource   = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// Poster posts the plugin's spooled records (package eventspool) as
// Warning Events of their pods, and removes each record once posted. A
// record whose post fails stays, and is tried again. Later failures of a
// pod within eventAggregate raise the count of its Event, as the kubelet's
// recorder does, so that `kubectl describe pod` shows "(x5 over 2m)".
type Poster struct {
	dir    string
	client dynamic.Interface // nil: no API access, the records stay
	host   string            // the node, as the Events' source
	log    *slog.Logger
	now    func() time.Time

	// posted are the Events made, by record key.
	posted map[string]postedEvent
	// noAPI says the lack of API access was logged.
	noAPI bool
}

// postedEvent is an Event made for a record key.
type postedEvent struct {
	name  string
	count int32
	at    time.Time // when it was last posted to
}

// NewPoster returns the poster of the spool under stateDir; a nil client
// leaves the records in the spool.
func NewPoster(stateDir string, client dynamic.Interface, log *slog.Logger) *Poster {
	host, _ := os.Hostname() // the node's name: the installer runs in the host's network namespace
	return &Poster{dir: eventspool.Dir(stateDir), client: client, host: host, log: log, now: time.Now,
		posted: map[string]postedEvent{}}
}

// Run posts until ctx is done.
func (e *Poster) Run(ctx context.Context) {
	if err := eventspool.Clean(e.dir); err != nil { // what killed plugins left
		e.log.Warn("event spool not cleaned", "err", err)
	}
	wait := eventPoll
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := e.Post(ctx); err != nil {
			wait = min(2*wait, eventRetryMax)
			e.log.Warn("pod Events not posted; retrying", "in", wait, "err", err)
			continue
		}
		wait = eventPoll
	}
}

// Post posts every record of the spool. It stops at the first post that
// fails (the API server unreachable, or the service account not allowed):
// the rest waits for the next try. A record the API server refuses as such
// (invalid), or whose pod is gone, is dropped.
func (e *Poster) Post(ctx context.Context) error {
	e.forget()
	recs, err := eventspool.List(e.dir)
	if err != nil {
		e.log.Warn("unreadable Event records removed", "err", err)
		if err := eventspool.Clean(e.dir); err != nil {
			return err
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if e.client == nil {
		if !e.noAPI {
			e.noAPI = true
			e.log.Warn("no API access: pod Events stay in the spool", "dir", e.dir, "records", len(recs))
		}
		return nil
	}
	for _, r := range recs {
		err := e.postOne(ctx, r)
		if errors.Is(err, errPodGone) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			e.log.Warn("pod Event dropped", "pod", r.Namespace+"/"+r.Name, "reason", r.Reason, "err", err)
			if err := eventspool.Drop(e.dir, r.Key()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("post the Event of pod %s/%s: %w", r.Namespace, r.Name, err)
		}
		if err := eventspool.Done(e.dir, r); err != nil {
			return err
		}
		e.log.Info("pod Event posted", "pod", r.Namespace+"/"+r.Name, "reason", r.Reason, "count", r.Count)
	}
	return nil
}

// forget drops the Events made longer than eventAggregate ago: later
// failures make new ones, so they are not needed, and pods come and go
// (a node with crash-looping pods would otherwise keep one per pod forever).
func (e *Poster) forget() {
	now := e.now()
	for key, p := range e.posted {
		if now.Sub(p.at) >= eventAggregate {
			delete(e.posted, key)
		}
	}
}

// errPodGone: the record's pod no longer exists.
var errPodGone = errors.New("pod gone")

// namespaceTerminating is the cause of the API server's refusal to create
// an object in a namespace being deleted (core/v1 NamespaceTerminatingCause).
const namespaceTerminating = "NamespaceTerminating"

// postOne makes the record's Event, or adds the record's failures to the
// Event made for the same pod and reason a short while ago.
func (e *Poster) postOne(ctx context.Context, r eventspool.Record) error {
	key := r.Key()
	if r.UID == "" {
		pod, err := e.client.Resource(podsResource).Namespace(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errPodGone
		}
		if err != nil {
			return fmt.Errorf("get the pod's uid: %w", err)
		}
		r.UID = string(pod.GetUID())
	}
	if p, ok := e.posted[key]; ok && e.now().Sub(p.at) < eventAggregate {
		err := e.addTo(ctx, key, r, p)
		if err == nil || !apierrors.IsNotFound(err) {
			return err
		}
		// The Event expired meanwhile: a new one.
	}
	made, err := e.client.Resource(eventsResource).Namespace(r.Namespace).Create(ctx, e.event(r), metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.HasStatusCause(err, namespaceTerminating) {
		return fmt.Errorf("%w: its namespace is gone: %w", errPodGone, err)
	}
	if err != nil {
		return fmt.Errorf("create Event: %w", err)
	}
	e.posted[key] = postedEvent{name: made.GetName(), count: r.Count, at: e.now()}
	return nil
}

// event is the core/v1 Event of a record.
func (e *Poster) event(r eventspool.Record) *unstructured.Unstructured {
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{
			"name":      fmt.Sprintf("%s.%x", r.Name, e.now().UnixNano()),
			"namespace": r.Namespace,
		},
		"involvedObject": map[string]any{
			"kind": "Pod", "apiVersion": "v1", "namespace": r.Namespace, "name": r.Name, "uid": r.UID,
		},
		"reason": Reason, "message": r.Message, "type": "Warning",
		"source":         map[string]any{"component": eventComponent, "host": e.host},
		"firstTimestamp": ts(r.First), "lastTimestamp": ts(r.Last), "count": int64(r.Count),
		"reportingComponent": eventComponent, "reportingInstance": e.host,
	}}
}

// addTo raises the count of the Event p by the record's, with its last
// time and message.
func (e *Poster) addTo(ctx context.Context, key string, r eventspool.Record, p postedEvent) error {
	count := p.count + r.Count
	patch, err := json.Marshal(map[string]any{
		"count": count, "lastTimestamp": r.Last.UTC().Format(time.RFC3339), "message": r.Message,
	})
	if err != nil {
		return fmt.Errorf("encode the update of Event %s: %w", p.name, err)
	}
	_, err = e.client.Resource(eventsResource).Namespace(r.Namespace).Patch(ctx, p.name, types.MergePatchType,
		patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("update Event %s: %w", p.name, err)
	}
	e.posted[key] = postedEvent{name: p.name, count: count, at: e.now()}
	return nil
}
