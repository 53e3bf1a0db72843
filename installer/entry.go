package installer

import (
	"path/filepath"
	"slices"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/cniconf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// PluginType is the plugin's type in a conflist and its binary's name in the
// CNI bin directory.
const PluginType = plugin.TypeName

// Entry is the plugin's entry in the primary conflist (package cniconf).
type Entry = cniconf.Entry

// NewEntry returns the entry the configuration asks for.
func NewEntry(c *Config) Entry {
	e := Entry{
		Type:         PluginType,
		Capabilities: map[string]bool{plugin.CapPodAnnotations: true, plugin.CapCgroupPath: true},
		RulesFile:    c.HostRulesFile,
		LogFile:      c.PluginLogFile,
	}
	if !c.NoPluginKubeconfig {
		e.Kubeconfig = c.HostKubeconfigPath
	}
	if root := filepath.Join(c.BPFFS, c.BPFRoot); root != plugin.DefaultBPFRoot {
		e.BPFRoot = root
	}
	if filepath.Clean(c.StateDir) != plugin.DefaultStateDir {
		e.StateDir = c.StateDir
	}
	if c.SidecarUID != nodestate.DefaultSidecarUID {
		e.SidecarUID = c.SidecarUID
	}
	if !slices.Equal(c.ExcludeNamespaces, plugin.DefaultExcludeNamespaces) {
		e.ExcludeNamespaces = append([]string{}, c.ExcludeNamespaces...)
	}
	e.FailOnError = c.FailOnError
	if c.PodQuota != bpf.DefaultPodQuota {
		e.PodQuota = c.PodQuota
	}
	if c.MapSize != bpf.DefaultMapSize {
		e.MapSize = c.MapSize
	}
	return e
}
