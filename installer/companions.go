package installer

import (
	"context"
	"sync"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/mesh-accel/mesh-accel/installer/events"
	"github.com/mesh-accel/mesh-accel/installer/pluginlog"
)

// KillSwitchKey is the rules ConfigMap's key that turns acceleration off
// on every node (package cluster).
const KillSwitchKey = cluster.KillSwitchKey

// EventReason is the reason of the Warning Event a pod gets when the plugin
// could not set up its acceleration (package events).
const EventReason = events.Reason

// startCompanions starts what runs beside the main loop until ctx is done:
// the plugin log's follower (when Deps.PluginLogOut is set), the Event
// poster and the namespace watch (both need the API server). The returned
// function waits for them to end.
func (in *installer) startCompanions(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if in.d.PluginLogOut != nil {
		pl := pluginlog.New(in.cfg.PluginLogFile, in.d.PluginLogOut, in.log,
			func(d time.Duration) { in.m.ObserveAdd(d) })
		wg.Go(func() { pl.Run(ctx) })
	}
	client := in.d.Kube
	if client == nil {
		c, err := cluster.NewClient(in.cfg.APIHost, in.cfg.SAToken, in.cfg.SACA)
		if err != nil {
			in.log.Warn("no API access: failed pods get no Event (their records wait in the spool) "+
				"and namespace labels are not followed", "err", err)
		} else {
			client = c
		}
	}
	wg.Go(func() { events.NewPoster(in.cfg.StateDir, client, in.log).Run(ctx) })
	if client != nil {
		wg.Go(func() { cluster.NewNamespaces(in.cfg.StateDir, client, in.log).Run(ctx) })
	}
	return wg.Wait
}
