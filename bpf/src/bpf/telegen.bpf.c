// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Telegen's socket tracer. Syscall tracepoints only (no kprobes, no fentry: they are not
 * available on hardened kernels). Tracks TCP sockets per (tgid, fd), stamps a per-connection
 * sequence, copies the first bytes of each payload (and its last bytes when the payload is
 * longer than the capture size: the end of a message, e.g. HTTP/2 trailers after a large body,
 * is where a response says how it ended), and writes records to the ring buffer of the
 * connection's home CPU (the one that wrote its first record, see conn_ring), waking the
 * consumer only when a lot is pending.
 *
 * UDP sockets are tracked too (one "connection" per socket) when the loader set UDP ports, but a
 * datagram is reported only if its remote or local port is in tg_udp_ports (see udp.bpf.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "telegen.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

/* Knobs set by the loader before load. */
const volatile __u32 capture_bytes = 1024;
/* Bytes copied from the end of a syscall's data when it moved more than capture_bytes (they go
 * after the prefix: a record holds at most capture_bytes + tail_bytes). 0: prefix only. */
const volatile __u32 tail_bytes = 256;
const volatile __u32 self_tgid = 0;
const volatile __u8 filter_enabled = 0;
const volatile __u64 wakeup_bytes = 1 << 20;
/* Bytes pending in a connection's home ring past which its records go to the ring of the CPU
 * that writes them instead, whose shard forwards them to the owner (see submit); 0: never. */
const volatile __u64 spill_bytes = 0;
/* Set when the OpenSSL uprobes (tls.bpf.h) are loaded: syscalls then note their fd for them. */
const volatile __u8 tls_enabled = 0;
const volatile __u8 udp_enabled = 0; /* tg_udp_ports is not empty */

struct conn_key {
	__u32 tgid;
	__u32 fd;
};

struct conn {
	__u64 conn_id;
	__u64 seq;
	__u64 file; /* struct file * the fd pointed at when we started tracking */
	struct tg_addr local;
	struct tg_addr remote;
	__u64 sk;  /* UDP: struct sock *, to read its addresses per datagram */
	__u8 role; /* UDP: UNKNOWN until a datagram on a traced port decides it */
	__u8 udp;
	/* UDP, connected and bound, neither port traced: datagrams without an address of their
	 * own cannot match until the next connect() (which tracks the socket anew), skip them early */
	__u8 udp_quiet;
	__u8 tls; /* TLS plaintext was emitted: encrypted syscall payloads are no longer */
	/* Not a traced connection: the fd is a socket that is not traced (a Unix one, UDP when
	 * not enabled), or a file that took the fd of a connection whose close went unseen.
	 * Only `file` is set: the fd's next syscalls skip reading the socket again, and its close
	 * finds it with the one lookup every close makes (see track and lookup). */
	__u8 notsock;
	__u8 _pad[3];
};

enum tg_op { OP_PLAIN = 1, OP_IOV = 2, OP_SENDFILE = 3, OP_MMSG = 5 };

struct call_args {
	__u64 buf;  /* OP_PLAIN: user buffer; OP_IOV: user iovec array; OP_MMSG: mmsghdr vector */
	__u64 addr; /* user sockaddr of sendto/recvfrom/msg_name, or 0 */
	__u64 start_ns;
	__u32 fd;
	__u32 iovcnt;
	__u8 op;
	__u8 msg; /* egress: `buf` is still the msghdr (see enter_io_msg) */
	__u8 _pad[6];
};

struct tid_ctx {
	__u64 conn_id; /* 0: none (connection ids are never 0) */
	__u64 seq;
};

#define TLS_NO_FD 0xffffffffu

/* An OpenSSL SSL_* call in flight on a thread (tls.bpf.h). */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 out; /* _ex variants: size_t * that receives the byte count; 0 otherwise */
	__u64 start_ns;
	__u32 fd; /* tracked socket a syscall inside the call used, or TLS_NO_FD */
	__u8 dir;
	__u8 active; /* between the uprobe and its uretprobe */
	__u8 _pad[2];
};

/* What a thread carries between programs: the arguments an egress syscall's entry program saved
 * for its exit program (valid while args.op != 0; ingress syscalls and connect have no entry
 * program, see syscall_arg), the request it is serving (server ingress sets it,
 * server egress clears it, client calls made meanwhile carry it as their parent), and the
 * SSL_* call it is inside (valid while ssl.active). Task-local storage: no hashing and no lock
 * per syscall or SSL call (an LRU hash keyed by thread id cost an update, a lookup and a delete
 * per call, the largest BPF cost on the traced threads), and freed with the thread. */
struct task_state {
	struct call_args args;
	struct tid_ctx server;
	struct ssl_call ssl;
};

struct scratch {
	struct tg_event ev;
	__u8 payload[3 * TG_MAX_CAPTURE];
	/* The syscall's first TG_MAX_IOV iovecs, read in one go (twice the room: the length mask;
	 * slot TG_MAX_IOV holds a later iovec, read on its own). After the payload: a record is
	 * `ev` and the payload that follows it. */
	struct iovec iov[2 * TG_MAX_IOV];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 18); /* set by the loader (--conn-table-entries) */
	__type(key, struct conn_key);
	__type(value, struct conn);
} tg_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} tg_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32);
	__type(value, __u8);
} tg_allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[16]);
	__type(value, __u8);
} tg_comm_filter SEC(".maps");

/*
 * The filter's last answer on each CPU, in one word (a program preempted while storing it
 * cannot leave half of another's): tgid << 32 | (tg_filter_gen & 0x7fffffff) << 1 | allowed.
 * Consecutive syscalls on a CPU mostly come from one process: a hit costs no hash lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tg_filter_last SEC(".maps");

/* Bumped after every change to tg_allowed that an answer cached in tg_filter_last may hold:
 * an entry added by fork or exec, removed by exec or by the exit of a process's main thread.
 * The threads that ask about a changed entry are ordered after the change (a forked child
 * starts after it, an exec'ing thread made it itself); only the other threads of a process
 * whose main thread exited may see it a little late, as they could before. User space fills
 * tg_allowed before the programs are attached, when nothing is cached. */
volatile __u32 tg_filter_gen = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tg_stats);
} tg_stats SEC(".maps");

/* UDP ports whose datagrams are reported (either end); filled by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TG_MAX_UDP_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} tg_udp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tg_conn_counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} tg_scratch SEC(".maps");

/* Per-CPU ring buffers: user space creates one ring per CPU and puts it at index = cpu. */
struct tg_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TG_MAX_CPUS);
	__type(key, __u32);
	__array(values, struct tg_ring);
} tg_rings SEC(".maps");

static __always_inline struct tg_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&tg_stats, &zero);
}

/* The current thread's state; created on first use when `create`. NULL when absent, or in the
 * rare case the storage could not be taken (a nested program holds its lock, or no memory). */
static __always_inline struct task_state *task_state(int create)
{
	return bpf_task_storage_get(&tg_task, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Whether process `tgid` is left alone: the agent itself, or not allowed by the filter. */
static __always_inline int skip_tgid(__u32 tgid)
{
	__u32 zero = 0;
	__u64 *last, want, v;
	int allowed;

	if (tgid == self_tgid)
		return 1;
	if (!filter_enabled)
		return 0;
	/* Read before the lookup: a change made meanwhile moves it past what is stored. */
	want = ((__u64)tgid << 32) | ((__u64)(tg_filter_gen & 0x7fffffff) << 1);
	last = bpf_map_lookup_elem(&tg_filter_last, &zero);
	if (last) {
		v = *(volatile __u64 *)last;
		if ((v & ~1ULL) == want)
			return !(v & 1);
	}
	allowed = bpf_map_lookup_elem(&tg_allowed, &tgid) ? 1 : 0;
	if (last)
		*(volatile __u64 *)last = want | allowed;
	return !allowed;
}

/* A change to tg_allowed that tg_filter_last may have cached (see tg_filter_gen). */
static __always_inline void filter_changed(void)
{
	__sync_fetch_and_add(&tg_filter_gen, 1);
}

#include "sock.bpf.h"

/*
 * Argument n (0-4) of the syscall the current thread is in, read from the user registers it
 * entered with (bpf_task_pt_regs): they are saved at entry and a syscall leaves them as they
 * were, so an exit program reads its own arguments there and needs no entry program to stash
 * them. x86_64 returns in ax; arm64 returns in x0 and keeps the first argument in orig_x0.
 * Syscall tracepoints do not fire for 32-bit (compat) syscalls, whose registers differ.
 */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG(r, n)                                                                   \
	((n) == 0 ? (r)->di : (n) == 1 ? (r)->si : (n) == 2 ? (r)->dx : (n) == 3 ? (r)->r10 \
									 : (r)->r8)
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_ARG(r, n) ((n) == 0 ? (r)->orig_x0 : (r)->regs[n])
#else
#error "SYSCALL_ARG: unsupported architecture"
#endif

static __always_inline struct pt_regs *syscall_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

/* ---- the ring a record goes to ---- */
#include "ring.bpf.h"

/*
 * The id a connection's records carry. track() gives a provisional one: the thread that
 * accepted or connected is often not the one that reads and writes (an acceptor thread, a
 * pool), and the agent gives each connection to the shard of the CPU in its id. The first
 * record, on whichever CPU its thread runs, replaces it with an id of that CPU, by a
 * compare-and-swap: of two first records on two CPUs at once, one id wins and both carry it.
 */
static __always_inline __u64 conn_id_of(struct conn *c)
{
	__u64 id = c->conn_id;
	__u64 mine, prev;

	if (!(id & TG_CONN_ID_PROVISIONAL))
		return id;
	mine = new_conn_id();
	prev = __sync_val_compare_and_swap(&c->conn_id, id, mine);
	return prev == id ? mine : prev;
}

static __always_inline struct scratch *scratch_for(struct conn *c, __u64 id, __u8 kind)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&tg_scratch, &zero);

	if (!s)
		return NULL;
	s->ev.conn_id = conn_id_of(c);
	s->ev.seq = __sync_fetch_and_add(&c->seq, 1);
	s->ev.parent_conn_id = 0;
	s->ev.parent_seq = 0;
	s->ev.pid = id >> 32;
	s->ev.tid = (__u32)id;
	s->ev.bytes = 0;
	s->ev.captured = 0;
	s->ev.tail = 0;
	s->ev._pad = 0;
	s->ev.kind = kind;
	s->ev.dir = 0;
	s->ev.role = c->role;
	s->ev.version = TG_ABI_VERSION;
	/* Two loads through the task's BTF pointer: the helper (bpf_get_current_comm) costs a
	 * call, a string copy and a memset per record. task->comm always ends with a NUL within
	 * its 16 bytes (readers stop there), renamed or not. */
	__builtin_memcpy(s->ev.comm, bpf_get_current_task_btf()->comm, sizeof(s->ev.comm));
	s->ev.local = c->local;
	s->ev.remote = c->remote;
	return s;
}

static __always_inline void emit_close(struct conn *c, __u64 id, __u32 fd)
{
	struct scratch *s;
	struct tg_stats *st;

	/* A socket marked as not traced, and a UDP socket user space never heard of (no datagram
	 * on a traced port), close silently. */
	if (c->notsock || (c->udp && c->role == TG_ROLE_UNKNOWN))
		return;
	st = stats();
	s = scratch_for(c, id, TG_EV_CLOSE);
	if (!s)
		return;
	s->ev.fd = fd;
	s->ev.start_ns = bpf_ktime_get_ns();
	s->ev.end_ns = s->ev.start_ns;
	submit(s, 0);
	if (st)
		__sync_fetch_and_add(&st->conns_closed, 1);
}

/* Start tracking (tgid, fd) as a connection with `role`, replacing whatever was there. */
static __always_inline struct conn *track(__u64 id, __u32 fd, __u8 role)
{
	struct conn_key k = { .tgid = id >> 32, .fd = fd };
	struct file *f = fd_file(fd);
	struct conn *old, *c;
	struct conn nc = {};
	struct tg_stats *st;

	old = bpf_map_lookup_elem(&tg_conns, &k);
	if (old) {
		emit_close(old, id, fd);
		bpf_map_delete_elem(&tg_conns, &k);
	}
	if (sock_info(f, &nc) < 0) {
		/* The mark is built in `nc` (which sock_info may have half filled): a second
		 * struct conn on the stack cost every program inlining track() up to 80 bytes of
		 * its 512. */
		__builtin_memset(&nc, 0, sizeof(nc));
		nc.file = (__u64)f;
		nc.notsock = 1;
		bpf_map_update_elem(&tg_conns, &k, &nc, BPF_ANY);
		return NULL;
	}
	nc.file = (__u64)f;
	nc.conn_id = new_conn_id() | TG_CONN_ID_PROVISIONAL;
	nc.role = nc.udp ? TG_ROLE_UNKNOWN : role;
	bpf_map_update_elem(&tg_conns, &k, &nc, BPF_ANY);
	st = stats();
	/* A UDP socket counts as opened when its first datagram is reported (see udp_pick). */
	if (st && !nc.udp)
		__sync_fetch_and_add(&st->conns_opened, 1);
	/* Looked up again: another thread of the process may have replaced the entry meanwhile,
	 * with a mark too. */
	c = bpf_map_lookup_elem(&tg_conns, &k);
	return c && !c->notsock ? c : NULL;
}

/* The connection behind (tgid, fd), found mid-stream if need be; NULL if fd is not a tracked
 * (TCP, or UDP when enabled) socket. */
static __always_inline struct conn *lookup(__u64 id, __u32 fd)
{
	struct conn_key k = { .tgid = id >> 32, .fd = fd };
	struct file *f = fd_file(fd);
	struct conn *c = bpf_map_lookup_elem(&tg_conns, &k);

	if (c && c->file == (__u64)f)
		return c->notsock ? NULL : c;
	/* Not a socket: nothing to track and nothing to remember (a socket that is not traced,
	 * e.g. a Unix one, is marked in tg_conns). A file opened, read and closed per request
	 * costs one lookup per syscall. */
	if (!c && !is_socket(f))
		return NULL;
	return track(id, fd, TG_ROLE_UNKNOWN);
}

/* What a data syscall's arguments are: a buffer (read, write), a buffer and a peer sockaddr
 * (recvfrom, sendto), an iovec array (readv, writev), a msghdr (recvmsg, sendmsg), an mmsghdr
 * vector (recvmmsg, sendmmsg). A constant at each call site: the other shapes are compiled out. */
enum io_shape { IO_PLAIN, IO_ADDR, IO_IOV, IO_MSG, IO_MMSG };

/* Replace the msghdr `a->buf` points at with its iovec array, count and name (the caller's
 * pointers, which a recvmsg leaves as they were). -1 when it cannot be read. */
static __always_inline int msg_args(struct call_args *a)
{
	struct user_msghdr m = {};

	if (bpf_probe_read_user(&m, sizeof(m), (void *)a->buf))
		return -1;
	a->buf = (__u64)m.msg_iov;
	a->iovcnt = (__u32)m.msg_iovlen;
	a->addr = (__u64)m.msg_name;
	return 0;
}

/*
 * The entry of an egress syscall (and sendfile): save its arguments and start time for the exit,
 * and, once the thread has state, nothing else. Whether the fd is a traced socket is for the
 * exit to find out (exit_io): an egress syscall on a socket used to look its connection up
 * twice, here and at the exit, one hash lookup and one fd-table walk more per response written
 * than its bytes needed. With `msg` (a constant at each call site), `buf` is a msghdr, which the
 * exit reads once the socket is known to be traced (sendmsg on untraced sockets, e.g. Unix ones,
 * pays no user-memory read).
 */
static __always_inline int enter_io_msg(__u32 fd, __u64 buf, __u32 iovcnt, __u8 op, __u64 addr,
					int msg)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts;

	if (skip_tgid(id >> 32))
		return 0;
	ts = task_state(0);
	if (!ts) {
		/* The thread has no state yet: it gets some only to write to a traced socket (a
		 * thread that only writes to files, pipes or terminals never does), so this first
		 * time the entry looks the fd up. */
		struct conn *c = lookup(id, fd);
		struct tg_stats *st;

		if (!c)
			return 0;
		ts = task_state(1);
		if (!ts) {
			/* No room for the arguments: the record is lost, counted as dropped like
			 * one that found its ring full. */
			st = stats();
			if (st && !c->udp_quiet)
				__sync_fetch_and_add(&st->dropped, 1);
			return 0;
		}
	}
	ts->args.buf = buf;
	ts->args.addr = addr;
	ts->args.fd = fd;
	ts->args.iovcnt = iovcnt;
	ts->args.msg = msg;
	ts->args.start_ns = bpf_ktime_get_ns();
	ts->args.op = op;
	return 0;
}

static __always_inline int enter_io(__u32 fd, __u64 buf, __u32 iovcnt, __u8 op, __u64 addr)
{
	return enter_io_msg(fd, buf, iovcnt, op, addr, 0);
}

#include "payload.bpf.h"

/*
 * Server ingress remembers (per thread) the request being served; server egress forgets it;
 * client events carry it as their parent. `ts` is the thread's state when the caller has it
 * already (NULL: fetched here).
 */
static __always_inline void stamp_parent(struct task_state *ts, struct conn *c, struct scratch *s,
					 __u8 dir)
{
	if (c->role != TG_ROLE_SERVER && c->role != TG_ROLE_CLIENT)
		return;
	if (!ts)
		ts = task_state(c->role == TG_ROLE_SERVER && dir == TG_DIR_INGRESS);
	if (!ts)
		return;
	if (c->role == TG_ROLE_SERVER) {
		if (dir == TG_DIR_INGRESS) {
			ts->server.conn_id = s->ev.conn_id;
			ts->server.seq = s->ev.seq;
		} else {
			ts->server.conn_id = 0;
		}
	} else if (ts->server.conn_id) {
		s->ev.parent_conn_id = ts->server.conn_id;
		s->ev.parent_seq = ts->server.seq;
	}
}

/* ---- UDP: which datagrams are reported, and their addresses ---- */
#include "udp.bpf.h"

/* barrier_var: keep clang from OR-ing the two map pointers (the verifier refuses that). */
	lp = bpf_map_lookup_elem(&tg_udp_ports, &local->port) ? 1 : 0;
	barrier_var(lp);
	rp = bpf_map_lookup_elem(&tg_udp_ports, &remote->port) ? 1 : 0;
	barrier_var(rp);
	/* A peer we cannot know (unconnected socket, no address asked for) on a socket already
	 * traced is reported with remote port 0: user space pairs DNS by id, not by address. */
	if (!lp && !rp && (c->role == TG_ROLE_UNKNOWN || remote->port != 0)) {
		if (!uaddr && local->port && remote->port && c->role == TG_ROLE_UNKNOWN)
			c->udp_quiet = 1;
		return -1;
	}
	if (c->role == TG_ROLE_UNKNOWN) {
		struct tg_stats *st = stats();

		if (st)
			__sync_fetch_and_add(&st->conns_opened, 1);
		if (dir == TG_DIR_EGRESS)
			c->role = rp ? TG_ROLE_CLIENT : TG_ROLE_SERVER;
		else
			c->role = lp ? TG_ROLE_SERVER : TG_ROLE_CLIENT;
	}
	return 0;
}

/*
 * One payload of `ret` bytes moved on `c`: copy its prefix (and, if `with_tail`, its end) and
 * submit a DATA record. `ts`: the thread's state, as the caller fetched it. `with_tail` is a
 * constant at each call site: without it the tail code is compiled out.
 */
static __always_inline void emit_data(struct conn *c, __u64 id, struct task_state *ts,
				      struct call_args *ap, long ret, __u8 dir, int with_tail)
{
	struct scratch *s;
	struct tg_stats *st = stats();
	struct tg_addr local, remote;
	__u64 cap = capture_bytes;
	__u32 head;
	__u8 kind = TG_EV_DATA;

	if (st)
		__sync_fetch_and_add(&st->seen, 1);
	if (c->udp && udp_pick(c, ap->addr, dir, &local, &remote) < 0)
		return;
	if (c->tls) {
		/*
		 * The plaintext comes from the SSL_* uprobes. sendfile on a TLS connection only
		 * happens with kernel TLS, where the file bytes are the plaintext: keep its length.
		 */
		if (ap->op != OP_SENDFILE) {
			if (st)
				__sync_fetch_and_add(&st->tls_suppressed, 1);
			return;
		}
		kind = TG_EV_TLS_DATA;
	}
	s = scratch_for(c, id, kind);
	if (!s)
		return;
	if (c->udp) {
		s->ev.local = local;
		s->ev.remote = remote;
	}
	s->ev.fd = ap->fd;
	s->ev.dir = dir;
	s->ev.end_ns = bpf_ktime_get_ns();
	/* Ingress has no entry time (no entry program): its bytes arrived when it returned. */
	s->ev.start_ns = ap->start_ns ? ap->start_ns : s->ev.end_ns;
	s->ev.bytes = ret > 0xffffffff ? 0xffffffff : (__u32)ret;
	if (cap > TG_MAX_CAPTURE)
		cap = TG_MAX_CAPTURE;
	/* Without the tail, pass moved == want (tail_len() is then 0). */
	head = copy_payload(s, ap, (__u64)ret < cap ? (__u64)ret : cap,
			    with_tail || (__u64)ret < cap ? (__u64)ret : cap);
	s->ev.captured = head + s->ev.tail;
	if (st && (__u64)ret > head && ap->op != OP_SENDFILE)
		__sync_fetch_and_add(&st->truncated, 1);

	stamp_parent(ts, c, s, dir);
	submit(s, s->ev.captured);
}

/* Take (copy and remove) the arguments this thread's entry program saved. Returns the thread's
 * state (the exit program's only fetch of it), or NULL if there are none. The filter comes
 * first: a process it leaves out (`id`'s tgid) never saved arguments, and its cached answer
 * costs less than asking for the thread's storage (on a host traced with --pid or --exe, most
 * writes are of such processes). */
static __always_inline struct task_state *take_args(__u64 id, struct call_args *a)
{
	struct task_state *ts;

	if (skip_tgid(id >> 32))
		return NULL;
	ts = task_state(0);

	if (!ts || !ts->args.op)
		return NULL;
	*a = ts->args;
	ts->args.op = 0;
	return ts;
}

/*
 * The connection an egress syscall moved bytes on, for its exit program, from the arguments its
 * entry saved: looked up (and picked up mid-stream) here, the msghdr of a sendmsg read once the
 * socket is known to be traced. NULL when nothing is to be emitted.
 */
static __always_inline struct conn *egress_conn(__u64 id, struct task_state *ts,
						struct call_args *a)
{
	struct conn *c = lookup(id, a->fd);

	if (!c)
		return NULL;
	if (a->msg && msg_args(a) < 0)
		return NULL;
	if (c->udp_quiet && !a->addr && a->op != OP_MMSG)
		return NULL;
	/* A syscall on a tracked socket inside an SSL_* call ties the SSL* to it (tls.bpf.h). */
	if (tls_enabled && ts->ssl.active)
		ts->ssl.fd = a->fd;
	return c;
}

static __always_inline int exit_io(long ret, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts;
	struct call_args a;
	struct conn *c;

	ts = take_args(id, &a);
	if (!ts || ret <= 0)
		return 0;
	c = egress_conn(id, ts, &a);
	if (!c)
		return 0;
	emit_data(c, id, ts, &a, ret, dir, 1);
	return 0;
}

/*
 * The arguments of the ingress syscall the thread is in, read from the registers it entered with
 * (SYSCALL_ARG), into `a`; for IO_MSG, `a->buf` is the msghdr (see msg_args).
 */
static __always_inline void ingress_args(struct call_args *a, enum io_shape shape)
{
	struct pt_regs *r = syscall_regs();

	a->fd = (__u32)SYSCALL_ARG(r, 0);
	a->buf = SYSCALL_ARG(r, 1);
	a->op = shape == IO_MMSG ? OP_MMSG : shape == IO_PLAIN || shape == IO_ADDR ? OP_PLAIN : OP_IOV;
	if (shape == IO_ADDR)
		a->addr = SYSCALL_ARG(r, 4);
	if (shape == IO_IOV || shape == IO_MMSG)
		a->iovcnt = (__u32)SYSCALL_ARG(r, 2);
}

/*
 * The connection an ingress syscall moved `ret` bytes on, for its exit program (ingress syscalls
 * have no other): the arguments are read from the registers, and the bytes read arrived when the
 * syscall returned, so there is no entry time to save. The connection is looked up (and picked
 * up mid-stream) here; a msghdr is read only once the socket is known to be traced. NULL when
 * nothing is to be emitted; `*tsp` is the thread's state when it has one.
 */
static __always_inline struct conn *ingress_conn(__u64 id, long ret, struct call_args *a,
						 enum io_shape shape, struct task_state **tsp)
{
	struct task_state *ts;
	struct conn *c;

	if (ret <= 0 || skip_tgid(id >> 32))
		return NULL;
	ingress_args(a, shape);
	c = lookup(id, a->fd);
	if (!c)
		return NULL;
	if (shape == IO_MSG && msg_args(a) < 0)
		return NULL;
	if (c->udp_quiet && !a->addr && a->op != OP_MMSG)
		return NULL;
	/* A server's request read is remembered as the parent of the calls it makes (stamp_parent). */
	ts = task_state(c->role == TG_ROLE_SERVER);
	/* A syscall on a tracked socket inside an SSL_* call ties the SSL* to it (tls.bpf.h). */
	if (tls_enabled && ts && ts->ssl.active)
		ts->ssl.fd = a->fd;
	*tsp = ts;
	return c;
}

static __always_inline int exit_in(long ret, enum io_shape shape)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts = NULL;
	struct call_args a = {};
	struct conn *c = ingress_conn(id, ret, &a, shape, &ts);

	if (c)
		emit_data(c, id, ts, &a, ret, TG_DIR_INGRESS, 1);
	return 0;
}

/* ---- connection lifecycle ---- */

static __always_inline int exit_accept(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (ret < 0 || skip_tgid(id >> 32))
		return 0;
	track(id, (__u32)ret, TG_ROLE_SERVER);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tg_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tg_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept(ctx->ret);
}

/* connect has no entry program: its fd is read from the registers at exit (SYSCALL_ARG). */
SEC("tracepoint/syscalls/sys_exit_connect")
int tg_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	long ret = ctx->ret;

	if ((ret != 0 && ret != -EINPROGRESS) || skip_tgid(id >> 32))
		return 0;
	track(id, (__u32)SYSCALL_ARG(syscall_regs(), 0), TG_ROLE_CLIENT);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int tg_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key k = { .tgid = id >> 32, .fd = (__u32)ctx->args[0] };
	struct conn *c;

	if (skip_tgid(k.tgid))
		return 0;
	/* Most closed fds are files or pipes, never in the table: one lookup that misses (a
	 * delete would take the bucket lock every time). A socket marked as not traced is in the
	 * same table, so a close never looks twice. */
	c = bpf_map_lookup_elem(&tg_conns, &k);
	if (!c)
		return 0;
	emit_close(c, id, k.fd);
	bpf_map_delete_elem(&tg_conns, &k);
	return 0;
}

/* ---- payload syscalls ---- */
#include "io.bpf.h"

/* ---- process filter upkeep (only when a filter is set) ---- */
#include "filter.bpf.h"

/* ---- sendmmsg/recvmmsg: one record per datagram ---- */
#include "mmsg.bpf.h"

/* ---- TLS plaintext (OpenSSL uprobes) ---- */
#include "tls.bpf.h"
