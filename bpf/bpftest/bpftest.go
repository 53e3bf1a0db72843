// Package bpftest gives tests their own mesh-accel node state: a unique
// root under bpffs per test, removed with everything in it at cleanup.
package bpftest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// UniqueRoot returns a bpffs root name no other run uses.
func UniqueRoot() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "mesh-accel-test-" + hex.EncodeToString(b)
}

// NewNode opens fresh node state for the test (opts.Root is replaced by a
// unique one) and removes it at cleanup. Without root or the kernel
// features it skips locally and fails in CI.
func NewNode(tb testing.TB, opts bpf.Options) *bpf.Node {
	tb.Helper()
	testenv.RequireRoot(tb)
	if err := bpf.CheckKernel(); err != nil {
		testenv.Missing(tb, "%v", err)
	}
	opts.Root = UniqueRoot()
	fs := opts.BPFFS
	if fs == "" {
		fs = nodestate.DefaultBPFFS
	}
	// Registered first: even a failed open leaves nothing behind.
	tb.Cleanup(func() { _ = os.RemoveAll(filepath.Join(fs, opts.Root)) })
	n, err := bpf.OpenNode(opts)
	if err != nil {
		tb.Fatalf("open node state: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Remove(); err != nil {
			tb.Errorf("remove node state: %v", err)
		}
	})
	return n
}

// WaitConnsGone waits until every pair and pending connection has left the
// node's connection maps (connections close asynchronously after a client
// exits) and fails the test if they do not: entries outliving their sockets
// are leaks. A direction released at its socket's TCP_CLOSE while the
// socket's process still held it with unread bytes (after a reset, or
// TIME_WAIT after a half-close) stays charged until the socket leaves the
// socket maps, which only the sweep sees: those are removed as the
// installer's sweep would (Node.ReleaseClosed).
func WaitConnsGone(tb testing.TB, n *bpf.Node) {
	tb.Helper()
	var u bpf.Usage
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := n.ReleaseClosed(); err != nil {
			tb.Fatal(err)
		}
		if u, err = n.Usage(); err != nil {
			tb.Fatal(err)
		}
		if u.Sockets == 0 && u.Targets == 0 && u.Directions == 0 && u.Pending == 0 {
			return
		}
	}
	tb.Fatalf("connection maps not empty after the connections closed: %+v", u)
}
