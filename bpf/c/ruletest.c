// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test harness: runs the data path's rule evaluation (rules.h) on an input
 * written to ruletest_map, so that a Go test can compare it with the rules
 * package's reference semantics (BPF_PROG_TEST_RUN). Not loaded on nodes. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "rules.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct ruletest_case {
	struct pod_config cfg;
	struct end a;
	struct end b;
	__u32 verdict;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ruletest_case);
} ruletest_map SEC(".maps");

SEC("socket")
int ruletest(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ruletest_case *c = bpf_map_lookup_elem(&ruletest_map, &zero);

	if (!c)
		return 0;
	c->verdict = rules_accept(&c->cfg, &c->a, &c->b);
	return 0;
}
