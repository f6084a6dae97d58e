/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every struct that crosses the kernel/user boundary, defined once. The Rust mirror lives in
 * bpf/src/abi.rs and checks sizes and offsets at compile time; keep the two in step. Explicit
 * padding, fixed-width types, no bool.
 */
#ifndef TELEGEN_H
#define TELEGEN_H

#define TG_ABI_VERSION 2 /* 2: tg_event.tail (the event grew from 136 to 144 bytes) */
/* Largest payload prefix copied per syscall (the runtime knob must not exceed it). Power of two. */
#define TG_MAX_CAPTURE 4096
/* Largest payload suffix copied per syscall beyond the prefix (runtime knob tail_bytes). Power
 * of two. */
#define TG_MAX_TAIL 1024
/* Most CPUs we size the array of per-CPU rings for. */
#define TG_MAX_CPUS 1024
/* iovec entries copied per readv/writev/recvmsg/sendmsg. */
#define TG_MAX_IOV 32 /* gRPC (grpcio) writes each header name and value as its own iovec */
/* iovecs walked at most for the prefix and the tail (the kernel's UIO_MAXIOV): those past the
 * first TG_MAX_IOV are read one at a time. */
#define TG_MAX_IOV_WALK 1024
/* Datagrams reported per sendmmsg/recvmmsg call (the rest of the vector is not seen). */
#define TG_MAX_MMSG 8
/* A connection id holds the CPU that wrote its first record, plus one, from this bit up. */
#define TG_CONN_ID_CPU_SHIFT 40
/* Set in the id a connection gets when it is tracked (accept, connect), until its first
 * record replaces it (never in a record). */
#define TG_CONN_ID_PROVISIONAL (1ULL << 63)
/* Entries of the UDP port map (tg_udp_ports). */
#define TG_MAX_UDP_PORTS 64

enum tg_kind {
	TG_EV_DATA = 1,  /* payload moved on a tracked connection */
	TG_EV_CLOSE = 2, /* the connection was closed (or its fd replaced) */
	TG_EV_TLS_DATA = 3, /* decrypted payload (OpenSSL uprobes) on a tracked connection */
};

enum tg_dir {
	TG_DIR_INGRESS = 0, /* the process read */
	TG_DIR_EGRESS = 1,  /* the process wrote */
};

enum tg_role {
	TG_ROLE_UNKNOWN = 0, /* found mid-stream */
	TG_ROLE_SERVER = 1,  /* accepted */
	TG_ROLE_CLIENT = 2,  /* connected */
};

/* Values of the allowed-process map when a process filter is set. */
enum tg_allow {
	TG_ALLOW_BY_NAME = 1, /* its executable name matched (or its parent's did) */
	TG_ALLOW_BY_PID = 2,  /* named by pid (or a descendant of one) */
};

/* Transport of a socket, in tg_addr.proto (the IPPROTO_* numbers). */
enum tg_proto {
	TG_PROTO_TCP = 6,
	TG_PROTO_UDP = 17,
};

/*
 * An endpoint: IPv4 is stored as an IPv4-mapped IPv6 address. Port in host order.
 * `proto` (enum tg_proto) was padding in ABI 1 and still reads 0 from older producers; it is
 * the same in `local` and `remote`. UDP events (proto UDP) are per datagram: `remote` is that
 * datagram's peer (the socket may be unconnected), `local` the socket's address when it moved.
 */
struct tg_addr {
	__u8 addr[16];
	__u16 port;
	__u16 family; /* AF_INET or AF_INET6 */
	__u8 proto;   /* enum tg_proto */
	__u8 _pad[3];
};

/*
 * Header of every ring record; `captured` payload bytes follow it. When the syscall moved more
 * than the capture size, the payload is the first bytes it moved, then its last `tail` bytes:
 * the `bytes - captured` bytes between the two were not copied. `tail` is 0 when everything
 * moved was copied (and when the end could not be copied).
 */
struct tg_event {
	__u64 conn_id;        /* unique per connection for the agent's lifetime */
	__u64 seq;            /* per-connection sequence, stamped in the kernel */
	__u64 start_ns;       /* syscall entry, bpf_ktime_get_ns */
	__u64 end_ns;         /* syscall exit */
	__u64 parent_conn_id; /* client events: server connection this thread was serving, or 0 */
	__u64 parent_seq;     /* ... and the seq of the last ingress event on it */
	__u32 pid;            /* tgid */
	__u32 tid;
	__u32 fd;
	__u32 bytes;    /* bytes the syscall moved */
	__u32 captured; /* payload bytes following this header */
	__u8 kind;      /* enum tg_kind */
	__u8 dir;       /* enum tg_dir */
	__u8 role;      /* enum tg_role */
	__u8 version;   /* TG_ABI_VERSION */
	__u8 comm[16];
	struct tg_addr local;
	struct tg_addr remote;
	__u32 tail; /* the last `tail` of the `captured` bytes are the syscall's last bytes */
	__u32 _pad;
};

/* Per-CPU counters (one entry in a per-CPU array). */
struct tg_stats {
	__u64 seen;          /* syscall exits on tracked sockets */
	__u64 emitted;       /* records written to a ring */
	__u64 dropped;       /* records lost: ring full or missing */
	__u64 conns_opened;  /* connections tracked (UDP: sockets with a reported datagram) */
	__u64 conns_closed;
	__u64 truncated;     /* payloads longer than the capture size */
	__u64 tls_unmapped;  /* TLS plaintext dropped: its SSL* was never tied to a tracked socket */
	__u64 tls_suppressed; /* encrypted payloads not emitted: the conn carries TLS plaintext */
};

#ifndef __cplusplus
_Static_assert(sizeof(struct tg_addr) == 24, "tg_addr size");
_Static_assert(__builtin_offsetof(struct tg_addr, proto) == 20, "tg_addr.proto offset");
_Static_assert(sizeof(struct tg_event) == 144, "tg_event size");
_Static_assert(__builtin_offsetof(struct tg_event, tail) == 136, "tg_event.tail offset");
_Static_assert(sizeof(struct tg_stats) == 64, "tg_stats size");
#endif

#endif /* TELEGEN_H */
