package installer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/mesh-accel/mesh-accel/installer/events"
	"github.com/mesh-accel/mesh-accel/installer/pluginlog"
)

// EventReason is the reason of the Warning Event a pod gets when the plugin
// could not set up its acceleration (package events).
const EventReason = events.Reason

// newKubeClient builds the installer's API client from its service account
// (the token file is re-read as the kubelet rotates it). It returns
// ErrNoAPIHost outside a cluster.
func newKubeClient(cfg *Config) (dynamic.Interface, error) {
	if cfg.APIHost == "" {
		return nil, ErrNoAPIHost
	}
	if _, err := os.Stat(cfg.SAToken); err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	rc := &rest.Config{
		Host: cfg.APIHost, BearerTokenFile: cfg.SAToken, UserAgent: "mesh-accel-installer",
		TLSClientConfig: rest.TLSClientConfig{CAFile: cfg.SACA}, Timeout: 30 * time.Second,
	}
	c, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("API client for %s: %w", cfg.APIHost, err)
	}
	return c, nil
}

// startCompanions starts what runs beside the main loop until ctx is done:
// the plugin log's follower (when Deps.PluginLogOut is set), the Event
// poster and the namespace watch (both need the API server). The returned
// function waits for them to end.
func (in *installer) startCompanions(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if in.d.PluginLogOut != nil {
		pl := pluginlog.New(in.cfg.PluginLogFile, in.d.PluginLogOut, in.log,
			func(d time.Duration) { in.m.addDuration.Observe(d.Seconds()) })
		wg.Go(func() { pl.Run(ctx) })
	}
	client := in.d.Kube
	if client == nil {
		c, err := newKubeClient(in.cfg)
		if err != nil {
			in.log.Warn("no API access: failed pods get no Event (their records wait in the spool) "+
				"and namespace labels are not followed", "err", err)
		} else {
			client = c
		}
	}
	wg.Go(func() { events.NewPoster(in.cfg.StateDir, client, in.log).Run(ctx) })
	if client != nil {
		wg.Go(func() { newNamespaces(in.cfg.StateDir, client, in.log).run(ctx) })
	}
	return wg.Wait
}
