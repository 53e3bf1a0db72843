// Package ruletest runs the data path's rule evaluation (bpf/c/rules.h) in
// the kernel on given inputs, so that tests can compare it with the rules
// package's reference semantics. It is never loaded on a node.
package ruletest

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Harness is the loaded test program and its input map.
type Harness struct{ objs ruletestObjects }

// Load loads the test program.
func Load() (*Harness, error) {
	h := &Harness{}
	if err := loadRuletestObjects(&h.objs, nil); err != nil {
		return nil, fmt.Errorf("load rule test program: %w", err)
	}
	return h, nil
}

// Close unloads the program.
func (h *Harness) Close() error { return h.objs.Close() }

// Eval writes input (a value of the layout of struct ruletest_case:
// pod_config, two ends, verdict) to the map, runs the program and returns
// the verdict the kernel computed.
func (h *Harness) Eval(input any) (bool, error) {
	if err := h.objs.RuletestMap.Update(uint32(0), input, ebpf.UpdateAny); err != nil {
		return false, fmt.Errorf("write test case: %w", err)
	}
	if _, err := h.objs.Ruletest.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		return false, fmt.Errorf("run rule test program: %w", err)
	}
	var out ruletestRuletestCase
	if err := h.objs.RuletestMap.Lookup(uint32(0), &out); err != nil {
		return false, fmt.Errorf("read verdict: %w", err)
	}
	return out.Verdict != 0, nil
}
