package ctl

import (
	"fmt"
	"io"
	"net/netip"
	"sort"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// connFilter selects connections by either end.
type connFilter struct {
	Pod  uint64     // pod cgroup id; 0: any
	Addr netip.Addr // invalid: any
	Port uint16     // 0: any
}

// match reports whether the connection between a (of pod cgroup pa) and b
// (of pb) passes: each criterion is met by at least one end, as in the
// kernel's capture filter.
func (f connFilter) match(a netip.AddrPort, pa uint64, b netip.AddrPort, pb uint64) bool {
	if f.Pod != 0 && pa != f.Pod && pb != f.Pod {
		return false
	}
	if ip := f.Addr.Unmap(); f.Addr.IsValid() && a.Addr().Unmap() != ip && b.Addr().Unmap() != ip {
		return false
	}
	return f.Port == 0 || a.Port() == f.Port || b.Port() == f.Port
}

// connRow is one accelerated connection: its two recorded directions.
type connRow struct {
	Client endReport `json:"client"` // the connecting side
	Server endReport `json:"server"` // the accepting side
	// Up is client to server, Down server to client; null when that
	// direction is not recorded (the connection is closing or drained).
	Up   *dirReport `json:"up"`
	Down *dirReport `json:"down"`
}

type endReport struct {
	Addr      netip.AddrPort `json:"addr"`
	Pod       string         `json:"pod"`
	PodCgroup uint64         `json:"pod_cgroup"`
	UID       uint32         `json:"uid"`
}

type dirReport struct {
	Redirect bool   `json:"redirect"` // else the data takes the normal stack
	Bytes    uint64 `json:"bytes"`    // redirected so far
	Messages uint64 `json:"messages"`
	// Backlog is the reader's unread bytes at the direction's last
	// message; Held is set while flow control keeps the direction on the
	// stack, and Holds counts such episodes.
	Backlog uint32 `json:"backlog"`
	Held    bool   `json:"held"`
	Holds   uint32 `json:"holds"`
	// ReaderGone is set when the reader closed unseen (its pod detached):
	// the data takes the stack, and the sweep removes the direction.
	ReaderGone bool `json:"reader_gone,omitempty"`
}

func (a *app) connsCmd() *cobra.Command {
	var sel podSel
	var addr string
	var port uint16
	cmd := &cobra.Command{
		Use:   "conns [NAME -n NAMESPACE | --pod POD] [--addr IP] [--port PORT]",
		Short: "List the accelerated connections: both ends, their pods, and the bytes redirected",
		Long: `conns lists the connections whose pair is recorded now, one row per connection with its
connecting (client) and accepting (server) end, as each socket sees its own local address:
through iptables REDIRECT the server end is the sidecar's 127.0.0.1:15001, for instance.
Each direction is either redirected, with the bytes and messages redirected so far, or on
the normal stack (its reader is not trusted to use recvmsg, or bytes went the stack way
before the pair was recorded). Filters match either end.`,
		Example: `  mesh-accelctl conns
  mesh-accelctl conns -n shop cart -o wide
  mesh-accelctl conns --port 8080 -o json`,
		Args: podArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			pod, err := sel.ref(args)
			if err != nil {
				return err
			}
			rows, err := a.conns(pod, addr, port)
			if err != nil {
				return err
			}
			return a.emit(rows, func(w io.Writer) error { return a.renderConns(w, rows) })
		},
	}
	a.connFilterFlags(cmd, &sel, &addr, &port)
	return cmd
}

// connFilterFlags adds --pod, -n, --addr and --port (conns, dump).
func (a *app) connFilterFlags(cmd *cobra.Command, sel *podSel, addr *string, port *uint16) {
	a.podFlags(cmd, sel, "only connections of this pod (either end)")
	cmd.Flags().StringVar(addr, FlagAddr, "", "only connections with this address at either end")
	cmd.Flags().Uint16Var(port, FlagPort, 0, "only connections with this port at either end")
}

// filter builds a connFilter from the flags' values.
func (a *app) filter(pods []bpf.PodInfo, pod, addr string, port uint16) (connFilter, error) {
	f := connFilter{Port: port}
	if addr != "" {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return f, usageErrorf("--%s %q: not an IP address", FlagAddr, addr)
		}
		f.Addr = ip
	}
	if pod != "" {
		p, err := a.attachedPod(pods, pod)
		if err != nil {
			return f, err
		}
		if f.Pod, err = podCgroup(p); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (a *app) conns(pod, addr string, port uint16) ([]connRow, error) {
	eng, err := a.engine()
	if err != nil {
		return nil, err
	}
	pods, err := eng.Pods()
	if err != nil {
		return nil, err
	}
	f, err := a.filter(pods, pod, addr, port)
	if err != nil {
		return nil, err
	}
	ds, err := eng.Directions()
	if err != nil {
		return nil, err
	}
	rows := []connRow{}
	names := a.podNames(pods)
	for _, r := range pairDirections(ds, names) {
		if f.match(r.Client.Addr, r.Client.PodCgroup, r.Server.Addr, r.Server.PodCgroup) {
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// connKey identifies a connection by its two ends, each an address in a
// network namespace, in either order: pods can hold the same addresses
// (loopback always, others on secondary networks).
type connKey struct {
	a, b   netip.AddrPort
	na, nb uint64
}

func keyOf(d bpf.Direction) connKey {
	k := connKey{a: d.From, na: d.Netns, b: d.To, nb: d.ToNetns}
	if c := k.a.Compare(k.b); c > 0 || (c == 0 && k.na > k.nb) {
		k.a, k.b, k.na, k.nb = k.b, k.a, k.nb, k.na
	}
	return k
}

// pairDirections joins the two directions of each connection into a row,
// sorted by client pod and address.
func pairDirections(ds []bpf.Direction, names podNames) []connRow {
	byKey := map[connKey]*connRow{}
	var keys []connKey
	for _, d := range ds {
		k := keyOf(d)
		r := byKey[k]
		if r == nil {
			r = &connRow{}
			byKey[k] = r
			keys = append(keys, k)
		}
		dir := &dirReport{Redirect: d.Redirect, Bytes: d.Bytes, Messages: d.Messages,
			Backlog: d.Backlog, Held: d.Held, Holds: d.Holds, ReaderGone: d.PeerGone}
		from := endReport{Addr: d.From, Pod: names.of(d.FromPod), PodCgroup: d.FromPod, UID: d.FromUID}
		to := endReport{Addr: d.To, Pod: names.of(d.ToPod), PodCgroup: d.ToPod, UID: d.ToUID}
		if d.Connecting {
			r.Client, r.Server, r.Up = from, to, dir
		} else {
			r.Client, r.Server, r.Down = to, from, dir
		}
	}
	rows := make([]connRow, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, *byKey[k])
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Client.Pod != rows[j].Client.Pod {
			return rows[i].Client.Pod < rows[j].Client.Pod
		}
		return rows[i].Client.Addr.Compare(rows[j].Client.Addr) < 0
	})
	return rows
}

// renderConns prints the connections; -o wide adds each end's socket
// owner uid and pod cgroup.
func (a *app) renderConns(w io.Writer, rows []connRow) error {
	t := a.table(w, a.columns([]string{"CLIENT", "CLIENT POD", "SERVER", "SERVER POD", "CLIENT->SERVER", "SERVER->CLIENT"},
		"CLIENT UID", "SERVER UID", "CLIENT CGROUP", "SERVER CGROUP")...)
	for _, r := range rows {
		t.row(a.cells([]any{r.Client.Addr, r.Client.Pod, r.Server.Addr, r.Server.Pod, dirCell(r.Up), dirCell(r.Down)},
			r.Client.UID, r.Server.UID, r.Client.PodCgroup, r.Server.PodCgroup)...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if a.cfg.NoHeaders {
		return nil
	}
	_, err := fmt.Fprintf(w, "%d accelerated connections\n", len(rows))
	return err
}

func dirCell(d *dirReport) string {
	switch {
	case d == nil:
		return "-"
	case d.ReaderGone:
		return "stack, reader gone"
	case !d.Redirect:
		return "stack"
	}
	cell := fmt.Sprintf("%s in %d msgs, backlog %s", humanBytes(d.Bytes), d.Messages, humanBytes(uint64(d.Backlog)))
	switch {
	case d.Held:
		cell += fmt.Sprintf(", held (%dx)", d.Holds)
	case d.Holds > 0:
		cell += fmt.Sprintf(", was held %dx", d.Holds)
	}
	return cell
}
