package plugin

import (
	"errors"
	"fmt"

	"github.com/mesh-accel/mesh-accel/internal/eventspool"
)

// Reason classifies why a pod's acceleration could not be set up (or torn
// down); failures are counted by reason in the state folder.
type Reason = string

// The reasons.
const (
	ReasonKernel     Reason = "kernel"           // no BPF or a kernel feature missing
	ReasonCgroupV1   Reason = "cgroup-v1"        // no cgroup v2 hierarchy mounted
	ReasonCgroup     Reason = "cgroup-not-found" // the pod's cgroup was not found
	ReasonAPI        Reason = "api"              // the API server did not give the pod
	ReasonAnnotation Reason = "annotation"       // a malformed annotation or too many rules
	ReasonRulesFile  Reason = "rules-file"       // the node's rules file is unreadable or malformed
	ReasonArgs       Reason = "args"             // CNI_ARGS lack the pod's uid
	ReasonState      Reason = "state"            // the plugin's state folder failed
	ReasonNodeState  Reason = "node-state"       // opening the node's BPF state failed
	ReasonAttach     Reason = "attach"           // attaching the pod failed
	ReasonDetach     Reason = "detach"           // detaching the pod failed (DEL, GC)
)

// Reasons lists every reason, so that their counts can be reported from
// zero (a metric series that appears only at its first failure hides the
// first increase from rate()).
var Reasons = []Reason{ReasonKernel, ReasonCgroupV1, ReasonCgroup, ReasonAPI, ReasonAnnotation, ReasonRulesFile,
	ReasonArgs, ReasonState, ReasonNodeState, ReasonAttach, ReasonDetach}

// setupError is a failure to set up a pod's acceleration: fail-open unless
// the configuration says failOnError.
type setupError struct {
	reason Reason
	err    error
}

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// fail wraps err as a setup failure of the given reason; nil stays nil.
func fail(reason Reason, err error) error {
	if err == nil {
		return nil
	}
	return &setupError{reason: reason, err: err}
}

// failf is fail with a formatted error.
func failf(reason Reason, format string, args ...any) error {
	return &setupError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the reason of a setup failure ("" for other errors).
func reasonOf(err error) Reason {
	var se *setupError
	if errors.As(err, &se) {
		return se.reason
	}
	return ""
}

// hints say what to do about a failure of each reason, in the Event the
// pod gets.
var hints = map[Reason]string{
	ReasonKernel:     "The node's kernel lacks what mesh-accel needs: see the log of the mesh-accel installer on the node.",
	ReasonCgroupV1:   "The node has no cgroup v2 hierarchy, which mesh-accel needs.",
	ReasonCgroup:     "The pod's cgroup was not found: check the plugin's cgroupRoot against the kubelet's --cgroup-root.",
	ReasonAnnotation: "Fix the pod's annotations (accel.mesh/*, traffic.sidecar.istio.io/exclude*) and recreate the pod.",
	ReasonRulesFile:  "The node's rules are unreadable or invalid: check the ConfigMap mesh-accel-rules and the installer's log.",
	ReasonArgs:       "The container runtime passed no K8S_POD_UID in CNI_ARGS.",
	ReasonState:      "The plugin's state folder failed (disk full, permissions): see the plugin's log in the installer's output.",
	ReasonNodeState:  "The node's BPF state could not be opened: is the mesh-accel installer running on the node?",
	ReasonAttach:     "See the plugin's log in the installer's output (source=plugin) and recreate the pod.",
}

// eventful reports whether a failure of the reason, at ADD, is worth an
// Event of the pod: not when the API server did not give the pod (the pod
// may not even ask for acceleration, and the Event could not be posted
// either), nor for teardown.
func eventful(r Reason) bool { return r != "" && r != ReasonAPI && r != ReasonDetach }

// spoolEvent leaves a record of a failed ADD for the installer, which posts
// it as a Warning Event of the pod (package eventspool): the ADD neither
// waits for nor needs the API server. Only fail-open failures are spooled:
// with failOnError the ADD fails, and the kubelet reports it.
func (d *deps) spoolEvent(conf *Config, pa podArgs, err error) {
	reason := reasonOf(err)
	if reason == "" {
		reason = ReasonAttach
	}
	if conf.FailOnError || !eventful(reason) || !pa.isPod() {
		return
	}
	msg := fmt.Sprintf("mesh-accel could not accelerate the pod (%s): %v. The pod runs without acceleration. %s",
		reason, err, hints[reason])
	rec := eventspool.Record{Namespace: pa.Namespace, Name: pa.Name, UID: pa.UID, Reason: string(reason), Message: msg}
	if err := eventspool.Add(eventspool.Dir(conf.StateDir), rec); err != nil {
		d.log.Warn("no Event for the pod", "err", err)
	}
}
