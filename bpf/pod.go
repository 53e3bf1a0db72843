package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

// ErrPodNotAttached is returned for a pod that has no state on this node.
var ErrPodNotAttached = errors.New("pod not attached")

// PodConfig is what decides the acceleration of a pod's connections.
type PodConfig struct {
	// Rules in force for the pod: node defaults merged with the pod's
	// own. A nil or empty set accelerates every connection.
	Rules *rules.Set
	// TrustApp declares that every reader in the pod uses recvmsg (never
	// splice), so data may be redirected into the app's sockets too.
	// Without it only sockets of SidecarUID receive redirected data.
	TrustApp bool
	// SidecarUID is the uid trusted to read with recvmsg;
	// nodestate.DefaultSidecarUID (Envoy's in Istio) when zero.
	SidecarUID uint32
	// Disabled stops acceleration of the pod's new connections.
	Disabled bool
	// oneWay lets a connection be accelerated in one direction only, when
	// the reader of the other is not trusted (both pods must allow it).
	// Without it such a connection is left to the stack: the mixed path
	// costs request/response traffic more than it saves. Only builds with
	// -tags meshbench (the benchmark and tests) can set it: WithOneWay.
	oneWay bool
	// Quota is the most entries of the node-wide connection maps the
	// pod's outgoing connections may hold (a pending registration, then
	// two pair directions each; the connecting side pays),
	// DefaultPodQuota when zero. Past it the pod's new connections take
	// the stack (rejected_pod_quota). Whatever the quotas, every pod can
	// always reach the node's guaranteed share; beyond it pods share a
	// pool (rejected_shared_pool once it is used up), see Share.
	Quota uint32
}

// DefaultPodQuota is the most one pod may hold of the connection maps: an
// eighth of their default size. The quotas of a node's pods may add up to
// more than the maps hold: the guaranteed share keeps room for every pod.
const DefaultPodQuota = DefaultMapSize / 8

// Pin links of a pod under pods/<id>/.
const (
	linkSockCreate = "sock_create"
	linkSockops    = "sockops"
)

// ValidPodID reports whether id can name a pod: 1 to 128 letters, digits,
// '.', '_' or '-', starting with a letter or digit (a Kubernetes pod UID
// is). Checked by hand: compiling a regexp at init would cost every CNI
// invocation a few milliseconds.
func ValidPodID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// AttachPod attaches the data path to the pod's cgroup v2 directory with
// cfg. A repeated attach of the same pod updates its configuration. Nothing
// is left behind when it fails.
func (n *Node) AttachPod(id, cgroupDir string, cfg PodConfig) error {
	if !ValidPodID(id) {
		return fmt.Errorf("invalid pod id %q: want letters, digits, '.', '_' or '-'", id)
	}
	pc, err := encodePodConfig(cfg)
	if err != nil {
		return err
	}
	cgID, err := podCgroup(cgroupDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(n.podDir(id)); err == nil {
		old, err := n.podCgroupID(id)
		if err != nil {
			return err
		}
		if old != cgID {
			return fmt.Errorf("pod %s is attached to another cgroup (id %d)", id, old)
		}
		return n.putPodConfig(cgID, pc)
	}
	// The filter goes first: a socket created the moment the programs
	// are attached must find its pod.
	if err := n.putPodConfig(cgID, pc); err != nil {
		return err
	}
	if err := n.attachLinks(id, cgroupDir); err != nil {
		_ = os.RemoveAll(n.podDir(id))
		_ = n.deletePodConfig(cgID)
		return err
	}
	return nil
}

// podCgroup checks that dir is a cgroup v2 directory other than the root
// of the hierarchy and returns its id.
func podCgroup(dir string) (uint64, error) {
	if !cgroupv2.IsCgroup2(dir) {
		return 0, fmt.Errorf("%s is not a cgroup v2 directory", dir)
	}
	if root, err := cgroupv2.Mount(); err == nil && filepath.Clean(dir) == filepath.Clean(root) {
		return 0, fmt.Errorf("refusing to attach to the root cgroup %s", dir)
	}
	return cgroupv2.ID(dir)
}

func (n *Node) attachLinks(id, cgroupDir string) error {
	if err := os.MkdirAll(n.podDir(id), 0o700); err != nil {
		return fmt.Errorf("create pod state dir: %w", err)
	}
	for _, a := range []struct {
		name string
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{linkSockCreate, n.sockCreate, ebpf.AttachCGroupInetSockCreate},
		{linkSockops, n.sockops, ebpf.AttachCGroupSockOps},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: a.typ, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.name, cgroupDir, err)
		}
		err = l.Pin(filepath.Join(n.podDir(id), a.name))
		l.Close()
		if err != nil {
			return fmt.Errorf("pin %s link of pod %s: %w", a.name, id, err)
		}
	}
	return nil
}

// UpdatePod swaps the pod's configuration in one map update: a connection
// is judged either by the old configuration or by the new one.
func (n *Node) UpdatePod(id string, cfg PodConfig) error {
	pc, err := encodePodConfig(cfg)
	if err != nil {
		return err
	}
	cgID, err := n.podCgroupID(id)
	if err != nil {
		return err
	}
	return n.putPodConfig(cgID, pc)
}

func (n *Node) putPodConfig(cgID uint64, pc *meshPodConfig) error {
	// The usage count first, kept when the pod is configured again (or
	// attached again while entries of its connections remain).
	err := n.maps.PodUsage.Update(cgID, meshUsageVal{Word: newUsageWord()}, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("create usage count of pod (cgroup %d): %w", cgID, err)
	}
	if err := n.maps.SockParamMap.Update(cgID, pc, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write pod rules (cgroup %d): %w", cgID, err)
	}
	return nil
}

// deletePodConfig removes the pod's filter: no new connection of the pod
// is accelerated. Its usage count stays while entries of its connections
// remain (they are charged to it until they go); the sweep removes it
// then.
func (n *Node) deletePodConfig(cgID uint64) error {
	if err := n.maps.SockParamMap.Delete(cgID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete pod (cgroup %d) from %v: %w", cgID, n.maps.SockParamMap, err)
	}
	return nil
}

// podCgroupID reads the cgroup id of an attached pod from its pinned link.
func (n *Node) podCgroupID(id string) (uint64, error) {
	cg, err := linkCgroupID(filepath.Join(n.podDir(id), linkSockops))
	if errors.Is(err, ErrPodNotAttached) {
		return 0, fmt.Errorf("pod %s: %w", id, ErrPodNotAttached)
	}
	return cg, err
}

// DetachPod removes everything of the pod: its links (so its programs
// leave the cgroup) and its rules, here and in the state of any other
// layout (an upgrade not finished yet). It succeeds when the pod is already
// gone. Pairs already recorded stay accelerated until they close.
func (n *Node) DetachPod(id string) error {
	if !ValidPodID(id) {
		return fmt.Errorf("invalid pod id %q", id)
	}
	// What a move staged first: those are second pins of links the older
	// state's folder holds.
	errs := []error{os.RemoveAll(n.stagingPodDir(id))}
	for _, dir := range n.siblings() {
		errs = append(errs, detachIn(dir, id))
	}
	cgID, err := n.podCgroupID(id)
	if errors.Is(err, ErrPodNotAttached) {
		return errors.Join(append(errs, os.RemoveAll(n.podDir(id)))...)
	}
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, name := range []string{linkSockops, linkSockCreate} {
		p := filepath.Join(n.podDir(id), name)
		l, err := link.LoadPinnedLink(p, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load pinned link %s: %w", p, err))
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
		}
		l.Close()
	}
	if err := n.deletePodConfig(cgID); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(n.podDir(id)); err != nil {
		errs = append(errs, fmt.Errorf("remove pod state: %w", err))
	}
	return errors.Join(errs...)
}

// ErrPodBroken is wrapped by PodInfo.Broken.
var ErrPodBroken = errors.New("pod state incomplete")

// PodInfo describes a pod with state in this node state.
type PodInfo struct {
	ID       string
	CgroupID uint64 // 0 when Broken and no link names the cgroup
	Config   PodConfig
	// Usage is what the pod's connections hold of the connection maps.
	Usage PodUsage
	// Broken, when set, wraps ErrPodBroken and says what is missing: a
	// link of the pod (its cgroup may lack a program), its cgroup (gone),
	// or its configuration. The fields above hold what could be read. The
	// rest of the node is unaffected; the pod's DEL removes what is left,
	// and a new ADD (after the DEL) attaches it afresh.
	Broken error
}

// Pods lists the pods with state here and their configuration. A pod whose
// state is incomplete is listed with Broken set; only a failure to list
// the pods at all is an error.
func (n *Node) Pods() ([]PodInfo, error) {
	ids, err := n.podIDs()
	if err != nil {
		return nil, err
	}
	out := make([]PodInfo, 0, len(ids))
	for _, id := range ids {
		out = append(out, n.podInfo(id))
	}
	return out, nil
}

// podInfo reads one pod's state and says what is missing from it.
func (n *Node) podInfo(id string) PodInfo {
	info := PodInfo{ID: id}
	var missing []string
	cg := map[string]uint64{}
	for _, name := range []string{linkSockops, linkSockCreate} {
		cgID, err := linkCgroupID(filepath.Join(n.podDir(id), name))
		switch {
		case errors.Is(err, ErrPodNotAttached):
			missing = append(missing, "its "+name+" link")
		case err != nil:
			missing = append(missing, fmt.Sprintf("its %s link (%v)", name, err))
		default:
			cg[name] = cgID
		}
	}
	ops, hasOps := cg[linkSockops]
	create, hasCreate := cg[linkSockCreate]
	switch {
	case hasOps && hasCreate && ops != create:
		missing = append(missing, fmt.Sprintf("a sock_create link on its cgroup (on cgroup %d, sockops on %d)", create, ops))
		info.CgroupID = ops
	case hasOps:
		info.CgroupID = ops
	case hasCreate:
		info.CgroupID = create
	}
	if info.CgroupID == 0 && (hasOps || hasCreate) {
		missing = append(missing, "its cgroup (removed)")
	}
	if info.CgroupID != 0 {
		var pc meshPodConfig
		if err := n.maps.SockParamMap.Lookup(info.CgroupID, &pc); err != nil {
			missing = append(missing, fmt.Sprintf("its configuration (%v)", err))
		} else {
			info.Config = decodePodConfig(&pc)
		}
		info.Usage = PodUsage{Entries: n.podUsage(info.CgroupID), Quota: info.Config.Quota}
	}
	if len(missing) > 0 {
		info.Broken = fmt.Errorf("%w: pod %s lacks %s", ErrPodBroken, id, strings.Join(missing, ", "))
	}
	return info
}

func (n *Node) podIDs() ([]string, error) {
	ents, err := os.ReadDir(n.podsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids, nil
}

// encodePodConfig turns cfg into the BPF map value.
func encodePodConfig(cfg PodConfig) (*meshPodConfig, error) {
	pc := &meshPodConfig{TrustedUid: cfg.SidecarUID, Quota: cfg.Quota}
	if pc.TrustedUid == 0 {
		pc.TrustedUid = nodestate.DefaultSidecarUID
	}
	if pc.Quota == 0 {
		pc.Quota = DefaultPodQuota
	}
	if cfg.TrustApp {
		pc.Flags |= podTrustApp
	}
	if cfg.Disabled {
		pc.Flags |= podDisabled
	}
	if cfg.oneWay {
		pc.Flags |= podOneWay
	}
	if cfg.Rules == nil {
		return pc, nil
	}
	if len(cfg.Rules.Rules) > len(pc.Rules) {
		return nil, fmt.Errorf("%d rules: the BPF rule table holds %d", len(cfg.Rules.Rules), len(pc.Rules))
	}
	for i, r := range cfg.Rules.Rules {
		pc.Rules[i] = encodeRule(r)
	}
	pc.Nrules = uint32(len(cfg.Rules.Rules))
	return pc, nil
}

// Flags of struct pod_config and struct rule, generated from
// c/mesh_accel.h's enums.
const (
	podDisabled = uint32(meshPodFlagPOD_DISABLED)
	podTrustApp = uint32(meshPodFlagPOD_TRUST_APP)
	podOneWay   = uint32(meshPodFlagPOD_ONE_WAY)

	ruleIP     = uint32(meshRuleFlagRULE_IP)
	rulePort   = uint32(meshRuleFlagRULE_PORT)
	ruleUID    = uint32(meshRuleFlagRULE_UID)
	ruleGID    = uint32(meshRuleFlagRULE_GID)
	ruleReturn = uint32(meshRuleFlagRULE_RETURN)
	ruleIP6    = uint32(meshRuleFlagRULE_IP6)
)

func encodeRule(r rules.Rule) meshRule {
	var m meshRule
	if r.HasIP {
		p := r.Prefix.Masked()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		} else {
			m.Flags |= ruleIP6
		}
		var mask [16]byte
		for i := 0; i < bits; i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		m.Ip, m.Mask = addrWords(p.Addr()), byteWords(mask)
		m.Flags |= ruleIP
	}
	if r.HasPort {
		m.PortLo, m.PortHi = r.PortLo, r.PortHi
		m.Flags |= rulePort
	}
	if r.HasUID {
		m.Uid = r.UID
		m.Flags |= ruleUID
	}
	if r.HasGID {
		m.Gid = r.GID
		m.Flags |= ruleGID
	}
	if r.Target == rules.Return {
		m.Flags |= ruleReturn
	}
	return m
}
