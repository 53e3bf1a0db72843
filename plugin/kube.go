package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/clientcmd"
)

// podMeta is what the plugin needs of a pod object.
type podMeta struct {
	UID         string
	Annotations map[string]string
}

// podSource reads pods from the API server.
type podSource interface {
	pod(ctx context.Context, namespace, name string) (*podMeta, error)
}

// apiAttempts bounds the tries of one lookup (within Config.APITimeout).
const apiAttempts = 3

// apiPods reads a pod's metadata with client-go's metadata client (a GET of
// the pod, decoded as PartialObjectMetadata), so that the plugin does not
// link every API group's types: every plugin call pays their start-up cost.
type apiPods struct {
	kubeconfig string
	timeout    time.Duration // the whole lookup, retries included
	attempts   int
	backoff    time.Duration // before the second try; doubled after
}

func newAPIPods(conf *Config) *apiPods {
	return &apiPods{kubeconfig: conf.Kubeconfig, timeout: conf.apiTimeout, attempts: apiAttempts, backoff: 200 * time.Millisecond}
}

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func (a *apiPods) pod(ctx context.Context, namespace, name string) (*podMeta, error) {
	if a.kubeconfig == "" {
		return nil, failf(ReasonAPI, "the runtime passed no pod annotations (declare the capability %q in the conflist) "+
			"and the config names no kubeconfig to read them from the API server", CapPodAnnotations)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", a.kubeconfig)
	if err != nil {
		return nil, fail(ReasonAPI, fmt.Errorf("load kubeconfig %s: %w", a.kubeconfig, err))
	}
	cfg.UserAgent = "mesh-accel-cni"
	cfg.Timeout = a.timeout
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fail(ReasonAPI, fmt.Errorf("API client for %s: %w", cfg.Host, err))
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	backoff := a.backoff
	for try := 1; ; try++ {
		m, err := client.Resource(podsResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return &podMeta{UID: string(m.UID), Annotations: m.Annotations}, nil
		}
		if final(err) || try >= a.attempts || ctx.Err() != nil {
			return nil, failf(ReasonAPI, "get pod %s/%s from the API server %s (%d tries in at most %v): %w",
				namespace, name, cfg.Host, try, a.timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// final reports errors that another try would not change.
func final(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) ||
		apierrors.IsBadRequest(err) || errors.Is(err, context.Canceled)
}
