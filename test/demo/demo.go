//go:build meshbench

// Package demo runs mesh-accel's one-command demo: a simulated node with
// meshed pods created through a real CNI chain ending in mesh-accel, each
// with an Envoy sidecar configured as istiod configures one (mutual TLS
// between the sidecars) and Istio's iptables rules; Istio's measurement
// (fortio at 1000 requests/s: the latency the sidecars add and the CPU per
// request) with acceleration off and with each opt-in, alternating rounds,
// a verdict only where the rounds agree, and what is accelerated.
// Everything it creates is removed at the end.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Config tunes the demo.
type Config struct {
	Duration  time.Duration // of each request/response measurement
	BulkBytes int64         // of each bulk transfer (default 256 MiB)
	Out       io.Writer
}

// world is what the demo builds.
type world struct {
	sim   *sim.Node
	node  *bpf.Node
	chain *cnichain.Chain
	pods  []*cnichain.Pod
	tmp   string
}

// Run checks the machine, builds the node, measures and cleans up.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := Preflight(); err != nil {
		return err
	}
	out := cfg.Out
	w := &world{}
	defer func() { err = errors.Join(err, w.close()) }()
	fmt.Fprintln(out, "building the CNI plugins and a simulated node...")
	if err := w.build(); err != nil {
		return err
	}
	ann := map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationProfile: plugin.ProfileSidecarHops}
	trusted := map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationTrustApp: "true"}
	pp, err := w.addPod("productpage", true, ann)
	if err != nil {
		return err
	}
	reviews, err := w.addPod("reviews", false, ann)
	if err != nil {
		return err
	}
	ppT, err := w.addPod("productpage-t", true, trusted)
	if err != nil {
		return err
	}
	reviewsT, err := w.addPod("reviews-t", false, trusted)
	if err != nil {
		return err
	}
	ppS, err := w.addPod("productpage-s", true, nil)
	if err != nil {
		return err
	}
	reviewsS, err := w.addPod("reviews-s", false, nil)
	if err != nil {
		return err
	}
	ppD, err := w.addPlainPod("productpage-d", true)
	if err != nil {
		return err
	}
	reviewsD, err := w.addPlainPod("reviews-d", false)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "pods (created through bridge + host-local + mesh-accel): productpage %s -> reviews %s, both with Istio's iptables rules\n"+
		"and an Envoy %s sidecar (uid %d) configured as istiod configures one: mutual TLS between the sidecars;\n"+
		"alike: a pair annotated accel.mesh/app-reads-with-recvmsg, a pair not annotated (the sidecars without acceleration),\n"+
		"and a pair without sidecars (the baseline of the latency the sidecars add); each column has its own pods, so that\n"+
		"no connection an Envoy pools crosses from one column to another\n\n",
		pp.IPv4, reviews.IPv4, envoyVersion(), sim.SidecarUID)
	return w.measure(ctx, cfg, [][2]*cnichain.Pod{{ppD, reviewsD}, {ppS, reviewsS}}, [][2]*cnichain.Pod{{pp, reviews}, {ppT, reviewsT}})
}

func (w *world) build() error {
	tmp, err := os.MkdirTemp("", "mesh-accel-demo-")
	if err != nil {
		return err
	}
	w.tmp = tmp
	bin := filepath.Join(tmp, "bin")
	if err := cnichain.BuildPlugins(bin); err != nil {
		return err
	}
	if w.sim, err = sim.NewNode(sim.NodeOptions{Prefix: "md"}); err != nil {
		return err
	}
	if w.node, err = bpf.OpenNode(bpf.Options{Root: "mesh-accel-demo-" + cnichain.RandHex(4)}); err != nil {
		return err
	}
	params, err := cnichain.DefaultParams(tmp, filepath.Dir(w.node.Dir()))
	if err != nil {
		return err
	}
	w.chain, err = cnichain.New(bin, tmp, params)
	return err
}

func (w *world) addPod(name string, client bool, ann map[string]string) (*cnichain.Pod, error) {
	p, err := w.chain.AddPod(w.sim, sim.PodOptions{Name: name, Sidecar: true, NoApp: client}, "", ann, nil)
	if p != nil {
		w.pods = append(w.pods, p)
	}
	return p, err
}

// addPlainPod adds a pod without sidecar nor annotation.
func (w *world) addPlainPod(name string, client bool) (*cnichain.Pod, error) {
	p, err := w.chain.AddPod(w.sim, sim.PodOptions{Name: name, NoApp: client}, "", nil, nil)
	if p != nil {
		w.pods = append(w.pods, p)
	}
	return p, err
}

// close deletes the pods through the chain, then the node, then the state.
func (w *world) close() error {
	var errs []error
	if w.chain != nil {
		for _, p := range w.pods {
			errs = append(errs, w.chain.DelPod(p))
		}
	}
	if w.sim != nil {
		errs = append(errs, w.sim.Close())
	}
	if w.chain != nil {
		errs = append(errs, w.chain.Close())
	}
	if w.node != nil {
		errs = append(errs, w.node.Remove())
	}
	if w.tmp != "" {
		errs = append(errs, os.RemoveAll(w.tmp))
	}
	return errors.Join(errs...)
}

// sortDirections orders directions for display: connecting side first.
func sortDirections(ds []bpf.Direction) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].To.Port() != ds[j].To.Port() {
			return ds[i].To.Port() < ds[j].To.Port()
		}
		return ds[i].Connecting && !ds[j].Connecting
	})
}

// envoyVersion is the version of the sidecars' Envoy ("1.40.0" of
// "PATH  version: HASH/1.40.0/Clean/RELEASE/BoringSSL"), or "" when unknown.
func envoyVersion() string {
	bin, err := sim.EnvoyPath()
	if err != nil {
		return ""
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	_, v, ok := strings.Cut(string(out), "version: ")
	if parts := strings.Split(strings.TrimSpace(v), "/"); ok && len(parts) >= 2 {
		return parts[1]
	}
	return ""
}
