package ctl

import (
	"errors"
	"fmt"
	"os"
)

// ErrNeedsRoot is returned when the kernel or bpffs refuses mesh-accelctl
// for lack of privileges (EPERM, EACCES).
var ErrNeedsRoot = errors.New("mesh-accelctl needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and access to " +
	"bpffs): run it with sudo, or in the installer pod of the node (" + execCmd + " ..., POD from `" +
	installerPodCmd + "`)")

// needsRoot returns err, or for a permission error one that says
// mesh-accelctl needs root and wraps both.
func needsRoot(err error) error {
	if err == nil || !errors.Is(err, os.ErrPermission) || errors.Is(err, ErrNeedsRoot) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNeedsRoot, err)
}
