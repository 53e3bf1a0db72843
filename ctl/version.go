package ctl

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/version"
)

// versionReport is what version prints with -o json or yaml.
type versionReport struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// DataPath is the build of the BPF programs this binary carries
	// (status compares it with the pinned one), Layout the node state
	// layout it reads.
	DataPath  string `json:"data_path"`
	Layout    string `json:"layout_version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// versionCmd prints mesh-accelctl's release, which names the data path and
// state layout it reads (they must be the installer's to read live state).
func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mesh-accelctl's version",
		Long: `version prints mesh-accelctl's release; -o json or -o yaml add the data path (the build of the
BPF programs it carries, which status compares with the pinned ones), the node state layout it
reads, its Go version and platform. It reads nothing of the node.`,
		Example: `  mesh-accelctl version
  mesh-accelctl version -o json
  ` + execCmd + ` version -o json`,
		Args: usageArgs(cobra.NoArgs),
		// Only -o is checked: the version prints whatever else the
		// environment says.
		PersistentPreRunE: func(*cobra.Command, []string) error { return a.cfg.validateOutput() },
		RunE: func(*cobra.Command, []string) error {
			r := versionReport{Name: "mesh-accelctl", Version: version.Version(), DataPath: bpf.DataPath(),
				Layout: bpf.LayoutVersion, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			return a.emit(r, func(w io.Writer) error {
				if a.cfg.wide() {
					_, err := fmt.Fprintf(w, "%s %s (data path %s, layout %s, %s, %s)\n", r.Name, r.Version,
						r.DataPath, r.Layout, r.GoVersion, r.Platform)
					return err
				}
				_, err := fmt.Fprintln(w, r.Name, r.Version)
				return err
			})
		},
	}
}
