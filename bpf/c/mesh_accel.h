/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared by the mesh-accel BPF programs and, through bpf2go, the Go
 * engine (bpf/). Changing a layout here is a new layout version
 * (bpf.LayoutVersion): pinned maps of the old layout stay compatible only
 * with the old programs. */
#ifndef MESH_ACCEL_H
#define MESH_ACCEL_H

#include <linux/types.h>

/* Constants shared with Go: enums, so that bpf2go generates them
 * (-type limit, -type proxy_flag, ...) and nothing is copied by hand. */
enum limit {
	MAX_RULES = 64,                   /* rules per pod; rules.MaxRules */
	MAX_CGROUP_DEPTH = 16,            /* ancestors searched for a pod cgroup */
	MAX_SNAPLEN = 1024,               /* bpf.MaxSnapLen */
	DEFAULT_BACKLOG_LIMIT = 4 << 20,  /* bpf.DefaultBacklogLimit */
};

/* A pod's usage word (struct usage_val): bits 0-31 hold the entries the
 * pod holds plus 1 << USAGE_BIAS_SHIFT (so that the count may dip below
 * zero for a moment without borrowing from the bits above), bits 32-63
 * count every entry added or given back (a generation: the sweep tells
 * from it whether the count moved while it scanned the maps). */
enum usage_word {
	USAGE_BIAS_SHIFT = 31,
	USAGE_GEN_SHIFT = 32,
};

/* One end of a connection as the connecting side knows itself: the key of
 * sock_helper_map. The accepting side sees this as its remote address, also
 * through iptables REDIRECT. Addresses are IPv6 or IPv4-mapped IPv6 in
 * network byte order; ports in host byte order. netns is the network
 * namespace cookie when the address is loopback (loopback addresses repeat
 * across pods), else 0. */
struct endpoint_key {
	__u32 ip[4];
	__u32 port;
	__u32 pad;
	__u64 netns;
};

/* A socket's own connection tuple, the key of sock_ops_map and sock_rx_map
 * (the sockets) and sock_proxy_map (the pairs). netns is the socket's
 * network namespace cookie, always: pods can hold the same addresses
 * (Multus, NET_ADMIN, overlapping tenant ranges), and one pod's socket
 * must never take another's key. */
struct sock_key {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
	__u64 netns;
};

/* Socket-local storage written by cgroup/sock_create in process context and
 * cloned from a listener into the sockets it accepts (BPF_F_CLONE). */
struct sock_owner {
	__u32 uid;
	__u32 gid;
	__u64 pod;  /* pod cgroup id, the key of sock_param_map */
	__u32 seen; /* enum owner_seen: callbacks already handled */
	__u32 pad;
};

/* A socket in nested attached cgroups runs the sockops program of each:
 * the first run of a callback handles it, the others see it done. */
enum owner_seen {
	SEEN_ACTIVE = 1,
	SEEN_PASSIVE = 2,
};

enum helper_flag {
	HELPER_AMBIGUOUS = 1, /* two connecting sockets share this endpoint */
	HELPER_UNTRUSTED = 2, /* its reader is not trusted and its pod does not
			       * allow one-way acceleration: the connection
			       * cannot be paired, the socket is in no map */
	/* With HELPER_UNTRUSTED (the socket is in no map, which is what the
	 * sweep reads from it), whatever its reader: its destination refused
	 * the connections of its pod and owner before it (refused_dests), so
	 * it did not join the socket maps. */
	HELPER_UNJOINED = 4,
};

/* sock_helper_map value: a connecting socket waiting for its local peer. */
struct helper_val {
	struct sock_key key;
	__u64 pod;
	__u32 uid;
	__u32 gid;
	__u32 start_seq; /* write_seq when established: own ISN + 1 */
	__u32 flags;
	__u32 rcv_nxt;   /* rcv_nxt when established: the peer's ISN + 1 */
	/* When it registered: CLOCK_MONOTONIC in milliseconds, modulo 2^32.
	 * The sweep releases a registration older than
	 * bpf.Options.RegistrationTTL. */
	__u32 born;
	__u64 sk;        /* kernel address of the socket (flow control) */
	__u64 cookie;    /* its socket cookie: tells it from a later socket at sk */
};

enum proxy_flag {
	PROXY_REDIRECT = 1, /* this direction may be redirected */
	PROXY_ACTIVE = 2,   /* the sender is the connecting side */
	PROXY_HELD = 4,     /* flow control: on the stack until the reader caught up */
	PROXY_PEER_GONE = 8, /* the reader recorded at pairing closed: on the stack for good */
	/* Released by the sweep (its reader closed unseen) or by Drain: no
	 * longer a direction of a pair (never redirected, peer cleared), the
	 * entry only keeps its sender's socket, still in the socket maps,
	 * charged to its pod's quota until the socket closes. */
	PROXY_RELEASED = 16,
	/* The receiver is in sock_ops_map, else in sock_rx_map: a socket
	 * joins one socket map, sock_ops_map when its own writes may be
	 * redirected (and every connecting socket, before its pairing is
	 * known), sock_rx_map when it only receives redirected data. */
	PROXY_TO_OPS = 32,
};

/* sock_proxy_map value: one direction of an accelerated pair. */
struct proxy_val {
	struct sock_key peer;
	__u64 pod;       /* sender's pod */
	__u64 peer_pod;  /* receiver's pod */
	__u32 start_seq; /* sender's write_seq when established */
	__u32 flags;
	__u32 uid;       /* sender's owner */
	__u32 peer_uid;  /* receiver's owner */
	__u64 bytes;     /* redirected by this sender */
	__u64 msgs;
	__u64 peer_sk;   /* kernel address of the receiver (flow control) */
	/* The receiver's socket cookie: what peer_sk holds is the receiver's
	 * only while the socket there carries it and is not closed. In a
	 * released direction, its sender's cookie (0: not known). */
	__u64 peer_cookie;
	__u32 backlog;   /* receiver's unread bytes at the last message */
	__u32 holds;     /* times flow control moved it to the stack */
};

enum rule_flag {
	RULE_IP = 1,
	RULE_PORT = 2,
	RULE_UID = 4,
	RULE_GID = 8,
	RULE_RETURN = 16, /* else ACCEPT */
	RULE_IP6 = 32,    /* an IPv6 prefix: never matches IPv4(-mapped) ends */
};

struct rule {
	__u32 ip[4];   /* masked prefix, IPv4 as IPv4-mapped */
	__u32 mask[4];
	__u32 uid;
	__u32 gid;
	__u16 port_lo;
	__u16 port_hi;
	__u32 flags;
};

enum pod_flag {
	POD_DISABLED = 1,  /* no new connections of this pod are accelerated */
	POD_TRUST_APP = 2, /* every reader in the pod reads with recvmsg */
	POD_ONE_WAY = 4,   /* a connection may be accelerated one way only */
};

/* sock_param_map value: a pod's filter, swapped whole by one update. */
struct pod_config {
	__u32 nrules;
	__u32 flags;
	__u32 trusted_uid; /* the sidecar's uid, trusted to read with recvmsg */
	/* Most map entries (pending registrations and pair directions) the
	 * pod's outgoing connections may hold (bpf.DefaultPodQuota). Past
	 * its guaranteed share (struct share_state) a pod takes entries from
	 * the node's shared pool only while it has room. */
	__u32 quota;
	struct rule rules[MAX_RULES];
};


/* pod_usage value: the entries a pod's outgoing connections hold (the
 * connecting side pays for its pending registration and both directions
 * of its pairs), in a word (enum usage_word) that only the programs
 * change, atomically: the data path, and the sweep and Drain through
 * mesh_usage (BPF_PROG_RUN). */
struct usage_val {
	__u64 word;
};

/* mesh_share value (one element): what keeps room in the node-wide maps
 * for every pod. Each pod may always hold `guaranteed` entries (up to its
 * quota); past that it borrows from a pool of `pool` entries shared by
 * all pods: capacity - pods * guaranteed. So pods beyond their guaranteed
 * share can never take the room of a pod within its own, for as many as
 * `pods` pods. Written when the state is created, then only `borrowed`
 * changes, by the programs. */
struct share_state {
	/* Entries pods hold beyond their guaranteed share, summed: the
	 * pool in use. Changed atomically with each usage word. */
	__s64 borrowed;
	__u32 guaranteed;
	__u32 pool;
	__u32 pods;     /* how many pods the guaranteed shares are kept for */
	__u32 capacity; /* entries of each connection map */
};

enum usage_op_kind {
	USAGE_READ = 1, /* the pod's usage word, read in one load */
	USAGE_ADD = 2,  /* add n entries (negative: give back) */
	FILL_READ = 3,  /* the kept counts of the connection hash maps */
	FILL_ADD = 4,   /* add n to the kept count `fill` (user space deleted) */
};

/* The kept entry counts of the connection hash maps (mesh_fill, one word
 * each, in the format of a usage word: enum usage_word): every insert and
 * delete that succeeds moves its map's count, in the same program run
 * (user space's deletes right after them, through mesh_usage, FILL_ADD).
 * The socket hashes need none: the kernel counts their sockets, also those
 * it unlinks itself when their process closes them (mesh_sockets). */
enum fill_kept {
	FILL_PROXY = 0,  /* sock_proxy_map */
	FILL_HELPER = 1, /* sock_helper_map */
	FILL_KEPT = 2,
};

/* The context of mesh_usage, a BPF_PROG_TYPE_SYSCALL program user space
 * runs to read or change a usage word as the data path does: atomically,
 * and with the node's borrowed count kept in step; and to read or change
 * the kept entry counts (FILL_READ, FILL_ADD) the same way. */
struct usage_op {
	__u64 pod;
	__s64 n;      /* USAGE_ADD: entries to add, negative to give back */
	__u64 word;   /* out: the usage word (USAGE_ADD: before the change) */
	__s64 borrowed; /* out: the node's borrowed entries after the op */
	__u32 op;     /* enum usage_op_kind */
	__u32 found;  /* out: 1 when the pod has a usage count */
	__u32 fill;   /* FILL_ADD: the count (enum fill_kept) */
	__u32 pad;
	__u64 fills[FILL_KEPT]; /* FILL_READ out: the kept count words */
};

/* mesh_config value (one element). Zero means acceleration is on. */
struct global_config {
	__u32 disabled;
	/* Flow control: the most unread redirected bytes a reader may hold
	 * (DEFAULT_BACKLOG_LIMIT when 0). */
	__u32 backlog_limit;
	/* The data path the pinned programs were built from (bpf.DataPath of
	 * the binary that created the state); programs never read it. */
	__u64 build;
};


/* mesh_capture_cfg value (one element): what `mesh-accelctl dump` captures.
 * Zero fields match anything. */
struct capture_config {
	__u32 on;
	__u32 snaplen;
	__u64 pod;     /* sender's or receiver's pod */
	__u32 ip[4];   /* sender's or receiver's address (IPv4-mapped for IPv4) */
	__u32 has_ip;
	__u32 port;    /* sender's or receiver's port */
	/* The capture's lease (bpf_ktime_get_ns): past it capture is off, so
	 * a dump killed without turning it off stops costing within seconds. */
	__u64 expires;
};

/* Ring buffer record of one redirected message. */
struct capture_event {
	__u64 ts;       /* bpf_ktime_get_ns */
	struct sock_key from; /* the sender's tuple */
	struct sock_key to;   /* the receiver's tuple */
	__u64 from_pod;
	__u64 to_pod;
	__u32 len;      /* message length */
	__u32 caplen;   /* bytes in data */
	__u8 data[MAX_SNAPLEN];
};

/* Indexes of the per-CPU counters in mesh_counters. Names in bpf/counters.go. */
enum counter {
	C_SOCK_CREATED,       /* sockets tagged at creation in attached pods */
	C_ACTIVE,             /* connecting sockets registered */
	C_CONN_SEEN,          /* accepted connections examined */
	C_CONN_ACCEPTED,      /* pairs recorded */
	C_REJECT_DISABLED,    /* acceleration off (node or pod) */
	C_REJECT_NO_PEER,     /* peer not local or not in an attached pod */
	C_REJECT_NO_OWNER,    /* socket created before the pod was attached */
	C_REJECT_RULES,       /* the rules said RETURN or no ACCEPT */
	C_REJECT_AMBIGUOUS,   /* connecting endpoint shared by two sockets */
	C_REJECT_UNTRUSTED,   /* neither reader trusted to use recvmsg */
	C_REJECT_SEQ_MISMATCH, /* the registered endpoint is another connection (NAT remapped a port) */
	C_DIR_REDIRECT,       /* directions set up for redirection */
	C_DIR_UNTRUSTED,      /* directions left on the stack: reader may splice */
	C_MSG_REDIRECTED,
	C_BYTES_REDIRECTED,
	C_FALLBACK_MAP_FULL,  /* a map update failed */
	C_FALLBACK_STACK_FIRST, /* messages kept on the stack: bytes already sent there */
	C_FALLBACK_PEER_GONE, /* messages whose peer left the socket map */
	C_MSG_UNPAIRED,       /* messages of sockets with no local peer */
	C_CLOSED,             /* accelerated pairs closed */
	C_RELEASED_REMOTE,    /* connecting sockets released: peer on another node */
	C_HALF_CLOSED,        /* directions moved to the stack: their reader sent its FIN */
	C_CAPTURE_EVENTS,     /* messages captured */
	C_CAPTURE_DROPPED,    /* captures lost: ring buffer full */
	C_FC_HELD,            /* flow control: directions moved to the stack, reader behind */
	C_FC_RESUMED,         /* flow control: directions back to redirect, reader caught up */
	C_FC_MSG_STACK,       /* messages sent on the stack while their direction waits for its reader */
	C_REJECT_TUPLE_IN_USE, /* another socket of the namespace still holds the tuple */
	C_REJECT_QUOTA,       /* the pod holds its quota of map entries */
	C_STACK_ZEROCOPY,     /* directions moved to the stack: the sender uses MSG_ZEROCOPY */
	C_STACK_RCVLOWAT,     /* messages sent on the stack: the reader has SO_RCVLOWAT above 1 */
	C_STALE_PEER,         /* directions moved to the stack for good: the reader recorded at pairing closed */
	C_REJECT_SHARED,      /* the pod is past its guaranteed share and the node's shared pool is used up */
	C_MAX,
};

#endif
