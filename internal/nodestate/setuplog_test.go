package nodestate

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

// The plugin's setup line, written by log/slog's text handler as the plugin
// writes it, gives its duration back; other lines give nothing.
func TestParseSetupDuration(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, nil)).With("cmd", "ADD", "pod", "shop/web")
	l.Info(SetupLogMessage, "cgroup", "/x setup=9s", "rules", 2, SetupLogKey, 6200*time.Microsecond)
	if d, ok := ParseSetupDuration(bytes.TrimSpace(b.Bytes())); !ok || d != 6200*time.Microsecond {
		t.Errorf("ParseSetupDuration(%q) = %v, %v; want 6.2ms", b.String(), d, ok)
	}
	for _, line := range []string{
		`time=x level=INFO msg="pod detached" cmd=DEL setup=1ms`,
		`time=x level=INFO msg="pod accelerated" cmd=ADD`,
		`time=x level=INFO msg="pod accelerated" cmd=ADD setup=soon`,
		`time=x level=INFO msg="pod accelerated" cmd=ADD setup=-1ms`,
		``,
	} {
		if d, ok := ParseSetupDuration([]byte(line)); ok {
			t.Errorf("ParseSetupDuration(%q) = %v, true; want false", line, d)
		}
	}
}
