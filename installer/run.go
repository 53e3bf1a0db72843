package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/mesh-accel/mesh-accel/installer/cniconf"
	"github.com/mesh-accel/mesh-accel/installer/kernelcheck"
	"github.com/mesh-accel/mesh-accel/installer/metrics"
	"github.com/mesh-accel/mesh-accel/installer/pluginbin"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Defaults of [Deps].
const (
	DefaultResync   = 30 * time.Second
	DefaultDebounce = 100 * time.Millisecond
)

// Deps are what [Run] uses of the world; zero fields take the real thing.
type Deps struct {
	Engine Engine       // BPFEngine{}
	Log    *slog.Logger // slog.Default()
	// Listener serves /readyz and /metrics instead of a listener on
	// Config.Listen.
	Listener net.Listener
	// PluginVersions names the CNI versions of the plugin binary
	// ([PluginVersions]); a nil result turns the version check off.
	PluginVersions func(binary string) ([]string, error)
	// Resync is the period of the full re-check that backs up the file
	// watches (DefaultResync).
	Resync time.Duration
	// Debounce gathers a burst of file events into one re-check
	// (DefaultDebounce).
	Debounce time.Duration
	// Sweep is the period of the node state's sweep of entries that
	// closed sockets left behind (bpf.DefaultSweepInterval).
	Sweep time.Duration
	// PluginLogOut receives the lines of the plugin's log file, marked as
	// the plugin's (the installer's stdout); nil: not followed.
	PluginLogOut io.Writer
	// Kube is the API client that posts pod Events and watches namespace
	// labels; nil: one from the service account (Config.APIHost, SAToken,
	// SACA), none when that fails.
	Kube dynamic.Interface
}

func (d *Deps) defaults() {
	if d.Engine == nil {
		d.Engine = BPFEngine{}
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.PluginVersions == nil {
		d.PluginVersions = PluginVersions
	}
	if d.Resync <= 0 {
		d.Resync = DefaultResync
	}
	if d.Debounce <= 0 {
		d.Debounce = DefaultDebounce
	}
	if d.Sweep <= 0 {
		d.Sweep = bpf.DefaultSweepInterval
	}
}

// Main runs the installer with the command line args (without the program
// name) and the environment read with getenv until ctx is done (SIGTERM),
// and returns the exit code: 0, 1 when it failed, 2 for a bad command line.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := NewConfig(args, getenv, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mesh-accel-installer:", err)
		return 2
	}
	if cfg.ShowVersion {
		fmt.Fprintln(stdout, "mesh-accel-installer", Version())
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if cfg.MountBPFFS {
		mounted, err := kernelcheck.MountBPFFS(cfg.BPFFS)
		if err != nil {
			log.Error("mount bpffs", "err", err)
			return 1
		}
		log.Info("bpffs ready", "path", cfg.BPFFS, "mounted", mounted)
		return 0
	}
	log.Info("starting", "version", Version())
	if err := Run(ctx, cfg, Deps{Log: log, PluginLogOut: stdout}); err != nil {
		log.Error("installer failed", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// Run installs mesh-accel on the node, keeps it installed until ctx is
// done, then uninstalls it (see the package doc). It serves /readyz and
// /metrics meanwhile. A node whose kernel lacks what mesh-accel needs gets
// nothing installed: Run reports it ready but inactive, says why (log,
// /readyz, mesh_accel_node_active 0) and waits for ctx.
func Run(ctx context.Context, cfg *Config, d Deps) (err error) {
	if d.Sweep <= 0 {
		d.Sweep = cfg.SweepInterval
	}
	d.defaults()
	m := metrics.New()
	m.SetStateDir(cfg.StateDir)
	kerr := kernelcheck.Check(d.Engine, cfg.CgroupRoot)
	ready := &readiness{inactive: kerr}
	if kerr == nil {
		m.SetActive()
	}
	srv, err := startServer(cfg.Listen, d.Listener, ready, m, d.Log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	if kerr != nil {
		d.Log.Error("this node cannot accelerate: nothing installed, ready but inactive", "err", kerr)
		<-ctx.Done()
		return nil
	}
	in := newInstaller(cfg, d, m, ready)
	err = in.setup()
	if err == nil {
		wait := in.startCompanions(ctx)
		in.loop(ctx)
		wait()
	}
	return errors.Join(err, in.teardown())
}

// installer holds what Run sets up.
type installer struct {
	cfg       *Config
	d         Deps
	log       *slog.Logger
	m         *metrics.Registry
	ready     *readiness
	node      Node
	conf      *cniconf.Conflists
	kube      *cluster.Kubeconfigs
	rules     *cluster.RuleSet
	kill      *cluster.KillSwitch
	installed bool              // the entry was in place once
	problems  map[string]string // last reported problem, by area
}

func newInstaller(cfg *Config, d Deps, m *metrics.Registry, ready *readiness) *installer {
	return &installer{
		cfg: cfg, d: d, log: d.Log, m: m, ready: ready, problems: map[string]string{},
		conf: &cniconf.Conflists{Dir: cfg.HostCNIConfDir, Name: cfg.CNIConfName, Entry: NewEntry(cfg),
			BackupPath: nodestate.ConflistBackupPath(cfg.StateDir), Log: d.Log},
		kube: &cluster.Kubeconfigs{Path: cfg.KubeconfigPath, Server: cfg.APIHost, TokenPath: cfg.SAToken, CAPath: cfg.SACA},
		rules: &cluster.RuleSet{Src: cfg.RulesFile, CopyPath: cfg.RulesCopyPath, SidecarUID: cfg.SidecarUID,
			Record: nodestate.RulesAppliedPath(cfg.StateDir), Log: d.Log},
		kill: cluster.NewKillSwitch(cfg.RulesFile, cfg.StateDir, d.Log),
	}
}

// setup does the start-up steps in order: node state, plugin binary,
// kubeconfig, rules, then the conflist entry (which may have to wait for a
// valid primary config; the loop goes on trying).
func (in *installer) setup() error {
	for _, dir := range []struct {
		path string
		mode os.FileMode
	}{
		{in.cfg.installerDir(), 0o700}, {in.cfg.HostCNIBinDir, 0o755}, {in.cfg.HostCNIConfDir, 0o755},
		{filepath.Dir(in.cfg.KubeconfigPath), 0o755}, {filepath.Dir(in.cfg.RulesCopyPath), 0o755},
		{filepath.Dir(in.cfg.PluginLogFile), 0o755},
	} {
		if err := os.MkdirAll(dir.path, dir.mode); err != nil {
			return fmt.Errorf("create %s: %w", dir.path, err)
		}
	}
	if err := fileio.RemoveStaleTemps(in.cfg.installerDir(), in.cfg.HostCNIBinDir, in.cfg.HostCNIConfDir,
		filepath.Dir(in.cfg.KubeconfigPath), filepath.Dir(in.cfg.RulesCopyPath)); err != nil {
		in.log.Warn("temporary files of a killed installer left", "err", err)
	}
	if err := in.openNode(); err != nil {
		return err
	}
	versions, err := in.d.PluginVersions(in.cfg.PluginBinary)
	if err != nil {
		return err
	}
	in.conf.Supported = versions
	wrote, err := pluginbin.Install(in.cfg.PluginBinary, in.cfg.HostCNIBinDir)
	if err != nil {
		return err
	}
	in.log.Info("plugin binary in place", "dir", in.cfg.HostCNIBinDir, "written", wrote, "cniVersions", versions)
	in.syncKubeconfig()
	in.rules.LoadRecord()
	in.reloadRules()
	in.applyKillSwitch()
	if err := in.conf.LoadBackup(); err != nil {
		return err
	}
	in.reconcileConflist()
	in.ready.set(func(r *readiness) { r.entry = in.conf.Present })
	return nil
}

// openNode creates or reuses the node state.
func (in *installer) openNode() error {
	if err := kernelcheck.RequireBPFFS(in.cfg.BPFFS); err != nil {
		return err
	}
	n, err := in.d.Engine.OpenNode(in.cfg.bpfOptions())
	if err != nil {
		return fmt.Errorf("open node state under %s: %w", filepath.Join(in.cfg.BPFFS, in.cfg.BPFRoot), err)
	}
	in.node = n
	in.m.SetNode(n)
	opts := in.cfg.bpfOptions()
	in.ready.set(func(r *readiness) { r.state = func() bool { return in.d.Engine.StateExists(opts) } })
	in.log.Info("node state open", "dir", n.Dir())
	in.upgrade()
	return nil
}

// upgrade brings the node to this installer's data path (bpf.Node.Upgrade).
// It runs at start and at every sweep: a pod that a plugin of the previous
// release attached meanwhile is moved then. A failure is reported, and the
// pods keep the data path they run.
func (in *installer) upgrade() {
	r, err := in.node.Upgrade()
	if err != nil {
		in.report("upgrade", "moving the node to this release's data path failed", err)
	} else {
		in.resolved("upgrade", "moving the node to this release's data path works again")
	}
	if r.Replaced || r.Relinked > 0 || r.Moved > 0 || len(r.Removed) > 0 {
		in.log.Info("data path upgraded", "programsReplaced", r.Replaced, "linksSwitched", r.Relinked,
			"podsMoved", r.Moved, "olderStatesRemoved", r.Removed)
	}
	for _, o := range r.Retiring {
		in.log.Debug("older state kept for its connections", "dir", o.Dir, "sockets", o.Sockets, "pods", o.Pods)
	}
}

// loop handles file events and the periodic re-check until ctx is done.
func (in *installer) loop(ctx context.Context) {
	dirs := map[string]change{}
	dirs[in.cfg.HostCNIConfDir] |= changeConflist
	dirs[filepath.Dir(in.cfg.SAToken)] |= changeToken
	dirs[filepath.Dir(in.cfg.SACA)] |= changeToken
	dirs[filepath.Dir(in.cfg.RulesFile)] |= changeRules
	w, err := newWatcher(dirs, in.log)
	if err != nil {
		in.log.Warn("no file watches: re-checking periodically only", "every", in.d.Resync, "err", err)
	} else {
		defer w.close()
	}
	events, errs := w.channels()
	in.handle(changeAll) // what changed before the watches were in place
	tick := time.NewTicker(in.d.Resync)
	defer tick.Stop()
	sweep := time.NewTicker(in.d.Sweep)
	defer sweep.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	var pending change
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events, errs = nil, nil // closed: periodic re-checks only
				continue
			}
			if c := w.what(ev); c != 0 {
				pending |= c
				gather.Reset(in.d.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			in.log.Warn("file watch", "err", err)
		case <-gather.C:
			in.handle(pending)
			pending = 0
		case <-tick.C:
			w.retry()
			in.handle(changeAll)
		case <-sweep.C:
			in.sweep()
		}
	}
}

// sweep removes the map entries of sockets that closed while their pod was
// detached (no close callback ran), so that the maps never fill over days.
func (in *installer) sweep() {
	in.upgrade()
	s, err := in.node.SweepStep()
	if err != nil {
		in.report("sweep", "sweep of closed sockets' map entries failed", err)
		return
	}
	in.resolved("sweep", "sweep of closed sockets' map entries works again")
	in.m.Swept(s.Directions + s.Pending)
	if s.Directions+s.Pending > 0 {
		in.log.Debug("swept entries of closed sockets", "directions", s.Directions, "pending", s.Pending)
	}
}

// handle re-checks what changed.
func (in *installer) handle(c change) {
	if c&changeConflist != 0 {
		in.reconcileConflist()
	}
	if c&changeToken != 0 {
		in.syncKubeconfig()
	}
	if c&changeRules != 0 {
		in.reloadRules()
		in.applyKillSwitch()
	}
}
