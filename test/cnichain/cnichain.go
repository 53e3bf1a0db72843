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
	"net"
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
	gotool := GoTool()
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", dir + "/"}, PluginPackages...)
	cmd := exec.Command(gotool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the CNI plugins: %w\n%s", err, out)
	}
	return nil
}

// GoTool is the go command that built this program, else the one in PATH.
func GoTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
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
	LogLevel, APITimeout string
	Kubeconfig           string // set: no annotations capability (API fallback)
	FailOnError          bool
}

// Conflist renders the chain: bridge with host-local, then mesh-accel with
// the capabilities containerd serves.
func Conflist(p Params) []byte {
	caps := map[string]bool{plugin.CapCgroupPath: true}
	mesh := map[string]any{
		"type": plugin.TypeName, "bpfRoot": p.BPFRoot, "stateDir": p.StateDir, "logFile": p.LogFile,
		"failOnError": p.FailOnError, "capabilities": caps,
	}
	for k, v := range map[string]string{"rulesFile": p.RulesFile, "logLevel": p.LogLevel,
		"apiTimeout": p.APITimeout, "kubeconfig": p.Kubeconfig} {
		if v != "" {
			mesh[k] = v
		}
	}
	if p.Kubeconfig == "" {
		caps[plugin.CapPodAnnotations] = true
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
	CNI    *libcni.CNIConfig         // the runtime's view: plugins and cache
	List   *libcni.NetworkConfigList // the conflist
	lo     *libcni.NetworkConfigList
}

// DefaultParams are a chain's parameters with unique names, a free subnet
// and its scratch files (IPAM, state, log) under tmp. bpfRoot is the node
// state folder the plugin uses (bpf.Node.Dir's parent).
func DefaultParams(tmp, bpfRoot string) (Params, error) {
	subnet, err := sim.FreeIPv4Subnet()
	if err != nil {
		return Params{}, err
	}
	return Params{
		Name: "mesh-" + RandHex(4), Bridge: "mcb" + RandHex(5), Subnet: subnet.String(),
		IPAMDir: filepath.Join(tmp, "ipam"), BPFRoot: bpfRoot,
		StateDir: filepath.Join(tmp, "state"), LogFile: filepath.Join(tmp, "log", "cni.log"),
	}, nil
}

// New prepares a chain of params whose plugins are in binDir; libcni's
// cache goes under tmp. It creates the chain's bridge; Close removes it.
func New(binDir, tmp string, params Params) (*Chain, error) {
	c := &Chain{Params: params}
	if err := createBridge(params.Bridge); err != nil {
		return nil, err
	}
	quiet := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: io.Discard}, PluginDecoder: version.PluginDecoder{}}
	c.CNI = libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(tmp, "cache"), quiet)
	var err error
	if c.List, err = libcni.ConfListFromBytes(Conflist(c.Params)); err != nil {
		return nil, err
	}
	lo := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"lo-%s","plugins":[{"type":"loopback"}]}`, RandHex(4))
	if c.lo, err = libcni.ConfListFromBytes([]byte(lo)); err != nil {
		return nil, err
	}
	return c, nil
}

// createBridge creates the chain's bridge before the bridge plugin, which
// then uses it, with a fixed MAC address: a bridge without one takes the
// lowest of its ports', which changes as pods come and go, and the bridge
// plugin's CHECK then fails on the MAC of its earlier result.
func createBridge(name string) error {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", name, err)
	}
	return nil
}

// Pod is a simulated pod as the runtime knows it.
type Pod struct {
	*sim.Pod
	UID, Container string
	Annotations    map[string]string
	Result         *current.Result
	RT             *libcni.RuntimeConf // what the runtime passes for it
}

// AddPod creates a pod on n whose network (and acceleration) come from the
// chain's ADD, run before any of the pod's processes start. uid may be
// empty (one is made up). onNetwork, when set, runs right before the ADD
// (e.g. to arrange the pod's DEL).
func (c *Chain) AddPod(n *sim.Node, opts sim.PodOptions, uid string, ann map[string]string, onNetwork func(*Pod)) (*Pod, error) {
	if uid == "" {
		uid = "uid-" + opts.Name + "-" + RandHex(4)
	}
	p := &Pod{UID: uid, Container: "ctr-" + RandHex(16), Annotations: ann}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	opts.Network = func(sp *sim.Pod) (netip.Addr, netip.Addr, error) {
		p.RT = c.runtimeConf(sp, p)
		if onNetwork != nil {
			onNetwork(p)
		}
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
	if _, err := c.CNI.AddNetworkList(ctx, c.lo, p.RT); err != nil {
		return netip.Addr{}, fmt.Errorf("loopback ADD: %w", err)
	}
	res, err := c.CNI.AddNetworkList(ctx, c.List, p.RT)
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

// DelPod runs the DEL of the chain and of loopback for the pod
// (idempotent).
func (c *Chain) DelPod(p *Pod) error {
	if p == nil || p.RT == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(c.CNI.DelNetworkList(ctx, c.List, p.RT), c.CNI.DelNetworkList(ctx, c.lo, p.RT))
}

// Del runs the chain's DEL for the pod.
func (c *Chain) Del(p *Pod) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.CNI.DelNetworkList(ctx, c.List, p.RT)
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
