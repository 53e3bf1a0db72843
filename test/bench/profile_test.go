//go:build meshbench

package bench

import (
	"strings"
	"testing"
)

// perf script -F comm,ip,sym,dso lines as perf 6.1 prints them on this
// machine's kernel: a command with a space, Envoy stripped, a JITed BPF
// program, an idle CPU, a Go binary's symbol with a space in it.
const perfScriptSample = `         swapper      0 ffffffff81e2a1f4 pv_native_safe_halt+0x4 ([kernel.kallsyms])
    wrk:worker_1      559bf85a8d26 [unknown] (/usr/local/lib/mesh-accel/envoy-1.40.0/envoy)
    wrk:worker_0  ffffffffc0012345 bpf_prog_6deef7357e7b4530_mesh_sk_msg+0x120 ([kernel.kallsyms])
    wrk:worker_0  ffffffff81f1ca25 sk_msg_recvmsg+0x25 ([kernel.kallsyms])
    wrk:worker_0  ffffffff81f2b000 nf_conntrack_in+0x10 ([kernel.kallsyms])
    wrk:worker_1  ffffffff81f3c000 tcp_sendmsg_locked+0x99 ([kernel.kallsyms])
    wrk:worker_1  ffffffff813aecd3 finish_task_switch.isra.0+0x93 ([kernel.kallsyms])
          fortio  ffffffff81c0ffee _copy_to_iter+0x1 ([kernel.kallsyms])
          fortio            4214e8 runtime.(*mheap).allocSpan (/tmp/fortio)
       e2e2.test            4637f7 runtime.runqgrab (/tmp/e2e2.test)
     ksoftirqd/1  ffffffff81abcdef some_driver_fn+0x1 ([kernel.kallsyms])
not a sample line
`

func TestParseSamples(t *testing.T) {
	secs, err := parseSamples(strings.NewReader(perfScriptSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"idle": 1, "envoy": 1, "bpf": 1, "sockmap": 1, "netfilter": 1, "stack": 1, "wakeups": 1,
		"syscalls": 1, "app": 1, "other": 1, "kernel": 1}
	for cat, n := range want {
		if got := secs[cat] * profileHz; got < float64(n)-0.01 || got > float64(n)+0.01 {
			t.Errorf("%s: %.2f samples, want %d", cat, got, n)
		}
	}
	if len(secs) != len(want) {
		t.Errorf("categories %v, want those of %v", secs, want)
	}
}

// Every category but idle is a figure, keyed by the measurement's stem,
// and recordProfile divides by the work.
func TestRecordProfile(t *testing.T) {
	r := Result{}
	recordProfile(r, "fortio", map[string]float64{"envoy": 0.5, "bpf": 0.01, "idle": 3}, 1000)
	if got := r[profileKey("fortio", "envoy")]; got != 500 {
		t.Errorf("envoy %v µs/req, want 500", got)
	}
	if _, ok := r[profileKey("fortio", "idle")]; ok {
		t.Error("idle recorded")
	}
	if len(profileFigures()) != len(profileCategories)-1 {
		t.Errorf("%d figures for %d categories", len(profileFigures()), len(profileCategories))
	}
}
