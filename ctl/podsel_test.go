package ctl

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// A pod is named as kubectl names it: NAME with -n, --pod NAMESPACE/NAME,
// or a UID; contradictions are usage errors.
func TestPodSelection(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout (the pod's id) or stderr
	}{
		{[]string{"-n", "shop", "cart"}, ExitOK, `"id": "uid-a"`},
		{[]string{"cart", "--namespace", "shop"}, ExitOK, `"id": "uid-a"`},
		{[]string{"shop/pay"}, ExitOK, `"id": "uid-b"`},
		{[]string{"--pod", "shop/pay"}, ExitOK, `"id": "uid-b"`},
		{[]string{"-n", "shop", "--pod", "pay"}, ExitOK, `"id": "uid-b"`},
		{[]string{"uid-b"}, ExitOK, `"id": "uid-b"`},
		{[]string{"-n", "shop"}, ExitUsage, "-n shop needs a pod NAME as argument: -n shop NAME"},
		{[]string{"-n", "shop", "shop/cart"}, ExitUsage, `-n shop and pod "shop/cart": give NAME with -n, or NAMESPACE/NAME without it`},
		{[]string{"cart", "--pod", "shop/cart"}, ExitUsage, `pod given twice, as "cart" and --pod "shop/cart": give one`},
		{[]string{"cart", "pay"}, ExitUsage, "accepts at most 1 arg"},
		{[]string{"cart"}, ExitError, "a pod name needs its namespace: -n NAMESPACE cart"},
	} {
		r := runCtl(t, newFakeEngine(), defaultRecords(t), append([]string{"rules", "show", "-o", "json"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.want)
		}
	}
}

// Every command that takes a pod takes it the kubectl way.
func TestPodSelectionEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"enable", "-n", "shop", "pay"},
		{"disable", "-n", "shop", "pay", "--drain"},
		{"conns", "-n", "shop", "pay"},
		{"rules", "show", "-n", "shop", "pay"},
		{"rules", "apply", "-n", "shop", "pay", "-f", "-"},
	} {
		eng := newFakeEngine()
		r := runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: goodRules}, args...)
		if r.code != ExitOK {
			t.Errorf("%q: exit %d: %s", args, r.code, r.stderr)
		}
		for _, c := range eng.calls {
			if strings.Contains(c, "uid-a") {
				t.Errorf("%q touched the other pod: %q", args, eng.calls)
			}
		}
	}
}

// A name this node has no record of is looked up in the API server: the
// message says where the pod runs, or why it is not accelerated here.
func TestPodOnAnotherNode(t *testing.T) {
	loc := fakeLocator{"shop/web": "node-b", "shop/here": testNode, "shop/pending": "", "shop/fqdn": "Node-A.example.internal"}
	for _, tc := range []struct {
		ref     string
		locator PodLocator
		want    string
		args    []string
	}{
		{"shop/web", loc, "pod shop/web runs on node node-b, not on this node (node-a): run mesh-accelctl there", nil},
		{"shop/web", loc, "pod shop/web runs on this node (node-b), but the CNI plugin has no record of it", []string{"--node-name", "node-b"}},
		{"shop/fqdn", loc, "pod shop/fqdn runs on this node (node-a), but", nil},
		{"shop/here", loc, "pod shop/here runs on this node (node-a), but the CNI plugin has no record of it: is it annotated accel.mesh/enabled", nil},
		{"shop/pending", loc, "pod shop/pending is not scheduled on a node yet", nil},
		{"shop/nosuch", loc, "pod shop/nosuch does not exist (the API server has no such pod)", nil},
		{"shop/web", nil, `no record of pod shop/web on this node (node-a); is it scheduled here and annotated accel.mesh/enabled: "true"?`, nil},
		{"shop/web", failingLocator{}, "(looking it up in the API server failed: connection refused)", nil},
	} {
		r := runWith(t, ctlRun{eng: newFakeEngine(), stateDir: defaultRecords(t), locator: tc.locator},
			append([]string{"conns", "--pod", tc.ref}, tc.args...)...)
		if r.code != ExitError || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", tc.ref, r.code, r.stderr, tc.want)
		}
	}
}

type failingLocator struct{}

func (failingLocator) PodNode(context.Context, string, string) (string, error) {
	return "", errors.New("connection refused")
}
