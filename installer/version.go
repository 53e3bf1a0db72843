package installer

import "runtime/debug"

// version is set at build time:
//
//	go build -ldflags "-X github.com/mesh-accel/mesh-accel/installer.version=v1.2.3"
var version string

// Version is the installer's version: the one set at build time, else the
// module version or VCS revision recorded by the Go toolchain.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
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
