package cgroupv2

import (
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            bool
	}{
		{"unified", "25 21 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", false},
		{"hybrid", "30 21 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n" +
			"38 21 0:33 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified", false},
		{"escaped", `1 2 0:1 / /a\040b rw - cgroup2 none rw` + "\n", "/a b", false},
		{"v1 only", "30 21 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("parseMountinfo = %q, %v; want %q, err=%v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestMountIsCgroup2(t *testing.T) {
	m, err := Mount()
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	if !IsCgroup2(m) {
		t.Fatalf("%s is not a cgroup2 file system", m)
	}
	if id, err := ID(m); err != nil || id == 0 {
		t.Fatalf("ID(%s) = %d, %v", m, id, err)
	}
}
