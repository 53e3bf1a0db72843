package bpf

import (
	"fmt"
	"io"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProgramStat is what the kernel counted for one of the node's programs
// while its BPF statistics were on ([EnableStats], or the sysctl
// kernel.bpf_stats_enabled): the runs and the time spent in them. It is
// the data path's own cost, exact whatever else the machine runs.
type ProgramStat struct {
	Name    string // the program's pin name: sockops, sock_create, sk_msg
	Runs    uint64
	Runtime time.Duration
}

// EnableStats turns the kernel's BPF run-time statistics on until the
// returned closer is closed (CAP_SYS_ADMIN; they cost every BPF program of
// the machine two clock reads per run while on).
func EnableStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run-time statistics: %w", err)
	}
	return c, nil
}

// ProgramStats returns the statistics of the node's pinned programs (zero
// while statistics were never on).
func (n *Node) ProgramStats() ([]ProgramStat, error) {
	var out []ProgramStat
	for _, name := range []string{pinSockCreate, pinSockops, pinSkMsg} {
		p, err := ebpf.LoadPinnedProgram(n.progPin(name), nil)
		if err != nil {
			return nil, fmt.Errorf("open program %s: %w", n.progPin(name), err)
		}
		s, err := p.Stats()
		p.Close()
		if err != nil {
			return nil, fmt.Errorf("statistics of program %s: %w", name, err)
		}
		out = append(out, ProgramStat{Name: name, Runs: s.RunCount, Runtime: s.Runtime})
	}
	return out, nil
}
