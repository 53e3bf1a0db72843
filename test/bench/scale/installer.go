package scale

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mesh-accel/mesh-accel/installer"
)

// installerProc is the installer binary serving the run's node state.
type installerProc struct {
	cmd  *exec.Cmd
	url  string // http://127.0.0.1:PORT
	log  *os.File
	done chan error
}

// primaryConflist is the primary CNI config the installer appends its
// entry to, in the run's own folder.
const primaryConflist = `{"cniVersion":"1.1.0","name":"bench","plugins":[{"type":"bridge","bridge":"none"}]}`

// startInstaller runs the installer binary against the run's state (bpfRoot,
// stateDir), with its files in tmp, and waits until it is ready. Its
// periodic sweep is set to an hour: the benchmark runs the sweep passes it
// measures itself, on a quiet node.
func startInstaller(bin, tmp, bpfRoot, stateDir, pluginLog, plugin string, mapSize uint32) (*installerProc, error) {
	for _, d := range []string{"bin", "net.d", "sa", "rules"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return nil, fmt.Errorf("start installer: %w", err)
		}
	}
	files := map[string]string{"net.d/10-bench.conflist": primaryConflist, "sa/token": "bench", "sa/ca.crt": ""}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("start installer: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start installer: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{}
	for k, v := range map[string]string{
		installer.FlagListen: addr, installer.FlagHostCNIBinDir: filepath.Join(tmp, "bin"),
		installer.FlagHostCNIConfDir: filepath.Join(tmp, "net.d"), installer.FlagPluginBinary: plugin,
		installer.FlagKubeconfigPath: filepath.Join(tmp, "kubeconfig"), installer.FlagHostKubeconfigPath: filepath.Join(tmp, "kubeconfig"),
		installer.FlagRulesFile: filepath.Join(tmp, "rules/rules"), installer.FlagRulesCopyPath: filepath.Join(tmp, "rules-copy"),
		installer.FlagHostRulesFile: filepath.Join(tmp, "rules-copy"), installer.FlagBPFRoot: bpfRoot,
		installer.FlagStateDir: stateDir, installer.FlagPluginLogFile: pluginLog, installer.FlagCgroupRoot: "",
		installer.FlagSAToken: filepath.Join(tmp, "sa/token"), installer.FlagSACA: filepath.Join(tmp, "sa/ca.crt"),
		installer.FlagAPIHost: "https://127.0.0.1:1", installer.FlagNoPluginKubeconfig: "true",
		installer.FlagSweepInterval: "1h", installer.FlagLogLevel: "warn",
	} {
		args = append(args, "--"+k+"="+v)
	}
	if mapSize != 0 { // the size names the state the installer reads
		args = append(args, fmt.Sprintf("--%s=%d", installer.FlagMapSize, mapSize))
	}
	p := &installerProc{cmd: exec.Command(bin, args...), url: "http://" + addr, done: make(chan error, 1)}
	if p.log, err = os.Create(filepath.Join(tmp, "installer.log")); err != nil {
		return nil, fmt.Errorf("start installer: %w", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.log.Close()
		return nil, fmt.Errorf("start installer %s: %w", bin, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	if err := p.waitReady(); err != nil {
		return nil, errors.Join(err, p.stop())
	}
	return p, nil
}

func (p *installerProc) pid() int { return p.cmd.Process.Pid }

func (p *installerProc) waitReady() error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+installer.PathReady, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("installer exited (%v) before ready; its log ends with:\n%s", err, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("installer not ready after a minute; its log ends with:\n%s", p.logTail())
}

// stop sends SIGTERM (the installer takes its entry out of the conflist and
// keeps the node state) and waits for its exit.
func (p *installerProc) stop() error {
	defer p.log.Close()
	http.DefaultClient.CloseIdleConnections() // the scrapes' keep-alive connection
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return nil // already gone: its exit is in done
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("installer exit: %w; its log ends with:\n%s", err, p.logTail())
		}
		return nil
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("installer did not exit within a minute of SIGTERM (killed); its log ends with:\n%s", p.logTail())
	}
}

// logTail is the end of the installer's log.
func (p *installerProc) logTail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return err.Error()
	}
	return string(b[max(0, len(b)-4096):])
}
