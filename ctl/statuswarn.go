package ctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// failureReport is how often the CNI plugin failed to set pods up for one
// reason (it let them start without acceleration).
type failureReport struct {
	Reason    string    `json:"reason"`
	Count     uint64    `json:"count"`
	LastPod   string    `json:"last_pod"`
	LastError string    `json:"last_error"`
	LastTime  time.Time `json:"last_time"`
}

// setupFailures reads the plugin's failure counters, by reason.
func (a *app) setupFailures() ([]failureReport, error) {
	f, err := nodestate.ReadFailures(a.cfg.StateDir)
	if err != nil {
		return []failureReport{}, fmt.Errorf("setup failures unknown: %w", needsRoot(err))
	}
	out := []failureReport{}
	for reason, c := range f {
		out = append(out, failureReport{string(reason), c.Count, c.LastPod, c.LastError, c.LastTime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out, nil
}

// renderFailures prints the setup failures; -o wide adds the last error.
func (a *app) renderFailures(w io.Writer, fs []failureReport) error {
	if len(fs) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nSetup failures (the CNI plugin let these pods start without acceleration):")
	t := a.table(w, a.columns([]string{"REASON", "COUNT", "LAST POD", "LAST TIME"}, "LAST ERROR")...)
	for _, f := range fs {
		t.row(a.cells([]any{f.Reason, f.Count, f.LastPod, f.LastTime.UTC().Format(time.RFC3339)}, f.LastError)...)
	}
	return t.flush()
}

// counterRates reads the counters twice, window apart, and returns each
// one's change per second; nil with a zero window.
//
// Sampling now rather than keeping the last sample in the state folder
// keeps status read-only (it may run as another user, or next to another
// status) and makes its warnings describe the traffic of the last
// second, not whatever happened since some earlier run.
func (a *app) counterRates(ctx context.Context, eng Engine, window time.Duration) (map[bpf.Counter]float64, error) {
	if window == 0 {
		return nil, nil
	}
	before, err := eng.Counters()
	if err != nil {
		return nil, err
	}
	if err := a.deps.Sleep(ctx, window); err != nil {
		return nil, fmt.Errorf("status interrupted: %w", err)
	}
	after, err := eng.Counters()
	if err != nil {
		return nil, err
	}
	return rates(before, after, window).PerSec, nil
}

// podArgsOf spells the arguments that name a pod: -n NAMESPACE NAME, or
// the pod UID.
func podArgsOf(name string) string {
	if ns, n, ok := strings.Cut(name, "/"); ok {
		return "-n " + ns + " " + n
	}
	return name
}

// mapFullRatio is the use of a connection map from which status warns.
const mapFullRatio = 0.8

// statusWarnings explains what in the node's state and in the counters'
// rates (nil: not measured) deserves an operator's attention.
func statusWarnings(enabled bool, pods []bpf.PodInfo, u bpf.Usage, rates map[bpf.Counter]float64, dir PodDirectory) []string {
	w := []string{}
	if !enabled {
		w = append(w, "the global switch is off: no new connection is accelerated (mesh-accelctl enable)")
	}
	for _, p := range pods {
		name := dir.Name(p.ID)
		if p.Broken != nil {
			w = append(w, fmt.Sprintf("pod %s is broken, its new connections may not be accelerated (%v): restart "+
				"the pod, whose DEL removes what is left and whose ADD attaches it afresh", name, p.Broken))
			continue
		}
		if p.Config.Disabled {
			w = append(w, fmt.Sprintf("pod %s is disabled: its new connections are not accelerated "+
				"(mesh-accelctl enable %s)", name, podArgsOf(name)))
		}
		for _, s := range p.Config.Rules.Warnings() {
			w = append(w, fmt.Sprintf("pod %s: rules: %s", name, s))
		}
		if q := p.Usage.Quota; q > 0 && p.Usage.Entries >= int64(q) {
			w = append(w, fmt.Sprintf("pod %s holds its quota of %d connection-map entries: its new connections take "+
				"the normal stack (rejected_pod_quota) until some close; the CNI plugin's podQuota (installer "+
				"--pod-quota) sets it", name, q))
		}
	}
	w = append(w, shareWarnings(pods, u.Share)...)
	w = append(w, rateWarnings(rates)...)
	for _, m := range []struct {
		name string
		used int
	}{{"sock_ops_map (sockets)", u.Sockets}, {"sock_proxy_map (pair directions)", u.Directions},
		{"sock_helper_map (pending connections)", u.Pending}} {
		if u.Capacity > 0 && float64(m.used) >= mapFullRatio*float64(u.Capacity) {
			w = append(w, fmt.Sprintf("%s is %d%% full (%d of %d): once full, new connections take the normal "+
				"stack; the map size is set when the node state is created", m.name,
				m.used*100/int(u.Capacity), m.used, u.Capacity))
		}
	}
	return w
}

// shareWarnings explains a node whose pods hold more than their guaranteed
// shares of the connection maps.
func shareWarnings(pods []bpf.PodInfo, sh bpf.Share) []string {
	var w []string
	if sh.GuaranteedPods > 0 && len(pods) > int(sh.GuaranteedPods) {
		w = append(w, fmt.Sprintf("%d pods are attached, more than the %d the guaranteed shares of the connection "+
			"maps are kept for: a pod may find less than its %d entries", len(pods), sh.GuaranteedPods, sh.Guaranteed))
	}
	if sh.GuaranteedPods > 0 && sh.Borrowed >= int64(sh.Pool) {
		w = append(w, fmt.Sprintf("the shared pool of the connection maps is used up (%d of %d entries): pods "+
			"holding more than their guaranteed %d entries take the normal stack for new connections "+
			"(rejected_shared_pool); every pod keeps its guaranteed share", sh.Borrowed, sh.Pool, sh.Guaranteed))
	}
	return w
}

// rateWarnings explains the counters that grow now.
func rateWarnings(rates map[bpf.Counter]float64) []string {
	var w []string
	if r := rates[bpf.CounterDirectionsUntrustedReader]; r > 0 {
		w = append(w, fmt.Sprintf("%.1f pair directions per second take the normal stack because their reader is not "+
			"trusted to read with recvmsg: a reader that uses splice(2) (HAProxy, Go's io.Copy between sockets or "+
			"into a file) never sees redirected data, so only the sidecar's uid receives it. Expected for app "+
			"sockets; annotate the pod %s: \"true\" when its app never splices, to accelerate those directions too",
			r, annotations.TrustApp))
	}
	if r := rates[bpf.CounterRejectedUntrustedReaders]; r > 0 {
		w = append(w, fmt.Sprintf("%.1f connections per second are not paired because a reader is not trusted to "+
			"read with recvmsg (a connection is accelerated both ways or not at all). Expected for the app hops of "+
			"pods annotated %s alone; annotate %s: \"true\" (apps that never splice) or %s: %q (the "+
			"sidecar-to-sidecar hop)", r, annotations.Enabled, annotations.TrustApp, annotations.Profile,
			annotations.ProfileSidecarHops))
	}
	if r := rates[bpf.CounterRejectedNoOwner]; r > 0 {
		w = append(w, fmt.Sprintf("%.1f connections per second have a socket without owner (created before its pod "+
			"was attached, or accepted by an MPTCP listener): they are not accelerated", r))
	}
	if r := rates[bpf.CounterRejectedSharedPool]; r > 0 {
		w = append(w, fmt.Sprintf("%.1f connections per second take the normal stack because their pod holds more "+
			"than its guaranteed share of the connection maps and the node's shared pool is used up", r))
	}
	if r := rates[bpf.CounterFallbackMapFull]; r > 0 {
		w = append(w, fmt.Sprintf("%.1f connections per second find a connection map full and take the normal stack", r))
	}
	return w
}
