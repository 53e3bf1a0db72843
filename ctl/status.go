package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// statusReport is what `status` shows.
type statusReport struct {
	Kernel  kernelReport `json:"kernel"`
	State   stateReport  `json:"state"`
	Enabled bool         `json:"enabled"`
	Usage   usageReport  `json:"usage"`
	Pods    []statusPod  `json:"pods"`
	// Failures are the CNI plugin's setup failures (pods it left
	// unaccelerated, failing open), by reason.
	Failures []failureReport `json:"setup_failures"`
	// Rates are the counters' changes per second over Window seconds,
	// which the warnings are drawn from.
	Rates    map[bpf.Counter]float64 `json:"rates_per_sec,omitempty"`
	Window   float64                 `json:"rate_window_sec,omitempty"`
	Warnings []string                `json:"warnings"`
}

type kernelReport struct {
	Release string `json:"release"`
	Ready   bool   `json:"ready"`             // every feature mesh-accel needs is there
	Missing string `json:"missing,omitempty"` // what is not, when not Ready
	// Unchecked says why the features could not be probed (not root).
	Unchecked string `json:"unchecked,omitempty"`
}

type stateReport struct {
	Present bool `json:"present"`
	// Unreadable is set when the state could not be looked at for lack
	// of privileges: whether it is present is unknown.
	Unreadable bool   `json:"unreadable,omitempty"`
	Dir        string `json:"dir"`
	Layout     string `json:"layout_version"`
	// MapSize is the entries of each connection map the state was
	// configured with (--map-size), which its folder's name carries.
	MapSize uint32 `json:"map_size"`
	// OtherLayouts are states of other layouts beside ours, under
	// --bpf-root: an upgrade that changed the layout (or the maps' size)
	// keeps the older one until the connections paired under it close.
	OtherLayouts []olderState `json:"other_layouts,omitempty"`
	// DataPath is the pinned programs' build, BinaryDataPath this
	// binary's; they differ after an upgrade that kept the node state.
	DataPath       string   `json:"data_path,omitempty"`
	BinaryDataPath string   `json:"binary_data_path,omitempty"`
	Objects        []Object `json:"objects,omitempty"`
}

type olderState struct {
	Layout  string `json:"layout"`
	Pods    int    `json:"pods"`    // not moved to ours yet
	Sockets int    `json:"sockets"` // still in its socket maps
}

type usageReport struct {
	Sockets    int         `json:"sockets"`
	Directions int         `json:"directions"`
	Pending    int         `json:"pending"`
	Pods       int         `json:"pods"`
	Capacity   uint32      `json:"capacity"`
	Share      shareReport `json:"share"`
}

// shareReport is the node-wide part of the quota (bpf.Share): every pod's
// guaranteed share of the connection maps, and the pool they share beyond
// it.
type shareReport struct {
	Guaranteed     uint32 `json:"guaranteed_per_pod"`
	GuaranteedPods uint32 `json:"guaranteed_pods"`
	Pool           uint32 `json:"shared_pool"`
	Borrowed       int64  `json:"shared_pool_in_use"`
}

// statusPod is an attached pod as status shows it: its configuration and
// what its connections hold of the connection maps.
type statusPod struct {
	podReport
	// MapEntries are the connection-map entries its connections hold
	// (pending registrations and pair directions, charged to the
	// connecting side), against its quota (podReport.Quota).
	MapEntries int64 `json:"map_entries"`
}

// podReport is an attached pod and its configuration (status, rules show).
type podReport struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	CgroupID   uint64 `json:"cgroup_id"`
	Enabled    bool   `json:"enabled"`
	TrustApp   bool   `json:"trust_app"`
	SidecarUID uint32 `json:"sidecar_uid"`
	// Quota is the most connection-map entries its connections may hold
	// (bpf.PodConfig.Quota).
	Quota uint32   `json:"quota"`
	Rules []string `json:"rules"`
	// Broken says what the pod's state lacks (bpf.PodInfo.Broken); the
	// fields above hold what could be read.
	Broken string `json:"broken,omitempty"`
}

func (a *app) podReport(p bpf.PodInfo) podReport {
	r := podReport{Name: a.directory().Name(p.ID), ID: p.ID, CgroupID: p.CgroupID, Enabled: !p.Config.Disabled,
		TrustApp: p.Config.TrustApp, SidecarUID: p.Config.SidecarUID, Quota: p.Config.Quota, Rules: []string{}}
	if p.Broken != nil {
		r.Broken = p.Broken.Error()
	}
	if p.Config.Rules != nil {
		for _, rule := range p.Config.Rules.Rules {
			r.Rules = append(r.Rules, rule.String())
		}
	}
	return r
}

func (a *app) statusCmd() *cobra.Command {
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show kernel support, node state, the switches, attached pods and their rules, and warnings",
		Long: `status shows whether the kernel has what mesh-accel needs, the node state under bpffs (its
programs and maps, its layout version), the global switch, the attached pods with their
configuration and rules, how full the connection maps are and what each pod's connections
hold of them against its quota (every pod is guaranteed a share; beyond it pods share a
pool), the CNI plugin's setup failures (pods it left unaccelerated), and warnings: traffic
that takes the normal stack because its reader is not trusted, maps near full, a pod at its
quota or a shared pool used up, questionable rules. The warnings about traffic come
from the counters' rates over --window (status reads them twice, that long apart), not from
their totals since the node state was created: they describe what happens now. It fails
(exit 1) when the node has no mesh-accel state.`,
		Example: `  mesh-accelctl status
  mesh-accelctl status -o wide
  mesh-accelctl status --window 5s -o json
  ` + execCmd + ` status`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window < 0 {
				return usageErrorf("--%s must not be negative", FlagWindow)
			}
			r, err := a.status(cmd.Context(), window)
			if perr := a.emit(r, func(w io.Writer) error { return a.renderStatus(w, r) }); err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&window, FlagWindow, time.Second, "compare the counters over this window for the warnings (0: no traffic warnings)")
	return cmd
}

// status gathers the report. When the node has no state it returns the
// kernel part and ErrNoState.
func (a *app) status(ctx context.Context, window time.Duration) (*statusReport, error) {
	r := &statusReport{Kernel: kernelReport{Release: kernelRelease(), Ready: true}, Pods: []statusPod{},
		Failures: []failureReport{}, Warnings: []string{}}
	err := a.deps.CheckKernel()
	switch {
	case errors.Is(err, os.ErrPermission):
		r.Kernel.Ready, r.Kernel.Unchecked = false, "the BPF probes were refused: "+ErrNeedsRoot.Error()
	case err != nil:
		r.Kernel.Ready, r.Kernel.Missing = false, err.Error()
	}
	dir := StateDir(*a.cfg)
	r.State = stateReport{Dir: dir, Layout: bpf.LayoutVersion, MapSize: a.cfg.MapSize,
		OtherLayouts: otherLayouts(filepath.Dir(dir), filepath.Base(dir))}
	eng, err := a.engine()
	if err != nil {
		r.State.Unreadable = errors.Is(err, os.ErrPermission)
		return r, err
	}
	r.State.Present = true
	if r.State.Objects, err = eng.Objects(); err != nil {
		return r, err
	}
	dp, err := eng.DataPaths()
	if err != nil {
		return r, err
	}
	r.State.DataPath, r.State.BinaryDataPath = dp.Pinned, dp.Binary
	r.State.OtherLayouts = r.State.OtherLayouts[:0]
	for _, o := range dp.Older {
		r.State.OtherLayouts = append(r.State.OtherLayouts, olderState{filepath.Base(o.Dir), o.Pods, o.Sockets})
	}
	if r.Enabled, err = eng.Enabled(); err != nil {
		return r, err
	}
	u, err := eng.Usage()
	if err != nil {
		return r, err
	}
	r.Usage = usageReport{u.Sockets, u.Directions, u.Pending, u.Pods, u.Capacity,
		shareReport{u.Share.Guaranteed, u.Share.GuaranteedPods, u.Share.Pool, u.Share.Borrowed}}
	pods, err := eng.Pods()
	if err != nil {
		return r, err
	}
	for _, p := range pods {
		r.Pods = append(r.Pods, statusPod{a.podReport(p), p.Usage.Entries})
	}
	rates, err := a.counterRates(ctx, eng, window)
	if err != nil {
		return r, err
	}
	r.Rates, r.Window = rates, window.Seconds()
	r.Failures, err = a.setupFailures()
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	r.Warnings = append(r.Warnings, statusWarnings(r.Enabled, pods, u, rates, a.directory())...)
	if dp.Skewed() {
		r.Warnings = append([]string{fmt.Sprintf("the pinned data path %s is not this binary's %s: the node runs "+
			"programs of another mesh-accel build; the installer of this build replaces them when it starts", dp.Pinned, dp.Binary)}, r.Warnings...)
	}
	return r, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// otherLayouts lists the states under root other than ours (named
// layout): state an upgrade, a downgrade or a change of the maps' size
// left beside the one this binary uses.
func otherLayouts(root, layout string) []olderState {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []olderState
	for _, e := range ents {
		if e.IsDir() && e.Name() != layout && e.Name() != bpf.SharedDir {
			out = append(out, olderState{Layout: e.Name()})
		}
	}
	return out
}

// otherLayoutKind says what differs in the state named layout beside
// ours: the maps' size (this layout version, another size) or the release.
func otherLayoutKind(layout string) string {
	if layout == bpf.LayoutVersion {
		return fmt.Sprintf("another map size (%d entries)", bpf.DefaultMapSize)
	}
	if size, ok := strings.CutPrefix(layout, bpf.LayoutVersion+"-"); ok {
		if _, err := strconv.ParseUint(size, 10, 32); err == nil {
			return "another map size (" + size + " entries)"
		}
	}
	return "another mesh-accel version"
}

func (a *app) renderStatus(w io.Writer, r *statusReport) error {
	t := newTable(w)
	kernel := "ready (cgroup v2, sockops, sk_msg, cgroup/sock_create, sockhash, socket storage)"
	switch {
	case r.Kernel.Unchecked != "":
		kernel = "NOT CHECKED: " + r.Kernel.Unchecked
	case !r.Kernel.Ready:
		kernel = "NOT READY: " + r.Kernel.Missing
	}
	t.row("Kernel:", r.Kernel.Release+", "+kernel)
	switch {
	case r.State.Unreadable:
		t.row("Node state:", "unknown: "+r.State.Dir+" is not readable without root")
		return t.flush()
	case !r.State.Present:
		t.row("Node state:", "none at "+r.State.Dir)
		for _, l := range r.State.OtherLayouts {
			t.row(" ", fmt.Sprintf("present: layout %s of %s (--%s or %s names the maps' size)",
				l.Layout, otherLayoutKind(l.Layout), FlagMapSize, nodestate.EnvName(FlagMapSize)))
		}
		return t.flush()
	}
	t.row("Node state:", fmt.Sprintf("%s (layout %s, maps of %d entries)", r.State.Dir, r.State.Layout, r.State.MapSize))
	for _, l := range r.State.OtherLayouts {
		t.row(" ", fmt.Sprintf("also present: layout %s of %s, %d pods, %d sockets "+
			"(kept until the connections paired under it close)", l.Layout, otherLayoutKind(l.Layout), l.Pods, l.Sockets))
	}
	dp := "data path " + r.State.DataPath
	if r.State.DataPath != r.State.BinaryDataPath {
		dp += ", NOT this binary's " + r.State.BinaryDataPath
	}
	t.row(" ", dp)
	t.row("Acceleration:", map[bool]string{true: "enabled", false: "DISABLED (global switch off)"}[r.Enabled])
	u := r.Usage
	t.row("Connections:", fmt.Sprintf("%d sockets, %d pair directions, %d pending, of %d entries per map",
		u.Sockets, u.Directions, u.Pending, u.Capacity))
	if sh := u.Share; sh.GuaranteedPods > 0 {
		t.row("Fair share:", fmt.Sprintf("%d entries guaranteed to every pod (for up to %d pods), "+
			"then a shared pool: %d of %d entries in use", sh.Guaranteed, sh.GuaranteedPods, sh.Borrowed, sh.Pool))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPrograms and maps:")
	ot := a.table(w, "KIND", "NAME", "ID", "TYPE", "MAX ENTRIES")
	for _, o := range r.State.Objects {
		entries := ""
		if o.MaxEntries > 0 {
			entries = fmt.Sprint(o.MaxEntries)
		}
		ot.row(o.Kind, o.Name, o.ID, o.Type, entries)
	}
	if err := ot.flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPods (%d):\n", len(r.Pods))
	pods := make([]podReport, len(r.Pods))
	for i, p := range r.Pods {
		pods[i] = p.podReport
	}
	if err := a.renderPods(w, pods); err != nil {
		return err
	}
	if err := a.renderPodUsage(w, r.Pods); err != nil {
		return err
	}
	if err := a.renderFailures(w, r.Failures); err != nil {
		return err
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  ! %s\n", s)
		}
	}
	return nil
}

// renderPods prints the pods, one a row (mesh-accelctl rules show has
// their rules); -o wide adds their UID and cgroup.
func (a *app) renderPods(w io.Writer, pods []podReport) error {
	t := a.table(w, a.columns([]string{"POD", "STATE", "SIDECAR UID", "APP TRUSTED", "RULES"}, "UID", "CGROUP")...)
	for _, p := range pods {
		t.row(a.cells([]any{p.Name, podState(p), p.SidecarUID, yesNo(p.TrustApp), len(p.Rules)}, p.ID, p.CgroupID)...)
	}
	return t.flush()
}

// renderPodUsage prints what each pod's connections hold of the connection
// maps, against its quota.
func (a *app) renderPodUsage(w io.Writer, pods []statusPod) error {
	if len(pods) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nConnection-map entries by pod (charged to the connecting side):")
	t := a.table(w, a.columns([]string{"POD", "ENTRIES", "QUOTA"}, "UID")...)
	for _, p := range pods {
		t.row(a.cells([]any{p.Name, p.MapEntries, p.Quota}, p.ID)...)
	}
	return t.flush()
}
