package nodestate

import (
	"bytes"
	"time"
)

// The line the CNI plugin logs for each pod it set up: its message and the
// key of the time the ADD took, from the plugin's start (package starttime).
// The installer, which follows the plugin's log, turns it into the ADD
// latency histogram; the plugin itself lives too short to export one.
const (
	SetupLogMessage = "pod accelerated"
	SetupLogKey     = "setup"
)

// ParseSetupDuration returns the ADD time a plugin log line (log/slog's
// text format) reports; false for every other line.
func ParseSetupDuration(line []byte) (time.Duration, bool) {
	if !bytes.Contains(line, []byte(` msg="`+SetupLogMessage+`" `)) {
		return 0, false
	}
	// The last occurrence: the plugin logs the key last, and an earlier
	// quoted value may contain the same text.
	key := []byte(" " + SetupLogKey + "=")
	i := bytes.LastIndex(line, key)
	if i < 0 {
		return 0, false
	}
	v := line[i+len(key):]
	if j := bytes.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	d, err := time.ParseDuration(string(v))
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}
