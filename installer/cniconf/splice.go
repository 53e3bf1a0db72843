package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The conflist is edited as text: the entry is spliced into the plugins
// array and cut out again, so that every other byte of the file (key order,
// indentation, the primary CNI's own formatting) stays as it was, and
// removing the entry gives back exactly the bytes it was inserted into.

// span is the byte range [start, end) of one JSON value.
type span struct{ start, end int }

// pluginList locates the elements of a conflist's top-level plugins array.
type pluginList struct {
	elems []span
	types []string // each element's "type"
}

// errNoPlugins is returned for a conflist without an inline plugins array.
var errNoPlugins = errors.New("no inline \"plugins\" array")

// parsePluginList finds the plugins array of the conflist in data. When the
// key is repeated, the last one counts, as for encoding/json and libcni.
func parsePluginList(data []byte) (*pluginList, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("conflist is not a JSON object (%v)", err)
	}
	var list *pluginList
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("read conflist key: %w", err)
		}
		if tok != "plugins" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, fmt.Errorf("read conflist value of %v: %w", tok, err)
			}
			continue
		}
		if list, err = readPlugins(dec, data); err != nil {
			return nil, err
		}
	}
	if list == nil {
		return nil, errNoPlugins
	}
	return list, nil
}

// readPlugins reads the plugins array at the decoder's position.
func readPlugins(dec *json.Decoder, data []byte) (*pluginList, error) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("\"plugins\" is not an array (%v)", err)
	}
	list := &pluginList{}
	for dec.More() {
		start := skipSeparators(data, int(dec.InputOffset()))
		var elem struct {
			Type string `json:"type"`
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("read plugin %d: %w", len(list.elems), err)
		}
		_ = json.Unmarshal(raw, &elem) // a non-object plugin has no type; libcni rejects the file anyway
		list.elems = append(list.elems, span{start, int(dec.InputOffset())})
		list.types = append(list.types, elem.Type)
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read end of \"plugins\": %w", err)
	}
	return list, nil
}

// skipSeparators returns the offset of the first byte at or after i that is
// neither JSON white space nor a comma.
func skipSeparators(data []byte, i int) int {
	for i < len(data) && strings.IndexByte(" \t\r\n,", data[i]) >= 0 {
		i++
	}
	return i
}

// count returns how many plugins are of type typ.
func (l *pluginList) count(typ string) int {
	n := 0
	for _, t := range l.types {
		if t == typ {
			n++
		}
	}
	return n
}

// removePlugins cuts every plugin of type typ out of the conflist text,
// with the separator before it (or, for the first element, after it), and
// returns the text and how many it removed.
func removePlugins(data []byte, typ string) ([]byte, int, error) {
	removed := 0
	for {
		list, err := parsePluginList(data)
		if err != nil {
			return nil, 0, err
		}
		i := -1
		for j, t := range list.types {
			if t == typ {
				i = j
			}
		}
		if i < 0 {
			return data, removed, nil
		}
		cut := list.elems[i]
		switch {
		case i > 0:
			cut.start = list.elems[i-1].end
		case len(list.elems) > 1:
			cut.end = list.elems[1].start
		}
		data = append(append([]byte(nil), data[:cut.start]...), data[cut.end:]...)
		removed++
	}
}

// appendPlugin splices entry in as the last plugin, formatted like the
// last plugin already there: on its own lines with its indentation, or
// compact when the plugins share a line.
func appendPlugin(data []byte, entry any) ([]byte, error) {
	list, err := parsePluginList(data)
	if err != nil {
		return nil, err
	}
	if len(list.elems) == 0 {
		return nil, errors.New("\"plugins\" is empty")
	}
	last := list.elems[len(list.elems)-1]
	var text []byte
	if indent, nl, ok := lineIndent(data, last.start); ok {
		unit := indentUnit(data, last, indent)
		body, err := json.MarshalIndent(entry, indent, unit)
		if err != nil {
			return nil, fmt.Errorf("encode conflist entry: %w", err)
		}
		body = bytes.ReplaceAll(body, []byte("\n"), []byte(nl))
		text = append([]byte(","+nl+indent), body...)
	} else {
		body, err := json.Marshal(entry)
		if err != nil {
			return nil, fmt.Errorf("encode conflist entry: %w", err)
		}
		sep := ", "
		if n := len(list.elems); n > 1 {
			sep = string(data[list.elems[n-2].end:last.start])
		}
		text = append([]byte(sep), body...)
	}
	out := make([]byte, 0, len(data)+len(text))
	out = append(append(append(out, data[:last.end]...), text...), data[last.end:]...)
	return out, nil
}

// lineIndent returns the white space between the start of the line holding
// offset i and i, when only white space precedes i on its line, and the
// file's line ending ("\n" or "\r\n").
func lineIndent(data []byte, i int) (indent, newline string, ok bool) {
	nl := bytes.LastIndexByte(data[:i], '\n')
	if nl < 0 {
		return "", "", false
	}
	ws := data[nl+1 : i]
	if len(bytes.Trim(ws, " \t")) != 0 {
		return "", "", false
	}
	newline = "\n"
	if nl > 0 && data[nl-1] == '\r' {
		newline = "\r\n"
	}
	return string(ws), newline, true
}

// indentUnit guesses one level of indentation from the second line of the
// element at sp (its first key), else two spaces (a tab for tab-indented
// files).
func indentUnit(data []byte, sp span, indent string) string {
	elem := data[sp.start:sp.end]
	if nl := bytes.IndexByte(elem, '\n'); nl >= 0 {
		line := elem[nl+1:]
		n := 0
		for n < len(line) && (line[n] == ' ' || line[n] == '\t') {
			n++
		}
		if ws := string(line[:n]); len(ws) > len(indent) && strings.HasPrefix(ws, indent) {
			return ws[len(indent):]
		}
	}
	if strings.Contains(indent, "\t") {
		return "\t"
	}
	return "  "
}

// confToConflist converts a single-plugin config (.conf, .json) into a
// conflist holding it as its only plugin, as libcni's ConfListFromConf
// does, keeping its name and cniVersion at the top.
func confToConflist(conf []byte) ([]byte, error) {
	var head struct {
		Name       string `json:"name"`
		CNIVersion string `json:"cniVersion,omitempty"`
	}
	if err := json.Unmarshal(conf, &head); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	var plugin bytes.Buffer
	if err := json.Indent(&plugin, bytes.TrimSpace(conf), "    ", "  "); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	if head.CNIVersion != "" {
		v, _ := json.Marshal(head.CNIVersion)
		fmt.Fprintf(&b, "  \"cniVersion\": %s,\n", v)
	}
	name, _ := json.Marshal(head.Name)
	fmt.Fprintf(&b, "  \"name\": %s,\n  \"plugins\": [\n    %s\n  ]\n}\n", name, plugin.Bytes())
	return b.Bytes(), nil
}
