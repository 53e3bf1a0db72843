package nodestate

import (
	"fmt"
	"path/filepath"
)

// The state folder (--state-dir, [DefaultStateDir]) is laid out as follows;
// this file is the one place that names its parts, and every program finds
// them through the functions below:
//
//	lock                    flock: shared by the plugin's ADD and DEL, exclusive for GC ([LockPath])
//	locks/<nn>              flock, exclusive: ADD and DEL of one pod uid ([PodLockPath])
//	pods/<uid>.json         the plugin's record of an attached pod ([RecordPath], [Record])
//	failures.json           the plugin's setup failures by reason ([FailuresPath], [Failures])
//	failures.lock           flock serialising updates of failures.json ([FailuresLockPath])
//	events/<key>.json       Events the plugin spools for the installer ([EventsDir], package eventspool)
//	namespaces.json         the namespaces opted in by label ([NamespacesPath], package nsoptin)
//	installer/              the installer's own files ([InstallerDir]):
//	  conflist-backup.json  the primary CNI config's original bytes ([ConflistBackupPath])
//	  rules-applied         the rules last applied to attached pods ([RulesAppliedPath])
//	  disabled-by-configmap the ConfigMap's switch-off marker ([SwitchOffByConfigMapPath])
//
// The rules copy the plugin reads lives outside it, at the installer's
// --host-rules-file.
const (
	FailuresFile = "failures.json" // the setup failures' file name
	podsFolder   = "pods"
)

// LockPath is the state folder's lock.
func LockPath(stateDir string) string { return filepath.Join(stateDir, "lock") }

// PodLocksDir is the folder of the pods' lock stripes.
func PodLocksDir(stateDir string) string { return filepath.Join(stateDir, "locks") }

// PodLockPath is the lock of stripe (0 to 99) of the pods' locks.
func PodLockPath(stateDir string, stripe uint32) string {
	return filepath.Join(PodLocksDir(stateDir), fmt.Sprintf("%02d", stripe))
}

// PodsDir is the folder of the plugin's pod records.
func PodsDir(stateDir string) string { return filepath.Join(stateDir, podsFolder) }

// RecordPath is the path of a pod's record.
func RecordPath(stateDir, uid string) string { return filepath.Join(PodsDir(stateDir), uid+".json") }

// FailuresPath is the file of the setup failures the plugin counts by
// reason (it fails open: the pod starts without acceleration).
func FailuresPath(stateDir string) string { return filepath.Join(stateDir, FailuresFile) }

// FailuresLockPath is the lock serialising updates of [FailuresPath].
func FailuresLockPath(stateDir string) string { return filepath.Join(stateDir, "failures.lock") }

// EventsDir is the folder of the Event spool (package eventspool).
func EventsDir(stateDir string) string { return filepath.Join(stateDir, "events") }

// NamespacesPath is the file of the namespaces opted in by their label
// (package nsoptin).
func NamespacesPath(stateDir string) string { return filepath.Join(stateDir, "namespaces.json") }

// InstallerDir is the folder of the installer's own files.
func InstallerDir(stateDir string) string { return filepath.Join(stateDir, "installer") }

// ConflistBackupPath is the installer's backup of the primary CNI config's
// original bytes, so that a restart, even after SIGKILL, knows what to
// give back.
func ConflistBackupPath(stateDir string) string {
	return filepath.Join(InstallerDir(stateDir), "conflist-backup.json")
}

// RulesAppliedPath is the installer's record of the rules last applied to
// the attached pods (the node defaults their rules are compared with).
func RulesAppliedPath(stateDir string) string {
	return filepath.Join(InstallerDir(stateDir), "rules-applied")
}

// SwitchOffByConfigMapPath is the file that exists while the rules
// ConfigMap's enabled key holds the node's global switch off: the
// installer writes it as it turns the switch off, and turns the switch on
// again only while it exists; mesh-accelctl disable removes it, so that a
// switch turned off by hand stays off until mesh-accelctl enable.
func SwitchOffByConfigMapPath(stateDir string) string {
	return filepath.Join(InstallerDir(stateDir), "disabled-by-configmap")
}
