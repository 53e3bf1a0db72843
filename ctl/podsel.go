package ctl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// podSel is how a command's flags and arguments name a pod, as kubectl
// does: NAME with -n NAMESPACE, or --pod NAMESPACE/NAME (or a pod UID).
type podSel struct {
	pod, namespace string
}

// podFlags adds --pod and -n/--namespace to cmd, and the completion of
// them and of the pod NAME argument; what says what the pod selects.
func (a *app) podFlags(cmd *cobra.Command, s *podSel, what string) {
	cmd.Flags().StringVar(&s.pod, FlagPod, "", what+": NAMESPACE/NAME or pod UID (or NAME with -n)")
	cmd.Flags().StringVarP(&s.namespace, FlagNamespace, "n", "", "the namespace of the pod NAME given as argument")
	a.podCompletions(cmd)
}

// ref returns the pod reference the flags and the optional argument give
// ("" for none): namespace/name or a pod UID.
func (s podSel) ref(args []string) (string, error) {
	name := s.pod
	if len(args) > 0 {
		if s.pod != "" {
			return "", usageErrorf("pod given twice, as %q and --%s %q: give one", args[0], FlagPod, s.pod)
		}
		name = args[0]
	}
	switch {
	case s.namespace == "":
		return name, nil
	case name == "":
		return "", usageErrorf("-n %s needs a pod NAME as argument: -n %s NAME", s.namespace, s.namespace)
	case strings.Contains(name, "/"):
		return "", usageErrorf("-n %s and pod %q: give NAME with -n, or NAMESPACE/NAME without it", s.namespace, name)
	}
	return s.namespace + "/" + name, nil
}

// podArgs accepts at most one argument, the pod NAME.
var podArgs = usageArgs(cobra.MaximumNArgs(1))

// uidPattern matches the form of Kubernetes pod UIDs.
var uidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// attachedPod finds the attached pod that ref (namespace/name or pod UID)
// names. A name this node has no record of is looked up in the API
// server, when there is access to it, to say where the pod runs.
func (a *app) attachedPod(pods []bpf.PodInfo, ref string) (bpf.PodInfo, error) {
	ids := a.directory().Resolve(ref)
	var found []bpf.PodInfo
	for _, p := range pods {
		if slices.Contains(ids, p.ID) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		names := make([]string, len(found))
		for i, p := range found {
			names[i] = p.ID
		}
		return bpf.PodInfo{}, fmt.Errorf("pod %s names several attached pods (%s): give the pod UID",
			ref, strings.Join(names, ", "))
	case len(ids) == 0:
		return bpf.PodInfo{}, a.notOnNode(ref)
	case !strings.Contains(ref, "/") && !uidPattern.MatchString(ref):
		return bpf.PodInfo{}, fmt.Errorf("pod %q: no attached pod has this UID, and a pod name needs its namespace: "+
			"-n NAMESPACE %s, or --%s NAMESPACE/%s", ref, ref, FlagPod, ref)
	}
	return bpf.PodInfo{}, fmt.Errorf("pod %s: %w on this node (%s)", ref, bpf.ErrPodNotAttached, a.nodeName())
}

// podCgroup is the cgroup id of a pod selected to act on or to filter by;
// a broken pod whose cgroup is unknown cannot be.
func podCgroup(p bpf.PodInfo) (uint64, error) {
	if p.CgroupID == 0 {
		return 0, fmt.Errorf("pod %s: its cgroup is unknown: %w", p.ID, p.Broken)
	}
	return p.CgroupID, nil
}

// ErrNotOnNode is returned for a pod that this node has no record of.
var ErrNotOnNode = errors.New("pod not on this node")

// notOnNodeError is an ErrNotOnNode that says where the pod is, or why it is
// not here.
type notOnNodeError struct{ msg string }

func (e *notOnNodeError) Error() string        { return e.msg }
func (e *notOnNodeError) Is(target error) bool { return target == ErrNotOnNode }

func notOnNodef(format string, args ...any) error {
	return &notOnNodeError{fmt.Sprintf(format, args...)}
}

// apiTimeout bounds the lookup of a pod in the API server.
const apiTimeout = 5 * time.Second

// notOnNode explains why this node has no record of the pod ns/name: it
// runs on another node, or it is not accelerated here.
func (a *app) notOnNode(ref string) error {
	ns, name, _ := strings.Cut(ref, "/")
	here := a.nodeName()
	unknown := fmt.Sprintf("no record of pod %s on this node (%s); is it scheduled here and annotated %s: \"true\"? "+
		"(records are read from %s, --%s)", ref, here, annotations.Enabled, nodestate.PodsDir(a.cfg.StateDir), FlagStateDir)
	loc, err := a.deps.Locator()
	if err != nil {
		return notOnNodef("%s", unknown) // no API access: not in a pod
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	node, err := loc.PodNode(ctx, ns, name)
	switch {
	case errors.Is(err, ErrNoSuchPod):
		return notOnNodef("pod %s does not exist (the API server has no such pod)", ref)
	case err != nil:
		return notOnNodef("%s (looking it up in the API server failed: %v)", unknown, err)
	case node == "":
		return notOnNodef("pod %s is not scheduled on a node yet", ref)
	case !sameNode(node, here):
		return notOnNodef("pod %s runs on node %s, not on this node (%s): run mesh-accelctl there", ref, node, here)
	}
	return notOnNodef("pod %s runs on this node (%s), but the CNI plugin has no record of it: is it annotated "+
		"%s: \"true\"? mesh-accelctl status shows the setup failures", ref, here, annotations.Enabled)
}

// sameNode reports whether the Kubernetes node name node is this node's
// name here, which may be a host name: Kubernetes lowercases host names,
// and some platforms name nodes by the host's full name while its host
// name is the short one.
func sameNode(node, here string) bool {
	node, here = strings.ToLower(node), strings.ToLower(here)
	return node == here || strings.HasPrefix(node, here+".") || strings.HasPrefix(here, node+".")
}

// nodeName names this node: --node-name, else the host name.
func (a *app) nodeName() string {
	if a.cfg.NodeName != "" {
		return a.cfg.NodeName
	}
	n, err := a.deps.NodeName()
	if err != nil || n == "" {
		return "unknown name"
	}
	return n
}
