// Package rules parses the rule files that choose which connections
// mesh-accel accelerates with sockmap, in the format of the original
// (openEuler) tool:
//
//	# accelerate traffic of uid 1337 (the Envoy sidecar), never port 15006
//	chain --uid-owner 1337 -j ACCEPT
//	chain --port 15006 -j RETURN
//
// Every line that is neither blank nor a comment is one rule: the keyword
// chain, then options, each at most once and in any order:
//
//	--ip, -i CIDR            IPv4 or IPv6 prefix; a bare address is a /32 or /128
//	--port, -p PORT[-PORT]   a port or an inclusive range of ports, 1..65535
//	--uid-owner, -u UID      owner uid of the socket, 0..4294967294
//	--gid-owner, -g GID      owner gid of the socket, 0..4294967294
//	-j, --j, --jump TARGET   ACCEPT or RETURN, required
//
// Tokens are separated by spaces and tabs; a token that starts with # starts
// a comment that runs to the end of the line. Lines may end in CRLF.
//
// A rule matches a connection when each of its options is satisfied by at
// least one of the two ends; a connection is accelerated when an ACCEPT rule
// matches it and no RETURN rule does (see Set.Accelerate). The BPF program
// implements the same semantics; this package is their reference.
package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// MaxRules is the number of rules the BPF rule table of a pod holds.
const MaxRules = 64

// DefaultFile is the file name of the rules returned by Default.
const DefaultFile = "<default>"

// Target is what a matching rule does with a connection.
type Target uint8

// Targets. The zero Target is invalid: a rule with it never takes effect.
const (
	// Accept accelerates the connections the rule matches, unless a Return
	// rule matches them too.
	Accept Target = iota + 1
	// Return keeps the connections the rule matches on the regular network
	// path; it wins over Accept.
	Return
)

// String returns the target as written in a rule file: ACCEPT or RETURN.
func (t Target) String() string {
	switch t {
	case Accept:
		return "ACCEPT"
	case Return:
		return "RETURN"
	}
	return "Target(" + strconv.Itoa(int(t)) + ")"
}

// Rule is one line of a rule file. Each HasX field tells whether the rule
// has the option X; an option the rule lacks matches everything.
type Rule struct {
	// File and Line locate the rule in its source; they are not part of
	// what the rule means (Equal ignores them).
	File string
	Line int

	// Prefix is stored masked (host bits zero). Parse stores IPv4-mapped
	// IPv6 prefixes of /96 and longer (::ffff:10.0.0.0/104) as the IPv4
	// prefix they cover (10.0.0.0/8).
	Prefix netip.Prefix
	HasIP  bool

	// PortLo and PortHi are an inclusive range, 1 <= PortLo <= PortHi.
	PortLo, PortHi uint16
	HasPort        bool

	UID    uint32
	HasUID bool

	GID    uint32
	HasGID bool

	Target Target
}

// String returns the rule in canonical long form, options in the order
// ip, port, uid-owner, gid-owner, then -j:
//
//	chain --ip 10.0.0.0/8 --port 80 -j ACCEPT
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString("chain")
	if r.HasIP {
		b.WriteString(" --ip ")
		b.WriteString(r.Prefix.String())
	}
	if r.HasPort {
		b.WriteString(" --port ")
		b.WriteString(strconv.Itoa(int(r.PortLo)))
		if r.PortHi != r.PortLo {
			b.WriteString("-")
			b.WriteString(strconv.Itoa(int(r.PortHi)))
		}
	}
	if r.HasUID {
		b.WriteString(" --uid-owner ")
		b.WriteString(strconv.FormatUint(uint64(r.UID), 10))
	}
	if r.HasGID {
		b.WriteString(" --gid-owner ")
		b.WriteString(strconv.FormatUint(uint64(r.GID), 10))
	}
	b.WriteString(" -j ")
	b.WriteString(r.Target.String())
	return b.String()
}

// Equal reports whether r and o have the same options and target. File and
// Line are ignored, and so are the values of options a rule lacks.
func (r Rule) Equal(o Rule) bool {
	return r.Target == o.Target && r.sameMatch(o)
}

// sameMatch reports whether r and o have the same options.
func (r Rule) sameMatch(o Rule) bool {
	switch {
	case r.HasIP != o.HasIP || r.HasPort != o.HasPort ||
		r.HasUID != o.HasUID || r.HasGID != o.HasGID:
		return false
	case r.HasIP && unmapPrefix(r.Prefix.Masked()) != unmapPrefix(o.Prefix.Masked()):
		return false
	case r.HasPort && (r.PortLo != o.PortLo || r.PortHi != o.PortHi):
		return false
	case r.HasUID && r.UID != o.UID:
		return false
	case r.HasGID && r.GID != o.GID:
		return false
	}
	return true
}

// covers reports whether r matches every connection that a matches. Since
// the end that satisfies an option of a then satisfies the same option of
// r, it is enough that every option of r is also an option of a with a
// value that r's value contains.
func (r Rule) covers(a Rule) bool {
	switch {
	case r.HasIP && !(a.HasIP && prefixCovers(r.Prefix, a.Prefix)):
		return false
	case r.HasPort && !(a.HasPort && r.PortLo <= a.PortLo && a.PortHi <= r.PortHi):
		return false
	case r.HasUID && !(a.HasUID && r.UID == a.UID):
		return false
	case r.HasGID && !(a.HasGID && r.GID == a.GID):
		return false
	}
	return true
}

// prefixCovers reports whether outer contains every address of inner.
func prefixCovers(outer, inner netip.Prefix) bool {
	outer, inner = unmapPrefix(outer), unmapPrefix(inner)
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// pos names where rule number i (0-based) of a set comes from.
func (r Rule) pos(i int) string {
	switch {
	case r.Line > 0 && r.File != "":
		return r.File + ":" + strconv.Itoa(r.Line)
	case r.Line > 0:
		return "line " + strconv.Itoa(r.Line)
	}
	return "rule " + strconv.Itoa(i+1)
}

// Set is the rules of one pod (or of one file), in order.
type Set struct {
	Rules []Rule
}

// Default returns the rules used when no rule file is given: accelerate the
// traffic of the Envoy sidecar (uid nodestate.DefaultSidecarUID, Istio's
// 1337), never port 15006 (its inbound listener). Each call returns a new
// Set.
func Default() *Set { return DefaultFor(nodestate.DefaultSidecarUID) }

// DefaultFor is Default for a sidecar that runs as uid (OpenShift gives
// Envoy another uid than 1337).
func DefaultFor(uid uint32) *Set {
	return &Set{Rules: []Rule{
		{File: DefaultFile, Line: 1, UID: uid, HasUID: true, Target: Accept},
		{File: DefaultFile, Line: 2, PortLo: 15006, PortHi: 15006, HasPort: true, Target: Return},
	}}
}

// SidecarHops accelerates every connection of the sidecar running as uid,
// the sidecar-to-sidecar hop to its inbound port 15006 included: the
// profile for pods whose apps cannot be declared recvmsg readers. That hop
// has the sidecar reading at both ends, so it is accelerated both ways
// without trusting the app; the app hops are accelerated only towards the
// sidecar.
func SidecarHops(uid uint32) *Set {
	return &Set{Rules: []Rule{{File: DefaultFile, Line: 1, UID: uid, HasUID: true, Target: Accept}}}
}

// SidecarHopsUnder is SidecarHops under the node's rules node: their
// RETURN rules (an operator's exclusions) stay, before the profile's ACCEPT
// rule, but for the default's port 15006 rule, which the profile lifts.
func SidecarHopsUnder(node *Set, uid uint32) *Set {
	lifted := DefaultFor(uid).Rules[1] // chain --port 15006 -j RETURN
	out := &Set{}
	if node != nil {
		for _, r := range node.Rules {
			if r.Target == Return && !r.Equal(lifted) {
				out.Rules = append(out.Rules, r)
			}
		}
	}
	out.Rules = append(out.Rules, SidecarHops(uid).Rules...)
	return out
}

// String returns the rules in canonical form, one per line, each line
// ending in a newline. ParseString of the result gives a set Equal to s.
func (s *Set) String() string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	for _, r := range s.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Equal reports whether s and t hold Equal rules in the same order. A nil
// set equals an empty one.
func (s *Set) Equal(t *Set) bool {
	var a, b []Rule
	if s != nil {
		a = s.Rules
	}
	if t != nil {
		b = t.Rules
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// Merge returns a new set holding the rules of sets in order, skipping nil
// sets. It fails when they hold more than MaxRules rules in total.
func Merge(sets ...*Set) (*Set, error) {
	n := 0
	for _, s := range sets {
		if s != nil {
			n += len(s.Rules)
		}
	}
	if n > MaxRules {
		return nil, fmt.Errorf("merge rules: %d rules in total, the BPF rule table holds %d; hint: %s", n, MaxRules, LimitHint)
	}
	out := &Set{Rules: make([]Rule, 0, n)}
	for _, s := range sets {
		if s != nil {
			out.Rules = append(out.Rules, s.Rules...)
		}
	}
	return out, nil
}

// Warnings returns what is legal in s but probably not what its author
// meant: a set that accelerates everything (no rules) or nothing (no ACCEPT
// rule), rules identical to an earlier rule, and ACCEPT rules that never
// take effect because a RETURN rule matches every connection they match.
// Warnings about one rule start with its file:line.
func (s *Set) Warnings() []string {
	if s == nil || len(s.Rules) == 0 {
		return []string{"no rules: every connection is accelerated"}
	}
	var w []string
	if !s.hasTarget(Accept) {
		w = append(w, "no ACCEPT rule: no connection is accelerated")
	}
	for i, r := range s.Rules {
		if r.Target != Accept && r.Target != Return {
			w = append(w, fmt.Sprintf("%s: invalid target %s: the rule has no effect", r.pos(i), r.Target))
			continue
		}
		if j := s.index(r, i); j >= 0 {
			w = append(w, fmt.Sprintf("%s: rule repeats the rule at %s", r.pos(i), s.Rules[j].pos(j)))
			continue
		}
		if r.Target != Accept {
			continue
		}
		for j, o := range s.Rules {
			if o.Target == Return && o.covers(r) {
				w = append(w, fmt.Sprintf("%s: ACCEPT rule has no effect: the RETURN rule at %s matches all its connections",
					r.pos(i), o.pos(j)))
				break
			}
		}
	}
	return w
}

// hasTarget reports whether a rule of s has target t.
func (s *Set) hasTarget(t Target) bool {
	for _, r := range s.Rules {
		if r.Target == t {
			return true
		}
	}
	return false
}

// index returns the index of the first of the first n rules of s that is
// Equal to r, or -1.
func (s *Set) index(r Rule, n int) int {
	for j, o := range s.Rules[:n] {
		if o.Equal(r) {
			return j
		}
	}
	return -1
}
