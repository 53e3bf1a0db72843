package bpf

import (
	"math/rand"
	"net/netip"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf/internal/ruletest"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
)

// ruleCase has the layout of struct ruletest_case (c/ruletest.c).
type ruleCase struct {
	Cfg     meshPodConfig
	A, B    ruleEnd
	Verdict uint32
	Pad     uint32
}

// ruleEnd has the layout of struct end (c/rules.h).
type ruleEnd struct {
	IP             [4]uint32
	Port, UID, GID uint32
	Pad            uint32
}

func toEnd(e rules.Endpoint) ruleEnd {
	out := ruleEnd{IP: addrWords(e.Addr)}
	out.Port, out.UID, out.GID = uint32(e.Port), e.UID, e.GID
	return out
}

// TestRulesBPFMatchesReference runs random rule sets and connections through
// the kernel's rule evaluation and the rules package and wants the same
// verdict every time.
func TestRulesBPFMatchesReference(t *testing.T) {
	testenv.RequireRoot(t)
	if err := CheckKernel(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	h, err := ruletest.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rng := rand.New(rand.NewSource(1))
	sets := []*rules.Set{nil, rules.Default()}
	for i := 0; i < 300; i++ {
		sets = append(sets, randomSet(rng))
	}
	for si, set := range sets {
		cfg, err := encodePodConfig(PodConfig{Rules: set})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 20; j++ {
			a, b := randomEnd(rng), randomEnd(rng)
			want := set.Accelerate(a, b)
			got, err := h.Eval(&ruleCase{Cfg: *cfg, A: toEnd(a), B: toEnd(b)})
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("set %d:\n%s\na=%+v b=%+v: kernel says %v, rules package %v", si, set, a, b, got, want)
			}
		}
	}
}

var (
	testAddrs = []string{"10.0.0.1", "10.0.0.200", "10.1.2.3", "127.0.0.1", "127.0.0.6",
		"fd00::1", "fd00::1:2", "::1", "2001:db8::5", "::ffff:10.0.0.1"}
	testPrefixes = []string{"10.0.0.0/24", "10.0.0.0/8", "10.0.0.1/32", "127.0.0.0/8", "0.0.0.0/0",
		"fd00::/64", "fd00::/16", "::/0", "::1/128", "2001:db8::/32"}
	testPorts = []uint16{80, 8080, 15001, 15006, 40000}
	testIDs   = []uint32{0, 1000, 1337}
)

func randomEnd(rng *rand.Rand) rules.Endpoint {
	return rules.Endpoint{
		Addr: netip.MustParseAddr(testAddrs[rng.Intn(len(testAddrs))]),
		Port: testPorts[rng.Intn(len(testPorts))],
		UID:  testIDs[rng.Intn(len(testIDs))],
		GID:  testIDs[rng.Intn(len(testIDs))],
	}
}

func randomSet(rng *rand.Rand) *rules.Set {
	s := &rules.Set{}
	for n := 1 + rng.Intn(6); n > 0; n-- {
		r := rules.Rule{Target: rules.Accept}
		if rng.Intn(3) == 0 {
			r.Target = rules.Return
		}
		if rng.Intn(3) == 0 {
			r.Prefix, r.HasIP = netip.MustParsePrefix(testPrefixes[rng.Intn(len(testPrefixes))]), true
		}
		if rng.Intn(3) == 0 {
			lo := testPorts[rng.Intn(len(testPorts))]
			r.PortLo, r.PortHi, r.HasPort = lo, lo+uint16(rng.Intn(10)), true
		}
		if rng.Intn(3) == 0 {
			r.UID, r.HasUID = testIDs[rng.Intn(len(testIDs))], true
		}
		if rng.Intn(4) == 0 {
			r.GID, r.HasGID = testIDs[rng.Intn(len(testIDs))], true
		}
		s.Rules = append(s.Rules, r)
	}
	return s
}
