//go:build meshbench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Where the time goes (BENCH_PROFILE=REGEXP, e.g. "fortio 1000/s"): while
// a measurement whose name matches runs, `perf record -a -e cpu-clock`
// samples every CPU of the machine (a VM has no hardware counters; the
// software clock samples at profileHz). Each sample is put in one category
// by the function it interrupted (its leaf: no call chains, which would
// cost the measured path more), and each category's time is divided by
// the work done, like the CPU figures: µs per request. Envoy's binary is
// stripped, so its user space (BoringSSL's TLS included) is one category.
// Samples in the idle loop are not counted. The machine is shared: other
// processes' samples fall in "other processes".

const profileHz = 1999

// profileCategory is one category of the breakdown; classify puts a sample
// in the first whose match says so.
type profileCategory struct {
	key, label string
	match      func(comm, sym, dso string) bool
}

func kernel(dso string) bool { return dso == "[kernel.kallsyms]" || strings.HasPrefix(dso, "[") }

func prefixed(sym string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(sym, p) {
			return true
		}
	}
	return false
}

// podComms are the commands of the pods' processes (Envoy's threads are
// wrk:worker_N and envoy, fortio's Go threads fortio) and of the kernel
// threads that process their packets.
func podComm(comm string) bool {
	return prefixed(comm, "wrk:", "envoy", "fortio", "ksoftirqd", "swapper", "kworker")
}

var profileCategories = []profileCategory{
	{"idle", "idle", func(comm, sym, dso string) bool {
		return kernel(dso) && prefixed(sym, "pv_native_safe_halt", "native_safe_halt", "default_idle", "cpuidle_",
			"intel_idle", "acpi_idle", "poll_idle", "haltpoll", "do_idle", "cpu_idle_poll", "arch_cpu_idle")
	}},
	{"other", "other processes", func(comm, sym, dso string) bool { return !podComm(comm) }},
	{"bpf", "our BPF programs", func(comm, sym, dso string) bool { return prefixed(sym, "bpf_prog_") }},
	{"sockmap", "sockmap (kernel)", func(comm, sym, dso string) bool {
		return kernel(dso) && prefixed(sym, "sk_msg_", "__sk_msg", "tcp_bpf_", "sk_psock_", "sock_map_", "sock_hash_",
			"bpf_msg_", "bpf_tcp_ingress", "bpf_sk_", "__bpf_prog_run", "bpf_sock_", "bpf_skops", "__cgroup_bpf", "bpf_map_",
			"htab_", "sk_storage", "bpf_local_storage", "bpf_selem", "bpf_get_", "bpf_probe_read", "copy_from_kernel_nofault")
	}},
	{"netfilter", "netfilter (iptables, conntrack)", func(comm, sym, dso string) bool {
		return kernel(dso) && prefixed(sym, "nf_", "__nf_", "ipt_", "ip6t_", "iptable_", "ip6table_", "nft_", "xt_",
			"hash_conntrack", "____nf_conntrack", "ipv4_conntrack", "ipv6_conntrack", "nf_nat", "redirect_tg", "nf_ct_")
	}},
	{"envoy", "Envoy user space (TLS included)", func(comm, sym, dso string) bool {
		return !kernel(dso) && strings.Contains(dso, "envoy")
	}},
	{"app", "apps user space (fortio)", func(comm, sym, dso string) bool { return !kernel(dso) }},
	{"wakeups", "wake-ups and scheduling", func(comm, sym, dso string) bool {
		return prefixed(sym, "schedule", "__schedule", "try_to_wake_up", "ttwu_", "__wake_up", "wake_up", "ep_", "do_epoll",
			"__x64_sys_epoll", "finish_task_switch", "pick_next", "enqueue_", "dequeue_", "update_curr", "update_load",
			"futex", "__futex", "select_task_rq", "psi_", "set_next_entity", "put_prev", "switch_mm", "__switch_to",
			"_raw_spin_unlock_irqrestore", "sched_", "check_preempt", "resched", "__smp_call", "native_send_call_func",
			"sysvec_", "asm_sysvec", "irq_exit", "__irq_exit", "do_softirq", "__do_softirq", "handle_softirqs", "hrtimer",
			"__hrtimer", "tick_", "timerqueue", "cpuacct_", "cgroup_rstat")
	}},
	{"stack", "TCP/IP stack (kernel)", func(comm, sym, dso string) bool {
		return prefixed(sym, "tcp", "__tcp", "ip_", "ip6_", "ipv6_", "__ip", "inet", "__inet", "skb_", "__skb", "kfree_skb",
			"__kfree_skb", "sk_", "__sk_", "sock_", "__sock", "sockfd_", "dev_", "__dev_", "netif_", "__netif", "net_rx",
			"veth_", "loopback_", "__napi", "napi_", "process_backlog", "dst_", "fib_", "raw_", "release_sock", "lock_sock",
			"__release_sock", "__alloc_skb", "alloc_skb", "__build_skb", "kmalloc_reserve", "page_frag", "skb", "neigh_",
			"eth_", "br_", "nf_hook", "csum_", "__netdev", "validate_xmit", "rps_", "__local_bh", "mem_cgroup_charge_skmem",
			"mem_cgroup_uncharge_skmem", "__sk_mem", "sk_mem")
	}},
	{"syscalls", "syscalls and copies", func(comm, sym, dso string) bool {
		return prefixed(sym, "copy_", "_copy_", "__copy", "rep_movs", "memcpy", "memset", "entry_SYSCALL", "syscall_",
			"__x64_sys_", "do_syscall", "__sys_", "ksys_", "vfs_", "__fdget", "fput", "__fget", "import_iovec",
			"iov_iter", "_copy_to_iter", "__check_object_size", "check_heap_object", "__virt_addr_valid",
			"exit_to_user_mode", "__rseq", "rseq_", "read_tsc", "ktime_get", "fsnotify", "security_", "apparmor_",
			"__fsnotify", "rw_verify_area", "do_writev", "do_iter", "sock_write_iter", "sock_read_iter")
	}},
	{"kernel", "other kernel", func(comm, sym, dso string) bool { return true }},
}

// classify returns the category of one sample.
func classify(comm, sym, dso string) string {
	for _, c := range profileCategories {
		if c.match(comm, sym, dso) {
			return c.key
		}
	}
	return "kernel"
}

// profileKey is a category's figure key for the measurement of cpu stem
// stem: µs per unit of work.
func profileKey(stem, cat string) string { return "profile_" + stem + "_" + cat + "_us" }

// profileFigures are the breakdown's figures of fortio's fixed rate (the
// measurement BENCH_PROFILE names by default), idle aside.
func profileFigures() []Figure {
	var out []Figure
	for _, c := range profileCategories {
		if c.key == "idle" {
			continue
		}
		out = append(out, Figure{profileKey("fortio", c.key), fortioName(fortioRates[0]) + " µs/req: " + c.label, true})
	}
	return out
}

// profiler is a running `perf record -a`.
type profiler struct {
	cmd  *exec.Cmd
	data string
	out  strings.Builder
}

// startProfile starts sampling every CPU into a file under dir.
func startProfile(ctx context.Context, dir string) (*profiler, error) {
	p := &profiler{data: filepath.Join(dir, fmt.Sprintf("perf-%d.data", time.Now().UnixNano()))}
	p.cmd = exec.CommandContext(ctx, "perf", "record", "-a", "-e", "cpu-clock", "-F", fmt.Sprint(profileHz), "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record (apt-get install linux-perf): %w", err)
	}
	return p, nil
}

// stop ends the sampling and returns the samples' seconds per category.
func (p *profiler) stop(ctx context.Context) (map[string]float64, error) {
	defer os.Remove(p.data)
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 0 && ee.ExitCode() != 130 {
			return nil, fmt.Errorf("perf record: %v: %s", err, p.out.String())
		}
	}
	script := exec.CommandContext(ctx, "perf", "script", "-i", p.data, "-F", "comm,ip,sym,dso")
	out, err := script.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	script.Stderr = &stderr
	if err := script.Start(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	secs, err := parseSamples(out)
	if werr := script.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("perf script: %v: %s", werr, stderr.String())
	}
	return secs, err
}

// parseSamples reads `perf script -F comm,ip,sym,dso` lines
// ("comm ip sym+off (dso)"; comm may hold spaces, sym may be [unknown])
// and returns each category's seconds.
func parseSamples(r io.Reader) (map[string]float64, error) {
	secs := map[string]float64{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		open := strings.LastIndex(line, " (")
		if open < 0 || !strings.HasSuffix(line, ")") {
			continue
		}
		dso := line[open+2 : len(line)-1]
		f := strings.Fields(line[:open])
		if len(f) < 3 {
			continue
		}
		// The ip is the first hexadecimal field after the command.
		ipAt := -1
		for i := len(f) - 2; i >= 1; i-- {
			if isHex(f[i]) {
				ipAt = i
				break
			}
		}
		if ipAt < 0 {
			continue
		}
		comm := strings.Join(f[:ipAt], " ")
		sym := strings.Join(f[ipAt+1:], " ")
		if i := strings.LastIndex(sym, "+0x"); i > 0 {
			sym = sym[:i]
		}
		secs[classify(comm, sym, dso)] += 1.0 / profileHz
	}
	return secs, s.Err()
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// recordProfile adds the breakdown's figures: each category's µs per unit
// of work, and the busy total.
func recordProfile(r Result, stem string, secs map[string]float64, work float64) {
	if work <= 0 {
		return
	}
	for _, c := range profileCategories {
		if c.key == "idle" {
			continue
		}
		r[profileKey(stem, c.key)] = secs[c.key] * 1e6 / work
	}
}
