package bpf

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidPodID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`) // the pod id syntax
	for _, id := range []string{"", "a", "0b6a1c2e-1111-2222-3333-444455556666", "-a", ".a", "a.b_c-d", "a/b", "a b", "ä",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "A..", "x\n"} {
		if got, want := ValidPodID(id), re.MatchString(id); got != want {
			t.Errorf("ValidPodID(%q) = %v, want %v", id, got, want)
		}
	}
}
