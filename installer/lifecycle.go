package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/mesh-accel/mesh-accel/installer/cniconf"
	"github.com/mesh-accel/mesh-accel/installer/pluginbin"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
)

// reconcileConflist puts the entry into the primary config when it is
// missing; a primary config that is missing or invalid is reported (once
// per distinct reason) and waited for.
func (in *installer) reconcileConflist() {
	wrote, err := in.conf.Ensure()
	if err != nil {
		var inv *cniconf.InvalidError
		if errors.Is(err, cniconf.ErrNoPrimary) || errors.As(err, &inv) {
			in.report("conflist", "waiting for the primary CNI config", err)
		} else {
			in.report("conflist", "cannot install the conflist entry", err)
		}
		return
	}
	in.resolved("conflist", "primary CNI config usable again")
	if in.conf.DelegatesHoldEntry() {
		in.report("multus", "the primary config's delegates run mesh-accel too (Multus copied a config we had edited); "+
			"restart Multus to regenerate them; the installer never edits delegates", nil)
	}
	path, original := in.conf.Written()
	switch {
	case wrote && in.installed:
		in.m.ConflistRepaired()
		in.log.Warn("primary CNI config was rewritten without the entry: entry put back", "path", path)
	case wrote:
		in.log.Info("entry added to the primary CNI config", "path", path, "from", original)
	case !in.installed:
		in.log.Info("entry already in the primary CNI config", "path", path)
	}
	in.installed = true
}

// syncKubeconfig rewrites the plugin's kubeconfig when the token rotated,
// or removes it with Config.NoPluginKubeconfig.
func (in *installer) syncKubeconfig() {
	if in.cfg.NoPluginKubeconfig {
		if err := fileio.Remove(in.cfg.KubeconfigPath); err != nil {
			in.report("kubeconfig", "plugin kubeconfig (the service account's token) not removed", err)
			return
		}
		in.resolved("kubeconfig", "no plugin kubeconfig")
		return
	}
	wrote, err := in.kube.Sync()
	if err != nil {
		in.report("kubeconfig", "plugin kubeconfig not written: the plugin cannot read pods from the API server "+
			"when the runtime passes no annotations", err)
		return
	}
	in.resolved("kubeconfig", "plugin kubeconfig written")
	if wrote {
		in.log.Info("plugin kubeconfig written", "path", in.cfg.KubeconfigPath)
	}
}

// reloadRules applies the mounted rules when they changed; a bad file is
// counted and reported, and the rules in force stay. Every reload, good or
// bad, is recorded in the reload gauges (installer/metrics/config.go), which a fixed
// file clears.
func (in *installer) reloadRules() {
	res, err := in.rules.Reload(in.node)
	in.m.RulesReloaded(time.Now(), err)
	if err != nil {
		in.log.Error("rules not reloaded", "err", err)
		if kerr := in.rules.Keep(); kerr != nil {
			in.log.Error("rules copy for the plugin", "err", kerr)
		}
		return
	}
	if res.Changed {
		in.log.Info("node rules reloaded", "rules", len(in.rules.Applied().Rules), "podsUpdated", res.Updated,
			"podsWithOwnRules", res.Owned)
		if res.Owned > 0 {
			in.log.Info("pods with rules of their own keep them until they are re-created", "pods", res.Owned)
		}
	}
}

// report logs a problem once per distinct message.
func (in *installer) report(area, msg string, err error) {
	text := msg
	if err != nil {
		text += ": " + err.Error()
	}
	if in.problems[area] == text {
		return
	}
	in.problems[area] = text
	in.log.Warn(msg, "err", err)
}

// resolved logs the end of a reported problem.
func (in *installer) resolved(area, msg string) {
	if _, ok := in.problems[area]; ok {
		delete(in.problems, area)
		in.log.Info(msg)
	}
}

// teardown uninstalls: the entry first (the runtime stops calling the
// plugin), then the files the plugin needed, then the node state when
// asked. It goes on past errors and returns them all.
func (in *installer) teardown() error {
	in.ready.set(func(r *readiness) { r.blocked = errors.New("uninstalling") })
	var errs []error
	errs = append(errs, in.conf.Uninstall())
	errs = append(errs, fileio.Remove(in.cfg.KubeconfigPath), fileio.Remove(in.cfg.RulesCopyPath))
	errs = append(errs, in.removeBinary())
	if in.node != nil {
		in.m.SetNode(nil)
		if in.cfg.RemoveBPFOnExit {
			in.log.Info("removing the node state", "dir", in.node.Dir())
			errs = append(errs, in.node.Remove(), os.RemoveAll(in.cfg.installerDir()))
		} else {
			in.log.Info("node state kept for the next installer", "dir", in.node.Dir())
			errs = append(errs, in.node.Close())
		}
		in.node = nil
	}
	return errors.Join(errs...)
}

// removeBinary removes the plugin binary unless a CNI config still names
// the plugin (the entry could not be removed) or pods attached by the
// plugin remain: their DEL may still come through a cached config that
// names it. A config naming a missing plugin fails every pod's ADD and DEL
// ("failed to find plugin").
func (in *installer) removeBinary() error {
	path := filepath.Join(in.cfg.HostCNIBinDir, pluginbin.Name)
	if refs := in.conf.Referenced(); len(refs) > 0 {
		in.log.Warn("plugin binary kept: CNI configs still name the plugin", "path", path, "configs", refs)
		return nil
	}
	pods, err := pluginbin.Records(in.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("keep plugin binary %s: %w", path, err)
	}
	if len(pods) > 0 {
		in.log.Info("plugin binary kept: attached pods may still get a DEL through a cached config", "path", path, "pods", len(pods))
		return nil
	}
	return fileio.Remove(path)
}

// applyKillSwitch sets the node's switch as the ConfigMap's key says; a
// failure is reported once and tried again at the next re-check, and a
// value that is not a boolean is a metric (MetricSwitchKeyInvalid) until
// it is fixed.
func (in *installer) applyKillSwitch() {
	err := in.kill.Apply(in.node)
	var bad *cluster.SwitchValueError
	in.m.SwitchRead(errors.As(err, &bad))
	if err != nil {
		in.report("killswitch", "the node's switch does not follow the ConfigMap key "+KillSwitchKey, err)
		return
	}
	in.resolved("killswitch", "the node's switch follows the ConfigMap key "+KillSwitchKey+" again")
}
