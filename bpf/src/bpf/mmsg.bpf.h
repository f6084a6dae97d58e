/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sendmmsg/recvmmsg, included once by telegen.bpf.c after the data path (emit_data) it uses.
 */
#ifndef TELEGEN_MMSG_BPF_H
#define TELEGEN_MMSG_BPF_H

/* ---- sendmmsg/recvmmsg: one record per datagram (UDP DNS resolvers batch with them) ---- */

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int tg_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	return enter_out(ctx, IO_MMSG);
}

/* `ret` messages of the vector `a->buf` moved on `c`: report the first TG_MAX_MMSG, each with its
 * msg_len. */
static __always_inline void emit_mmsg(struct conn *c, __u64 id, struct task_state *ts,
				      struct call_args *a, long ret, __u8 dir)
{
	__u32 i;

	for (i = 0; i < TG_MAX_MMSG; i++) {
		struct mmsghdr mh;
		struct call_args m = *a;

		if (i >= ret)
			break;
		if (bpf_probe_read_user(&mh, sizeof(mh), (void *)(a->buf + i * sizeof(mh))))
			break;
		if (mh.msg_len == 0)
			continue;
		m.buf = (__u64)mh.msg_hdr.msg_iov;
		m.iovcnt = (__u32)mh.msg_hdr.msg_iovlen;
		m.addr = (__u64)mh.msg_hdr.msg_name;
		m.op = OP_IOV;
		/* No tail per datagram: 8 inlined copies of the tail walk are more than the
		 * verifier's budget, and DNS (what batches datagrams) has no use for one. */
		emit_data(c, id, ts, &m, mh.msg_len, dir, 0);
	}
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int tg_exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts;
	struct call_args a;
	struct conn *c;

	ts = take_args(id, &a);
	if (!ts || a.op != OP_MMSG || ctx->ret <= 0)
		return 0;
	c = egress_conn(id, ts, &a);
	if (c)
		emit_mmsg(c, id, ts, &a, ctx->ret, TG_DIR_EGRESS);
	return 0;
}

/* recvmmsg, like every ingress syscall, has no entry program (see ingress_args). */
SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int tg_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_state *ts = NULL;
	struct call_args a = {};
	struct conn *c = ingress_conn(id, ctx->ret, &a, IO_MMSG, &ts);

	if (c)
		emit_mmsg(c, id, ts, &a, ctx->ret, TG_DIR_INGRESS);
	return 0;
}

#endif /* TELEGEN_MMSG_BPF_H */
