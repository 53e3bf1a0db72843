/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Rule evaluation, shared by the data path (mesh_accel.c) and the program
 * that tests it against the Go reference (ruletest.c). */
#ifndef MESH_ACCEL_RULES_H
#define MESH_ACCEL_RULES_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include "mesh_accel.h"

/* What a rule is checked against: one end of the connection. */
struct end {
	__u32 ip[4];
	__u32 port;
	__u32 uid;
	__u32 gid;
	__u32 pad;
};

static __always_inline int ip_in(const struct rule *r, const __u32 ip[4])
{
	if ((r->flags & RULE_IP6) && !ip[0] && !ip[1] &&
	    ip[2] == bpf_htonl(0x0000ffff))
		return 0;
	return (ip[0] & r->mask[0]) == r->ip[0] &&
	       (ip[1] & r->mask[1]) == r->ip[1] &&
	       (ip[2] & r->mask[2]) == r->ip[2] &&
	       (ip[3] & r->mask[3]) == r->ip[3];
}

static __always_inline int port_in(const struct rule *r, __u32 port)
{
	return port >= r->port_lo && port <= r->port_hi;
}

/* A rule matches when each of its options holds for at least one end. */
static __always_inline int rule_matches(const struct rule *r,
					const struct end *a,
					const struct end *b)
{
	__u32 f = r->flags;

	if ((f & RULE_IP) && !ip_in(r, a->ip) && !ip_in(r, b->ip))
		return 0;
	if ((f & RULE_PORT) && !port_in(r, a->port) && !port_in(r, b->port))
		return 0;
	if ((f & RULE_UID) && a->uid != r->uid && b->uid != r->uid)
		return 0;
	if ((f & RULE_GID) && a->gid != r->gid && b->gid != r->gid)
		return 0;
	return 1;
}

/* No rules: accelerate. Else some ACCEPT matches and no RETURN matches.
 * A global function: the verifier checks it once, not per call site. */
__attribute__((noinline)) int rules_accept(const struct pod_config *cfg,
					   const struct end *a,
					   const struct end *b)
{
	int accept = 0;

	if (!cfg || !a || !b)
		return 0;
	if (cfg->nrules == 0)
		return 1;
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= cfg->nrules)
			break;
		const struct rule *r = &cfg->rules[i];
		if (!rule_matches(r, a, b))
			continue;
		if (r->flags & RULE_RETURN)
			return 0;
		accept = 1;
	}
	return accept;
}

#endif
