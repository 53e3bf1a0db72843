package rules

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"# comment\n\n",
		"chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n",
		"chain --ip 192.168.1.0/24 --uid-owner 1337 --j ACCEPT # trailing\r\n",
		"\tchain -i fd00::/64 -p 15001-15006 -u 1000 -g 1000 --jump RETURN\n",
		"chain -i ::ffff:10.0.0.0/104 -j ACCEPT\n",
		"chain -i 10.0.0.1 -j RETURN\nchain -i fd00::1 -j ACCEPT\n",
		"\ufeffchain -j ACCEPT\r\n",
		"chian -j ACCEPT\n",
		"chain -u 1\n",
		"chain -j accept\n",
		"chain --ip 10.0.0.1/8 -j ACCEPT\n",
		"chain -i fe80::1%eth0 -j ACCEPT\n",
		"chain -p 0 -p 70000 -u -g x -j\n",
		"chain -p 15006-15001 --foo bar 81 -j ACCEPT#\n",
		"chain -u 4294967295 -g 99999999999999999999 -j RETURN\n",
		strings.Repeat("chain -u 1 -j ACCEPT\n", MaxRules+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		const name = "fuzz.rules"
		s, err := ParseString(name, in)
		if err != nil {
			checkErrors(t, name, in, s, err)
			return
		}
		if len(s.Rules) > MaxRules {
			t.Fatalf("%d rules, more than %d", len(s.Rules), MaxRules)
		}
		for _, r := range s.Rules {
			if r.File != name || r.Line < 1 || r.Target != Accept && r.Target != Return ||
				r.HasIP && r.Prefix != r.Prefix.Masked() ||
				r.HasPort && (r.PortLo == 0 || r.PortLo > r.PortHi) {
				t.Fatalf("bad rule %+v", r)
			}
		}
		text := s.String()
		again, err := ParseString("again", text)
		if err != nil {
			t.Fatalf("String() %q does not parse: %v", text, err)
		}
		if !again.Equal(s) {
			t.Fatalf("String() %q parses to\n%s\nwant\n%s", text, again, s)
		}
		_ = s.Warnings()
		a := Endpoint{Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 15006, UID: 1337}
		b := Endpoint{Addr: netip.MustParseAddr("fd00::1"), Port: 80, GID: 1000}
		if s.Accelerate(a, b) != s.Accelerate(b, a) {
			t.Fatal("Accelerate is not symmetric")
		}
	})
}

// checkErrors checks the error of ParseString(name, in): an ErrorList of
// at most maxErrors errors that name the file and point at their token.
func checkErrors(t *testing.T, name, in string, s *Set, err error) {
	t.Helper()
	var list ErrorList
	if s != nil || !errors.As(err, &list) || len(list) == 0 || len(list) > maxErrors {
		t.Fatalf("ParseString = %v, %v (%T)", s, err, err)
	}
	lines := strings.Split(strings.TrimPrefix(in, "\ufeff"), "\n")
	for _, e := range list {
		if e.File != name || e.Line < 1 || e.Col < 1 || e.Msg == "" {
			t.Fatalf("bad error %+v", e)
		}
		if e.Token == "" || e.Line > len(lines) {
			continue
		}
		line := strings.TrimSuffix(lines[e.Line-1], "\r")
		if end := e.Col - 1 + len(e.Token); end > len(line) || line[e.Col-1:end] != e.Token {
			t.Fatalf("error %v does not point at its token in line %q", e, line)
		}
	}
}
