// Package cnichain gives simulated pods (test/sim) their network and their
// acceleration from a real CNI chain driven through libcni, as a container
// runtime does: the reference loopback, bridge and host-local plugins at the
// version in go.mod, followed by mesh-accel with the capabilities containerd
// serves (pod annotations and cgroupPath).
package cnichain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// PluginPackages are the plugins a chain runs.
var PluginPackages = []string{
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/mesh-accel/mesh-accel/plugin/cmd/mesh-accel",
}

// BuildPlugins builds PluginPackages (static, stripped, as the Makefile
// builds them) into dir.
func BuildPlugins(dir string) error {
	gotool := "go"
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		gotool = p
	}
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", dir + "/"}, PluginPackages...)
	cmd := exec.Command(gotool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the CNI plugins: %w\n%s", err, out)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// RandHex returns n random bytes in hex, for unique names.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Params are what a conflist varies in.
type Params struct {
	Name, Bridge, Subnet string
	IPAMDir, BPFRoot     string
	StateDir, LogFile    string
	RulesFile            string
}

// Conflist renders the chain: bridge with host-local, then mesh-accel with
// the capabilities containerd serves.
func Conflist(p Params) []byte {
	mesh := map[string]any{
		"type": plugin.TypeName, "bpfRoot": p.BPFRoot, "stateDir": p.StateDir, "logFile": p.LogFile,
		"capabilities": map[string]bool{plugin.CapCgroupPath: true, plugin.CapPodAnnotations: true},
	}
	if p.RulesFile != "" {
		mesh["rulesFile"] = p.RulesFile
	}
	list := map[string]any{
		"cniVersion": "1.1.0", "name": p.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": p.Bridge, "isGateway": false, "ipMasq": false,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": p.IPAMDir,
					"ranges": []any{[]any{map[string]string{"subnet": p.Subnet}}},
				},
			},
			mesh,
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return append(b, '\n')
}

// Chain runs a conflist for the pods of a simulated node.
type Chain struct {
	Params Params
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
	lo     *libcni.NetworkConfigList
}

// New prepares a chain whose plugins are in binDir and whose scratch files
// (IPAM, state, log, cache) go under tmp. bpfRoot is the node state folder
// the plugin uses (bpf.Node.Dir's parent).
func New(binDir, tmp, bpfRoot string) (*Chain, error) {
	subnet, err := sim.FreeIPv4Subnet()
	if err != nil {
		return nil, err
	}
	c := &Chain{Params: Params{
		Name: "mesh-" + RandHex(4), Bridge: "mcb" + RandHex(5), Subnet: subnet.String(),
		IPAMDir: filepath.Join(tmp, "ipam"), BPFRoot: bpfRoot,
		StateDir: filepath.Join(tmp, "state"), LogFile: filepath.Join(tmp, "log", "cni.log"),
	}}
	quiet := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: io.Discard}, PluginDecoder: version.PluginDecoder{}}
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(tmp, "cache"), quiet)
	if c.list, err = libcni.ConfListFromBytes(Conflist(c.Params)); err != nil {
		return nil, err
	}
	lo := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"lo-%s","plugins":[{"type":"loopback"}]}`, RandHex(4))
	if c.lo, err = libcni.ConfListFromBytes([]byte(lo)); err != nil {
		return nil, err
	}
	return c, nil
}

// Pod is a simulated pod as the runtime knows it.
type Pod struct {
	*sim.Pod
	UID, Container string
	Annotations    map[string]string
	Result         *current.Result
	rt             *libcni.RuntimeConf
}

// AddPod creates a pod on n whose network (and acceleration) come from the
// chain's ADD, run before any of the pod's processes start.
func (c *Chain) AddPod(n *sim.Node, opts sim.PodOptions, ann map[string]string) (*Pod, error) {
	p := &Pod{UID: "uid-" + opts.Name + "-" + RandHex(4), Container: "ctr-" + RandHex(16), Annotations: ann}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	opts.Network = func(sp *sim.Pod) (netip.Addr, netip.Addr, error) {
		p.rt = c.runtimeConf(sp, p)
		ip, err := c.addNetwork(p)
		return ip, netip.Addr{}, err
	}
	sp, err := n.AddPod(opts)
	if err != nil {
		return nil, err
	}
	p.Pod = sp
	return p, nil
}

func (c *Chain) runtimeConf(sp *sim.Pod, p *Pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.Container, NetNS: sp.Netns, IfName: "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", sp.Name},
			{"K8S_POD_UID", p.UID}, {"K8S_POD_INFRA_CONTAINER_ID", p.Container},
		},
		CapabilityArgs: map[string]any{plugin.CapPodAnnotations: p.Annotations, plugin.CapCgroupPath: sp.CgroupDir},
	}
}

// addNetwork runs loopback and the chain's ADD and returns the pod's IPv4.
func (c *Chain) addNetwork(p *Pod) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.cni.AddNetworkList(ctx, c.lo, p.rt); err != nil {
		return netip.Addr{}, fmt.Errorf("loopback ADD: %w", err)
	}
	res, err := c.cni.AddNetworkList(ctx, c.list, p.rt)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("chain ADD: %w", err)
	}
	if p.Result, err = current.NewResultFromResult(res); err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range p.Result.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("chain ADD gave no IPv4: %v", p.Result)
}

// DelPod runs the chain's DEL for the pod (idempotent).
func (c *Chain) DelPod(p *Pod) error {
	if p == nil || p.rt == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(c.cni.DelNetworkList(ctx, c.list, p.rt), c.cni.DelNetworkList(ctx, c.lo, p.rt))
}

// Close removes the chain's bridge (after the pods' DELs).
func (c *Chain) Close() error {
	l, err := netlink.LinkByName(c.Params.Bridge)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", c.Params.Bridge, err)
	}
	return nil
}
