package plugin

import (
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/starttime"
	"github.com/mesh-accel/mesh-accel/rules"
)

// openNode opens the node state; a failure is classified as missing kernel
// features when the kernel lacks some.
func (d *deps) openNode() (node, error) {
	n, err := d.engine.open()
	if err == nil {
		return n, nil
	}
	if kerr := d.engine.checkKernel(); kerr != nil {
		if errors.Is(kerr, cgroupv2.ErrNoCgroup2) {
			return nil, fail(ReasonCgroupV1, kerr)
		}
		return nil, fail(ReasonKernel, kerr)
	}
	return nil, fail(ReasonNodeState, fmt.Errorf("open node state at %s: %w", d.engine.dir(), err))
}

// attach records the pod, then attaches it. The record comes first, so
// that GC knows every attached pod; a new record goes again when the
// attach fails.
func (d *deps) attach(args *skel.CmdArgs, conf *Config, spec *podSpec, dir string) error {
	st := store{conf.StateDir}
	uid := spec.pod.UID
	unlock, err := st.lockPod(uid)
	if err != nil {
		return fail(ReasonState, err)
	}
	defer unlock()
	old, err := st.get(uid)
	if err != nil {
		d.log.Warn("replacing a corrupt record", "err", err)
	}
	rec := record{
		Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName, PodUID: uid,
		Namespace: spec.pod.Namespace, Name: spec.pod.Name, CgroupDir: dir, Added: time.Now().UTC(),
	}
	if err := st.put(rec); err != nil {
		return fail(ReasonState, err)
	}
	err = d.attachPod(uid, dir, spec.cfg)
	if err != nil && old == nil {
		if rerr := st.remove(uid); rerr != nil {
			d.log.Warn("record of a failed attach left behind", "err", rerr)
		}
	}
	return err
}

// attachPod attaches (or updates) the pod in the engine. State left by an
// earlier attach that does not fit (another cgroup of the same pod uid) is
// replaced.
func (d *deps) attachPod(uid, dir string, cfg bpf.PodConfig) error {
	n, err := d.openNode()
	if err != nil {
		return err
	}
	defer n.Close()
	existed := d.engine.podExists(uid)
	err = n.AttachPod(uid, dir, cfg)
	if err != nil && existed {
		d.log.Warn("replacing the pod's earlier state", "err", err)
		if err = n.DetachPod(uid); err == nil {
			err = n.AttachPod(uid, dir, cfg)
		}
	}
	if err != nil {
		return fail(ReasonAttach, fmt.Errorf("attach pod %s to %s: %w", uid, dir, err))
	}
	// The time of the ADD since the process started, last: the installer
	// reads it from this line (nodestate.ParseSetupDuration).
	d.log.Info(nodestate.SetupLogMessage, "cgroup", dir, "rules", count(cfg.Rules), "trustApp", cfg.TrustApp,
		"update", existed, nodestate.SetupLogKey, time.Since(starttime.At))
	return nil
}

// doDel removes everything of the pod. It never needs the API server and
// succeeds when the pod's netns, cgroup or state are already gone. A
// failure is logged and counted, and fails the DEL only with failOnError.
func doDel(args *skel.CmdArgs, conf *Config, d *deps) error {
	pa := parsePodArgs(args.Args)
	if err := d.del(args, conf, pa.UID); err != nil {
		return d.failure(conf, pa, err)
	}
	return nil
}

func (d *deps) del(args *skel.CmdArgs, conf *Config, uid string) error {
	if !bpf.ValidPodID(uid) {
		d.log.Debug("no pod uid in CNI_ARGS: nothing to do")
		return nil
	}
	st := store{conf.StateDir}
	unlock, err := st.lockPod(uid)
	if err != nil {
		return fail(ReasonState, err)
	}
	defer unlock()
	rec, err := st.get(uid)
	if err != nil {
		d.log.Warn("ignoring a corrupt record", "err", err)
	}
	if rec != nil && rec.ContainerID != args.ContainerID {
		// A newer sandbox of the same pod attached it since.
		d.log.Info("pod state belongs to another container: left alone", "owner", rec.ContainerID)
		return nil
	}
	if d.engine.podExists(uid) {
		n, err := d.openNode()
		if err != nil {
			return err
		}
		defer n.Close()
		if err := n.DetachPod(uid); err != nil {
			return fail(ReasonDetach, fmt.Errorf("detach pod %s: %w", uid, err))
		}
		d.log.Info("pod detached")
	}
	if err := st.remove(uid); err != nil {
		return fail(ReasonState, err)
	}
	return nil
}

// doCheck fails when the pod should be accelerated but has no state, or
// state that differs from what ADD would set up now.
func doCheck(args *skel.CmdArgs, conf *Config, d *deps) error {
	spec, err := d.wanted(conf, parsePodArgs(args.Args))
	if err != nil {
		return types.NewError(CodeNotAccelerated, "mesh-accel: cannot tell what the pod needs: "+err.Error(), "")
	}
	if spec == nil {
		return nil
	}
	if err := d.check(conf, spec); err != nil {
		return types.NewError(CodeNotAccelerated, fmt.Sprintf("mesh-accel: pod %s (%s): %v", spec.pod, spec.pod.UID, err), "")
	}
	return nil
}

func (d *deps) check(conf *Config, spec *podSpec) error {
	if !d.engine.nodeExists() {
		return fmt.Errorf("acceleration expected, but the node state at %s is missing", d.engine.dir())
	}
	n, err := d.engine.open()
	if err != nil {
		return fmt.Errorf("open node state: %w", err)
	}
	defer n.Close()
	pods, err := n.Pods()
	if err != nil {
		return err
	}
	var info *bpf.PodInfo
	for i := range pods {
		if pods[i].ID == spec.pod.UID {
			info = &pods[i]
		}
	}
	if info == nil {
		return errors.New("acceleration expected (" + AnnotationEnabled + `: "true"), but the pod has no state`)
	}
	if info.Broken != nil {
		return fmt.Errorf("acceleration expected, but the pod's state is broken (a DEL and ADD attach it afresh): %w", info.Broken)
	}
	cg, err := d.cgroups()
	if err != nil {
		return err
	}
	dir, err := cg.resolve(conf.RuntimeConfig.CgroupPath, spec.pod.UID)
	if err != nil {
		return err
	}
	if id, err := cgroupv2.ID(dir); err != nil || id != info.CgroupID {
		return fmt.Errorf("attached to cgroup id %d, but its cgroup %s has id %d (%v)", info.CgroupID, dir, id, err)
	}
	return sameConfig(info.Config, spec.cfg)
}

// sameConfig compares the attached configuration with the expected one:
// every option podconfig.Options marks Checked (TestCheckComparesOptions
// walks them).
func sameConfig(got, want bpf.PodConfig) error {
	switch {
	case got.Disabled:
		return errors.New("acceleration of the pod is disabled")
	case got.TrustApp != want.TrustApp:
		return fmt.Errorf("attached with trustApp %v, want %v", got.TrustApp, want.TrustApp)
	case got.SidecarUID != want.SidecarUID:
		return fmt.Errorf("attached with sidecar uid %d, want %d", got.SidecarUID, want.SidecarUID)
	case got.Quota != want.Quota:
		return fmt.Errorf("attached with pod quota %d, want %d", got.Quota, want.Quota)
	case !got.Rules.Equal(want.Rules):
		return fmt.Errorf("attached with %d rules that differ from the %d expected", count(got.Rules), count(want.Rules))
	}
	return nil
}

func count(s *rules.Set) int {
	if s == nil {
		return 0
	}
	return len(s.Rules)
}

// doStatus fails (code 50, plugin not available) when the kernel lacks a
// feature, the node state is missing or the node's rules file is bad.
func doStatus(_ *skel.CmdArgs, conf *Config, d *deps) error {
	var problems []error
	if err := d.engine.checkKernel(); err != nil {
		problems = append(problems, err)
	}
	if !d.engine.nodeExists() {
		problems = append(problems, fmt.Errorf("node state at %s is missing (the mesh-accel installer creates it)", d.engine.dir()))
	}
	if _, err := nodeRules(conf); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return types.NewError(types.ErrPluginNotAvailable, "mesh-accel is not ready: "+errors.Join(problems...).Error(), "")
	}
	return nil
}

// attachment is a container's interface, as GC's valid attachments list it.
type attachment struct{ containerID, ifName string }

// doGC removes the state of this network's pods whose attachment is not in
// cni.dev/valid-attachments. It holds the state folder's lock exclusively,
// so no ADD or DEL runs meanwhile; it goes on past errors and reports them.
func doGC(_ *skel.CmdArgs, conf *Config, d *deps) error {
	valid := map[attachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[attachment{a.ContainerID, a.IfName}] = true
	}
	st := store{conf.StateDir}
	unlock, err := st.lock(true)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "mesh-accel GC: "+err.Error(), "")
	}
	defer unlock()
	recs, err := st.list()
	if err != nil {
		return types.NewError(types.ErrIOFailure, "mesh-accel GC: "+err.Error(), "")
	}
	var n node
	var errs []error
	for _, r := range recs {
		if r.Network != conf.Name || valid[attachment{r.ContainerID, r.IfName}] {
			if r.Network == "" {
				d.log.Warn("removing a corrupt record; DEL still detaches its pod", "uid", r.PodUID)
				errs = append(errs, st.remove(r.PodUID))
			}
			continue
		}
		if n == nil && d.engine.podExists(r.PodUID) {
			if n, err = d.openNode(); err != nil {
				return types.NewError(types.ErrInternal, "mesh-accel GC: "+err.Error(), "")
			}
			defer n.Close()
		}
		if n != nil {
			if err := n.DetachPod(r.PodUID); err != nil {
				errs = append(errs, fmt.Errorf("detach pod %s: %w", r.PodUID, err))
				continue
			}
		}
		errs = append(errs, st.remove(r.PodUID))
		d.log.Info("removed the state of a stale attachment", "pod", r.Namespace+"/"+r.Name, "uid", r.PodUID, "owner", r.ContainerID)
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, "mesh-accel GC: "+err.Error(), "")
	}
	return nil
}
