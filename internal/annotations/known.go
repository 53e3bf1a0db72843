package annotations

import "strings"

// Prefix starts the names of mesh-accel's own annotations.
const Prefix = "accel.mesh/"

// Known returns mesh-accel's own pod annotations (those named Prefix...),
// every one the CNI plugin reads, in the order of the README's table.
// mesh-accelctl rules check refuses any other name under Prefix, such as
// accel.mesh/enable.
func Known() []string { return []string{Enabled, Profile, TrustApp, Rules} }

// Profiles returns the values of Profile the plugin accepts (an empty
// value is ProfileDefault).
func Profiles() []string { return []string{ProfileDefault, ProfileSidecarHops} }

// Own reports whether name is under Prefix, one of mesh-accel's own
// annotations or a misspelling of one.
func Own(name string) bool { return strings.HasPrefix(name, Prefix) }
