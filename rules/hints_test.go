package rules

import (
	"errors"
	"strings"
	"testing"
)

// The hints of the common mistakes, and columns counted in characters.
func TestHints(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Error // File is "h.rules"
	}{
		{"repeated ip", "chain --ip 10.0.0.0/8 --ip 192.168.0.0/16 -j RETURN",
			Error{Line: 1, Col: 23, Token: "--ip", Msg: "repeated option --ip, first given at column 7",
				Hint: "one CIDR per rule: write one chain line per CIDR"}},
		{"repeated uid", "chain -u 1 -u 2 -j ACCEPT",
			Error{Line: 1, Col: 12, Token: "-u", Msg: "repeated option --uid-owner, first given at column 7",
				Hint: "one uid per rule: write one chain line per uid"}},
		{"port with =", "chain --port=15006 -j RETURN",
			Error{Line: 1, Col: 7, Token: "--port=15006", Msg: "option --port and its value must be separated by a space, not =",
				Hint: "write --port 15006"}},
		{"short option with =", "chain -u=1337 -j ACCEPT",
			Error{Line: 1, Col: 7, Token: "-u=1337", Msg: "option -u and its value must be separated by a space, not =",
				Hint: "write -u 1337"}},
		{"lower case return", "chain -p 80 -j Return",
			Error{Line: 1, Col: 16, Token: "Return", Msg: `unknown target "Return" (want ACCEPT or RETURN)`,
				Hint: "targets are case-sensitive: write RETURN"}},
		{"iptables range", "chain -p 1000:2000 -j RETURN",
			Error{Line: 1, Col: 10, Token: "1000:2000", Msg: "bad port (want a port 1..65535 or a range like 15001-15006)",
				Hint: "a range is written with a dash: --port 1000-2000"}},
		// é and ü are two bytes each: a byte column would say 23.
		{"characters before the error", "chain -i é -p ü -j ACCEPT",
			Error{Line: 1, Col: 10, Token: "é", Msg: "bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)"}},
		{"column after a multi-byte comment", "# ünïcode\nchain --uid-owner 1337 -j ACCEPT # ok\nchain   \u00a0-p 80 -j ACCEPT",
			Error{Line: 3, Col: 9, Token: "\u00a0-p", Msg: "unexpected value (want an option)"}},
		{"missing target after multi-byte", "chain -p 80 -j ACCEPT\nchain -i ::1 #é\nchain -u 1 -g 2",
			Error{Line: 2, Col: 13, Msg: "missing target: add -j ACCEPT or -j RETURN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseString("h.rules", tc.in)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("ParseString(%q) = %v, want an ErrorList", tc.in, err)
			}
			tc.want.File = "h.rules"
			if *list[0] != tc.want {
				t.Errorf("ParseString(%q) error\n%+v\nwant\n%+v", tc.in, *list[0], tc.want)
			}
			if tc.want.Hint != "" && !strings.HasSuffix(list[0].Error(), "; hint: "+tc.want.Hint) {
				t.Errorf("Error() %q does not end with the hint", list[0].Error())
			}
		})
	}
}

// Two errors on a line with multi-byte characters: both columns count
// characters.
func TestColumnsInCharacters(t *testing.T) {
	_, err := ParseString("c.rules", "chain -g é -p ü -j ACCEPT")
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("errors %v", err)
	}
	if list[0].Col != 10 || list[1].Col != 15 {
		t.Errorf("columns %d and %d, want 10 and 15", list[0].Col, list[1].Col)
	}
}

// The limit's hint names what shares the rule table and what to do.
func TestLimitHint(t *testing.T) {
	for _, want := range []string{"node's rules", "accel.mesh/rules", "Istio exclusions", "--port 1000-2000", "wider CIDR"} {
		if !strings.Contains(LimitHint, want) {
			t.Errorf("LimitHint lacks %q: %s", want, LimitHint)
		}
	}
}

// ParseAt places errors and rules in the file that embeds the rules.
func TestParseAt(t *testing.T) {
	s, err := ParseAt("cm.yaml", strings.NewReader("chain -u 1 -j ACCEPT\n\nchain -p 80 -j RETURN\n"), 9, 4)
	if err != nil || s.Rules[0].Line != 9 || s.Rules[1].Line != 11 || s.Rules[1].File != "cm.yaml" {
		t.Fatalf("ParseAt = %+v, %v", s, err)
	}
	_, err = ParseAt("cm.yaml", strings.NewReader("# c\nchain -p 80 --port 81 -j RETURN\n"), 9, 4)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("ParseAt error %v", err)
	}
	want := Error{File: "cm.yaml", Line: 10, Col: 17, Token: "--port", Msg: "repeated option --port, first given at column 11",
		Hint: repeatHints[optPort]}
	if *list[0] != want {
		t.Errorf("error %+v, want %+v", *list[0], want)
	}
}
