// Command mesh-accel is the chained CNI plugin of mesh-accel; see package
// plugin.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/mesh-accel/mesh-accel/plugin"
)

func main() { skel.PluginMainFuncs(plugin.Funcs(), plugin.Versions, plugin.About) }
