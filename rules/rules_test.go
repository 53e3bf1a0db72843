package rules

import (
	"net/netip"
	"strings"
	"testing"
)

func TestTargetString(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Accept, "ACCEPT"},
		{Return, "RETURN"},
		{0, "Target(0)"},
		{9, "Target(9)"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Target(%d).String() = %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
}

func TestRuleString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"chain -j ACCEPT", "chain -j ACCEPT"},
		{"chain -p 80 -i 10.0.0.0/8 -j ACCEPT", "chain --ip 10.0.0.0/8 --port 80 -j ACCEPT"},
		{"chain --jump RETURN -g 2 -u 1 -p 15001-15006 -i fd00::/64",
			"chain --ip fd00::/64 --port 15001-15006 --uid-owner 1 --gid-owner 2 -j RETURN"},
		{"chain -p 80-80 --j RETURN", "chain --port 80 -j RETURN"},
		{"chain -i 10.1.2.3 -j ACCEPT", "chain --ip 10.1.2.3/32 -j ACCEPT"},
		{"chain -i FD00::1 -j ACCEPT", "chain --ip fd00::1/128 -j ACCEPT"},
		{"chain -i ::ffff:10.0.0.0/104 -j ACCEPT", "chain --ip 10.0.0.0/8 -j ACCEPT"},
		{"chain -u 0007 -j ACCEPT", "chain --uid-owner 7 -j ACCEPT"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s := mustParse(t, tc.in)
			if got := s.Rules[0].String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, in := range []string{
		"",
		"# only a comment\n",
		Default().String(),
		"chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n" +
			"chain --ip 192.168.1.0/24 --uid-owner 1337 --j ACCEPT\n" +
			"chain -i fd00::/64 -p 15001-15006 -u 1000 -g 1000 --jump RETURN\n",
		"\tchain -j ACCEPT # all\r\nchain -i 0.0.0.0/0 -j RETURN\r\nchain -i ::/0 -p 1-65535 -j RETURN\r\n",
		strings.Repeat("chain -u 4294967294 -g 0 -j ACCEPT\n", MaxRules),
	} {
		s1 := mustParse(t, in)
		text := s1.String()
		s2, err := ParseString("again", text)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", text, err)
		}
		if !s1.Equal(s2) {
			t.Errorf("round trip of %q:\n%s\n!=\n%s", in, s1, s2)
		}
		if s2.String() != text {
			t.Errorf("String() is not canonical: %q then %q", text, s2.String())
		}
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	want := "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n"
	if got := d.String(); got != want {
		t.Fatalf("Default() = %q, want %q", got, want)
	}
	if !d.Equal(mustParse(t, want)) {
		t.Fatal("Default() differs from its parsed text")
	}
	for i, r := range d.Rules {
		if r.File != DefaultFile || r.Line != i+1 {
			t.Errorf("rule %d at %s:%d, want %s:%d", i, r.File, r.Line, DefaultFile, i+1)
		}
	}
	d.Rules[0].UID = 1
	if Default().Rules[0].UID != 1337 {
		t.Fatal("Default() returns shared memory")
	}
	if w := Default().Warnings(); len(w) != 0 {
		t.Fatalf("Default().Warnings() = %q", w)
	}
}

func TestEqual(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/8")
	base := Rule{File: "a", Line: 1, Prefix: p, HasIP: true, Target: Accept}
	for _, tc := range []struct {
		name string
		r    Rule
		want bool
	}{
		{"same", base, true},
		{"other place", Rule{File: "b", Line: 9, Prefix: p, HasIP: true, Target: Accept}, true},
		{"unused fields", Rule{Prefix: p, HasIP: true, UID: 5, PortLo: 3, Target: Accept}, true},
		{"mapped prefix", Rule{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104"), HasIP: true, Target: Accept}, true},
		{"other target", Rule{Prefix: p, HasIP: true, Target: Return}, false},
		{"other prefix", Rule{Prefix: netip.MustParsePrefix("10.0.0.0/9"), HasIP: true, Target: Accept}, false},
		{"no ip", Rule{Prefix: p, Target: Accept}, false},
		{"extra uid", Rule{Prefix: p, HasIP: true, HasUID: true, Target: Accept}, false},
	} {
		if got := base.Equal(tc.r); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
	var nilSet *Set
	if !nilSet.Equal(&Set{}) || !(&Set{}).Equal(nilSet) || nilSet.Equal(Default()) {
		t.Error("nil set must equal only an empty set")
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules string
		want  []string
	}{
		{"empty", "", []string{"no rules: every connection is accelerated"}},
		{"fine", "chain -u 1337 -j ACCEPT\nchain -p 15006 -j RETURN\nchain -i 10.0.0.0/8 -j ACCEPT", nil},
		{"only RETURN", "chain -p 15006 -j RETURN\nchain -u 1 -j RETURN",
			[]string{"no ACCEPT rule: no connection is accelerated"}},
		{"duplicate", "chain -u 1 -j ACCEPT\n\nchain -j ACCEPT --uid-owner 1",
			[]string{"t.rules:3: rule repeats the rule at t.rules:1"}},
		{"same options, other target", "chain -u 1 -j ACCEPT\nchain -u 1 -j RETURN",
			[]string{"t.rules:1: ACCEPT rule has no effect: the RETURN rule at t.rules:2 matches all its connections"}},
		{"covered by a wider RETURN", "chain -i 10.1.0.0/16 -p 80 -u 1 -j ACCEPT\nchain -i 10.0.0.0/8 -p 1-100 -j RETURN",
			[]string{"t.rules:1: ACCEPT rule has no effect: the RETURN rule at t.rules:2 matches all its connections"}},
		{"RETURN everything", "chain -u 1 -j ACCEPT\nchain -j RETURN\nchain -g 1 -j ACCEPT", []string{
			"t.rules:1: ACCEPT rule has no effect: the RETURN rule at t.rules:2 matches all its connections",
			"t.rules:3: ACCEPT rule has no effect: the RETURN rule at t.rules:2 matches all its connections"}},
		{"narrower RETURN", "chain -i 10.0.0.0/8 -j ACCEPT\nchain -i 10.1.0.0/16 -j RETURN", nil},
		{"RETURN needs an option the ACCEPT lacks", "chain -u 1 -j ACCEPT\nchain -u 1 -g 1 -j RETURN", nil},
		{"RETURN of other family", "chain -i 10.0.0.0/8 -j ACCEPT\nchain -i ::/0 -j RETURN", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, tc.rules).Warnings()
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Warnings() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestWarningsBuiltRules(t *testing.T) {
	var nilSet *Set
	if w := nilSet.Warnings(); len(w) != 1 {
		t.Errorf("nil set: Warnings() = %q", w)
	}
	s := &Set{Rules: []Rule{{Target: Accept}, {Target: Accept}, {Line: 3, Target: 7}}}
	want := "rule 2: rule repeats the rule at rule 1\nline 3: invalid target Target(7): the rule has no effect"
	if got := strings.Join(s.Warnings(), "\n"); got != want {
		t.Errorf("Warnings() =\n%s\nwant\n%s", got, want)
	}
}
