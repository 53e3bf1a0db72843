package rules

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Helpers that build the rules the tests expect, at a line of "t.rules".

func ipRule(line int, cidr string, t Target) Rule {
	return Rule{File: "t.rules", Line: line, Prefix: netip.MustParsePrefix(cidr), HasIP: true, Target: t}
}

func portRule(line int, lo, hi uint16, t Target) Rule {
	return Rule{File: "t.rules", Line: line, PortLo: lo, PortHi: hi, HasPort: true, Target: t}
}

func uidRule(line int, uid uint32, t Target) Rule {
	return Rule{File: "t.rules", Line: line, UID: uid, HasUID: true, Target: t}
}

func gidRule(line int, gid uint32, t Target) Rule {
	return Rule{File: "t.rules", Line: line, GID: gid, HasGID: true, Target: t}
}

// sameRules compares rules including File and Line.
func sameRules(t *testing.T, got *Set, want []Rule) {
	t.Helper()
	if got == nil {
		t.Fatal("set is nil")
	}
	if len(got.Rules) != len(want) {
		t.Fatalf("got %d rules:\n%s\nwant %d:\n%s", len(got.Rules), got, len(want), &Set{Rules: want})
	}
	for i := range want {
		g, w := got.Rules[i], want[i]
		if !g.Equal(w) || g.File != w.File || g.Line != w.Line {
			t.Errorf("rule %d = %s (%s:%d), want %s (%s:%d)", i, g, g.File, g.Line, w, w.File, w.Line)
		}
	}
}

func TestParse(t *testing.T) {
	full := Rule{
		File: "t.rules", Line: 1, Prefix: netip.MustParsePrefix("fd00::/64"), HasIP: true,
		PortLo: 15001, PortHi: 15006, HasPort: true, UID: 1000, HasUID: true,
		GID: 1000, HasGID: true, Target: Return,
	}
	for _, tc := range []struct {
		name string
		in   string
		want []Rule
	}{
		{"empty", "", nil},
		{"blank lines", "\n  \n\t\n", nil},
		{"comments only", "# a comment\n   # indented\n\t#tab\n#\n", nil},
		{"--ip v4", "chain --ip 10.0.0.0/8 -j ACCEPT", []Rule{ipRule(1, "10.0.0.0/8", Accept)}},
		{"-i v4", "chain -i 192.168.1.0/24 -j ACCEPT", []Rule{ipRule(1, "192.168.1.0/24", Accept)}},
		{"--ip v6", "chain --ip fd00::/64 -j RETURN", []Rule{ipRule(1, "fd00::/64", Return)}},
		{"-i v6 upper case", "chain -i FD00:0::/16 -j RETURN", []Rule{ipRule(1, "fd00::/16", Return)}},
		{"bare v4", "chain --ip 10.1.2.3 -j ACCEPT", []Rule{ipRule(1, "10.1.2.3/32", Accept)}},
		{"bare v6", "chain --ip fd00::1 -j ACCEPT", []Rule{ipRule(1, "fd00::1/128", Accept)}},
		{"v4 /0", "chain --ip 0.0.0.0/0 -j ACCEPT", []Rule{ipRule(1, "0.0.0.0/0", Accept)}},
		{"v6 /0", "chain --ip ::/0 -j ACCEPT", []Rule{ipRule(1, "::/0", Accept)}},
		{"v4-mapped prefix", "chain --ip ::ffff:10.0.0.0/104 -j ACCEPT", []Rule{ipRule(1, "10.0.0.0/8", Accept)}},
		{"v4-mapped address", "chain --ip ::ffff:10.0.0.1 -j ACCEPT", []Rule{ipRule(1, "10.0.0.1/32", Accept)}},
		{"--port", "chain --port 80 -j ACCEPT", []Rule{portRule(1, 80, 80, Accept)}},
		{"-p range", "chain -p 15001-15006 -j RETURN", []Rule{portRule(1, 15001, 15006, Return)}},
		{"port bounds", "chain -p 1-65535 -j RETURN", []Rule{portRule(1, 1, 65535, Return)}},
		{"port range of one", "chain -p 80-80 -j RETURN", []Rule{portRule(1, 80, 80, Return)}},
		{"--uid-owner", "chain --uid-owner 1337 -j ACCEPT", []Rule{uidRule(1, 1337, Accept)}},
		{"-u", "chain -u 0 -j ACCEPT", []Rule{uidRule(1, 0, Accept)}},
		{"uid max", "chain -u 4294967294 -j ACCEPT", []Rule{uidRule(1, 4294967294, Accept)}},
		{"--gid-owner", "chain --gid-owner 1337 -j ACCEPT", []Rule{gidRule(1, 1337, Accept)}},
		{"-g", "chain -g 4294967294 -j RETURN", []Rule{gidRule(1, 4294967294, Return)}},
		{"--j", "chain -u 1 --j ACCEPT", []Rule{uidRule(1, 1, Accept)}},
		{"--jump", "chain -u 1 --jump RETURN", []Rule{uidRule(1, 1, Return)}},
		{"target first", "chain -j RETURN -u 1", []Rule{uidRule(1, 1, Return)}},
		{"no options", "chain -j ACCEPT", []Rule{{File: "t.rules", Line: 1, Target: Accept}}},
		{"all short", "chain -i fd00::/64 -p 15001-15006 -u 1000 -g 1000 --jump RETURN", []Rule{full}},
		{"all long, other order", "chain --jump RETURN --gid-owner 1000 --uid-owner 1000 --port 15001-15006 --ip fd00::/64", []Rule{full}},
		{"trailing comment", "chain -u 1 -j ACCEPT # the app\n", []Rule{uidRule(1, 1, Accept)}},
		{"trailing comment after tab", "chain -u 1 -j ACCEPT\t#x", []Rule{uidRule(1, 1, Accept)}},
		{"tabs", "\tchain\t-u\t1\t\t-j  ACCEPT\t", []Rule{uidRule(1, 1, Accept)}},
		{"CRLF", "# c\r\nchain -u 1 -j ACCEPT\r\n\r\nchain -p 2 -j RETURN\r\n",
			[]Rule{uidRule(2, 1, Accept), portRule(4, 2, 2, Return)}},
		{"CRLF no final newline", "chain -u 1 -j ACCEPT\r", []Rule{uidRule(1, 1, Accept)}},
		{"byte order mark", "\ufeffchain -u 1 -j ACCEPT", []Rule{uidRule(1, 1, Accept)}},
		{"leading zeros", "chain -p 080 -u 007 -j ACCEPT",
			[]Rule{{File: "t.rules", Line: 1, PortLo: 80, PortHi: 80, HasPort: true, UID: 7, HasUID: true, Target: Accept}}},
		{"line numbers", "\n# c\nchain -u 1 -j ACCEPT\n\nchain -g 2 -j RETURN",
			[]Rule{uidRule(3, 1, Accept), gidRule(5, 2, Return)}},
		{"brief example", `# accelerate traffic of uid 1337 (the Envoy sidecar), never port 15006
chain --uid-owner 1337 -j ACCEPT
chain --port 15006 -j RETURN
chain --ip 192.168.1.0/24 --uid-owner 1337 --j ACCEPT
chain -i fd00::/64 -p 15001-15006 -u 1000 -g 1000 --jump RETURN
`, []Rule{
			uidRule(2, 1337, Accept),
			portRule(3, 15006, 15006, Return),
			{File: "t.rules", Line: 4, Prefix: netip.MustParsePrefix("192.168.1.0/24"), HasIP: true,
				UID: 1337, HasUID: true, Target: Accept},
			func() Rule { r := full; r.Line = 5; return r }(),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseString("t.rules", tc.in)
			if err != nil {
				t.Fatalf("ParseString(%q): %v", tc.in, err)
			}
			sameRules(t, s, tc.want)
		})
	}
}

func TestParseMaxRules(t *testing.T) {
	in := strings.Repeat("chain -u 1 -j ACCEPT\n", MaxRules)
	s, err := ParseString("t.rules", in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != MaxRules {
		t.Fatalf("got %d rules, want %d", len(s.Rules), MaxRules)
	}
}

func TestParseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.rules")
	if err := os.WriteFile(path, []byte("chain -u 1337 -j ACCEPT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Rules) != 1 || s.Rules[0].File != path || s.Rules[0].Line != 1 {
		t.Fatalf("ParseFile = %+v", s.Rules)
	}

	if s, err := ParseFile(filepath.Join(t.TempDir(), "missing")); s != nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ParseFile(missing) = %v, %v; want nil and a not-exist error", s, err)
	}
}

func TestParseReadError(t *testing.T) {
	s, err := Parse("t.rules", errReader{})
	if err == nil || s != nil || !strings.Contains(err.Error(), "t.rules") {
		t.Fatalf("Parse(failing reader) = %v, %v", s, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, os.ErrPermission }
