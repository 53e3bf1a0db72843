// Package installer is mesh-accel's node installer, the program a DaemonSet
// runs on every node (binary mesh-accel-installer, a thin main around [Main] and [Run]).
// It makes the node ready to accelerate and keeps it that way, and takes
// everything away again on SIGTERM.
//
// This package keeps the run loop, the configuration and its flags
// ([NewConfig]), the HTTP server and the wiring; each concern is a
// subpackage that never imports it: kernelcheck (the node's kernel and
// capabilities), cniconf (the primary CNI config), pluginbin (the plugin
// binary), cluster (namespaces, kubeconfig, the rules ConfigMap and its
// switch), events (pod Events), pluginlog (the plugin's log) and metrics.
// Files are written with internal/fileio, and the state folder's paths come
// from internal/nodestate.
//
// # Start
//
//  1. Check the kernel (cgroup v2, sockops, sk_msg, sockhash, socket
//     storage) and name every missing feature; without them nothing is
//     installed and /readyz says why.
//  2. Create or reuse the node-wide BPF state (package bpf): a restart or
//     an upgrade reuses the pins, so running pods keep their acceleration.
//  3. Copy the plugin binary into the host's CNI bin directory (temporary
//     file in the same directory, then rename, mode 0755).
//  4. Write a kubeconfig for the plugin from the service account token and
//     CA (mode 0600, outside the CNI config directory).
//  5. Copy the node's default rules, once they parse, to the host, where the
//     plugin reads them at ADD.
//  6. Add the plugin's entry to the primary CNI config (see below).
//
// Each step completes before the next starts, so the conflist never names a
// plugin that is missing, nor rules or node state that do not exist.
//
// # The primary CNI config
//
// The primary config is chosen the way containerd chooses it: the
// lexicographically first .conf, .conflist or .json file of the CNI config
// directory ([Config.CNIConfName] overrides). A zero-byte or invalid primary,
// or one in a CNI version the plugin does not speak (asked with
// CNI_COMMAND=VERSION, as a runtime does: every pod's ADD would fail), is
// never written to: the installer waits until the primary CNI writes a
// valid one and reports it (log, /readyz). An invalid first file is not
// skipped, because containerd does not skip it either: it loads no network
// at all until the file is fixed, and the entry would otherwise land in a
// file that stops being the primary the moment it is fixed.
//
// The entry is appended as the last plugin; a .conf (or .json) is converted
// into a .conflist of the same name. The file keeps its mode (and its owner
// where the installer may set it), every write is atomic and synced, and the rest of the file keeps its bytes
// (the entry is spliced into the text). A config that already holds an
// entry of type mesh-accel never gets a second one. The original bytes are
// kept in memory and in a backup under the state directory, so that a
// restart, even after SIGKILL, knows what to give back.
//
// The installer watches the directory (fsnotify, and a periodic re-check)
// and puts the entry back when the primary CNI rewrites its file. When
// another file becomes the primary (Multus installed after us), the entry
// leaves the old file, which gets its original bytes back, and goes into the
// new one: only one file ever holds it.
//
// # While running
//
// The kubeconfig is rewritten when the projected token (or the CA) changes.
// The rules are reloaded when the mounted ConfigMap changes: a bad file keeps
// the rules in force and is reported (log and
// mesh_accel_rule_reload_errors_total); a good one replaces the host copy,
// and every attached pod whose rules are the previous node defaults gets the
// new ones. Pods whose rules differ (their own rules or Istio exclusions
// merged in) keep them, and their number is logged.
//
// The ConfigMap's key enabled (a file next to the rules) is the
// cluster-wide switch: "false" turns the node's global switch off, and
// "true" (or no key) turns it on again where the key turned it off; a
// switch turned off by hand stays off (package cluster).
//
// Beside the main loop run: the follower of the plugin's log file, whose
// lines go to the installer's stdout prefixed "source=plugin " (from the
// file's end at start, across the plugin's rotations); the poster of the
// plugin's failure records (stateDir/events/) as Warning Events of their
// pods; and the watch of the namespaces labelled accel.mesh/enabled=true,
// kept in stateDir/namespaces.json for the plugin. The last two use the
// API server with the service account; without it the records wait.
//
// /readyz answers 200 only while the entry is in the primary config and the
// node state is in place; /metrics serves the data path's counters, read at
// scrape time.
//
// # SIGTERM
//
// The entry leaves the primary config: when the file is still what the
// installer wrote, its original bytes are written back (a converted .conf
// returns as the .conf it was); when the primary CNI rewrote it meanwhile,
// only the entry is removed from its current text. Then the kubeconfig and
// the rules copy go, and the plugin binary unless pods attached by the
// plugin remain (its records under the state directory): the runtime may
// still send those pods a DEL through the config it cached for them, which
// names the plugin, and a missing binary would fail it ("failed to find
// plugin", istio#58572). The binary that stays is inert (no config names
// it; its DEL needs neither the API server nor the node state) and the next
// install replaces it. Nor does the binary go while a config still names
// the plugin (an entry that could not be removed).
//
// A start that fails (the node state cannot be opened, say) takes out an
// entry a killed predecessor left, the same way, so that no config names a
// plugin whose node state is missing. With [Config.RemoveBPFOnExit] the node's BPF state is removed
// too (no pin, program or map left); without it, it stays, so that an
// upgrade does not disturb accelerated connections.
package installer
