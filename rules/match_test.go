package rules

import (
	"net/netip"
	"testing"
)

// ep builds an Endpoint; addr may be empty for "no address".
func ep(addr string, port uint16, uid, gid uint32) Endpoint {
	e := Endpoint{Port: port, UID: uid, GID: gid}
	if addr != "" {
		e.Addr = netip.MustParseAddr(addr)
	}
	return e
}

func mustParse(t *testing.T, s string) *Set {
	t.Helper()
	set, err := ParseString("t.rules", s)
	if err != nil {
		t.Fatalf("ParseString(%q): %v", s, err)
	}
	return set
}

// Endpoints of a pod: the application, and its Envoy sidecar on the
// outbound (15001) and inbound (15006) listeners.
var (
	appEnd     = ep("10.0.0.5", 40000, 1000, 1000)
	sidecarEnd = ep("127.0.0.1", 15001, 1337, 1337)
	inboundEnd = ep("10.0.0.5", 15006, 1337, 1337)
)

// accelerateTests are connections (a, b) and whether rules accelerate them.
var accelerateTests = []struct {
	name  string
	rules string // "-" for the default set
	a, b  Endpoint
	want  bool
}{
	{"default: app to sidecar outbound", "-", appEnd, sidecarEnd, true},
	{"default: sidecar to app", "-", sidecarEnd, appEnd, true},
	{"default: port 15006 on b", "-", sidecarEnd, inboundEnd, false},
	{"default: port 15006 on a", "-", inboundEnd, sidecarEnd, false},
	{"default: port 15006 without sidecar", "-", appEnd, ep("10.0.0.6", 15006, 1000, 1000), false},
	{"default: no sidecar", "-", appEnd, ep("10.0.0.6", 8080, 1001, 1001), false},

	{"empty set", "", appEnd, appEnd, true},
	{"comments only", "# nothing\n", appEnd, sidecarEnd, true},
	{"no options matches all", "chain -j ACCEPT", appEnd, appEnd, true},
	{"only RETURN", "chain -u 1000 -j RETURN", appEnd, sidecarEnd, false},
	{"only RETURN, no match", "chain -u 1 -j RETURN", appEnd, sidecarEnd, false},

	{"RETURN wins after ACCEPT", "chain -u 1337 -j ACCEPT\nchain -u 1000 -j RETURN", appEnd, sidecarEnd, false},
	{"RETURN wins before ACCEPT", "chain -u 1000 -j RETURN\nchain -u 1337 -j ACCEPT", appEnd, sidecarEnd, false},
	{"RETURN not matching", "chain -u 1337 -j ACCEPT\nchain -u 5 -j RETURN", appEnd, sidecarEnd, true},

	{"ip on a, uid on b", "chain --ip 10.0.0.0/24 --uid-owner 1337 -j ACCEPT", appEnd, sidecarEnd, true},
	{"ip on b, uid on a", "chain --ip 10.0.0.0/24 --uid-owner 1337 -j ACCEPT", sidecarEnd, appEnd, true},
	{"ip on neither", "chain --ip 10.1.0.0/24 --uid-owner 1337 -j ACCEPT", appEnd, sidecarEnd, false},
	{"uid on neither", "chain --ip 10.0.0.0/24 --uid-owner 7 -j ACCEPT", appEnd, sidecarEnd, false},
	{"port on a, gid on b", "chain -p 40000-40010 -g 1337 -j ACCEPT", appEnd, sidecarEnd, true},
	{"port on neither", "chain -p 40001-40010 -g 1337 -j ACCEPT", appEnd, sidecarEnd, false},
	{"port range bounds", "chain -p 15001-40000 -j ACCEPT",
		ep("10.0.0.1", 15000, 0, 0), ep("10.0.0.2", 40000, 0, 0), true},
	{"port range outside", "chain -p 15001-39999 -j ACCEPT",
		ep("10.0.0.1", 15000, 0, 0), ep("10.0.0.2", 40000, 0, 0), false},
	{"uid 0", "chain -u 0 -j ACCEPT", ep("10.0.0.1", 1, 0, 5), ep("10.0.0.2", 2, 5, 5), true},
	{"gid only on b", "chain -g 7 -j ACCEPT", ep("10.0.0.1", 1, 7, 1), ep("10.0.0.2", 2, 1, 7), true},
	{"gid is not uid", "chain -g 7 -j ACCEPT", ep("10.0.0.1", 1, 7, 1), ep("10.0.0.2", 2, 7, 1), false},
	{"all options on different ends", "chain -i 10.0.0.0/8 -p 80 -u 1 -g 2 -j ACCEPT",
		ep("10.0.0.1", 1, 1, 0), ep("192.168.0.1", 80, 0, 2), true},

	{"v4 prefix, v4-mapped address", "chain --ip 10.0.0.0/8 -j ACCEPT",
		ep("::ffff:10.1.2.3", 1, 0, 0), ep("fd00::1", 2, 0, 0), true},
	{"v4 prefix, other v4-mapped address", "chain --ip 10.0.0.0/8 -j ACCEPT",
		ep("::ffff:11.1.2.3", 1, 0, 0), ep("fd00::1", 2, 0, 0), false},
	{"v4 host, v4-mapped address", "chain --ip 10.1.2.3 -j ACCEPT",
		ep("::ffff:10.1.2.3", 1, 0, 0), ep("", 2, 0, 0), true},
	{"v4-mapped prefix, v4 address", "chain --ip ::ffff:10.0.0.0/104 -j ACCEPT",
		ep("10.9.9.9", 1, 0, 0), ep("", 2, 0, 0), true},
	{"v4-mapped RETURN wins", "chain -j ACCEPT\nchain --ip ::ffff:10.0.0.0/104 -j RETURN",
		ep("10.9.9.9", 1, 0, 0), ep("", 2, 0, 0), false},
	{"v6 prefix, v6 address", "chain --ip fd00::/64 -j ACCEPT",
		ep("fd00::5", 1, 0, 0), ep("10.0.0.1", 2, 0, 0), true},
	{"v6 prefix, v6 address outside", "chain --ip fd00::/64 -j ACCEPT",
		ep("fd00:0:0:1::5", 1, 0, 0), ep("10.0.0.1", 2, 0, 0), false},
	{"v6 /0 does not match v4", "chain --ip ::/0 -j ACCEPT",
		ep("10.0.0.1", 1, 0, 0), ep("::ffff:10.0.0.2", 2, 0, 0), false},
	{"v4 /0 matches v4-mapped", "chain --ip 0.0.0.0/0 -j ACCEPT",
		ep("fd00::1", 1, 0, 0), ep("::ffff:10.0.0.2", 2, 0, 0), true},
	{"zone ignored", "chain --ip fe80::/64 -j ACCEPT",
		ep("fe80::1%eth0", 1, 0, 0), ep("", 2, 0, 0), true},
	{"no address never matches an ip rule", "chain --ip 0.0.0.0/0 -j ACCEPT",
		ep("", 1, 0, 0), ep("", 2, 0, 0), false},
}

func TestAccelerate(t *testing.T) {
	for _, tc := range accelerateTests {
		t.Run(tc.name, func(t *testing.T) {
			s := Default()
			if tc.rules != "-" {
				s = mustParse(t, tc.rules)
			}
			if got := s.Accelerate(tc.a, tc.b); got != tc.want {
				t.Errorf("Accelerate(%+v, %+v) = %v, want %v with rules:\n%s", tc.a, tc.b, got, tc.want, s)
			}
			if got := s.Accelerate(tc.b, tc.a); got != tc.want {
				t.Errorf("Accelerate is not symmetric for %+v, %+v", tc.a, tc.b)
			}
		})
	}
}

func TestAccelerateNilSet(t *testing.T) {
	var s *Set
	if !s.Accelerate(Endpoint{}, Endpoint{}) {
		t.Fatal("a nil set must accelerate everything")
	}
}

func TestMatchBuiltRules(t *testing.T) {
	a, b := ep("::ffff:10.0.0.1", 80, 1, 2), ep("fd00::1", 443, 3, 4)
	for _, tc := range []struct {
		name string
		r    Rule
		want bool
	}{
		{"zero rule", Rule{}, true},
		{"unmasked prefix", Rule{Prefix: netip.MustParsePrefix("10.0.0.9/8"), HasIP: true}, true},
		{"mapped prefix", Rule{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104"), HasIP: true}, true},
		{"unset fields ignored", Rule{Prefix: netip.MustParsePrefix("1.0.0.0/8"), UID: 9, PortLo: 9, PortHi: 9}, true},
		{"uid on b", Rule{UID: 3, HasUID: true}, true},
		{"gid on a", Rule{GID: 2, HasGID: true}, true},
		{"gid nowhere", Rule{GID: 1, HasGID: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Match(a, b); got != tc.want {
				t.Errorf("%s: Match = %v, want %v", tc.r, got, tc.want)
			}
		})
	}
}

func TestAccelerateInvalidTarget(t *testing.T) {
	s := &Set{Rules: []Rule{{Target: 0}}}
	if s.Accelerate(Endpoint{}, Endpoint{}) {
		t.Fatal("a rule with an invalid target must not accept")
	}
}
