package ctl

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// yamlDocs decodes a stream of YAML documents.
func yamlDocs(tb testing.TB, s string) []map[string]any {
	tb.Helper()
	dec := yaml.NewDecoder(strings.NewReader(s))
	var docs []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			tb.Fatalf("YAML stream: %v\n%s", err, s)
		}
		docs = append(docs, m)
	}
}

// dump -o yaml prints one document per message, then the summary.
func TestDumpYAML(t *testing.T) {
	eng := newFakeEngine()
	newFakeCapture(eng, captured()...)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	r := runCtlContext(ctx, t, eng, defaultRecords(t), "dump", "-o", "yaml")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	docs := yamlDocs(t, r.stdout)
	if len(docs) != 3 || docs[0]["type"] != "message" || docs[1]["type"] != "message" ||
		docs[2]["type"] != "summary" || docs[2]["messages"] != 2 {
		t.Errorf("documents %v:\n%s", docs, r.stdout)
	}
}

// stats --watch -o yaml prints one document per sample.
func TestStatsWatchYAML(t *testing.T) {
	eng := newFakeEngine()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := runCtlContext(ctx, t, eng, "", "stats", "--watch", "20ms", "-o", "yaml")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	docs := yamlDocs(t, r.stdout)
	if len(docs) < 2 || docs[0]["counters"] == nil || docs[0]["per_sec"] == nil {
		t.Errorf("documents %v:\n%s", docs, r.stdout)
	}
}
