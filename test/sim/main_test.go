package sim

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	RoleMain()
	if os.Getenv(envTestOwner) != "" {
		os.Exit(runTestOwner())
	}
	os.Exit(m.Run())
}
