package nodestate

import "testing"

// The state folder's names are a contract between versions (an upgraded
// installer reads what the previous plugin wrote): they never change.
func TestLayout(t *testing.T) {
	const d = "/var/lib/mesh-accel"
	for got, want := range map[string]string{
		LockPath(d):                 d + "/lock",
		PodLockPath(d, 7):           d + "/locks/07",
		RecordPath(d, "u1"):         d + "/pods/u1.json",
		FailuresPath(d):             d + "/failures.json",
		FailuresLockPath(d):         d + "/failures.lock",
		EventsDir(d):                d + "/events",
		NamespacesPath(d):           d + "/namespaces.json",
		ConflistBackupPath(d):       d + "/installer/conflist-backup.json",
		RulesAppliedPath(d):         d + "/installer/rules-applied",
		SwitchOffByConfigMapPath(d): d + "/installer/disabled-by-configmap",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}
