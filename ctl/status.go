package ctl

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// statusReport is what `status` shows.
type statusReport struct {
	Kernel   kernelReport `json:"kernel"`
	State    stateReport  `json:"state"`
	Enabled  bool         `json:"enabled"`
	Usage    usageReport  `json:"usage"`
	Pods     []podReport  `json:"pods"`
	Warnings []string     `json:"warnings"`
}

type kernelReport struct {
	Release string `json:"release"`
	Ready   bool   `json:"ready"`             // every feature mesh-accel needs is there
	Missing string `json:"missing,omitempty"` // what is not, when not Ready
}

type stateReport struct {
	Present bool   `json:"present"`
	Dir     string `json:"dir"`
	Layout  string `json:"layout_version"`
	// OtherLayouts are states of other layouts beside ours, under
	// --bpf-root: an upgrade that changed the layout keeps the older one
	// until the connections paired under it close.
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
	Sockets    int    `json:"sockets"`
	Directions int    `json:"directions"`
	Pending    int    `json:"pending"`
	Pods       int    `json:"pods"`
	Capacity   uint32 `json:"capacity"`
}

// podReport is an attached pod and its configuration (status, rules show).
type podReport struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	CgroupID   uint64   `json:"cgroup_id"`
	Enabled    bool     `json:"enabled"`
	TrustApp   bool     `json:"trust_app"`
	SidecarUID uint32   `json:"sidecar_uid"`
	Rules      []string `json:"rules"`
}

func (a *app) podReport(p bpf.PodInfo) podReport {
	r := podReport{Name: a.directory().Name(p.ID), ID: p.ID, CgroupID: p.CgroupID, Enabled: !p.Config.Disabled,
		TrustApp: p.Config.TrustApp, SidecarUID: p.Config.SidecarUID, Rules: []string{}}
	if p.Config.Rules != nil {
		for _, rule := range p.Config.Rules.Rules {
			r.Rules = append(r.Rules, rule.String())
		}
	}
	return r
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show kernel support, node state, the switches, attached pods and their rules, and warnings",
		Long: `status shows whether the kernel has what mesh-accel needs, the node state under bpffs (its
programs and maps, its layout version), the global switch, the attached pods with their
configuration and rules, how full the connection maps are, and warnings: traffic that took
the normal stack because its reader is not trusted, maps near full, questionable rules.
It fails (exit 1) when the node has no mesh-accel state.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			r, err := a.status()
			if perr := a.emit(r, func(w io.Writer) error { return renderStatus(w, r) }); err == nil {
				err = perr
			}
			return err
		},
	}
}

// status gathers the report. When the node has no state it returns the
// kernel part and ErrNoState.
func (a *app) status() (*statusReport, error) {
	r := &statusReport{Kernel: kernelReport{Release: kernelRelease(), Ready: true}, Pods: []podReport{},
		Warnings: []string{}}
	if err := a.deps.CheckKernel(); err != nil {
		r.Kernel.Ready, r.Kernel.Missing = false, err.Error()
	}
	r.State = stateReport{Dir: StateDir(*a.cfg), Layout: bpf.LayoutVersion,
		OtherLayouts: otherLayouts(filepath.Join(a.cfg.BPFFS, a.cfg.BPFRoot))}
	eng, err := a.engine()
	if err != nil {
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
	r.Usage = usageReport{u.Sockets, u.Directions, u.Pending, u.Pods, u.Capacity}
	pods, err := eng.Pods()
	if err != nil {
		return r, err
	}
	for _, p := range pods {
		r.Pods = append(r.Pods, a.podReport(p))
	}
	c, err := eng.Counters()
	if err != nil {
		return r, err
	}
	r.Warnings = statusWarnings(r.Enabled, pods, u, c, a.directory())
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

// otherLayouts lists the layout versions under root other than ours: state
// an upgrade or a downgrade left beside the one this binary uses.
func otherLayouts(root string) []olderState {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []olderState
	for _, e := range ents {
		if e.IsDir() && e.Name() != bpf.LayoutVersion && e.Name() != bpf.SharedDir {
			out = append(out, olderState{Layout: e.Name()})
		}
	}
	return out
}

func renderStatus(w io.Writer, r *statusReport) error {
	t := newTable(w)
	kernel := "ready (cgroup v2, sockops, sk_msg, cgroup/sock_create, sockhash, socket storage)"
	if !r.Kernel.Ready {
		kernel = "NOT READY: " + r.Kernel.Missing
	}
	t.row("Kernel:", r.Kernel.Release+", "+kernel)
	if !r.State.Present {
		t.row("Node state:", "none at "+r.State.Dir)
		return t.flush()
	}
	t.row("Node state:", fmt.Sprintf("%s (layout %s)", r.State.Dir, r.State.Layout))
	for _, l := range r.State.OtherLayouts {
		t.row("", fmt.Sprintf("also present: layout %s of another mesh-accel version, %d pods, %d sockets "+
			"(kept until the connections paired under it close)", l.Layout, l.Pods, l.Sockets))
	}
	dp := "data path " + r.State.DataPath
	if r.State.DataPath != r.State.BinaryDataPath {
		dp += ", NOT this binary's " + r.State.BinaryDataPath
	}
	t.row("", dp)
	t.row("Acceleration:", map[bool]string{true: "enabled", false: "DISABLED (global switch off)"}[r.Enabled])
	u := r.Usage
	t.row("Connections:", fmt.Sprintf("%d sockets, %d pair directions, %d pending, of %d entries per map",
		u.Sockets, u.Directions, u.Pending, u.Capacity))
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPrograms and maps:")
	ot := newTable(w, "  KIND", "NAME", "ID", "TYPE", "MAX ENTRIES")
	for _, o := range r.State.Objects {
		entries := ""
		if o.MaxEntries > 0 {
			entries = fmt.Sprint(o.MaxEntries)
		}
		ot.row("  "+o.Kind, o.Name, o.ID, o.Type, entries)
	}
	if err := ot.flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPods (%d):\n", len(r.Pods))
	renderPods(w, r.Pods)
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  ! %s\n", s)
		}
	}
	return nil
}

// renderPods prints pods and their rules, indented.
func renderPods(w io.Writer, pods []podReport) {
	for _, p := range pods {
		state := "enabled"
		if !p.Enabled {
			state = "DISABLED"
		}
		fmt.Fprintf(w, "  %s (uid %s, cgroup %d): %s, sidecar uid %d, app trusted: %s\n",
			p.Name, p.ID, p.CgroupID, state, p.SidecarUID, yesNo(p.TrustApp))
		if len(p.Rules) == 0 {
			fmt.Fprintln(w, "    (no rules: every connection is accelerated)")
		}
		for _, rule := range p.Rules {
			fmt.Fprintf(w, "    %s\n", rule)
		}
	}
}

// mapFullRatio is the use of a connection map from which status warns.
const mapFullRatio = 0.8

// statusWarnings explains what in the node's state and counters deserves
// an operator's attention.
func statusWarnings(enabled bool, pods []bpf.PodInfo, u bpf.Usage, c bpf.Counters, dir PodDirectory) []string {
	w := []string{}
	if !enabled {
		w = append(w, "the global switch is off: no new connection is accelerated (mesh-accelctl enable)")
	}
	for _, p := range pods {
		name := dir.Name(p.ID)
		if p.Config.Disabled {
			w = append(w, fmt.Sprintf("pod %s is disabled: its new connections are not accelerated "+
				"(mesh-accelctl enable --pod %s)", name, name))
		}
		for _, s := range p.Config.Rules.Warnings() {
			w = append(w, fmt.Sprintf("pod %s: rules: %s", name, s))
		}
	}
	if n := c["directions_untrusted_reader"]; n > 0 {
		w = append(w, fmt.Sprintf("%d pair directions took the normal stack because their reader is not trusted to "+
			"read with recvmsg: a reader that uses splice(2) (HAProxy, Go's io.Copy between sockets or into a "+
			"file) never sees redirected data, so only the sidecar's uid receives it. This is expected for app "+
			"sockets; declare a pod's app a recvmsg reader (TrustApp) to accelerate those directions too.", n))
	}
	if n := c["rejected_untrusted_readers"]; n > 0 {
		w = append(w, fmt.Sprintf("%d connections were not paired because a reader is not trusted to read with "+
			"recvmsg (a connection is accelerated both ways or not at all). Expected for the app hops of pods "+
			"annotated accel.mesh/enabled alone; annotate accel.mesh/app-reads-with-recvmsg: \"true\" (apps that "+
			"never splice) or accel.mesh/profile: \"sidecar-hops\" (the sidecar-to-sidecar hop)", n))
	}
	if n := c["rejected_no_owner"]; n > 0 {
		w = append(w, fmt.Sprintf("%d connections had a socket without owner (created before its pod was "+
			"attached, or accepted by an MPTCP listener): they were not accelerated", n))
	}
	if n := c["fallback_map_full"]; n > 0 {
		w = append(w, fmt.Sprintf("%d times a connection map was full, so a connection took the normal stack", n))
	}
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
