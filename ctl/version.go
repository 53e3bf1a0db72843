package ctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/internal/version"
)

// versionCmd prints mesh-accelctl's release, which names the data path and
// state layout it reads (they must be the installer's to read live state).
func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print mesh-accelctl's version",
		Args:  cobra.NoArgs,
		// No check of the configuration: the version prints whatever the
		// environment says.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "mesh-accelctl", version.Version())
			return err
		},
	}
}
