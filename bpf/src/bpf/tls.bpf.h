/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TLS plaintext from OpenSSL (libssl 1.1 and 3.x), included once at the end of telegen.bpf.c.
 *
 * uprobes on SSL_read/SSL_write/SSL_read_ex/SSL_write_ex save (ssl, buf, out) in the thread's
 * task_state (struct ssl_call); their uretprobes copy the plaintext the call moved. The SSL* is
 * tied to its socket by the syscalls the thread makes while inside the call (their exit
 * programs note the fd in the same task_state, only on tracked sockets) or by SSL_set_fd; calls
 * that touch no socket (buffered data) use the socket learned earlier if it is still the same
 * connection.
 * The plaintext is emitted as TG_EV_TLS_DATA on the socket's connection (same conn_id, seq
 * counter and parent stamping), and the connection is then marked TLS so its encrypted syscall
 * payloads are no longer emitted. The uprobes are attached from user space (bpf/src/tls.rs),
 * once per distinct libssl file.
 */
#ifndef TELEGEN_TLS_BPF_H
#define TELEGEN_TLS_BPF_H

#include <bpf/bpf_tracing.h>

/* SSL* pointers are per address space. */
struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};

/*
 * The socket an SSL* was last seen using, and the connection that socket was then. An SSL*
 * freed and reallocated at the same address, or an fd closed and reused, no longer matches the
 * conn_id: its plaintext is counted and dropped rather than put on the wrong connection.
 */
struct ssl_sock {
	__u64 conn_id;
	__u32 fd;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct ssl_key);
	__type(value, struct ssl_sock);
} tg_ssl_fds SEC(".maps");

static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 out, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts;

	if (skip_tgid(id >> 32))
		return 0;
	ts = task_state(1);
	if (!ts)
		return 0;
	ts->ssl.ssl = ssl;
	ts->ssl.buf = buf;
	ts->ssl.out = out;
	ts->ssl.start_ns = bpf_ktime_get_ns();
	ts->ssl.fd = TLS_NO_FD;
	ts->ssl.dir = dir;
	ts->ssl.active = 1;
	return 0;
}

static __always_inline void tls_unmapped(void)
{
	struct tg_stats *st = stats();

	if (st)
		__sync_fetch_and_add(&st->tls_unmapped, 1);
}

/* `ret` is the function's int result; `is_ex`: 1 means success and *out holds the count. */
static __always_inline int ssl_exit(int ret, int is_ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts = task_state(0);
	struct ssl_key key = {};
	struct ssl_sock sock = {};
	struct ssl_call c;
	struct call_args a = {};
	struct tg_stats *st;
	struct scratch *s;
	struct conn *conn;
	__u64 cap = capture_bytes;
	__u64 n = 0;
	__u32 head;
	__u32 fd;

	if (!ts || !ts->ssl.active)
		return 0;
	c = ts->ssl;
	ts->ssl.active = 0;
	if (is_ex) {
		if (ret != 1 || !c.out || bpf_probe_read_user(&n, sizeof(n), (void *)c.out))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		n = (__u64)ret;
	}
	if (n == 0)
		return 0;

	key.ssl = c.ssl;
	key.tgid = id >> 32;
	if (c.fd != TLS_NO_FD) {
		fd = c.fd;
		conn = lookup(id, fd);
		if (!conn) {
			tls_unmapped();
			return 0;
		}
		sock.conn_id = conn_id_of(conn);
		sock.fd = fd;
		bpf_map_update_elem(&tg_ssl_fds, &key, &sock, BPF_ANY);
	} else {
		/* No syscall inside this call (buffered data): the socket seen earlier. */
		struct ssl_sock *sp = bpf_map_lookup_elem(&tg_ssl_fds, &key);

		if (!sp) {
			tls_unmapped();
			return 0;
		}
		sock = *sp;
		fd = sock.fd;
		conn = lookup(id, fd);
		if (!conn || conn_id_of(conn) != sock.conn_id) {
			tls_unmapped();
			return 0;
		}
	}

	s = scratch_for(conn, id, TG_EV_TLS_DATA);
	if (!s)
		return 0;
	s->ev.fd = fd;
	s->ev.dir = c.dir;
	s->ev.start_ns = c.start_ns;
	s->ev.end_ns = bpf_ktime_get_ns();
	s->ev.bytes = n > 0xffffffff ? 0xffffffff : (__u32)n;
	if (cap > TG_MAX_CAPTURE)
		cap = TG_MAX_CAPTURE;
	a.buf = c.buf;
	a.op = OP_PLAIN;
	/* A large SSL_write carries its end too, like a large write() (see copy_payload). */
	head = copy_payload(s, &a, n < cap ? n : cap, n);
	s->ev.captured = head + s->ev.tail;
	st = stats();
	if (st && n > head)
		__sync_fetch_and_add(&st->truncated, 1);
	stamp_parent(ts, conn, s, c.dir);
	submit(s, s->ev.captured);
	conn->tls = 1;
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int tg_sslr(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, TG_DIR_INGRESS);
}

SEC("uretprobe")
int tg_sslr_ret(struct pt_regs *ctx)
{
	return ssl_exit((int)PT_REGS_RC(ctx), 0);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int tg_sslw(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, TG_DIR_EGRESS);
}

SEC("uretprobe")
int tg_sslw_ret(struct pt_regs *ctx)
{
	return ssl_exit((int)PT_REGS_RC(ctx), 0);
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int tg_sslrx(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx),
			 TG_DIR_INGRESS);
}

SEC("uretprobe")
int tg_sslrx_ret(struct pt_regs *ctx)
{
	return ssl_exit((int)PT_REGS_RC(ctx), 1);
}

/* int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int tg_sslwx(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx),
			 TG_DIR_EGRESS);
}

SEC("uretprobe")
int tg_sslwx_ret(struct pt_regs *ctx)
{
	return ssl_exit((int)PT_REGS_RC(ctx), 1);
}

/* int SSL_set_fd(SSL *ssl, int fd): ties the SSL* to its socket before any data moves. */
SEC("uprobe")
int tg_ssl_set_fd(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_key key = {};
	struct ssl_sock sock = {};
	int fd = (int)PT_REGS_PARM2(ctx);
	struct conn *conn;

	if (fd < 0 || skip_tgid(id >> 32))
		return 0;
	conn = lookup(id, (__u32)fd);
	if (!conn)
		return 0; /* not a TCP socket */
	key.ssl = PT_REGS_PARM1(ctx);
	key.tgid = id >> 32;
	sock.conn_id = conn_id_of(conn);
	sock.fd = (__u32)fd;
	bpf_map_update_elem(&tg_ssl_fds, &key, &sock, BPF_ANY);
	return 0;
}

#endif /* TELEGEN_TLS_BPF_H */
