// Package nodestate owns what mesh-accel keeps on a node outside bpffs, and
// the vocabulary every program uses to find it: the layout of the state
// folder (layout.go, every path in it), the settings shared by the
// installer and mesh-accelctl (flag names, their environment variables,
// their defaults and the binder that reads them), and the format of the
// CNI plugin's pod records and setup failure counts, which the plugin
// writes and the tools read.
//
// A setting has one flag name and one environment variable, [EnvPrefix]
// followed by the flag's name in upper case with dashes as underscores
// (--bpf-root: MESH_ACCEL_BPF_ROOT). A flag given on the command line wins
// over its variable, which wins over the default. So mesh-accelctl run in
// the installer's container, whose environment the DaemonSet sets, looks
// where the installer put the state.
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Names of the shared settings' flags.
const (
	FlagBPFFS      = "bpffs"       // the bpffs mount point
	FlagBPFRoot    = "bpf-root"    // mesh-accel's folder under it
	FlagStateDir   = "state-dir"   // the plugin's state folder (pod records, failures)
	FlagSidecarUID = "sidecar-uid" // the sidecar's uid: trusted reader, default rules
	FlagMapSize    = "map-size"    // the connection maps' entries: part of the node state's name
)

// Defaults of the shared settings, each declared here only: the engine
// (package bpf), the default rules (package rules), the CNI plugin and the
// tools use these.
const (
	DefaultBPFFS    = "/sys/fs/bpf"
	DefaultBPFRoot  = "mesh-accel" // the state's folder under bpffs
	DefaultStateDir = "/var/lib/mesh-accel"
	// DefaultSidecarUID is Envoy's uid in Istio: the sidecar the default
	// rules accelerate, whose sockets are trusted to be read with recvmsg.
	DefaultSidecarUID = 1337
	// DefaultMapSize is the entries of each connection map
	// (bpf.DefaultMapSize).
	DefaultMapSize = 65536
)

// EnvPrefix starts the name of every setting's environment variable.
const EnvPrefix = "MESH_ACCEL_"

// EnvName returns the environment variable bound to the flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Binder defines flags on FS whose defaults come from their environment
// variable, read with Getenv. A malformed variable is an error in Errs.
type Binder struct {
	FS     *pflag.FlagSet
	Getenv func(string) string
	Errs   []error
}

func (b *Binder) env(name string) string { return b.Getenv(EnvName(name)) }

func (b *Binder) usage(name, usage string) string { return usage + " (env " + EnvName(name) + ")" }

// String binds a string flag.
func (b *Binder) String(p *string, name, def, usage string) {
	if v := b.env(name); v != "" {
		def = v
	}
	b.FS.StringVar(p, name, def, b.usage(name, usage))
}

// StringP binds a string flag with a one-letter shorthand.
func (b *Binder) StringP(p *string, name, short, def, usage string) {
	if v := b.env(name); v != "" {
		def = v
	}
	b.FS.StringVarP(p, name, short, def, b.usage(name, usage))
}

// Bool binds a boolean flag (false by default).
func (b *Binder) Bool(p *bool, name, usage string) {
	def := false
	if v := b.env(name); v != "" {
		var err error
		if def, err = strconv.ParseBool(v); err != nil {
			b.Errs = append(b.Errs, fmt.Errorf("%s=%q: want true or false", EnvName(name), v))
		}
	}
	b.FS.BoolVar(p, name, def, b.usage(name, usage))
}

// Uint32 binds an unsigned flag.
func (b *Binder) Uint32(p *uint32, name string, def uint32, usage string) {
	if v := b.env(name); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			b.Errs = append(b.Errs, fmt.Errorf("%s=%q: want a number from 0 to %d", EnvName(name), v, uint32(1<<32-1)))
		} else {
			def = uint32(n)
		}
	}
	b.FS.Uint32Var(p, name, def, b.usage(name, usage))
}

// Duration binds a duration flag ("10s", "1m").
func (b *Binder) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	if v := b.env(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Errs = append(b.Errs, fmt.Errorf("%s=%q: want a positive duration such as 10s", EnvName(name), v))
		} else {
			def = d
		}
	}
	b.FS.DurationVar(p, name, def, b.usage(name, usage))
}

// Location is where a node's state lives.
type Location struct {
	BPFFS    string // bpffs mount point
	BPFRoot  string // mesh-accel's folder under BPFFS
	StateDir string // the plugin's state folder
	// MapSize is the connection maps' entries, which name the state's
	// folder under BPFRoot (bpf.Options.Layout).
	MapSize uint32
}

// BindLocation binds --bpffs, --bpf-root, --state-dir and --map-size to l.
func (b *Binder) BindLocation(l *Location) {
	b.String(&l.BPFFS, FlagBPFFS, DefaultBPFFS, "bpffs mount point holding the node's BPF state")
	b.String(&l.BPFRoot, FlagBPFRoot, DefaultBPFRoot, "mesh-accel's folder under --"+FlagBPFFS)
	b.String(&l.StateDir, FlagStateDir, DefaultStateDir, "the CNI plugin's state folder (pod records, setup failures)")
	b.Uint32(&l.MapSize, FlagMapSize, DefaultMapSize, "the entries of each connection map the installer was given, which name the node state")
}

// Validate checks that every part is set.
func (l Location) Validate() error {
	for _, f := range []struct{ name, v string }{{FlagBPFFS, l.BPFFS}, {FlagBPFRoot, l.BPFRoot}, {FlagStateDir, l.StateDir}} {
		if f.v == "" {
			return fmt.Errorf("--%s must not be empty", f.name)
		}
	}
	return nil
}

// Record is what the plugin keeps of an attached pod: which network,
// container and interface attached it (GC and DEL need it), and the pod's
// namespace and name (the tools show them).
type Record struct {
	Network     string    `json:"network"`
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifname"`
	PodUID      string    `json:"uid"`
	Namespace   string    `json:"namespace"`
	Name        string    `json:"name"`
	CgroupDir   string    `json:"cgroupDir"`
	Added       time.Time `json:"added"`
}

// ReadRecord reads a pod's record; nil, nil when there is none.
func ReadRecord(stateDir, uid string) (*Record, error) {
	b, err := os.ReadFile(RecordPath(stateDir, uid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pod record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("pod record %s: %w", RecordPath(stateDir, uid), err)
	}
	return &r, nil
}

// ListRecords reads every pod record, sorted by pod uid; a folder that does
// not exist holds none. A record that cannot be read is returned with only
// its PodUID set (so that GC can remove it), and reported in the error.
func ListRecords(stateDir string) ([]Record, error) {
	ents, err := os.ReadDir(PodsDir(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pod records: %w", err)
	}
	var (
		out  []Record
		errs []error
	)
	for _, ent := range ents {
		uid, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || ent.IsDir() || strings.HasPrefix(ent.Name(), ".") {
			continue
		}
		r, err := ReadRecord(stateDir, uid)
		if err != nil || r == nil {
			errs = append(errs, err)
			out = append(out, Record{PodUID: uid})
			continue
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodUID < out[j].PodUID })
	return out, errors.Join(errs...)
}
