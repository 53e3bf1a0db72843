package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/mesh-accel/mesh-accel/bpf"
	meshversion "github.com/mesh-accel/mesh-accel/internal/version"
)

// TypeName is the plugin's type in a conflist and the name of its binary.
const TypeName = "mesh-accel"

// About is what the binary prints on stderr when run without CNI_COMMAND:
// what it is and its release ([meshversion.Version]).
var About = "CNI plugin mesh-accel " + meshversion.Version() + ": sockmap acceleration of sidecar traffic (chained, per pod)"

// Versions are the CNI specification versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Plugin-specific CNI error codes (the specification leaves 100 and up to
// plugins).
const (
	// CodeSetupFailed: acceleration could not be set up or torn down and
	// the configuration says failOnError.
	CodeSetupFailed uint = 100
	// CodeNotAccelerated: CHECK found a pod whose acceleration was expected
	// but is missing or differs.
	CodeNotAccelerated uint = 101
)

// Funcs returns the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC}
}

func cmdAdd(args *skel.CmdArgs) error    { return run(args, "ADD", doAdd) }
func cmdDel(args *skel.CmdArgs) error    { return run(args, "DEL", doDel) }
func cmdCheck(args *skel.CmdArgs) error  { return run(args, "CHECK", doCheck) }
func cmdStatus(args *skel.CmdArgs) error { return run(args, "STATUS", doStatus) }
func cmdGC(args *skel.CmdArgs) error     { return run(args, "GC", doGC) }

// deps are what a command works with; tests replace them.
type deps struct {
	engine  engine
	cgroups func() (cgroupResolver, error) // only ADD and CHECK need it
	pods    podSource                      // only without the annotations capability
	stdout  io.Writer                      // the CNI result, and nothing else
	log     *slog.Logger                   // labelled with the command and the pod
}

// run parses the configuration and runs a command with the real
// dependencies.
func run(args *skel.CmdArgs, cmd string, do func(*skel.CmdArgs, *Config, *deps) error) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	log, closeLog := newLogger(conf, os.Stderr)
	defer closeLog()
	d := &deps{
		engine:  bpfEngine{opts: conf.bpfOptions()},
		cgroups: func() (cgroupResolver, error) { return newKubeCgroups(conf.CgroupRoot) },
		pods:    newAPIPods(conf),
		stdout:  os.Stdout,
		log:     labelled(log, cmd, args),
	}
	return do(args, conf, d)
}

// labelled adds the command, the pod and the container to every line.
func labelled(l *slog.Logger, cmd string, args *skel.CmdArgs) *slog.Logger {
	pa := parsePodArgs(args.Args)
	l = l.With("cmd", cmd)
	if pa.isPod() {
		l = l.With("pod", pa.String(), "uid", pa.UID)
	}
	if args.ContainerID != "" {
		c := args.ContainerID
		if len(c) > 12 {
			c = c[:12]
		}
		l = l.With("container", c)
	}
	return l
}

// podSpec is a pod to accelerate and its configuration.
type podSpec struct {
	pod podArgs // UID filled in from the API server when CNI_ARGS lacked it
	cfg bpf.PodConfig
}

// doAdd sets up the pod's acceleration and prints the previous result.
// Setup failures are logged and counted, and fail the ADD only with
// failOnError.
func doAdd(args *skel.CmdArgs, conf *Config, d *deps) error {
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig,
			"mesh-accel must be called as a chained plugin: no prevResult (list it after the plugins that set up the pod's network)", "")
	}
	if err := d.add(args, conf); err != nil {
		pa := parsePodArgs(args.Args)
		d.spoolEvent(conf, pa, err)
		if err := d.failure(conf, pa, err); err != nil {
			return err
		}
	}
	return conf.printPrevResult(d.stdout)
}

// add sets the pod up, or does nothing for a pod not to accelerate.
func (d *deps) add(args *skel.CmdArgs, conf *Config) error {
	spec, err := d.wanted(conf, parsePodArgs(args.Args))
	if err != nil || spec == nil {
		return err
	}
	cg, err := d.cgroups()
	if err != nil {
		return err
	}
	dir, err := cg.resolve(conf.RuntimeConfig.CgroupPath, spec.pod.UID)
	if err != nil {
		return err
	}
	return d.attach(args, conf, spec, dir)
}

// wanted returns the pod and its configuration when the pod is to be
// accelerated, nil when not (not a pod, excluded namespace, not annotated).
func (d *deps) wanted(conf *Config, pa podArgs) (*podSpec, error) {
	if !pa.isPod() {
		d.log.Debug("not a Kubernetes pod (no K8S_POD_NAMESPACE and K8S_POD_NAME): nothing to do")
		return nil, nil
	}
	if conf.excluded(pa.Namespace) {
		d.log.Debug("namespace excluded: nothing to do")
		return nil, nil
	}
	ann := conf.RuntimeConfig.PodAnnotations
	// With the capability declared the runtime passes the annotations;
	// none (containerd passes null) means the pod has none: the API server
	// is asked only when the capability is not declared.
	if ann == nil && !conf.Capabilities[CapPodAnnotations] {
		m, err := d.pods.pod(context.Background(), pa.Namespace, pa.Name)
		if err != nil {
			return nil, err
		}
		ann = m.Annotations
		if pa.UID == "" {
			pa.UID = m.UID
		}
	}
	if !d.enabled(conf, pa.Namespace, ann) {
		return nil, nil
	}
	if !bpf.ValidPodID(pa.UID) {
		return nil, failf(ReasonArgs, "K8S_POD_UID %q is missing or not a pod uid", pa.UID)
	}
	node, err := nodeSettings(conf)
	if err != nil {
		return nil, err
	}
	cfg, err := podConfig(node, ann)
	if err != nil {
		return nil, err
	}
	return &podSpec{pod: pa, cfg: cfg}, nil
}

// failure logs and counts a setup failure. It returns the CNI error to
// report with failOnError, else nil: the pod goes on without acceleration.
func (d *deps) failure(conf *Config, pa podArgs, err error) error {
	reason := reasonOf(err)
	if reason == "" {
		reason = ReasonAttach
	}
	if cerr := (store{conf.StateDir}).countFailure(reason, pa.String()+" ("+pa.UID+")", err); cerr != nil {
		d.log.Warn("failure not counted", "err", cerr)
	}
	if conf.FailOnError {
		var te *types.Error
		if errors.As(err, &te) {
			return te
		}
		return types.NewError(CodeSetupFailed, fmt.Sprintf("mesh-accel (%s): %v", reason, err), "")
	}
	d.log.Error("acceleration not set up; the pod goes on without it (failOnError is off)", "reason", reason, "err", err)
	return nil
}
