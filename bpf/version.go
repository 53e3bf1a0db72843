package bpf

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A data path is identified by its BPF object: the first 8 bytes of the
// SHA-256 of the object this binary embeds. Node state records the data
// path that created it, so that a binary opening state made by another
// build can tell: its programs are not the ones pinned there.
func dataPathID(dp *dataPathObject) uint64 {
	sum := sha256.Sum256(dp.obj)
	return binary.BigEndian.Uint64(sum[:8])
}

// DataPath names this binary's data path (the capture build; the
// benchmark's build without capture, -tags meshbench, has its own).
func DataPath() string { return formatDataPath(dataPathID(meshDataPath)) }

func formatDataPath(id uint64) string { return fmt.Sprintf("%016x", id) }

// DataPaths says which data path runs on the node and which this binary
// carries; they differ when the node state was created by another build
// (an upgrade that kept the pinned state).
type DataPaths struct {
	Pinned, Binary string
	// Older are states of other layouts still on the node: an upgrade
	// that changed the layout keeps them while connections paired under
	// them live.
	Older []Retiring
}

// Skewed reports whether the pinned programs are not this binary's.
func (d DataPaths) Skewed() bool { return d.Pinned != d.Binary }

// DataPaths reads the data path recorded in the node state.
func (n *Node) DataPaths() (DataPaths, error) {
	c, err := n.global()
	dp := DataPaths{Pinned: formatDataPath(c.Build), Binary: formatDataPath(dataPathID(n.dataPath))}
	for _, dir := range n.siblings() {
		pods, _ := os.ReadDir(filepath.Join(dir, "pods"))
		sockets, serr := countSockets(dir)
		err = errors.Join(err, serr)
		dp.Older = append(dp.Older, Retiring{Dir: dir, Pods: len(pods), Sockets: sockets})
	}
	return dp, err
}
