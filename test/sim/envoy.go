package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// EnvEnvoy names the Envoy binary the sidecars run; without it, "envoy" is
// looked up in PATH (scripts/install-deps.sh links the pinned release as
// /usr/local/bin/envoy).
const EnvEnvoy = "MESH_ACCEL_ENVOY"

// EnvoyPath returns the Envoy binary the sidecars run, or an error that
// says how to install it.
func EnvoyPath() (string, error) {
	if p := os.Getenv(EnvEnvoy); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("envoy")
	if err != nil {
		return "", fmt.Errorf("envoy not in PATH (scripts/install-deps.sh installs it, or set %s): %w", EnvEnvoy, err)
	}
	return p, nil
}

// EnvoyArgs are the arguments pilot-agent gives Envoy (istio/istio
// pkg/envoy/proxy.go), with the bootstrap file prepended.
func envoyArgs(bin, bootstrap string, v6 bool) []string {
	ipv := "v4"
	if v6 {
		ipv = "v6"
	}
	return []string{bin, "-c", bootstrap,
		"--drain-time-s", "45", "--drain-strategy", "immediate",
		"--local-address-ip-version", ipv, "--file-flush-interval-msec", "1000",
		"--disable-hot-restart", "--allow-unknown-static-fields",
		"--log-level", envoyLogLevel(), "--component-log-level", "misc:error", "--concurrency", "2"}
}

// EnvEnvoyLogLevel overrides the sidecars' log level (Istio's "warning"),
// e.g. "debug" to see why Envoy closed a connection (in [Proc.Stderr]).
const EnvEnvoyLogLevel = "MESH_ACCEL_ENVOY_LOG_LEVEL"

func envoyLogLevel() string {
	if l := os.Getenv(EnvEnvoyLogLevel); l != "" {
		return l
	}
	return "warning"
}

// envoyReadyTimeout bounds how long a sidecar may take to become ready
// (Envoy starts in about 0.3 s here; a loaded machine under -race is slower).
const envoyReadyTimeout = 30 * time.Second

// startEnvoy writes the pod's certificates and bootstrap and starts Envoy
// as uid/gid 1337, returning once its admin /ready says LIVE.
func (p *Pod) startEnvoy() (*Proc, error) {
	n := p.node
	bin, err := EnvoyPath()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.TempDir, "envoy-"+p.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sidecar dir: %w", err)
	}
	if err := os.Chown(dir, SidecarUID, SidecarGID); err != nil {
		return nil, fmt.Errorf("sidecar dir: %w", err)
	}
	certs, err := n.ca.issue(dir, p.Name, int64(len(n.Pods())+1))
	if err != nil {
		return nil, err
	}
	in := envoyInput{
		Pod: p.Name, IPv4: p.IPv4, IPv6: p.IPv6, Services: n.services, Certs: certs,
		LDS: filepath.Join(dir, "lds.json"),
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(envoyBootstrap(in), "", " ")
	if err != nil {
		return nil, fmt.Errorf("sidecar bootstrap: %w", err)
	}
	cfg := filepath.Join(dir, "envoy.json")
	if err := writeOwned(cfg, b, SidecarUID, SidecarGID); err != nil {
		return nil, fmt.Errorf("sidecar bootstrap: %w", err)
	}
	p.xds = &xdsState{in: in}
	if err := n.joinMesh(p); err != nil {
		return nil, err
	}
	l := p.launch("envoy", roleExec, envoyArgs(bin, cfg, !p.IPv4.IsValid()), SidecarUID, SidecarGID)
	proc, err := p.startTracked(n.ctx, l)
	if err != nil {
		return nil, err
	}
	if err := p.waitEnvoyReady(proc); err != nil {
		_ = proc.Kill()
		<-proc.Done()
		return nil, err
	}
	n.xdsMu.Lock() // pushes of other pods read it
	p.sidecar = proc
	n.xdsMu.Unlock()
	if err := n.pushListeners(p); err != nil {
		return nil, err
	}
	return proc, nil
}

// xdsState is what the node, as istiod, knows of one Envoy sidecar.
type xdsState struct {
	in     envoyInput
	writes int // LDS files written; Envoy's lds.update_success catches up
}

// joinMesh adds p to the registry's meshed pods and writes p's first
// listeners (before its Envoy starts).
func (n *Node) joinMesh(p *Pod) error {
	n.xdsMu.Lock()
	defer n.xdsMu.Unlock()
	n.meshed = append(n.meshed, p)
	return n.writeListeners(p)
}

// leaveMesh removes p from the registry and pushes the others' listeners.
func (n *Node) leaveMesh(p *Pod) error {
	n.xdsMu.Lock()
	found := false
	for i, q := range n.meshed {
		if q == p {
			n.meshed = append(n.meshed[:i], n.meshed[i+1:]...)
			found = true
			break
		}
	}
	n.xdsMu.Unlock()
	if !found {
		return nil
	}
	return n.pushListeners(nil)
}

// pushListeners rewrites the listeners of every running meshed Envoy but
// skip and waits until each has applied them, as istiod's push does.
func (n *Node) pushListeners(skip *Pod) error {
	n.xdsMu.Lock()
	defer n.xdsMu.Unlock()
	var errs []error
	var pushed []*Pod
	for _, q := range n.meshed {
		if q == skip || !q.envoyRunning() {
			continue
		}
		if err := n.writeListeners(q); err != nil {
			errs = append(errs, err)
			continue
		}
		pushed = append(pushed, q)
	}
	for _, q := range pushed {
		errs = append(errs, q.waitListenersApplied())
	}
	return errors.Join(errs...)
}

// writeListeners writes q's LDS file atomically (Envoy reloads it when it
// is moved into its directory). Called with xdsMu held.
func (n *Node) writeListeners(q *Pod) error {
	mesh := make([]meshEndpoint, 0, len(n.meshed))
	for _, m := range n.meshed {
		mesh = append(mesh, meshEndpoint{Pod: m.Name, IPv4: m.IPv4, IPv6: m.IPv6})
	}
	q.xds.writes++
	b, err := json.MarshalIndent(envoyListeners(q.xds.in, mesh, q.xds.writes), "", " ")
	if err != nil {
		return fmt.Errorf("listeners of %s: %w", q.Name, err)
	}
	tmp := q.xds.in.LDS + ".tmp"
	if err := writeOwned(tmp, b, SidecarUID, SidecarGID); err != nil {
		return fmt.Errorf("listeners of %s: %w", q.Name, err)
	}
	if err := os.Rename(tmp, q.xds.in.LDS); err != nil {
		return fmt.Errorf("listeners of %s: %w", q.Name, err)
	}
	return nil
}

func (p *Pod) envoyRunning() bool {
	if p.sidecar == nil {
		return false
	}
	select {
	case <-p.sidecar.Done():
		return false
	default:
		return true
	}
}

// waitListenersApplied waits until the pod's Envoy has accepted every LDS
// file written so far and no listener is still warming (a rejected file is
// an error, with Envoy's reason).
func (p *Pod) waitListenersApplied() error {
	want := uint64(p.xds.writes)
	deadline := time.Now().Add(envoyReadyTimeout)
	for {
		ok, err := p.EnvoyStat("listener_manager.lds.update_success")
		if err == nil && ok >= want {
			// Accepted listeners warm before they take connections.
			if warming, werr := p.EnvoyStat("listener_manager.total_listeners_warming"); werr == nil && warming == 0 {
				return nil
			}
		}
		if rej, _ := p.EnvoyStat("listener_manager.lds.update_rejected"); rej > 0 {
			return fmt.Errorf("envoy in %s rejected its listeners: stderr: %s", p.Name, tail(p.sidecar.Stderr()))
		}
		if time.Now().After(deadline) || !p.envoyRunning() {
			return fmt.Errorf("envoy in %s applied %d of %d listener updates (%v)", p.Name, ok, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEnvoyReady polls the admin /ready until it answers LIVE, the
// process exits or envoyReadyTimeout passes.
func (p *Pod) waitEnvoyReady(proc *Proc) error {
	deadline := time.Now().Add(envoyReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-proc.Done():
			return fmt.Errorf("%s exited before it was ready (%v): stderr: %s", proc.Name, proc.Wait(), tail(proc.Stderr()))
		default:
		}
		out, err := p.EnvoyAdmin(http.MethodGet, "/ready")
		if err == nil && strings.TrimSpace(out) == "LIVE" {
			return nil
		}
		last = errors.Join(err, fmt.Errorf("ready: %q", strings.TrimSpace(out)))
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %v; stderr: %s", proc.Name, envoyReadyTimeout, last, tail(proc.Stderr()))
}

// EnvoyAdmin sends a request to the pod's Envoy admin interface
// (127.0.0.1:15000 inside the pod) and returns the body; a status other
// than 200 is an error.
func (p *Pod) EnvoyAdmin(method, path string) (string, error) {
	if !p.envoy {
		return "", fmt.Errorf("pod %s has no Envoy sidecar", p.Name)
	}
	c, err := p.dial(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), EnvoyAdminPort))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.NewRequest(method, "http://127.0.0.1"+path, nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		return "", fmt.Errorf("envoy admin %s %s in %s: %w", method, path, p.Name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return "", fmt.Errorf("envoy admin %s %s in %s: %w", method, path, p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("envoy admin %s %s in %s: %w", method, path, p.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("envoy admin %s %s in %s: %s", method, path, p.Name, resp.Status)
	}
	return string(body), nil
}

// dial connects from inside the pod's network namespace (as root, so
// Istio's rules let it through to loopback addresses).
func (p *Pod) dial(dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.WithNetNSPath(p.Netns, func(ns.NetNS) error {
		var err error
		c, err = net.DialTimeout("tcp", dst.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s in pod %s: %w", dst, p.Name, err)
	}
	return c, nil
}

// EnvoyStat returns the value of one counter or gauge of the pod's Envoy
// (admin /stats?filter=^NAME$), or an error if Envoy has no such stat.
func (p *Pod) EnvoyStat(name string) (uint64, error) {
	out, err := p.EnvoyAdmin(http.MethodGet, "/stats?filter=^"+escapeRegexp(name)+"$")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok && k == name {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("envoy in %s has no stat %q", p.Name, name)
}

func escapeRegexp(s string) string {
	r := strings.NewReplacer(".", `\.`, "|", `\|`, "+", `\+`, "(", `\(`, ")", `\)`)
	return r.Replace(s)
}

// TerminationDrainDuration is how long pilot-agent lets Envoy drain after
// the pod's SIGTERM before it kills it (Istio's terminationDrainDuration).
const TerminationDrainDuration = 5 * time.Second

// ShutdownSidecar stops the pod's Envoy the way pilot-agent does when the
// pod is deleted (istio/istio pkg/envoy/agent.go): POST
// /drain_listeners?inboundonly&graceful, wait drain, then SIGKILL
// (cmd.Process.Kill), and wait for the exit. Istio's rules stay, as they
// do in a terminating pod.
func (p *Pod) ShutdownSidecar(ctx context.Context, drain time.Duration) error {
	if _, err := p.EnvoyAdmin(http.MethodPost, "/drain_listeners?inboundonly&graceful"); err != nil {
		return err
	}
	select {
	case <-time.After(drain):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.sidecar.Kill(); err != nil {
		return err
	}
	select {
	case <-p.sidecar.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("envoy in %s did not exit: %w", p.Name, ctx.Err())
	}
}
