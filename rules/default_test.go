package rules

import (
	"fmt"
	"strings"
	"testing"
)

// DefaultText parses back into DefaultFor, for any uid, with its comment
// naming the uid.
func TestDefaultText(t *testing.T) {
	for _, uid := range []uint32{1337, 0, 1000690000, 4294967294} {
		text := DefaultText(uid)
		s, err := ParseString("default", text)
		if err != nil || !s.Equal(DefaultFor(uid)) {
			t.Errorf("uid %d: %q parses to %v (%v), want DefaultFor", uid, text, s, err)
		}
		if first, _, _ := strings.Cut(text, "\n"); !strings.HasPrefix(first, "# ") || !strings.Contains(first, fmt.Sprintf("uid %d ", uid)) {
			t.Errorf("uid %d: first line %q, want a comment naming the uid", uid, first)
		}
	}
	if want := "# accelerate traffic of uid 1337 (Envoy), never port 15006\nchain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n"; DefaultText(1337) != want {
		t.Errorf("DefaultText(1337) = %q, want %q", DefaultText(1337), want)
	}
}
