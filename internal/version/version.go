// Package version names the release of mesh-accel's binaries (the plugin,
// the installer, mesh-accelctl). The build sets it:
//
//	go build -ldflags "-X github.com/mesh-accel/mesh-accel/internal/version.version=v1.2.3"
//
// (make build and make image do, from VERSION or git describe). Without it
// the version is the one the Go toolchain recorded: the module version, or
// the VCS revision.
package version

import "runtime/debug"

// version is set at build time.
var version string

// Version is the release: the one set at build time, else the module
// version or VCS revision ("-dirty" when modified) recorded by the Go
// toolchain, else "devel" ("unknown" without build information).
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "devel"
	case dirty:
		return rev + "-dirty"
	}
	return rev
}
