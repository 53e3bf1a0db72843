package installer

import "github.com/mesh-accel/mesh-accel/internal/version"

// Version is the installer's version ([version.Version]): the release set
// at build time with -X github.com/mesh-accel/mesh-accel/internal/version.version=...
func Version() string { return version.Version() }
