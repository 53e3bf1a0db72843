package monitoring

import (
	"fmt"
	"sort"
	"strings"
)

// keywords of PromQL that read like metric names (case-insensitive, as in
// PromQL): operators, modifiers, the grouping clauses, Inf and NaN.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// grouping clauses: their parenthesised list names labels.
var grouping = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// MetricNames returns the metric names a PromQL expression selects, sorted
// and once each. It is a tokenizer, not a parser (the module has no PromQL
// parser): it skips strings, label matchers ({...}), ranges ([...]),
// numbers and durations, Grafana variables ($x, ${x}), comments, function
// and aggregation names (an identifier before "(", by or without),
// keywords, and the label
// lists of by, without, on, ignoring, group_left and group_right. It fails
// on what it cannot scan (an unterminated string or bracket).
func MetricNames(expr string) ([]string, error) {
	s := &scanner{src: expr}
	names := map[string]bool{}
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := s.skipString(); err != nil {
				return nil, err
			}
		case c == '{' || c == '[':
			if err := s.skipBracket(); err != nil {
				return nil, err
			}
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		case c == '$':
			s.skipVariable()
		case isDigit(c) || (c == '.' && s.pos+1 < len(s.src) && isDigit(s.src[s.pos+1])):
			for s.pos < len(s.src) && (isIdent(s.src[s.pos]) || s.src[s.pos] == '.') {
				s.pos++
			}
		case isIdentStart(c):
			id := s.ident()
			next, kw := s.peek(), strings.ToLower(id)
			switch {
			case grouping[kw] && next == '(':
				if err := s.skipParens(); err != nil {
					return nil, err
				}
			case keywords[kw] || next == '(' || s.aggregation():
			default:
				names[id] = true
			}
		default:
			s.pos++
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

type scanner struct {
	src string
	pos int
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c == ':' || (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isIdent(c byte) bool      { return isIdentStart(c) || isDigit(c) }

func (s *scanner) ident() string {
	start := s.pos
	for s.pos < len(s.src) && isIdent(s.src[s.pos]) {
		s.pos++
	}
	return s.src[start:s.pos]
}

// peek returns the next character after white space (0 at the end),
// without consuming it.
func (s *scanner) peek() byte {
	rest := strings.TrimLeft(s.src[s.pos:], " \t\r\n")
	if rest == "" {
		return 0
	}
	return rest[0]
}

// aggregation reports whether by or without follows: the identifier just
// read is an aggregation operator (sum by (l) (x)).
func (s *scanner) aggregation() bool {
	rest := strings.TrimLeft(s.src[s.pos:], " \t\r\n")
	end := 0
	for end < len(rest) && isIdent(rest[end]) {
		end++
	}
	w := strings.ToLower(rest[:end])
	return w == "by" || w == "without"
}

// skipString skips a quoted string; backslash escapes in "" and ”.
func (s *scanner) skipString() error {
	quote, start := s.src[s.pos], s.pos
	for s.pos++; s.pos < len(s.src); s.pos++ {
		switch c := s.src[s.pos]; {
		case c == '\\' && quote != '`':
			s.pos++
		case c == quote:
			s.pos++
			return nil
		}
	}
	return fmt.Errorf("unterminated string at offset %d of %q", start, s.src)
}

// skipBracket skips {...} or [...], strings inside included.
func (s *scanner) skipBracket() error {
	open, start := s.src[s.pos], s.pos
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}[open]
	for s.pos++; s.pos < len(s.src); {
		switch c := s.src[s.pos]; {
		case c == '"' || c == '\'' || c == '`':
			if err := s.skipString(); err != nil {
				return err
			}
		case c == closing:
			s.pos++
			return nil
		default:
			s.pos++
		}
	}
	return fmt.Errorf("unterminated %c at offset %d of %q", open, start, s.src)
}

// skipParens skips white space and a parenthesised label list.
func (s *scanner) skipParens() error {
	for s.src[s.pos] != '(' {
		s.pos++
	}
	return s.skipBracket()
}

// skipVariable skips a Grafana variable: $name, ${name} or ${name:format}.
func (s *scanner) skipVariable() {
	s.pos++
	if s.pos < len(s.src) && s.src[s.pos] == '{' {
		if end := strings.IndexByte(s.src[s.pos:], '}'); end >= 0 {
			s.pos += end + 1
			return
		}
	}
	for s.pos < len(s.src) && isIdent(s.src[s.pos]) {
		s.pos++
	}
}
