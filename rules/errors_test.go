package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// parseErrorTests are inputs to ParseString("bad.rules", in) and the errors
// it must report (File is always "bad.rules").
var parseErrorTests = []struct {
	name string
	in   string
	want []Error
}{
	{"not chain", "chian -j ACCEPT", []Error{
		{Line: 1, Col: 1, Token: "chian", Msg: `rule must start with "chain"`}}},
	{"not chain indented", "\n  CHAIN -j ACCEPT", []Error{
		{Line: 2, Col: 3, Token: "CHAIN", Msg: `rule must start with "chain"`}}},
	{"missing target", "chain -u 1", []Error{
		{Line: 1, Col: 11, Msg: "missing target: add -j ACCEPT or -j RETURN"}}},
	{"missing target, bare chain", "chain", []Error{
		{Line: 1, Col: 6, Msg: "missing target: add -j ACCEPT or -j RETURN"}}},
	{"missing target before comment", "chain -u 1   # note\r\n", []Error{
		{Line: 1, Col: 11, Msg: "missing target: add -j ACCEPT or -j RETURN"}}},
	{"lower case target", "chain -u 1 -j accept", []Error{
		{Line: 1, Col: 15, Token: "accept", Msg: `unknown target "accept" (want ACCEPT or RETURN)`,
			Hint: "targets are case-sensitive: write ACCEPT"}}},
	{"other target", "chain -u 1 --jump DROP", []Error{
		{Line: 1, Col: 19, Token: "DROP", Msg: `unknown target "DROP" (want ACCEPT or RETURN)`}}},
	{"target glued to comment", "chain -u 1 -j ACCEPT#x", []Error{
		{Line: 1, Col: 15, Token: "ACCEPT#x", Msg: `unknown target "ACCEPT#x" (want ACCEPT or RETURN)`}}},
	{"missing target value", "chain -u 1 -j", []Error{
		{Line: 1, Col: 12, Token: "-j", Msg: "missing target (ACCEPT or RETURN) after option"}}},
	{"missing ip value", "chain --ip -j ACCEPT", []Error{
		{Line: 1, Col: 7, Token: "--ip", Msg: "missing CIDR after option"}}},
	{"missing port value", "chain -j ACCEPT -p", []Error{
		{Line: 1, Col: 17, Token: "-p", Msg: "missing port or port range after option"}}},
	{"missing uid value", "chain -u --port 80 -j ACCEPT", []Error{
		{Line: 1, Col: 7, Token: "-u", Msg: "missing uid after option"}}},
	{"missing gid value", "chain --gid-owner\t-j ACCEPT", []Error{
		{Line: 1, Col: 7, Token: "--gid-owner", Msg: "missing gid after option"}}},
	{"unknown option", "chain --uid 1337 -j ACCEPT", []Error{
		{Line: 1, Col: 7, Token: "--uid", Msg: "unknown option (want --ip, --port, --uid-owner, --gid-owner or -j)"}}},
	{"unknown option without value", "chain -x -j ACCEPT", []Error{
		{Line: 1, Col: 7, Token: "-x", Msg: "unknown option (want --ip, --port, --uid-owner, --gid-owner or -j)"}}},
	{"unexpected value", "chain -p 80 81 -j ACCEPT", []Error{
		{Line: 1, Col: 13, Token: "81", Msg: "unexpected value (want an option)"}}},
	{"repeated option", "chain -p 80 -u 1 --port 81 -j ACCEPT", []Error{
		{Line: 1, Col: 18, Token: "--port", Msg: "repeated option --port, first given at column 7",
			Hint: "one port or range per rule: write a range (--port 1000-2000) or one chain line per port"}}},
	{"repeated target", "chain -j ACCEPT --jump RETURN", []Error{
		{Line: 1, Col: 17, Token: "--jump", Msg: "repeated option -j, first given at column 7",
			Hint: "one target per rule: ACCEPT or RETURN"}}},
	{"port 0", "chain -p 0 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "0", Msg: "port out of range 1..65535"}}},
	{"port 65536", "chain -p 65536 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "65536", Msg: "port out of range 1..65535"}}},
	{"port huge", "chain -p 1-99999999999999999999999 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "1-99999999999999999999999", Msg: "port out of range 1..65535"}}},
	{"port range reversed", "chain -p 15006-15001 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "15006-15001", Msg: "empty port range: 15006 > 15001"}}},
	{"port not a number", "chain --port http -j ACCEPT", []Error{
		{Line: 1, Col: 14, Token: "http", Msg: "bad port (want a port 1..65535 or a range like 15001-15006)"}}},
	{"port open range", "chain --port 80- -j ACCEPT", []Error{
		{Line: 1, Col: 14, Token: "80-", Msg: "bad port (want a port 1..65535 or a range like 15001-15006)"}}},
	{"port negative", "chain --port -80 -j ACCEPT", []Error{
		{Line: 1, Col: 14, Token: "-80", Msg: "bad port (want a port 1..65535 or a range like 15001-15006)"}}},
	{"port signed", "chain --port +80 -j ACCEPT", []Error{
		{Line: 1, Col: 14, Token: "+80", Msg: "bad port (want a port 1..65535 or a range like 15001-15006)"}}},
	{"uid (uid_t)-1", "chain -u 4294967295 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "4294967295", Msg: "uid out of range 0..4294967294"}}},
	{"uid huge", "chain -u 99999999999999999999 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "99999999999999999999", Msg: "uid out of range 0..4294967294"}}},
	{"uid name", "chain -u istio-proxy -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "istio-proxy", Msg: "bad uid (want a decimal number 0..4294967294)"}}},
	{"gid hex", "chain -g 0x10 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "0x10", Msg: "bad gid (want a decimal number 0..4294967294)"}}},
	{"gid out of range", "chain -g 4294967295 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "4294967295", Msg: "gid out of range 0..4294967294"}}},
	{"bad CIDR", "chain --ip 10.0.0/8 -j ACCEPT", []Error{
		{Line: 1, Col: 12, Token: "10.0.0/8", Msg: "bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)"}}},
	{"bad CIDR bits", "chain --ip 10.0.0.0/33 -j ACCEPT", []Error{
		{Line: 1, Col: 12, Token: "10.0.0.0/33", Msg: "bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)"}}},
	{"bad address", "chain -i 256.0.0.1 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "256.0.0.1", Msg: "bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)"}}},
	{"host name", "chain -i example.com -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "example.com", Msg: "bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)"}}},
	{"zone", "chain -i fe80::1%eth0 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "fe80::1%eth0", Msg: "bad CIDR: IPv6 zones are not allowed"}}},
	{"host bits v4", "chain --ip 10.0.0.1/8 -j ACCEPT", []Error{
		{Line: 1, Col: 12, Token: "10.0.0.1/8", Msg: "CIDR has host bits set (want 10.0.0.0/8)"}}},
	{"host bits v6", "chain --ip fd00::1/64 -j ACCEPT", []Error{
		{Line: 1, Col: 12, Token: "fd00::1/64", Msg: "CIDR has host bits set (want fd00::/64)"}}},
	{"column after tabs", "\tchain\t-p\t0 -j ACCEPT", []Error{
		{Line: 1, Col: 11, Token: "0", Msg: "port out of range 1..65535"}}},
	{"byte order mark", "\ufeffchain -p 0 -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "0", Msg: "port out of range 1..65535"}}},
	{"several errors in a line", "chain -p 0 -u x -j ACCEPT", []Error{
		{Line: 1, Col: 10, Token: "0", Msg: "port out of range 1..65535"},
		{Line: 1, Col: 15, Token: "x", Msg: "bad uid (want a decimal number 0..4294967294)"}}},
	{"several lines", "chain -u 1337 -j ACCEPT\r\n# ok\r\nchain -p 0\r\nrule -j ACCEPT\r\nchain -j RETURN\r\nchain -j drop\r\n",
		[]Error{
			{Line: 3, Col: 10, Token: "0", Msg: "port out of range 1..65535"},
			{Line: 4, Col: 1, Token: "rule", Msg: `rule must start with "chain"`},
			{Line: 6, Col: 10, Token: "drop", Msg: `unknown target "drop" (want ACCEPT or RETURN)`}}},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorTests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseString("bad.rules", tc.in)
			if s != nil {
				t.Errorf("ParseString(%q) returned a set with an error: %v", tc.in, s)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("ParseString(%q) error = %v (%T), want an ErrorList", tc.in, err, err)
			}
			var got, want []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			for _, w := range tc.want {
				w.File = "bad.rules"
				want = append(want, w.Error())
			}
			if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
				t.Fatalf("ParseString(%q) errors:\n%s\nwant:\n%s", tc.in, g, w)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Error{File: "f", Line: 3, Col: 7, Token: "accept", Msg: `unknown target "accept" (want ACCEPT or RETURN)`},
			`f:3:7: unknown target "accept" (want ACCEPT or RETURN) (at "accept")`},
		{&Error{File: "f", Line: 1, Col: 6, Msg: "missing target"}, "f:1:6: missing target"},
		{&Error{File: "f", Line: 1, Col: 1, Token: "a\tb\"", Msg: "m"}, `f:1:1: m (at "a\tb\"")`},
		{ErrorList{{File: "f", Line: 1, Col: 1, Msg: "a"}, {File: "f", Line: 2, Col: 3, Token: "x", Msg: "b"}},
			"f:1:1: a\nf:2:3: b (at \"x\")"},
		{ErrorList{}, "no errors"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := ParseString("f", "chain -p 0 -j ACCEPT\nchain -u x -j ACCEPT\n")
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 || e.Col != 10 || e.Token != "0" {
		t.Fatalf("errors.As(*Error) = %+v", e)
	}
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 || list[1].Line != 2 {
		t.Fatalf("errors.As(ErrorList) = %v", list)
	}
	wrapped := fmt.Errorf("load: %w", err)
	if !errors.As(wrapped, &e) || !errors.As(wrapped, &list) {
		t.Fatal("errors.As through a wrap failed")
	}
}

func TestTooManyRules(t *testing.T) {
	rule := "chain -u 1 -j ACCEPT\n"
	for _, tc := range []struct {
		name string
		in   string
		want []Error
	}{
		{"65 rules", strings.Repeat(rule, MaxRules+1), []Error{
			{Line: 65, Col: 1, Msg: "too many rules: the BPF rule table holds 64", Hint: LimitHint}}},
		{"comments do not count", "# c\n\n" + strings.Repeat(rule, MaxRules) + "  # c\n  " + rule + rule,
			[]Error{{Line: 68, Col: 3, Msg: "too many rules: the BPF rule table holds 64", Hint: LimitHint}}},
		{"bad lines count", "x\n" + strings.Repeat(rule, MaxRules), []Error{
			{Line: 1, Col: 1, Token: "x", Msg: `rule must start with "chain"`},
			{Line: 65, Col: 1, Msg: "too many rules: the BPF rule table holds 64", Hint: LimitHint}}},
		{"errors after the limit", strings.Repeat(rule, MaxRules+1) + "chain -p 0 -j RETURN\n", []Error{
			{Line: 65, Col: 1, Msg: "too many rules: the BPF rule table holds 64", Hint: LimitHint},
			{Line: 66, Col: 10, Token: "0", Msg: "port out of range 1..65535"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseString("many.rules", tc.in)
			var list ErrorList
			if s != nil || !errors.As(err, &list) || len(list) != len(tc.want) {
				t.Fatalf("ParseString = %v, %v; want %d errors", s, err, len(tc.want))
			}
			for i, w := range tc.want {
				w.File = "many.rules"
				if *list[i] != w {
					t.Errorf("error %d = %+v, want %+v", i, *list[i], w)
				}
			}
		})
	}
}

func TestMaxErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		line     string
		lastLine int // line of the last error reported
	}{
		{"one error a line", "chain -p 0 -j ACCEPT\n", maxErrors},
		{"three errors a line", "chain -p 0 -u x -g y -j ACCEPT\n", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseString("f", strings.Repeat(tc.line, 30))
			var list ErrorList
			if s != nil || !errors.As(err, &list) {
				t.Fatalf("ParseString = %v, %v", s, err)
			}
			if len(list) != maxErrors || list[maxErrors-1].Line != tc.lastLine {
				t.Fatalf("got %d errors, last at line %d; want %d, last at line %d",
					len(list), list[len(list)-1].Line, maxErrors, tc.lastLine)
			}
		})
	}
}

func TestLineTooLong(t *testing.T) {
	in := "chain -j ACCEPT\n# " + strings.Repeat("x", maxLineLen) + "\nchain -j RETURN\n"
	_, err := ParseString("f", in)
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Col != 1 {
		t.Fatalf("ParseString(long line) = %v, want an error at f:2:1", err)
	}
}

func TestMerge(t *testing.T) {
	many := &Set{Rules: make([]Rule, MaxRules-1)}
	for _, tc := range []struct {
		name    string
		sets    []*Set
		want    int
		wantErr string
	}{
		{"none", nil, 0, ""},
		{"nil sets", []*Set{nil, nil}, 0, ""},
		{"default twice", []*Set{Default(), nil, Default()}, 4, ""},
		{"exactly the limit", []*Set{many, {Rules: make([]Rule, 1)}}, MaxRules, ""},
		{"over the limit", []*Set{many, Default()}, 0,
			"merge rules: 65 rules in total, the BPF rule table holds 64; hint: " + LimitHint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Merge(tc.sets...)
			if tc.wantErr != "" {
				if s != nil || err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Merge = %v, %v; want error %q", s, err, tc.wantErr)
				}
				return
			}
			if err != nil || s == nil || len(s.Rules) != tc.want {
				t.Fatalf("Merge = %v, %v; want %d rules", s, err, tc.want)
			}
		})
	}
}

func TestMergeOrderAndCopy(t *testing.T) {
	a, b := Default(), &Set{Rules: []Rule{{GID: 5, HasGID: true, Target: Accept}}}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\nchain --gid-owner 5 -j ACCEPT\n"
	if got := m.String(); got != want {
		t.Fatalf("Merge = %q, want %q", got, want)
	}
	m.Rules[0].UID = 1
	if a.Rules[0].UID != 1337 {
		t.Fatal("Merge result shares memory with its input")
	}
}
