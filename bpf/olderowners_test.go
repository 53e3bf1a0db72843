package bpf

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// olderOwnerSpec is the owner storage of a release whose struct sock_owner
// has the members given (name, size in bytes), in that order.
func olderOwnerSpec(members ...any) *ebpf.MapSpec {
	var ms []btf.Member
	off := uint32(0)
	for i := 0; i < len(members); i += 2 {
		size := uint32(members[i+1].(int))
		ms = append(ms, btf.Member{Name: members[i].(string), Offset: btf.Bits(off * 8),
			Type: &btf.Int{Name: fmt.Sprintf("__u%d", size*8), Size: size}})
		off += size
	}
	return &ebpf.MapSpec{
		Name: ownerMapName, Type: ebpf.SkStorage, KeySize: 4, ValueSize: off,
		Flags: 1 /* BPF_F_NO_PREALLOC */ | 1<<9, /* BPF_F_CLONE */
		Key:   &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value: &btf.Struct{Name: "sock_owner", Size: off, Members: ms},
	}
}

// The translation of an older struct sock_owner is by member name: members
// moved are found, members missing stay zero, a member of another size or
// a struct without pod turns the fallback off, and this release's struct
// translates from itself (every member the data path copies is known).
func TestOwnerOffsets(t *testing.T) {
	spec, err := loadMesh()
	if err != nil {
		t.Fatal(err)
	}
	cur := spec.Maps[ownerMapName].Value
	all := map[string]int32{"uid": -1, "gid": -1, "pod": -1, "seen": -1}
	for _, tc := range []struct {
		name string
		was  btf.Type
		want map[string]int32
		err  string
	}{
		{"this release", cur, map[string]int32{"uid": 0, "gid": 4, "pod": 8, "seen": 16}, ""},
		{"reordered, no seen", olderOwnerSpec("pod", 8, "gid", 4, "uid", 4).Value,
			map[string]int32{"uid": 12, "gid": 8, "pod": 0, "seen": -1}, ""},
		{"no pod", olderOwnerSpec("uid", 4, "gid", 4).Value, all, ""},
		{"uid resized", olderOwnerSpec("uid", 8, "gid", 4, "pad", 4, "pod", 8).Value, nil,
			"older sock_owner member uid is 8 bytes, this release's 4"},
	} {
		got, err := ownerOffsets(cur, tc.was, all)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: offsets %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

const (
	envOlderListener = "MESH_ACCEL_TEST_OLDER_LISTENER" // pinned older owner storage
	envOlderOwner    = "MESH_ACCEL_TEST_OLDER_OWNER"    // the owner to record, hex
)

// TestOlderListenerHelper is the child process of acceptUnderOlderOwner,
// run in a pod's cgroup before the pod is attached: it listens, records
// the listener's owner in the older release's storage (as that release's
// sock_create did), says "ready", and once told (a line on stdin)
// connects to itself and exchanges bytes (pairOver). Run as a test of its
// own, it does nothing.
func TestOlderListenerHelper(t *testing.T) {
	if os.Getenv(envOlderListener) == "" {
		return
	}
	if err := olderListenerHelper(); err != nil {
		t.Fatal(err)
	}
}

func olderListenerHelper() error {
	older, err := ebpf.LoadPinnedMap(os.Getenv(envOlderListener), nil)
	if err != nil {
		return fmt.Errorf("older owner storage %s: %w", os.Getenv(envOlderListener), err)
	}
	defer older.Close()
	owner, err := hex.DecodeString(os.Getenv(envOlderOwner))
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var uerr error
	if err := raw.Control(func(fd uintptr) { uerr = older.Update(int32(fd), owner, ebpf.UpdateAny) }); err != nil {
		return err
	}
	if uerr != nil {
		return fmt.Errorf("record the listener's older owner: %w", uerr)
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	return pairOver(ln)
}

// acceptUnderOlderOwner runs a server whose listener was created under an
// older release (its owner only in the older storage pinned at olderPin)
// in a pod attached to n once the listener exists, and returns the
// change of n's counters over one connection to it.
func acceptUnderOlderOwner(t *testing.T, n *Node, olderPin string, cfg PodConfig) Counters {
	t.Helper()
	cg := newTestCgroup(t)
	cgID, err := podCgroup(cg)
	if err != nil {
		t.Fatal(err)
	}
	owner := make([]byte, 16) // pod, gid, uid: olderOwnerSpec's order
	binary.LittleEndian.PutUint64(owner, cgID)
	binary.LittleEndian.PutUint32(owner[8:], 0)
	binary.LittleEndian.PutUint32(owner[12:], 0)
	child := startCgroupChild(t, cg, "TestOlderListenerHelper", "ready",
		envOlderListener+"="+olderPin, envOlderOwner+"="+hex.EncodeToString(owner))
	if err := n.AttachPod("p", cg, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.DetachPod("p") })
	before, err := n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	child.proceed(t)
	after, err := n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return after.Sub(before)
}

// A server's listener created under an older release whose struct
// sock_owner differs (another order, no seen): the new programs take its
// owner over, so that a connection it accepts after the upgrade is paired
// and redirected. Without the older storage (a node that never had it),
// the same connection is refused for want of an owner: the test can fail.
func TestOlderOwnersTakenOver(t *testing.T) {
	root := upgradeRoot(t)
	// The older release's state: only its owner storage matters here.
	olderDir := filepath.Join(nodestate.DefaultBPFFS, root, "v0-older", "maps")
	if err := os.MkdirAll(olderDir, 0o700); err != nil {
		t.Fatal(err)
	}
	older, err := ebpf.NewMap(olderOwnerSpec("pod", 8, "gid", 4, "uid", 4))
	if err != nil {
		t.Fatal(err)
	}
	defer older.Close()
	olderPin := filepath.Join(olderDir, ownerMapName)
	if err := older.Pin(olderPin); err != nil {
		t.Fatal(err)
	}
	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	if same, err := sameMap(n.maps.OlderOwnerMap, older); err != nil || !same {
		t.Fatalf("the new state does not use the older owner storage (%v)", err)
	}
	trusted := PodConfig{TrustApp: true}
	d := acceptUnderOlderOwner(t, n, olderPin, trusted)
	if d["connections_accepted"] != 1 || d["bytes_redirected"] == 0 || d["rejected_no_owner"] != 0 {
		t.Errorf("connection to the older listener: accepted +%d, redirected +%d, rejected for no owner +%d; "+
			"want paired and redirected", d["connections_accepted"], d["bytes_redirected"], d["rejected_no_owner"])
	}

	// Removing the older state leaves the new one its handle: listeners
	// outlive the state they were created under.
	if _, err := n.Upgrade(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(olderDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the older state (no pod, no socket) was not removed: %v", err)
	}
	reopened, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if same, err := sameMap(reopened.maps.OlderOwnerMap, older); err != nil || !same {
		t.Errorf("the state lost the older owner storage with the older state (%v)", err)
	}

	// The control: a node created without an older storage.
	root2 := upgradeRoot(t)
	n2, err := OpenNode(Options{Root: root2})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Remove()
	olderPin = filepath.Join(nodestate.DefaultBPFFS, root2, "older-owners-of-the-test")
	if err := older.Pin(olderPin); err != nil {
		t.Fatal(err)
	}
	d = acceptUnderOlderOwner(t, n2, olderPin, trusted)
	if d["connections_accepted"] != 0 || d["rejected_no_owner"] != 1 {
		t.Errorf("without the older storage: accepted +%d, rejected for no owner +%d; want 0 and 1",
			d["connections_accepted"], d["rejected_no_owner"])
	}
}
