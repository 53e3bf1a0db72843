// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* mesh-accel data path: short-circuit local TCP hops (app <-> sidecar <->
 * sidecar <-> app) with two sockhashes (sock_ops_map runs sk_msg on the
 * writes of its sockets, which may also receive redirected data; sock_rx_map
 * holds the sockets that only receive it) and an sk_msg program.
 *
 *   cgroup/sock_create  tags each new TCP socket of an attached pod with its
 *                       creator's uid/gid (as the pod's user namespace sees
 *                       them) and pod (socket-local storage, cloned into
 *                       accepted sockets).
 *   sockops             registers connecting sockets by their local endpoint,
 *                       pairs each accepted socket with its local peer
 *                       (through iptables REDIRECT: the acceptor's remote is
 *                       the connector's local; both initial sequence numbers
 *                       must agree), judges the pair against both pods'
 *                       rules and records it in both directions; stops
 *                       redirecting into a socket that sent its FIN; removes
 *                       every entry when a socket closes.
 *   sk_msg              redirects a sendmsg into the peer's receive queue
 *                       (BPF_F_INGRESS) when the direction may be redirected
 *                       and its reader's backlog is under the limit.
 *
 * Safety rules (see DESIGN.md): a direction is redirected only into a reader
 * trusted to use recvmsg (splice readers miss redirected data); only once
 * its reader has read every byte the direction sent through the stack (the
 * receiver reads the redirect queue first, so redirecting before would
 * reorder); and only while the reader holds less than the backlog limit
 * (flow control: above it TCP's own flow control takes over). Socket keys
 * carry the network namespace and a socket never replaces another in a
 * socket map, so one pod can never reach another's sockets.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "mesh_accel.h"
#include "rules.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define EEXIST 17
#define ENOENT 2

/* CO-RE views of the kernel's socket structs: only the fields we read.
 * The program reads its own socket through bpf_skc_to_tcp_sock, and the
 * socket it redirects into through that socket's address (see
 * flow control below). */
typedef struct {
	int counter;
} atomic_t;

typedef struct {
	long long counter;
} atomic64_t;

struct sock_common {
	atomic64_t skc_cookie;   /* sk_cookie, set by bpf_get_socket_cookie */
	unsigned long skc_flags; /* sk_flags */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct {
		atomic_t rmem_alloc;
	} sk_backlog;
	int sk_rcvlowat;
	int sk_rcvbuf;
	void *sk_user_data; /* the socket map's psock (low bits: flags) */
} __attribute__((preserve_access_index));

struct list_head {
	struct list_head *next;
} __attribute__((preserve_access_index));

/* The socket map's state of a socket: ingress_msg queues what was
 * redirected to it and not read yet. */
struct sk_psock {
	struct list_head ingress_msg;
} __attribute__((preserve_access_index));

/* Bits of sk_flags (relocated by CO-RE): SOCK_DEAD is set when the
 * socket's process closed it (sock_orphan), SOCK_ZEROCOPY by SO_ZEROCOPY. */
enum sock_flags {
	SOCK_DEAD = 0,
	SOCK_ZEROCOPY = 18,
};

struct tcp_sock {
	__u32 copied_seq;
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* User namespaces (pods with hostUsers: false): enough to translate the
 * creator's uid and gid into the ones its pod sees. */
struct uid_gid_extent {
	__u32 first;
	__u32 lower_first;
	__u32 count;
} __attribute__((preserve_access_index));

struct uid_gid_map {
	__u32 nr_extents;
	struct uid_gid_extent extent[5]; /* UID_GID_MAP_MAX_BASE_EXTENTS */
} __attribute__((preserve_access_index));

struct user_namespace {
	struct uid_gid_map uid_map;
	struct uid_gid_map gid_map;
	int level;
} __attribute__((preserve_access_index));

struct cred {
	struct user_namespace *user_ns;
} __attribute__((preserve_access_index));

struct task_struct {
	const struct cred *cred;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_ops_map SEC(".maps");

/* The redirect targets that send nothing redirected: sockets that receive
 * redirected data and whose own direction stays on the stack. No program is
 * attached to it, so such a socket sends through the plain TCP code; only
 * sockets whose own direction may be redirected (and connecting sockets,
 * before their pairing is known) are in sock_ops_map, whose sk_msg program
 * runs for every write. A socket is in one of the two maps: a redirect
 * target in sock_ops_map is found there (PROXY_TO_OPS), and joining one map
 * rather than two saves a socket-map insert and delete per socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_rx_map SEC(".maps");

/* The pairs and the pending registrations are not preallocated: an
 * element deleted (its socket or its peer closed, Drain) is freed only
 * after every program that holds a pointer to it has finished, so an
 * sk_msg program still writing its direction's counters and flow-control
 * state can never write into a reused element of another pair. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sock_key);
	__type(value, struct proxy_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_proxy_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint_key);
	__type(value, struct helper_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_helper_map SEC(".maps");

/* Destinations that refused a pair: a connecting socket joins the socket
 * maps (two socket-map inserts, and as many removals when its peer refuses
 * it) before it can know whether its peer is local and will take it, and a
 * connecting socket whose pod and owner reached this destination before
 * without being paired (the peer's rules or readers refused the pair, or
 * the peer was on another node) joins no map: it still registers (flag
 * HELPER_UNJOINED), so that its peer judges it and counts why it is not
 * paired. A hint, never a decision: when the peer would take the pair, it
 * forgets the destination (that connection stays on the stack, the next one
 * joins), so a pod that appears at the address, or rules that change, cost
 * one connection. A direct-mapped cache (an array indexed by a hash of
 * the key, a later destination takes the slot of an earlier one): no lock,
 * no allocation, and a slot written by two programs at once holds at
 * worst a key that matches nothing or a destination that will be
 * forgotten, both only hints. Not pinned: it belongs to the programs
 * loaded with it, and an upgrade starts with an empty one. */
#define REFUSED_SLOTS 4096 /* a power of 2 */

struct refused_key {
	struct endpoint_key dest; /* the connecting socket's remote end */
	__u64 pod;                /* the connecting socket's pod and owner; 0: free */
	__u32 uid;
	__u32 gid;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REFUSED_SLOTS);
	__type(key, __u32);
	__type(value, struct refused_key);
} refused_dests SEC(".maps");

/* Per-pod filters keyed by pod cgroup id. Not preallocated: an update
 * publishes a fully written element, so a rule swap is atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pod_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_param_map SEC(".maps");

/* Map entries held per pod (struct usage_val), against its quota and the
 * node's shared pool (mesh_share): the connecting side pays, for its
 * pending registration and for both directions of its pairs, so that a
 * pod that opens many connections cannot fill the node-wide maps, and a
 * server is not charged for its clients. An entry is charged before it is
 * added to a map and given back after it left it. Created with the pod's
 * filter; it outlives the pod's DEL while entries of its connections
 * remain, and the sweep removes it once they are gone. The sweep also
 * corrects counts that drifted (Sweep in bpf/sweep.go). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct usage_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_usage SEC(".maps");

/* The node's guaranteed shares and shared pool (struct share_state). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct share_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_share SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_owner_map SEC(".maps");

/* The owner storage of an older release whose struct sock_owner differs
 * (bpf/olderowners.go). States whose struct is the same share one storage;
 * otherwise a socket created under the older release (a server's listener
 * above all, which lives as long as its server) has its owner only there,
 * and so do the sockets it accepts (the storage is cloned). owner_of takes
 * such an owner over, translated member by member. The loader replaces
 * this map by that storage (its value size too), or by an empty one, and
 * sets where each member of struct sock_owner sits in the older value
 * (-1: no such member, it stays zero; older_pod -1: no older storage). */
struct older_owner {
	__u8 bytes[sizeof(struct sock_owner)];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct older_owner);
} older_owner_map SEC(".maps");

volatile const __s32 older_uid = -1;
volatile const __s32 older_gid = -1;
volatile const __s32 older_pod = -1;
volatile const __s32 older_seen = -1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct global_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_capture_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_capture SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, enum counter);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_counters SEC(".maps");

/* The kept entry counts of sock_proxy_map and sock_helper_map (enum
 * fill_kept): a scrape reads them instead of walking the maps. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILL_KEPT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mesh_fill SEC(".maps");

/* The kernel's count of a socket hash's sockets (bpf_shtab.count), read
 * through the map (BTF access to its fields): it follows every insert
 * and delete, the kernel's unlinks of closing sockets among them. */
struct bpf_shtab {
	atomic_t count;
} __attribute__((preserve_access_index));

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&mesh_counters, &idx);
	if (v)
		*v += n;
}

#define count(idx) count_n(idx, 1)

/* The quota. Every change of a pod's usage word is one atomic add that
 * also returns the word before it; from that, the part of the change
 * above the pod's guaranteed share goes to the node's borrowed count. So,
 * whatever the interleaving, borrowed is the sum over pods of their
 * entries above the guaranteed share, and a pod is admitted past its
 * share only while that sum stays within the pool:
 *
 *   sum over pods of entries <= pods * guaranteed + pool = capacity
 *
 * for up to share_state.pods pods: each can always reach its guaranteed
 * share, whatever the others hold. */
static __always_inline __s64 used_of(__u64 word)
{
	return (__s64)(word & 0xffffffffULL) - ((__s64)1 << USAGE_BIAS_SHIFT);
}

static __always_inline __s64 above_share(__s64 used, __u32 guaranteed)
{
	return used > (__s64)guaranteed ? used - (__s64)guaranteed : 0;
}

/* Adds n entries (negative: gives them back) to a usage word and to the
 * node's borrowed count. Returns the word before; *borrowed is the
 * borrowed count after (0 when this change did not touch it). */
static __always_inline __u64 usage_add(struct usage_val *u, struct share_state *s,
				       __s64 n, __s64 *borrowed)
{
	__u64 mag = n < 0 ? -n : n;
	__u64 old = __sync_fetch_and_add(&u->word, (mag << USAGE_GEN_SHIFT) + (__u64)n);
	__s64 was = used_of(old);
	__s64 d = above_share(was + n, s->guaranteed) - above_share(was, s->guaranteed);

	*borrowed = 0;
	if (d)
		*borrowed = __sync_fetch_and_add(&s->borrowed, d) + d;
	return old;
}

static __always_inline struct share_state *share(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&mesh_share, &zero);
}

/* Takes n entries for the pod before they are added to a map. Returns 0,
 * or why not: C_REJECT_QUOTA (the pod holds its quota, or has no usage
 * count) or C_REJECT_SHARED (past its guaranteed share, and the shared
 * pool is used up). Concurrent admissions can only refuse each other
 * (the later add sees the earlier), never both pass the pool. */
static __always_inline int admit(__u64 pod, const struct pod_config *cfg, __s64 n)
{
	struct usage_val *u = bpf_map_lookup_elem(&pod_usage, &pod);
	struct share_state *s = share();
	__s64 borrowed, undo;
	int reason = 0;

	if (!u || !s)
		return C_REJECT_QUOTA;
	__s64 now = used_of(usage_add(u, s, n, &borrowed)) + n;
	if (cfg->quota && now > (__s64)cfg->quota)
		reason = C_REJECT_QUOTA;
	else if (borrowed > (__s64)s->pool && s->capacity)
		reason = C_REJECT_SHARED;
	if (reason)
		usage_add(u, s, -n, &undo);
	return reason;
}

/* Gives n entries back to the pod, after they left their map. */
static __always_inline void release(__u64 pod, __s64 n)
{
	struct usage_val *u = bpf_map_lookup_elem(&pod_usage, &pod);
	struct share_state *s = share();
	__s64 borrowed;

	if (u && s)
		usage_add(u, s, -n, &borrowed);
}

/* Adds n (negative: removes) to the kept count fill, a word of the usage
 * format: the generation moves by |n|. */
static __always_inline void fill_add(__u32 fill, __s64 n)
{
	__u64 *w = bpf_map_lookup_elem(&mesh_fill, &fill);
	__u64 mag = n < 0 ? -n : n;

	if (w)
		__sync_fetch_and_add(w, (mag << USAGE_GEN_SHIFT) + (__u64)n);
}

/* Inserts a new entry into sock_helper_map or sock_proxy_map (BPF_NOEXIST)
 * and counts it (fill) when it went in: not at a full map, nor over an
 * entry already there. */
static __always_inline long insert_counted(void *map, __u32 fill, const void *key, const void *val)
{
	long err = bpf_map_update_elem(map, key, val, BPF_NOEXIST);

	if (!err)
		fill_add(fill, 1);
	return err;
}

/* Deletes an entry of sock_helper_map or sock_proxy_map and uncounts it
 * (fill) when this call removed it: not when a concurrent one did. */
static __always_inline long delete_counted(void *map, __u32 fill, const void *key)
{
	long err = bpf_map_delete_elem(map, key);

	if (!err)
		fill_add(fill, -1);
	return err;
}

/* Deletes an entry of sock_helper_map or sock_proxy_map and, when this
 * call removed it (not a concurrent one), gives the pod its entry back. */
static __always_inline int delete_charged(void *map, __u32 fill, const void *key, __u64 pod)
{
	long err = delete_counted(map, fill, key);

	if (!err)
		release(pod, 1);
	return !err;
}

/* The pod charged for a pair direction: the connecting side's. */
static __always_inline __u64 payer_of(const struct proxy_val *v)
{
	return (v->flags & PROXY_ACTIVE) ? v->pod : v->peer_pod;
}

static __always_inline int accel_disabled(void)
{
	__u32 zero = 0;
	struct global_config *c = bpf_map_lookup_elem(&mesh_config, &zero);
	return c && c->disabled;
}

/* Writes an address as IPv6 (IPv4 as ::ffff:a.b.c.d), network order. */
static __always_inline void set_ip(__u32 dst[4], __u32 family, __u32 ip4,
				   const __u32 *ip6)
{
	if (family == AF_INET) {
		dst[0] = 0;
		dst[1] = 0;
		dst[2] = bpf_htonl(0x0000ffff);
		dst[3] = ip4;
	} else {
		dst[0] = ip6[0];
		dst[1] = ip6[1];
		dst[2] = ip6[2];
		dst[3] = ip6[3];
	}
}

/* An address every pod may hold on its own loopback: 127.0.0.0/8 (also
 * IPv4-mapped), ::1, and ::6, Istio's IPv6 inbound source (the IPv6 twin
 * of 127.0.0.6). */
static __always_inline int is_loopback(const __u32 ip[4])
{
	if (ip[0] || ip[1])
		return 0;
	if (ip[2] == bpf_htonl(0x0000ffff))
		return (bpf_ntohl(ip[3]) >> 24) == 127;
	return ip[2] == 0 && (ip[3] == bpf_htonl(1) || ip[3] == bpf_htonl(6));
}

/* Fills a sock_key from a context with the socket fields of bpf_sock_ops
 * and sk_msg_md (the same names in both). A macro, because context fields
 * must be read with constant offsets of the context's own type. */
#define CTX_U32(field) (*(volatile __u32 *)&(field))
#define SOCK_KEY_FROM_CTX(ctx, k)                                              \
	do {                                                                   \
		/* volatile: the verifier wants each field read whole, and    \
		 * the compiler would merge neighbours into 8-byte loads. */   \
		__u32 l6[4] = {CTX_U32((ctx)->local_ip6[0]),                   \
			       CTX_U32((ctx)->local_ip6[1]),                   \
			       CTX_U32((ctx)->local_ip6[2]),                   \
			       CTX_U32((ctx)->local_ip6[3])};                  \
		__u32 r6[4] = {CTX_U32((ctx)->remote_ip6[0]),                  \
			       CTX_U32((ctx)->remote_ip6[1]),                  \
			       CTX_U32((ctx)->remote_ip6[2]),                  \
			       CTX_U32((ctx)->remote_ip6[3])};                 \
		set_ip((k)->local_ip, (ctx)->family, (ctx)->local_ip4, l6);    \
		set_ip((k)->remote_ip, (ctx)->family, (ctx)->remote_ip4, r6);  \
		(k)->local_port = (ctx)->local_port;                           \
		(k)->remote_port = bpf_ntohl((ctx)->remote_port);              \
		(k)->netns = bpf_get_netns_cookie(ctx);                        \
	} while (0)

static __always_inline void sock_key_ops(struct bpf_sock_ops *ops,
					 struct sock_key *k)
{
	SOCK_KEY_FROM_CTX(ops, k);
}

static __always_inline void sock_key_msg(struct sk_msg_md *msg,
					 struct sock_key *k)
{
	SOCK_KEY_FROM_CTX(msg, k);
}

static __always_inline int key_equal(const struct sock_key *a,
				     const struct sock_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 diff = 0;

	for (int i = 0; i < sizeof(*a) / 8; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

/* The endpoint key of the local (local=1) or remote end of a socket key. */
static __always_inline void endpoint_of(const struct sock_key *k, int local,
					struct endpoint_key *e)
{
	const __u32 *ip = local ? k->local_ip : k->remote_ip;

	e->ip[0] = ip[0];
	e->ip[1] = ip[1];
	e->ip[2] = ip[2];
	e->ip[3] = ip[3];
	e->port = local ? k->local_port : k->remote_port;
	e->pad = 0;
	e->netns = is_loopback(e->ip) ? k->netns : 0;
}

/* The pod of the current task: its nearest ancestor cgroup that has a
 * filter in sock_param_map (the deepest match). Containers live in child
 * cgroups of the pod. */
static __always_inline __u64 current_pod(void)
{
	__u64 pod = 0;

	for (int level = 1; level <= MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			break;
		if (bpf_map_lookup_elem(&sock_param_map, &id))
			pod = id;
	}
	return pod;
}

/* id as the user namespace ns sees it, when ns is a child of the initial
 * namespace with at most five extents (Kubernetes gives a pod one):
 * kernel id lower_first + k is first + k. Unmapped ids stay as they are. */
static __always_inline __u32 id_in_ns(const struct uid_gid_map *m, __u32 id)
{
	__u32 n = BPF_CORE_READ(m, nr_extents);

	for (int i = 0; i < 5; i++) {
		if (i >= n)
			break;
		__u32 lower = BPF_CORE_READ(m, extent[i].lower_first);
		if (id - lower < BPF_CORE_READ(m, extent[i].count))
			return BPF_CORE_READ(m, extent[i].first) + (id - lower);
	}
	return id;
}

/* The uid and gid of the current task, as its pod sees them: the rules and
 * the sidecar's uid are written as the pod sees them (1337 in a user-
 * namespaced pod is a high uid on the host). */
static __always_inline void current_ids(__u32 *uid, __u32 *gid)
{
	__u64 ug = bpf_get_current_uid_gid();
	*uid = (__u32)ug;
	*gid = ug >> 32;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct user_namespace *ns = BPF_CORE_READ(task, cred, user_ns);
	if (!ns || BPF_CORE_READ(ns, level) != 1)
		return;
	*uid = id_in_ns(&ns->uid_map, *uid);
	*gid = id_in_ns(&ns->gid_map, *gid);
}

SEC("cgroup/sock_create")
int mesh_sock_create(struct bpf_sock *sk)
{
	if (sk->type != SOCK_STREAM || sk->protocol != IPPROTO_TCP)
		return 1;
	__u64 pod = current_pod();
	if (!pod)
		return 1;
	struct sock_owner *o = bpf_sk_storage_get(&sock_owner_map, sk, 0,
						  BPF_SK_STORAGE_GET_F_CREATE);
	if (!o) {
		count(C_FALLBACK_MAP_FULL);
		return 1;
	}
	current_ids(&o->uid, &o->gid);
	o->pod = pod;
	count(C_SOCK_CREATED);
	return 1;
}

static __always_inline int trusted(const struct pod_config *cfg, __u32 uid)
{
	return (cfg->flags & POD_TRUST_APP) || uid == cfg->trusted_uid;
}

/* The socket's owner: in this release's storage, or taken over from the
 * older release's (see older_owner_map). */
static __always_inline struct sock_owner *owner_of(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk = ops->sk;

	if (!sk)
		return 0;
	struct sock_owner *o = bpf_sk_storage_get(&sock_owner_map, sk, 0, 0);
	if (o || older_pod < 0)
		return o;
	const __u8 *old = bpf_sk_storage_get(&older_owner_map, sk, 0, 0);
	if (!old)
		return 0;
	struct sock_owner n = {};
	if (older_uid >= 0)
		n.uid = *(const __u32 *)(old + older_uid);
	if (older_gid >= 0)
		n.gid = *(const __u32 *)(old + older_gid);
	n.pod = *(const __u64 *)(old + older_pod);
	if (older_seen >= 0)
		n.seen = *(const __u32 *)(old + older_seen);
	return bpf_sk_storage_get(&sock_owner_map, sk, &n,
				  BPF_SK_STORAGE_GET_F_CREATE);
}

/* The kernel address of the socket of ops. Stored as a number, it lets the
 * sender's sk_msg read the receiver's queue state (flow control). The
 * verifier allows it to a loader with CAP_BPF and CAP_PERFMON. */
static __always_inline __u64 sock_addr(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk = ops->sk;

	return sk ? (__u64)(long)sk : 0;
}

static __always_inline void enable_state_cb(struct bpf_sock_ops *ops)
{
	bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags |
					       BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* Who owns a registration. Pairing consumes it, and a connecting socket
 * may leave the socket maps only while it has never been paired (leaving
 * drops what was redirected to it and not read yet). So whoever releases a
 * registration (its peer pairing or refusing it, on_first_rtt, on_close,
 * the sweep) first deletes it from sock_helper_map: exactly one of them
 * succeeds, and only that one may take the socket out of the socket maps
 * and give the entry back, in that order. A pairing whose delete failed
 * is not recorded; one recorded never had its socket removed, and one
 * refused before has no pair that could redirect to it. */

static __always_inline void refused_key_of(const struct helper_val *h,
					   struct refused_key *r)
{
	endpoint_of(&h->key, 0, &r->dest);
	r->pod = h->pod;
	r->uid = h->uid;
	r->gid = h->gid;
}

/* The slot of r in refused_dests: FNV-1a over its words, then mixed. */
static __always_inline struct refused_key *refused_slot(const struct refused_key *r)
{
	const __u32 *w = (const __u32 *)r;
	__u32 x = 2166136261u;

	for (int i = 0; i < sizeof(*r) / 4; i++)
		x = (x ^ w[i]) * 16777619u;
	x ^= x >> 15;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	__u32 slot = x & (REFUSED_SLOTS - 1);
	return bpf_map_lookup_elem(&refused_dests, &slot);
}

static __always_inline int refused_equal(const struct refused_key *a,
					 const struct refused_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	__u64 diff = 0;

	for (int i = 0; i < sizeof(*a) / 8; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

/* Whether the registration's destination refused a pair of its pod and
 * owner before. */
static __always_inline int refused_before(const struct helper_val *h)
{
	struct refused_key r;

	refused_key_of(h, &r);
	struct refused_key *slot = refused_slot(&r);
	return slot && refused_equal(slot, &r);
}

/* Notes that the registration's destination refused its pair, for a reason
 * that the next connection of the same pod and owner will meet again. A
 * registration in no socket map has nothing to save, and an ambiguous one
 * was never judged by its peer. */
static __always_inline void refused_note(const struct helper_val *h, __u32 reason)
{
	struct refused_key r;

	if (h->flags & (HELPER_UNTRUSTED | HELPER_AMBIGUOUS))
		return;
	if (reason != C_REJECT_RULES && reason != C_REJECT_UNTRUSTED &&
	    reason != C_REJECT_DISABLED && reason != C_REJECT_NO_OWNER &&
	    reason != C_RELEASED_REMOTE)
		return;
	refused_key_of(h, &r);
	struct refused_key *slot = refused_slot(&r);
	if (slot)
		*slot = r;
}

static __always_inline void refused_forget(const struct helper_val *h)
{
	struct refused_key r;

	refused_key_of(h, &r);
	struct refused_key *slot = refused_slot(&r);
	if (slot && refused_equal(slot, &r))
		slot->pod = 0;
}

/* A connecting socket is established: register it by its local endpoint so
 * that its local peer, if any, can find it. */
static __always_inline void on_active(struct bpf_sock_ops *ops,
				      const struct sock_owner *o)
{
	if (!o || accel_disabled())
		return;
	struct pod_config *cfg = bpf_map_lookup_elem(&sock_param_map, &o->pod);
	if (!cfg || (cfg->flags & POD_DISABLED))
		return;
	int reason = admit(o->pod, cfg, 1);
	if (reason) {
		count(reason);
		return;
	}

	struct helper_val h = {};
	struct endpoint_key e;
	sock_key_ops(ops, &h.key);
	endpoint_of(&h.key, 1, &e);
	h.pod = o->pod;
	h.uid = o->uid;
	h.gid = o->gid;
	h.start_seq = ops->snd_nxt;
	h.rcv_nxt = ops->rcv_nxt;
	h.born = bpf_ktime_get_ns() / 1000000;
	h.sk = sock_addr(ops);
	h.cookie = bpf_get_socket_cookie(ops);

	/* A connection is accelerated both ways or not at all, unless its
	 * pods allow one way (POD_ONE_WAY). When this socket's own reader is
	 * not trusted it cannot be: it registers, so that its peer can count
	 * the connection and the rules stay the peer's to judge, but joins no
	 * socket map, which would cost every connection a psock. */
	if (!trusted(cfg, o->uid) && !(cfg->flags & POD_ONE_WAY))
		h.flags |= HELPER_UNTRUSTED;
	else if (refused_before(&h))
		h.flags |= HELPER_UNTRUSTED | HELPER_UNJOINED;

	long err = insert_counted(&sock_helper_map, FILL_HELPER, &e, &h);
	if (err == -EEXIST) {
		/* Same local endpoint, another destination: a peer could not
		 * tell the two apart, so neither is paired. */
		struct helper_val *old = bpf_map_lookup_elem(&sock_helper_map, &e);
		if (old)
			__sync_fetch_and_or(&old->flags, HELPER_AMBIGUOUS);
		release(h.pod, 1);
		count(C_REJECT_AMBIGUOUS);
		return;
	}
	if (err) {
		release(h.pod, 1);
		count(C_FALLBACK_MAP_FULL);
		return;
	}
	if (h.flags & HELPER_UNTRUSTED) {
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags |
						       BPF_SOCK_OPS_STATE_CB_FLAG |
						       BPF_SOCK_OPS_RTT_CB_FLAG);
		count(C_ACTIVE);
		return;
	}
	/* Whether this socket's direction will be redirected, or whether it
	 * will receive redirected data, is known only when its peer pairs it,
	 * and the peer cannot add it to a map: it joins sock_ops_map now,
	 * where its sk_msg program runs and where its peer's direction finds
	 * it as a redirect target (PROXY_TO_OPS). Never in place of another
	 * socket (BPF_NOEXIST): an earlier socket with the same tuple in this
	 * namespace (reset, not yet closed by its process) keeps its entry
	 * and its unread data. A failure withdraws the registration, if no
	 * peer took it meanwhile (the pairing then finds this socket in no
	 * map, which only keeps it on the stack). */
	err = bpf_sock_hash_update(ops, &sock_ops_map, &h.key, BPF_NOEXIST);
	if (err) {
		delete_charged(&sock_helper_map, FILL_HELPER, &e, h.pod);
		count(err == -EEXIST ? C_REJECT_TUPLE_IN_USE : C_FALLBACK_MAP_FULL);
		return;
	}
	/* The RTT callback of the first acknowledged data tells a socket
	 * whose peer is on another node, see on_first_rtt. */
	bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags |
					       BPF_SOCK_OPS_STATE_CB_FLAG |
					       BPF_SOCK_OPS_RTT_CB_FLAG);
	count(C_ACTIVE);
}

/* First RTT sample of a connecting socket: some of its data was
 * acknowledged. A local peer pairs before it acknowledges anything
 * (PASSIVE_ESTABLISHED runs when the handshake's last ACK, or with
 * TCP_DEFER_ACCEPT the first data, creates the accepted socket), so a
 * socket whose registration is still pending has its peer elsewhere: it
 * leaves the socket map and runs the plain TCP code from here on.
 *
 * Only a never-paired socket may leave the map: removing a socket drops
 * its redirect queue, and a paired one (its registration consumed) may hold
 * redirected bytes its reader has not read yet. Deleting the registration
 * first decides it (see above). A socket of a registration in no socket
 * map (HELPER_UNTRUSTED) has nothing to leave: the key may be another
 * socket's.
 *
 * From here on, a socket whose registration is gone and that has no pair
 * is done with: its pairing was decided (refused, or its peer is remote)
 * before its data was acknowledged, and only a registration leads to a
 * pair. Its state callbacks, which would find nothing at its shutdown and
 * close, are turned off with the RTT callback. */
static __always_inline void on_first_rtt(struct bpf_sock_ops *ops)
{
	struct sock_key k;
	struct endpoint_key e;
	__u32 off = BPF_SOCK_OPS_RTT_CB_FLAG;

	sock_key_ops(ops, &k);
	endpoint_of(&k, 1, &e);
	struct helper_val *h = bpf_map_lookup_elem(&sock_helper_map, &e);
	if (h && key_equal(&h->key, &k)) {
		struct helper_val hv = *h;
		if (!delete_counted(&sock_helper_map, FILL_HELPER, &e)) {
			if (!(hv.flags & HELPER_UNTRUSTED))
				bpf_map_delete_elem(&sock_ops_map, &k);
			release(hv.pod, 1);
			refused_note(&hv, C_RELEASED_REMOTE);
			count(C_RELEASED_REMOTE);
		}
	}
	if (!bpf_map_lookup_elem(&sock_proxy_map, &k))
		off |= BPF_SOCK_OPS_STATE_CB_FLAG;
	bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags & ~off);
}

static __always_inline void end_of(struct end *d, const __u32 ip[4],
				   __u32 port, __u32 uid, __u32 gid)
{
	d->ip[0] = ip[0];
	d->ip[1] = ip[1];
	d->ip[2] = ip[2];
	d->ip[3] = ip[3];
	d->port = port;
	d->uid = uid;
	d->gid = gid;
	d->pad = 0;
}

/* Records both directions of a judged pair. Returns 0 or a counter index.
 * One value on the stack, filled for each direction in turn: the sockops
 * program's stack is small. */
static __always_inline int record_pair(struct bpf_sock_ops *ops,
				       const struct sock_key *pk,
				       const struct helper_val *h,
				       const struct sock_owner *o,
				       __u32 a2p, __u32 p2a)
{
	struct proxy_val v = {};
	int in_ops = 0, in_rx = 0;
	long err = 0;

	/* The accepted socket runs sk_msg only when its own direction may be
	 * redirected (sock_ops_map, where it is also its peer's target), and
	 * is in sock_rx_map when it only receives. Never in place of another
	 * socket with the same tuple (see on_active). */
	if (p2a) {
		err = bpf_sock_hash_update(ops, &sock_ops_map, (void *)pk, BPF_NOEXIST);
		if (err)
			goto fail;
		in_ops = 1;
	} else if (a2p) {
		err = bpf_sock_hash_update(ops, &sock_rx_map, (void *)pk, BPF_NOEXIST);
		if (err)
			goto fail;
		in_rx = 1;
	}

	v.peer = h->key;
	v.pod = o->pod;
	v.peer_pod = h->pod;
	v.start_seq = ops->snd_nxt;
	v.flags = PROXY_TO_OPS | (p2a ? PROXY_REDIRECT : 0);
	v.uid = o->uid;
	v.peer_uid = h->uid;
	v.peer_sk = h->sk;
	v.peer_cookie = h->cookie;
	/* Never in place of another direction: one left by an earlier socket
	 * of the tuple that closed unseen stays until the sweep removes it,
	 * and with it the entry its pod is charged for. */
	err = insert_counted(&sock_proxy_map, FILL_PROXY, pk, &v);
	if (err)
		goto fail;

	v.peer = *pk;
	v.pod = h->pod;
	v.peer_pod = o->pod;
	v.start_seq = h->start_seq;
	v.flags = PROXY_ACTIVE | (a2p ? PROXY_REDIRECT : 0) | (p2a ? PROXY_TO_OPS : 0);
	v.uid = h->uid;
	v.peer_uid = o->uid;
	v.peer_sk = sock_addr(ops);
	v.peer_cookie = bpf_get_socket_cookie(ops);
	err = insert_counted(&sock_proxy_map, FILL_PROXY, &h->key, &v);
	if (err) {
		delete_counted(&sock_proxy_map, FILL_PROXY, pk);
		goto fail;
	}
	return 0;
fail:
	/* Nothing was redirected yet: leaving the maps loses nothing. Only
	 * what this call added is removed. */
	if (in_ops)
		bpf_map_delete_elem(&sock_ops_map, pk);
	if (in_rx)
		bpf_map_delete_elem(&sock_rx_map, pk);
	return err == -EEXIST ? C_REJECT_TUPLE_IN_USE : C_FALLBACK_MAP_FULL;
}

/* Judges an accepted connection whose peer is registered, o the accepted
 * socket's owner. Returns 0 when it may be recorded, with one more entry
 * admitted for the connecting pod (the registration's becomes the other
 * direction's) and which directions may be redirected; else the counter
 * index of the reason. */
static __always_inline int judge(struct bpf_sock_ops *ops,
				 const struct sock_key *pk,
				 const struct helper_val *h,
				 const struct sock_owner *o,
				 __u32 *a2pp, __u32 *p2ap)
{
	if (h->flags & HELPER_AMBIGUOUS)
		return C_REJECT_AMBIGUOUS;
	if (!o)
		return C_REJECT_NO_OWNER;
	struct pod_config *pcfg = bpf_map_lookup_elem(&sock_param_map, &o->pod);
	struct pod_config *acfg = bpf_map_lookup_elem(&sock_param_map, &h->pod);
	if (!pcfg || !acfg || (pcfg->flags & POD_DISABLED) ||
	    (acfg->flags & POD_DISABLED))
		return C_REJECT_DISABLED;

	struct end a, p;
	end_of(&a, h->key.local_ip, h->key.local_port, h->uid, h->gid);
	end_of(&p, pk->local_ip, pk->local_port, o->uid, o->gid);
	if (!rules_accept(pcfg, &a, &p) ||
	    (h->pod != o->pod && !rules_accept(acfg, &a, &p)))
		return C_REJECT_RULES;

	/* Redirect only into readers trusted to use recvmsg, and never after
	 * bytes of that direction took the stack (TCP fast open). A
	 * registration that joined no map only for its destination
	 * (HELPER_UNJOINED) is judged as if it had joined. */
	__u32 a2p = trusted(pcfg, o->uid) && ops->bytes_received == 0;
	__u32 p2a = trusted(acfg, h->uid) &&
		    (h->flags & (HELPER_UNTRUSTED | HELPER_UNJOINED)) != HELPER_UNTRUSTED;
	if (!a2p && !p2a)
		return C_REJECT_UNTRUSTED;
	/* One direction redirected and the other on the stack costs the
	 * request/response traffic of the mesh more than it saves (both
	 * sockets run the socket-map code, and every exchange crosses both
	 * paths): such a connection is left alone unless both pods ask for
	 * it (POD_ONE_WAY). */
	if ((!a2p || !p2a) && !(pcfg->flags & acfg->flags & POD_ONE_WAY))
		return C_REJECT_UNTRUSTED;
	int reason = admit(h->pod, acfg, 1);
	if (reason)
		return reason;
	*a2pp = a2p;
	*p2ap = p2a;
	return 0;
}

/* An accepted socket is established: find its local peer and pair them. */
static __always_inline void on_passive(struct bpf_sock_ops *ops,
				       const struct sock_owner *o)
{
	struct sock_key pk;
	struct endpoint_key e;

	count(C_CONN_SEEN);
	if (accel_disabled()) {
		count(C_REJECT_DISABLED);
		return;
	}
	sock_key_ops(ops, &pk);
	endpoint_of(&pk, 0, &e);
	struct helper_val *h = bpf_map_lookup_elem(&sock_helper_map, &e);
	if (!h) {
		count(C_REJECT_NO_PEER);
		return;
	}
	struct helper_val hv = *h;
	/* The registration must be this very connection: both initial
	 * sequence numbers agree. conntrack may remap a source port (a clash
	 * with a lingering entry), and then the endpoint we looked up belongs
	 * to another connection, which must not be touched. */
	if (hv.rcv_nxt != ops->snd_nxt ||
	    hv.start_seq + (__u32)ops->bytes_received != ops->rcv_nxt) {
		count(C_REJECT_SEQ_MISMATCH);
		return;
	}
	__u32 a2p = 0, p2a = 0;
	int reason = judge(ops, &pk, &hv, o, &a2p, &p2a);
	if (hv.flags & HELPER_AMBIGUOUS) {
		count(reason);
		return; /* the entry stays marked until its socket closes */
	}
	if (!reason && (hv.flags & HELPER_UNJOINED)) {
		/* Its destination refused the connections before it, so the
		 * connecting socket joined no socket map: this one is not
		 * paired, and the next one to the destination joins. */
		refused_forget(&hv);
		if (!delete_counted(&sock_helper_map, FILL_HELPER, &e))
			release(hv.pod, 1);
		release(hv.pod, 1);
		count(C_REJECT_NO_PEER);
		return;
	}
	if (reason) {
		refused_note(&hv, reason);
		/* The connecting socket gains nothing from the sockhash now,
		 * if the registration is still ours to release (and it joined
		 * the maps: else the key may be another socket's). */
		if (!delete_counted(&sock_helper_map, FILL_HELPER, &e)) {
			if (!(hv.flags & HELPER_UNTRUSTED))
				bpf_map_delete_elem(&sock_ops_map, &hv.key);
			release(hv.pod, 1);
		}
		count(reason);
		return;
	}
	/* Take the registration; if another took it first (the connecting
	 * socket closed or was released meanwhile), the pair is not
	 * recorded: its socket may have left the maps. */
	if (delete_counted(&sock_helper_map, FILL_HELPER, &e)) {
		release(hv.pod, 1);
		count(C_REJECT_NO_PEER);
		return;
	}
	/* judge returns 0 only with an owner (the test is for the verifier) */
	int err = o ? record_pair(ops, &pk, &hv, o, a2p, p2a) : C_FALLBACK_MAP_FULL;
	if (err) {
		/* Nothing was redirected to the connecting socket: it may
		 * leave the maps, then its registration's entry and the
		 * admitted one are given back. */
		bpf_map_delete_elem(&sock_ops_map, &hv.key);
		release(hv.pod, 2);
		count(err);
		return;
	}
	count_n(C_DIR_REDIRECT, a2p + p2a);
	count_n(C_DIR_UNTRUSTED, 2 - a2p - p2a);
	enable_state_cb(ops);
	count(C_CONN_ACCEPTED);
}

/* A socket sent its FIN (shutdown or close): from now on data towards it
 * takes the stack. A socket that closed first goes through TIME_WAIT when
 * its peer's FIN arrives, and entering TIME_WAIT removes it from the socket
 * map, which drops whatever redirected data its reader has not read yet.
 * A response written after the shutdown thus reaches it on the stack
 * (switching from redirect to the stack keeps the order). */
static __always_inline void on_shutdown(struct bpf_sock_ops *ops)
{
	struct sock_key k;

	sock_key_ops(ops, &k);
	struct proxy_val *v = bpf_map_lookup_elem(&sock_proxy_map, &k);
	if (!v)
		return;
	struct sock_key peer = v->peer;
	struct proxy_val *pv = bpf_map_lookup_elem(&sock_proxy_map, &peer);
	if (pv && key_equal(&pv->peer, &k) && (pv->flags & PROXY_REDIRECT)) {
		pv->flags &= ~PROXY_REDIRECT;
		count(C_HALF_CLOSED);
	}
}

/* Turns a pair direction into a released one (PROXY_RELEASED): never
 * redirected again, no peer (no close of a socket that reuses the peer's
 * tuple touches it), its sender's socket cookie in peer_cookie (sender:
 * no close of a later socket on the tuple takes it for its own; 0 where
 * the sender is not known: the sweep, Drain, an older program), still
 * charged to its pod for its sender's socket,
 * which stays in the socket maps until its process closes it; the sender's
 * close, or the sweep once the socket left the maps, removes it. The
 * entry is replaced whole: a sender's sk_msg writing the old element
 * meanwhile writes an element no longer in the map. If it cannot be (no
 * memory), the direction is deleted as before, uncharged. */
static __always_inline void release_direction(const struct sock_key *k,
					      const struct proxy_val *v,
					      __u64 sender)
{
	struct proxy_val t = {};

	t.pod = v->pod;
	t.peer_pod = v->peer_pod;
	t.uid = v->uid;
	t.peer_uid = v->peer_uid;
	t.bytes = v->bytes;
	t.msgs = v->msgs;
	t.holds = v->holds;
	t.flags = PROXY_RELEASED | (v->flags & PROXY_ACTIVE);
	t.peer_cookie = sender;
	__u64 payer = payer_of(v);
	long err = bpf_map_update_elem(&sock_proxy_map, (void *)k, &t, BPF_EXIST);
	if (err && err != -ENOENT)
		delete_charged(&sock_proxy_map, FILL_PROXY, k, payer);
}

/* Whether the socket's process still holds it (it is not SOCK_DEAD): a
 * socket in a socket map stays there until its process closes it, also
 * after TCP_CLOSE (a reset, or TIME_WAIT after a half-close), and only
 * the sweep sees it leave. */
static __always_inline int held_by_process(struct sock *sk)
{
	return !(BPF_CORE_READ(sk, __sk_common.skc_flags) &
		 (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DEAD)));
}

/* Whether redirected bytes wait unread in the socket's redirect queue
 * (its psock's ingress_msg list is not empty). Bytes that came by the
 * stack wait in its receive queue, which stays readable once the socket
 * leaves the socket maps; redirected ones would go with its psock. */
static __always_inline int redirected_unread(struct sock *sk)
{
	unsigned long ud = (unsigned long)BPF_CORE_READ(sk, sk_user_data);
	struct sk_psock *psock = (struct sk_psock *)(ud & ~7UL);

	if (!psock)
		return 0;
	struct list_head *next = BPF_CORE_READ(psock, ingress_msg.next);
	return next && (unsigned long)next !=
			       (unsigned long)psock + bpf_core_field_offset(struct sk_psock, ingress_msg);
}

/* A socket reached TCP_CLOSE: it can neither send nor receive any more.
 * Its peer's direction into it goes (released, so that a new socket
 * reusing the tuple never receives the old peer's data, and still charged
 * while the peer's socket stays in the maps), and so do its own direction
 * and its pending registration.
 *
 * Every entry stays charged while its socket is in a socket map. A socket
 * its process still holds stays in the maps: if no redirected byte waits
 * unread in its redirect queue it leaves them now, losing nothing (bytes
 * that came by the stack stay in its receive queue, readable; at
 * TCP_CLOSE its peer sent its FIN or reset, so nothing more can be
 * redirected to it). Otherwise its own direction is released, and the
 * sweep removes it once the process closed the socket. (A client that
 * half-closes, as HTTP/1.0 and connection-per-request clients do, gets
 * its reply by the stack, on_shutdown: its socket leaves at once, and
 * churn does not pile up entries charged until the next sweep.)
 * The socket of a registration, never paired, always leaves the map it
 * joined (none if HELPER_UNTRUSTED).
 *
 * The entries under its key may be an earlier socket's of the same tuple:
 * one reset, its process still holding it with unread redirected bytes
 * (its direction released with its cookie, see release_direction), when
 * this socket joined no socket map (HELPER_UNTRUSTED). They stay, with that
 * socket in its socket map and its bytes; so does a registration that is
 * not this socket's (its cookie). */
static __always_inline void on_close(struct bpf_sock_ops *ops)
{
	struct sock_key k;
	struct endpoint_key e;

	sock_key_ops(ops, &k);
	struct bpf_sock *bsk = ops->sk;
	struct sock *sk = bsk ? (struct sock *)bpf_skc_to_tcp_sock(bsk) : 0;
	__u64 cookie = bpf_get_socket_cookie(ops);
	struct proxy_val *v = bpf_map_lookup_elem(&sock_proxy_map, &k);
	if (v && (v->flags & PROXY_RELEASED) && v->peer_cookie && v->peer_cookie != cookie)
		v = 0;
	if (v && sk) {
		struct sock_key peer = v->peer;
		__u64 peer_cookie = v->peer_cookie;
		int released = v->flags & PROXY_RELEASED;
		if (held_by_process(sk) && redirected_unread(sk)) {
			if (!released)
				release_direction(&k, v, cookie);
			else if (!v->peer_cookie)
				v->peer_cookie = cookie; /* released by the sweep or Drain */
		} else {
			bpf_map_delete_elem(&sock_ops_map, &k);
			bpf_map_delete_elem(&sock_rx_map, &k);
			delete_charged(&sock_proxy_map, FILL_PROXY, &k, payer_of(v));
		}
		if (!released) {
			struct proxy_val *pv = bpf_map_lookup_elem(&sock_proxy_map, &peer);
			if (pv && key_equal(&pv->peer, &k) && !(pv->flags & PROXY_RELEASED))
				release_direction(&peer, pv, peer_cookie);
			count(C_CLOSED);
		}
	}
	endpoint_of(&k, 1, &e);
	struct helper_val *h = bpf_map_lookup_elem(&sock_helper_map, &e);
	if (h && key_equal(&h->key, &k) && h->cookie == cookie) {
		__u64 pod = h->pod;
		__u32 flags = h->flags;
		if (!delete_counted(&sock_helper_map, FILL_HELPER, &e)) {
			if (!(flags & HELPER_UNTRUSTED))
				bpf_map_delete_elem(&sock_ops_map, &k);
			release(pod, 1);
		}
	}
}

/* Whether this callback was handled for the socket of owner o already (by
 * the program of another attached cgroup the socket is nested in); marks
 * it. */
static __always_inline int seen_before(struct sock_owner *o, __u32 what)
{
	if (!o)
		return 0;
	if (o->seen & what)
		return 1;
	o->seen |= what;
	return 0;
}

SEC("sockops")
int mesh_sockops(struct bpf_sock_ops *ops)
{
	if (ops->family != AF_INET && ops->family != AF_INET6)
		return 1;
	switch (ops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		struct sock_owner *o = owner_of(ops);
		if (!seen_before(o, SEEN_ACTIVE))
			on_active(ops, o);
		break;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: {
		struct sock_owner *o = owner_of(ops);
		if (!seen_before(o, SEEN_PASSIVE))
			on_passive(ops, o);
		break;
	}
	case BPF_SOCK_OPS_RTT_CB:
		on_first_rtt(ops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (ops->args[1] == BPF_TCP_CLOSE)
			on_close(ops);
		else if (ops->args[1] == BPF_TCP_FIN_WAIT1)
			on_shutdown(ops);
		break;
	}
	return 1;
}

#ifndef MESH_NO_CAPTURE
/* Puts struct capture_event into BTF, so that bpf2go emits it for Go. */
const struct capture_event *unused_capture_event __attribute__((unused));
#endif

/* Puts the shared constants into BTF, so that bpf2go emits them for Go. */
const enum limit *unused_limit __attribute__((unused));
const enum helper_flag *unused_helper_flag __attribute__((unused));
const enum proxy_flag *unused_proxy_flag __attribute__((unused));
const enum rule_flag *unused_rule_flag __attribute__((unused));
const enum pod_flag *unused_pod_flag __attribute__((unused));
const enum usage_word *unused_usage_word __attribute__((unused));
const enum usage_op_kind *unused_usage_op_kind __attribute__((unused));
const enum fill_kept *unused_fill_kept __attribute__((unused));

/* Reads or changes a pod's usage word for user space (bpf/quota.go), run
 * with BPF_PROG_RUN: user space can neither add to a map value atomically
 * nor read a word that programs change without a torn read. A change goes
 * through usage_add, like the data path's, so that the node's borrowed
 * count stays the sum of what pods hold beyond their guaranteed share. */
/* The fill of the connection hash maps, for user space (bpf/mapfill.go):
 * FILL_READ reads the kept counts in one load each; FILL_ADD adds to a kept count after user space deleted an
 * entry. */
static __always_inline int fill_op(struct usage_op *op)
{
	if (op->op == FILL_ADD) {
		if (op->fill >= FILL_KEPT)
			return 0;
		fill_add(op->fill, op->n);
		op->found = 1;
		return 0;
	}
	__u32 proxy = FILL_PROXY, helper = FILL_HELPER;
	__u64 *p = bpf_map_lookup_elem(&mesh_fill, &proxy);
	__u64 *h = bpf_map_lookup_elem(&mesh_fill, &helper);
	if (!p || !h)
		return 0;
	/* Constant offsets: the verifier allows no other into the context. */
	op->fills[FILL_PROXY] = *(volatile __u64 *)p;
	op->fills[FILL_HELPER] = *(volatile __u64 *)h;
	op->found = 1;
	return 0;
}

/* The sockets in sock_ops_map (args[0] 0) or sock_rx_map (1), for user
 * space (BPF_PROG_RUN): a sleepable program (mesh_usage) may not touch a
 * socket hash. */
SEC("raw_tp")
int mesh_sockets(struct bpf_raw_tracepoint_args *ctx)
{
	struct bpf_shtab *m = ctx->args[0] ? (struct bpf_shtab *)&sock_rx_map
					   : (struct bpf_shtab *)&sock_ops_map;

	return m->count.counter;
}

SEC("syscall")
int mesh_usage(struct usage_op *op)
{
	if (op->op == FILL_READ || op->op == FILL_ADD) {
		op->found = 0;
		return fill_op(op);
	}
	__u64 pod = op->pod;
	struct usage_val *u = bpf_map_lookup_elem(&pod_usage, &pod);
	struct share_state *s = share();
	__s64 borrowed = 0;

	op->found = 0;
	if (!u || !s)
		return 0;
	op->found = 1;
	if (op->op == USAGE_ADD)
		op->word = usage_add(u, s, op->n, &borrowed);
	else
		op->word = *(volatile __u64 *)&u->word;
	op->borrowed = *(volatile __s64 *)&s->borrowed;
	return 0;
}

#ifndef MESH_NO_CAPTURE

static __always_inline int ip_equal(const __u32 a[4], const __u32 b[4])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline int capture_wants(const struct capture_config *c,
					 const struct sock_key *from,
					 const struct proxy_val *v)
{
	if (c->pod && c->pod != v->pod && c->pod != v->peer_pod)
		return 0;
	if (c->port && c->port != from->local_port &&
	    c->port != v->peer.local_port)
		return 0;
	if (c->has_ip && !ip_equal(c->ip, from->local_ip) &&
	    !ip_equal(c->ip, v->peer.local_ip))
		return 0;
	return 1;
}

/* Copies the head of a redirected message into the capture ring. Runs only
 * while a capture is on: idle, the data path pays one array lookup. */
static __always_inline void capture(struct sk_msg_md *msg,
				    const struct capture_config *c,
				    const struct sock_key *from,
				    const struct proxy_val *v, __u32 size)
{
	if (!capture_wants(c, from, v))
		return;
	struct capture_event *ev =
		bpf_ringbuf_reserve(&mesh_capture, sizeof(*ev), 0);
	if (!ev) {
		count(C_CAPTURE_DROPPED);
		return;
	}
	__u32 caplen = c->snaplen;
	if (caplen > size)
		caplen = size;
	if (caplen > MAX_SNAPLEN)
		caplen = MAX_SNAPLEN;
	ev->ts = bpf_ktime_get_ns();
	ev->from = *from;
	ev->to = v->peer;
	ev->from_pod = v->pod;
	ev->to_pod = v->peer_pod;
	ev->len = size;
	ev->caplen = 0;
	if (caplen && !bpf_msg_pull_data(msg, 0, caplen, 0)) {
		void *data = (void *)(long)msg->data;
		void *end = (void *)(long)msg->data_end;
		if (data + caplen <= end) {
			/* Bound the length in the register the helper gets:
			 * the compiler may spill a value checked earlier, and
			 * 6.1's verifier keeps no bound through the stack. */
			__u64 n = caplen;
			barrier_var(n);
			if (n > MAX_SNAPLEN)
				n = MAX_SNAPLEN;
			if (!bpf_probe_read_kernel(ev->data, n, data))
				ev->caplen = caplen;
		}
	}
	bpf_ringbuf_submit(ev, 0);
	count(C_CAPTURE_EVENTS);
}
#endif

/* Flow control.
 *
 * A redirect with BPF_F_INGRESS queues the message on the receiver whatever
 * the receiver holds: only the node's tcp_mem limit stops it, and then the
 * writer's sendmsg fails with ENOMEM. So before each redirect the sender
 * reads the receiver's unread bytes (sk_rmem_alloc: redirected bytes are
 * charged there on every supported kernel) through the address recorded at
 * pairing. Above the limit the direction is held on the stack, where TCP's
 * own flow control makes the writer wait (blocking) or see EAGAIN
 * (non-blocking). Redirect -> stack never reorders: the receiver reads its
 * redirect queue before its receive queue.
 *
 * Stack -> redirect is safe only once the receiver has read every byte the
 * stack carried: its copied_seq (advanced only by stack reads) equals the
 * sender's write_seq (advanced only by stack writes). Then nothing of this
 * direction is in flight or unread on the stack. The same rule lets a
 * direction whose first bytes took the stack (sent before the pair was
 * recorded) be redirected once those bytes were read. A receiver with
 * SO_RCVLOWAT above 1 waits inside the stack's recvmsg for more stack bytes
 * and would not see redirected ones: such a direction stays on the stack.
 *
 * The address is read with bpf_probe_read_kernel. It stays the receiver's
 * while the receiver is in the socket map (the map holds a reference), but
 * a receiver that closes while its pod is detached runs no close callback:
 * its socket is freed once its FIN is acknowledged, and its memory may
 * become another socket (TCP sockets are SLAB_TYPESAFE_BY_RCU). So what is
 * read there counts only if, read after it, the socket still carries the
 * cookie recorded at pairing (a later socket has another, or none yet) and
 * is not closed (SOCK_DEAD: freed memory not reused yet keeps its cookie).
 * Otherwise the receiver is gone: the direction takes the stack for good
 * (PROXY_PEER_GONE) and its address is never read again.
 *
 * The backlog limit is also bounded by the receiver's drop limit. A packet
 * that arrives while the receiver's socket is locked (its process in
 * recvmsg, or a sender redirecting into it) waits on the socket's backlog,
 * and tcp_add_backlog drops it when the backlog plus sk_rmem_alloc pass
 * 2 * sk_rcvbuf + sk_sndbuf / 2 + 64 KiB. Unread redirected bytes count in
 * sk_rmem_alloc, and a redirect reader's sk_rcvbuf is not autotuned (it
 * stays at tcp_rmem[1], 128 KiB, unless the app sets SO_RCVBUF): with
 * megabytes unread, every packet arriving at a locked receiver is dropped.
 * Data and FIN are retransmitted, a reset is not: the receiver never sees
 * its peer's reset (an app's SO_LINGER 0 close) and waits for good. Plain
 * TCP stays below the drop limit by its window (at most about sk_rcvbuf
 * unread plus as much in flight). So the direction is also held once the
 * unread bytes would pass 2 * sk_rcvbuf (and redirected again below
 * sk_rcvbuf, as below half the limit): the kernel's own headroom
 * (sk_sndbuf / 2 + 64 KiB) stays for what arrives while the receiver is
 * locked (a reset, ACKs; stack data only within the window, which the
 * redirected bytes close). Envoy's writev and iperf3's 128 KiB writes fit
 * into an empty receiver. */
static __always_inline __u32 backlog_limit(void)
{
	__u32 zero = 0;
	struct global_config *c = bpf_map_lookup_elem(&mesh_config, &zero);
	return c && c->backlog_limit ? c->backlog_limit : DEFAULT_BACKLOG_LIMIT;
}

/* The receiver's unread bytes (redirected and stack). */
static __always_inline __u32 peer_backlog(__u64 addr)
{
	struct sock *sk = (struct sock *)(long)addr;

	if (!sk)
		return 0xffffffff;
	return (__u32)BPF_CORE_READ(sk, sk_backlog.rmem_alloc.counter);
}

/* The most unread bytes the receiver may hold and still take a reset
 * while locked: its drop limit for the socket backlog (tcp_add_backlog:
 * 2 * sk_rcvbuf + sk_sndbuf / 2 + 64 KiB) less the headroom the kernel
 * leaves there, 2 * sk_rcvbuf. */
static __always_inline __u64 peer_safe_backlog(__u64 addr)
{
	struct sock *sk = (struct sock *)(long)addr;

	if (!sk)
		return 0;
	return 2 * (__u64)(__u32)BPF_CORE_READ(sk, sk_rcvbuf);
}

/* Whether the receiver has read every byte of this direction that took the
 * stack. */
static __always_inline int peer_caught_up(__u64 addr, __u32 write_seq)
{
	struct tcp_sock *tp = (struct tcp_sock *)(long)addr;

	return addr && BPF_CORE_READ(tp, copied_seq) == write_seq;
}

/* Whether the receiver reads with a low-water mark (SO_RCVLOWAT above 1).
 * The redirect queue ignores it (a read returns what is there), and the
 * stack's recvmsg waiting for more stack bytes would not see redirected
 * ones: such a direction takes the stack, which honours the mark. */
static __always_inline int peer_lowat(__u64 addr)
{
	struct sock *sk = (struct sock *)(long)addr;

	return !addr || BPF_CORE_READ(sk, sk_rcvlowat) > 1;
}

/* Whether the sender uses MSG_ZEROCOPY (SO_ZEROCOPY): a redirected message
 * never completes on its error queue, so a sender waiting for completions
 * to reuse its buffers would wait for good. The stack completes them. */
static __always_inline int own_zerocopy(struct tcp_sock *tp)
{
	struct sock *sk = (struct sock *)tp;

	return BPF_CORE_READ(sk, __sk_common.skc_flags) &
	       (1UL << bpf_core_enum_value(enum sock_flags, SOCK_ZEROCOPY));
}

/* Whether the socket at addr is still the receiver recorded at pairing:
 * it carries the recorded cookie and its process has not closed it. */
static __always_inline int peer_recorded(__u64 addr, __u64 cookie)
{
	struct sock *sk = (struct sock *)(long)addr;

	if (!addr || !cookie ||
	    BPF_CORE_READ(sk, __sk_common.skc_cookie.counter) != (long long)cookie)
		return 0;
	return !(BPF_CORE_READ(sk, __sk_common.skc_flags) &
		 (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DEAD)));
}

SEC("sk_msg")
int mesh_sk_msg(struct sk_msg_md *msg)
{
	struct sock_key k;

	sock_key_msg(msg, &k);
	struct proxy_val *v = bpf_map_lookup_elem(&sock_proxy_map, &k);
	if (!v) {
		count(C_MSG_UNPAIRED);
		return SK_PASS;
	}
	if (!(v->flags & PROXY_REDIRECT))
		return SK_PASS;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(msg->sk);
	if (!tp)
		return SK_PASS;
	if (own_zerocopy(tp)) {
		v->flags &= ~PROXY_REDIRECT;
		count(C_STACK_ZEROCOPY);
		return SK_PASS;
	}
	__u32 size = msg->size;
	__u32 limit = backlog_limit();
	__u64 peer = v->peer_sk;
	__u32 write_seq = tp->write_seq;
	/* Everything read of the receiver is read before it is validated. */
	__u32 backlog = peer_backlog(peer);
	__u64 safe = peer_safe_backlog(peer);
	int lowat = peer_lowat(peer);
	int caught_up = write_seq == v->start_seq || peer_caught_up(peer, write_seq);
	if (!peer_recorded(peer, v->peer_cookie)) {
		v->flags = (v->flags & ~(PROXY_REDIRECT | PROXY_HELD)) | PROXY_PEER_GONE;
		v->backlog = 0;
		count(C_STALE_PEER);
		return SK_PASS;
	}
	v->backlog = backlog;
	/* Hold before the receiver's drop limit, resume below half of it
	 * (see above). */
	if (safe < limit)
		limit = safe;
	if (lowat) {
		count(C_STACK_RCVLOWAT);
		return SK_PASS;
	}
	if (write_seq != v->start_seq) {
		/* Bytes of this direction took the stack (before the pair was
		 * recorded, or held by flow control): redirect again only once
		 * the reader read them all, with room to spare. */
		if (!caught_up || backlog > limit / 2) {
			count((v->flags & PROXY_HELD) ? C_FC_MSG_STACK
						      : C_FALLBACK_STACK_FIRST);
			return SK_PASS;
		}
		v->start_seq = write_seq;
		if (v->flags & PROXY_HELD) {
			v->flags &= ~PROXY_HELD;
			count(C_FC_RESUMED);
		}
	}
	if (backlog > limit || size > limit - backlog) {
		/* Reader behind: TCP's flow control takes over. */
		v->flags |= PROXY_HELD;
		v->holds++;
		count(C_FC_HELD);
		count(C_FC_MSG_STACK);
		return SK_PASS;
	}
	/* The receiver joined one socket map, recorded at pairing. */
	long verdict = (v->flags & PROXY_TO_OPS) ?
		bpf_msg_redirect_hash(msg, &sock_ops_map, &v->peer, BPF_F_INGRESS) :
		bpf_msg_redirect_hash(msg, &sock_rx_map, &v->peer, BPF_F_INGRESS);
	if (verdict != SK_PASS) {
		count(C_FALLBACK_PEER_GONE);
		return SK_PASS;
	}
	/* Plain adds: only this sender writes its direction's entry, and its
	 * sendmsg calls are serialised by the socket lock. */
	v->bytes += size;
	v->msgs++;
	count(C_MSG_REDIRECTED);
	count_n(C_BYTES_REDIRECTED, size);

#ifndef MESH_NO_CAPTURE
	__u32 zero = 0;
	struct capture_config *c = bpf_map_lookup_elem(&mesh_capture_cfg, &zero);
	if (c && c->on && bpf_ktime_get_ns() < c->expires)
		capture(msg, c, &k, v, size);
#endif
	return SK_PASS;
}
