/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The payload syscalls' programs (read/write, recvfrom/sendto, readv/writev, recvmsg/sendmsg,
 * sendfile), included once by telegen.bpf.c after the data path (enter_io, exit_io, exit_in) they
 * are built from.
 */
#ifndef TELEGEN_IO_BPF_H
#define TELEGEN_IO_BPF_H

/* The entry of an egress syscall of `shape`, from its tracepoint's arguments. */
static __always_inline int enter_out(struct trace_event_raw_sys_enter *ctx, enum io_shape shape)
{
	__u32 fd = (__u32)ctx->args[0];

	if (shape == IO_ADDR)
		return enter_io(fd, ctx->args[1], 0, OP_PLAIN, ctx->args[4]);
	if (shape == IO_IOV)
		return enter_io(fd, ctx->args[1], (__u32)ctx->args[2], OP_IOV, 0);
	if (shape == IO_MSG)
		return enter_io_msg(fd, ctx->args[1], 0, OP_IOV, 0, 1);
	if (shape == IO_MMSG)
		return enter_io(fd, ctx->args[1], (__u32)ctx->args[2], OP_MMSG, 0);
	return enter_io(fd, ctx->args[1], 0, OP_PLAIN, 0);
}

/*
 * Egress syscalls keep an entry program: the bytes leave from the write's entry, which is when
 * a client's request starts. It saves the arguments for the exit program (call_args).
 */
#define EGRESS(name, shape)                                                         \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                  \
	int tg_enter_##name(struct trace_event_raw_sys_enter *ctx)                   \
	{                                                                            \
		return enter_out(ctx, shape);                                        \
	}                                                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                   \
	int tg_exit_##name(struct trace_event_raw_sys_exit *ctx)                     \
	{                                                                            \
		return exit_io(ctx->ret, TG_DIR_EGRESS);                             \
	}

/*
 * Ingress syscalls have an exit program only, which reads the arguments from the registers the
 * syscall entered with (ingress_args): a read's entry carries nothing the exit needs, and a
 * program less on every read (of every process: the filter runs inside the program) is a
 * tracepoint dispatch and a thread-state update less.
 */
#define INGRESS(name, shape)                                                        \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                   \
	int tg_exit_##name(struct trace_event_raw_sys_exit *ctx)                     \
	{                                                                            \
		return exit_in(ctx->ret, shape);                                     \
	}

INGRESS(read, IO_PLAIN)
EGRESS(write, IO_PLAIN)
INGRESS(recvfrom, IO_ADDR)
EGRESS(sendto, IO_ADDR)
INGRESS(readv, IO_IOV)
EGRESS(writev, IO_IOV)
INGRESS(recvmsg, IO_MSG)
EGRESS(sendmsg, IO_MSG)

/* sendfile moves bytes we cannot see; report the length so parsers can frame bodies. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int tg_enter_sendfile64(struct trace_event_raw_sys_enter *ctx)
{
	return enter_io((__u32)ctx->args[0], 0, 0, OP_SENDFILE, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int tg_exit_sendfile64(struct trace_event_raw_sys_exit *ctx)
{
	return exit_io(ctx->ret, TG_DIR_EGRESS);
}

#endif /* TELEGEN_IO_BPF_H */
