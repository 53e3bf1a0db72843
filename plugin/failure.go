package plugin

import (
	"errors"
	"fmt"
)

// Reason classifies why a pod's acceleration could not be set up (or torn
// down); failures are counted by reason in the state folder.
type Reason string

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
