package rules

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// maxErrors is the number of errors after which Parse stops.
	maxErrors = 20
	// maxLineLen is the length of the longest line Parse reads.
	maxLineLen = 64 * 1024
	// maxID is the largest uid or gid; 4294967295 is (uid_t)-1, "no id".
	maxID = 1<<32 - 2
)

// Error is an error at one place of a rule file.
type Error struct {
	File string
	// Line and Col are 1-based; Col counts characters (a tab is one), as
	// editors do, not bytes.
	Line, Col int
	// Token is the offending token, empty when the error is about something
	// missing (Col then points where it belongs).
	Token string
	Msg   string
	// Hint says how to fix a common mistake; empty when there is nothing
	// to add to Msg.
	Hint string
}

// Error returns file:line:col: msg (at "token"), then "; hint: " and the
// hint when there is one.
func (e *Error) Error() string {
	return e.Position() + ": " + e.Problem()
}

// Position returns file:line:col.
func (e *Error) Position() string { return fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col) }

// Problem returns what Error returns after the position.
func (e *Error) Problem() string {
	s := e.Msg
	if e.Token != "" {
		s += fmt.Sprintf(" (at %q)", e.Token)
	}
	if e.Hint != "" {
		s += "; hint: " + e.Hint
	}
	return s
}

// ErrorList is the errors of a rule file, in order. Parse reports at most
// 20 of them. Unwrap lets errors.As find the first *Error.
type ErrorList []*Error

// Error returns the errors, one per line.
func (l ErrorList) Error() string {
	if len(l) == 0 {
		return "no errors"
	}
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors of l.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// ParseFile parses the rule file at path; errors name the file by path.
func ParseFile(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// ParseString parses the rules in s; errors name the file name.
func ParseString(name, s string) (*Set, error) {
	return Parse(name, strings.NewReader(s))
}

// Parse parses the rules read from r; errors name the file name. Syntax
// errors are reported as an ErrorList. On error the set is nil: nothing
// partial is ever returned.
func Parse(name string, r io.Reader) (*Set, error) { return ParseAt(name, r, 1, 0) }

// ParseAt is Parse for rules embedded in a larger file (a YAML block):
// the first line read from r is line firstLine of the file, and every line
// is indented by indent more characters than r holds. Errors and the
// rules' Line are positions in that file.
func ParseAt(name string, r io.Reader, firstLine, indent int) (*Set, error) {
	p := &parser{file: name, set: &Set{}, lineOff: firstLine - 1, colOff: indent}
	sc := bufio.NewScanner(r) // ScanLines drops the \r of CRLF.
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	n := 0
	for len(p.errs) < maxErrors && sc.Scan() {
		n++
		text := sc.Text()
		if n == 1 {
			text = strings.TrimPrefix(text, "\ufeff") // UTF-8 byte order mark
		}
		p.parseLine(n, text)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		p.errorf(n+1, 1, "", "line longer than %d bytes", maxLineLen)
	} else if err != nil {
		return nil, fmt.Errorf("read rules %s: %w", name, err)
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return p.set, nil
}

// parser holds the state of Parse.
type parser struct {
	file    string
	set     *Set
	lineOff int // added to line numbers (ParseAt)
	colOff  int // added to columns (ParseAt)
	errs    ErrorList
	dropped bool // the last error was not recorded: maxErrors reached
	rules   int  // rule lines so far, valid or not
}

// errorf records an error unless maxErrors are recorded already.
func (p *parser) errorf(line, col int, tok, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		p.dropped = true
		return
	}
	p.dropped = false
	p.errs = append(p.errs, &Error{
		File: p.file, Line: line + p.lineOff, Col: col + p.colOff, Token: tok, Msg: fmt.Sprintf(format, args...),
	})
}

// hint sets the hint of the error errorf recorded last (unless it was
// dropped).
func (p *parser) hint(h string) {
	if h != "" && !p.dropped && len(p.errs) > 0 {
		p.errs[len(p.errs)-1].Hint = h
	}
}

// LimitHint explains the limit of MaxRules rules per pod and how to stay
// under it.
var LimitHint = fmt.Sprintf("the %d rules of a pod are shared by the node's rules, the pod's own rules "+
	"(annotation accel.mesh/rules) and its Istio exclusions (traffic.sidecar.istio.io/exclude*): "+
	"cover several ports with one range (--port 1000-2000) and several addresses with one wider CIDR "+
	"(--ip 10.0.0.0/8)", MaxRules)

// token is a word of a line and its 1-based column in characters.
type token struct {
	text string
	col  int
}

// tokenize splits s into tokens separated by spaces and tabs, up to a token
// starting with #. end is the column (in characters, 0-based) just after
// the last token.
func tokenize(s string) (toks []token, end int) {
	toks, end = tokenizeBytes(s)
	for i := range toks {
		toks[i].col = utf8.RuneCountInString(s[:toks[i].col-1]) + 1
	}
	return toks, utf8.RuneCountInString(s[:end])
}

// tokenizeBytes is tokenize with columns and end in bytes.
func tokenizeBytes(s string) (toks []token, end int) {
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		if s[i] == '#' {
			break
		}
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		toks = append(toks, token{text: s[start:i], col: start + 1})
		end = i
	}
	return toks, end
}

// parseLine parses line number n, which reads text.
func (p *parser) parseLine(n int, text string) {
	toks, end := tokenize(text)
	if len(toks) == 0 {
		return
	}
	p.rules++
	if p.rules == MaxRules+1 {
		p.errorf(n, toks[0].col, "", "too many rules: the BPF rule table holds %d", MaxRules)
		p.hint(LimitHint)
	}
	if toks[0].text != "chain" {
		p.errorf(n, toks[0].col, toks[0].text, `rule must start with "chain"`)
		return
	}
	r, ok := p.parseOptions(n, toks[1:], end)
	if ok && len(p.errs) == 0 {
		r.File, r.Line = p.file, n+p.lineOff
		p.set.Rules = append(p.set.Rules, r)
	}
}

// option is an option of a rule, whatever its spelling.
type option int

const (
	optIP option = iota
	optPort
	optUID
	optGID
	optJump
	numOptions
)

// options maps every spelling of an option to it.
var options = map[string]option{
	"--ip": optIP, "-i": optIP,
	"--port": optPort, "-p": optPort,
	"--uid-owner": optUID, "-u": optUID,
	"--gid-owner": optGID, "-g": optGID,
	"-j": optJump, "--j": optJump, "--jump": optJump,
}

// optionInfo is the canonical name of each option and what its value is.
var optionInfo = [numOptions]struct{ name, value string }{
	optIP:   {"--ip", "CIDR"},
	optPort: {"--port", "port or port range"},
	optUID:  {"--uid-owner", "uid"},
	optGID:  {"--gid-owner", "gid"},
	optJump: {"-j", "target (ACCEPT or RETURN)"},
}

// isOption reports whether s spells an option.
func isOption(s string) bool {
	_, ok := options[s]
	return ok
}

// parseOptions parses the options toks of line n into a rule; end is the
// offset after the last token. It reports whether they were all valid.
func (p *parser) parseOptions(n int, toks []token, end int) (Rule, bool) {
	var (
		r    Rule
		seen [numOptions]token // col 0: not seen
		ok   = true
	)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		opt, known := options[t.text]
		hasValue := i+1 < len(toks) && !isOption(toks[i+1].text)
		switch {
		case !known && glued(t.text):
			name, v, _ := strings.Cut(t.text, "=")
			p.errorf(n, t.col, t.text, "option %s and its value must be separated by a space, not =", name)
			p.hint(fmt.Sprintf("write %s %s", name, v))
		case !known && strings.HasPrefix(t.text, "-"):
			p.errorf(n, t.col, t.text, "unknown option (want --ip, --port, --uid-owner, --gid-owner or -j)")
			if hasValue {
				i++ // skip the value of the unknown option
			}
		case !known:
			p.errorf(n, t.col, t.text, "unexpected value (want an option)")
		case seen[opt].col != 0:
			p.errorf(n, t.col, t.text, "repeated option %s, first given at column %d",
				optionInfo[opt].name, seen[opt].col+p.colOff)
			p.hint(repeatHints[opt])
			if hasValue {
				i++
			}
		case !hasValue:
			seen[opt] = t
			p.errorf(n, t.col, t.text, "missing %s after option", optionInfo[opt].value)
		default:
			seen[opt] = t
			i++
			v := toks[i]
			if err := setOption(&r, opt, v.text); err != nil {
				p.errorf(n, v.col, v.text, "%v", err)
				var h *hinted
				if errors.As(err, &h) {
					p.hint(h.hint)
				}
				ok = false
			}
			continue
		}
		ok = false // every case but the last is an error
	}
	if ok && seen[optJump].col == 0 {
		p.errorf(n, end+1, "", "missing target: add -j ACCEPT or -j RETURN")
		ok = false
	}
	return r, ok
}

// repeatHints say what to write instead of repeating an option.
var repeatHints = [numOptions]string{
	optIP:   "one CIDR per rule: write one chain line per CIDR",
	optPort: "one port or range per rule: write a range (--port 1000-2000) or one chain line per port",
	optUID:  "one uid per rule: write one chain line per uid",
	optGID:  "one gid per rule: write one chain line per gid",
	optJump: "one target per rule: ACCEPT or RETURN",
}

// glued reports whether s is an option glued to its value with =, as in
// --port=15006.
func glued(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	return ok && isOption(name)
}

// hinted is an error with a hint on how to fix it.
type hinted struct {
	msg, hint string
}

func (h *hinted) Error() string { return h.msg }

// setOption sets option opt of r to the value v.
func setOption(r *Rule, opt option, v string) error {
	var err error
	switch opt {
	case optIP:
		r.Prefix, err = parsePrefix(v)
		r.HasIP = true
	case optPort:
		r.PortLo, r.PortHi, err = parsePorts(v)
		r.HasPort = true
	case optUID:
		r.UID, err = parseID("uid", v)
		r.HasUID = true
	case optGID:
		r.GID, err = parseID("gid", v)
		r.HasGID = true
	case optJump:
		r.Target, err = parseTarget(v)
	}
	return err
}

// parsePrefix parses a CIDR or a bare address. The prefix must be masked;
// IPv4-mapped prefixes of /96 or longer become IPv4 prefixes.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, errors.New("bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)")
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, errors.New("bad CIDR (want an address or prefix like 10.0.0.0/8 or fd00::/64)")
		}
		if a.Zone() != "" {
			return p, errors.New("bad CIDR: IPv6 zones are not allowed")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("CIDR has host bits set (want %s)", m)
	}
	return unmapPrefix(p), nil
}

// parsePorts parses a port or an inclusive range lo-hi.
func parsePorts(s string) (lo, hi uint16, err error) {
	los, his, isRange := strings.Cut(s, "-")
	if !isDecimal(los) || isRange && !isDecimal(his) {
		const msg = "bad port (want a port 1..65535 or a range like 15001-15006)"
		if a, b, ok := strings.Cut(s, ":"); ok && isDecimal(a) && isDecimal(b) {
			return 0, 0, &hinted{msg, fmt.Sprintf("a range is written with a dash: --port %s-%s", a, b)}
		}
		return 0, 0, errors.New(msg)
	}
	if lo, err = parsePort(los); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(his); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("empty port range: %d > %d", lo, hi)
	}
	return lo, hi, nil
}

// parsePort parses a port 1..65535 of digits only.
func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil || v == 0 {
		return 0, errors.New("port out of range 1..65535")
	}
	return uint16(v), nil
}

// parseID parses a uid or gid (what) 0..4294967294.
func parseID(what, s string) (uint32, error) {
	if !isDecimal(s) {
		return 0, fmt.Errorf("bad %s (want a decimal number 0..%d)", what, uint32(maxID))
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > maxID {
		return 0, fmt.Errorf("%s out of range 0..%d", what, uint32(maxID))
	}
	return uint32(v), nil
}

// parseTarget parses ACCEPT or RETURN.
func parseTarget(s string) (Target, error) {
	switch s {
	case "ACCEPT":
		return Accept, nil
	case "RETURN":
		return Return, nil
	}
	msg := fmt.Sprintf("unknown target %q (want ACCEPT or RETURN)", s)
	if u := strings.ToUpper(s); u == "ACCEPT" || u == "RETURN" {
		return 0, &hinted{msg, "targets are case-sensitive: write " + u}
	}
	return 0, errors.New(msg)
}

// isDecimal reports whether s is a non-empty string of ASCII digits.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
