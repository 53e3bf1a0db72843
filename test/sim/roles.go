package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment variables through which a node passes a role and its arguments
// to the re-executed binary.
const (
	envRole   = "MESHSIM_ROLE"   // role name
	envArgs   = "MESHSIM_ARGS"   // JSON arguments of the role
	envParent = "MESHSIM_PARENT" // pid of the process that must outlive the role
)

// Role names.
const (
	roleApp     = "app"
	roleSidecar = "sidecar"
	roleClient  = "client"
	roleExec    = "exec"
	roleJanitor = "janitor"
)

// readyPrefix starts the line a server role prints once it listens.
const readyPrefix = "MESHSIM-READY"

// RoleMain must be called first thing in TestMain or main of every program
// that uses this package. If the MESHSIM_ROLE environment variable is set, the
// process was started by a node to play that role (app server, sidecar,
// client, exec shim, janitor): RoleMain runs it and exits the process.
// Otherwise it returns at once.
func RoleMain() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	if err := runRole(role, os.Getenv(envArgs)); err != nil {
		fmt.Fprintf(os.Stderr, "meshsim %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runRole(role, args string) error {
	if role != roleJanitor {
		if err := dieWithParent(); err != nil {
			return err
		}
	}
	switch role {
	case roleApp:
		var a appArgs
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			return fmt.Errorf("parse arguments: %w", err)
		}
		return runApp(a)
	case roleSidecar:
		var a sidecarArgs
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			return fmt.Errorf("parse arguments: %w", err)
		}
		return runSidecar(a)
	case roleClient:
		var c ClientSpec
		if err := json.Unmarshal([]byte(args), &c); err != nil {
			return fmt.Errorf("parse arguments: %w", err)
		}
		return runClient(c, os.Stdout)
	case roleExec:
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			return fmt.Errorf("parse arguments: %w", err)
		}
		return execTarget(argv)
	case roleJanitor:
		return runJanitor(args)
	}
	return fmt.Errorf("unknown role %q", role)
}

// dieWithParent asks for SIGKILL when the parent dies. nsenter's setuid
// cleared the setting made at fork time, so it is made again here, and the
// parent checked afterwards (it may have died in between).
func dieWithParent() error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	want, err := strconv.Atoi(os.Getenv(envParent))
	if err != nil {
		return fmt.Errorf("bad %s: %w", envParent, err)
	}
	if got := os.Getppid(); got != want {
		return fmt.Errorf("parent %d is gone (parent now %d)", want, got)
	}
	return nil
}

// execTarget replaces the process with argv; the parent-death signal survives
// execve of a program that is not set-uid.
func execTarget(argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec: empty argv")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESHSIM_") {
			env = append(env, kv)
		}
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// printReady announces on stdout that a server role listens.
func printReady(what string) {
	fmt.Fprintf(os.Stdout, "%s %s\n", readyPrefix, what)
}
