package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// FlagListen is the installer's address of /readyz, named and bound to
// its environment variable (MESH_ACCEL_LISTEN) as the installer names it,
// so that health run in the installer's container finds it.
const FlagListen = "listen"

// The installer's defaults: its --listen, and the path of its readiness
// (installer.DefaultListen, installer.PathReady; a test of package
// installer runs health against a running installer).
const (
	DefaultListen = ":9753"
	readyzPath    = "/readyz"
)

// healthTimeout bounds the question to the installer.
const healthTimeout = 5 * time.Second

// Health states.
const (
	HealthReady       = "ready"
	HealthInactive    = "inactive"    // ready, but the node cannot run the data path
	HealthNotReady    = "not-ready"   // the installer says why
	HealthUnreachable = "unreachable" // the installer does not answer
)

// healthReport is the installer's readiness, as its /readyz answers.
type healthReport struct {
	Ready bool   `json:"ready"`
	State string `json:"state"`
	// Reason is why the node is not ready (or inactive), as /readyz says.
	Reason string `json:"reason,omitempty"`
	URL    string `json:"url"`
	// Status is the HTTP status of /readyz; 0 when it did not answer.
	Status int `json:"status_code,omitempty"`
}

func (a *app) healthCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Say whether this node's installer is ready, and why not (its readiness probe)",
		Long: `health asks the installer on this node whether it is ready, as the kubelet's readiness probe
does (/readyz, on --listen: the installer's own setting, MESH_ACCEL_LISTEN in its container), and
prints the answer with its reason: ready; ready but inactive (the kernel cannot run the data path,
so nothing is installed on the node: the reason names what is missing); or not ready (no usable
primary CNI config yet, the node state or the plugin's conflist entry gone, uninstalling).
mesh_accel_ready is 1 exactly when health says ready or inactive.

Exit status: 0 when ready or inactive, 1 when not ready or when the installer does not answer.
In the installer pod the address is the pod's own setting; on the node, give the node's
address (the DaemonSet listens on it only): --listen 10.0.0.5:9753.`,
		Example: `  # in the installer pod of node NODE (MESH_ACCEL_LISTEN is set there)
  POD=$(` + strings.Replace(installerPodCmd, "NODE", "$NODE", 1) + `)
  ` + strings.Replace(execCmd, "POD", "$POD", 1) + ` health
  ` + strings.Replace(execCmd, "POD", "$POD", 1) + ` health -o json

  # on the node, as root or not
  mesh-accelctl health --listen 10.0.0.5:9753`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := readyzURL(listen)
			if err != nil {
				return err
			}
			r := askReadyz(cmd.Context(), u)
			if err := a.emit(r, func(w io.Writer) error { return renderHealth(w, r) }); err != nil {
				return err
			}
			if !r.Ready {
				return &reportedError{fmt.Errorf("installer %s: %s", r.State, r.Reason)}
			}
			return nil
		},
	}
	b := &nodestate.Binder{FS: cmd.Flags(), Getenv: a.deps.Getenv}
	b.String(&listen, FlagListen, DefaultListen, "the installer's address of /readyz, as its --listen: host:port "+
		"(no host, 0.0.0.0 or [::]: this host's loopback)")
	return cmd
}

// readyzURL is the URL of /readyz of an installer that listens on listen
// (its --listen): an address of every interface is asked on loopback.
func readyzURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return "", usageErrorf("--%s %q: want host:port as the installer's --%s (%s): %v", FlagListen, listen,
			FlagListen, nodestate.EnvName(FlagListen), err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + readyzPath, nil
}

// askReadyz gets u, the installer's /readyz, and reads its answer: 200
// "ok" or "ok, inactive: REASON", 503 "not ready: REASON".
func askReadyz(ctx context.Context, u string) *healthReport {
	r := &healthReport{URL: u, State: HealthUnreachable}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	// No proxy: the installer is on this host, and a pod's HTTP_PROXY
	// would send the question elsewhere.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		r.Reason = err.Error()
		return r
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Reason = fmt.Sprintf("the installer does not answer at %s: %v (is it running? kubectl -n mesh-accel "+
			"describe pod POD, kubectl -n mesh-accel logs POD; on the node, --%s names its address)",
			u, unwrapURLError(err), FlagListen)
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		r.Reason = fmt.Sprintf("read the answer of %s: %v", u, err)
		return r
	}
	r.Status = resp.StatusCode
	body := strings.TrimSpace(string(b))
	switch {
	case resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "ok, inactive: "):
		r.Ready, r.State, r.Reason = true, HealthInactive, strings.TrimPrefix(body, "ok, inactive: ")
	case resp.StatusCode == http.StatusOK:
		r.Ready, r.State = true, HealthReady
	case resp.StatusCode == http.StatusServiceUnavailable:
		r.State, r.Reason = HealthNotReady, strings.TrimPrefix(body, "not ready: ")
	default:
		r.State, r.Reason = HealthNotReady, fmt.Sprintf("unexpected answer of %s: %s: %q", u, resp.Status, body)
	}
	return r
}

// unwrapURLError drops the "Get URL:" that net/http puts before a dial
// error: the message names the URL already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func renderHealth(w io.Writer, r *healthReport) error {
	var err error
	switch r.State {
	case HealthReady:
		_, err = fmt.Fprintln(w, "ready")
	case HealthInactive:
		_, err = fmt.Fprintf(w, "ready, INACTIVE: %s\n", r.Reason)
	default:
		_, err = fmt.Fprintf(w, "NOT READY: %s\n", r.Reason)
	}
	return err
}
