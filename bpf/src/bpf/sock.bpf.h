/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which socket a file descriptor is: the current task's file behind an fd, the addresses and
 * protocol of a TCP (or, when enabled, UDP) socket, and new connection ids. Included once by
 * telegen.bpf.c before the connection table code that calls them.
 */
#ifndef TELEGEN_SOCK_BPF_H
#define TELEGEN_SOCK_BPF_H

static __always_inline struct file *fd_file(__u32 fd)
{
	/* A BTF task pointer: the verifier turns the field loads below into fault-safe plain loads
	 * instead of one bpf_probe_read_kernel call each. Only the array slot (a pointer to a
	 * pointer, which BTF loads do not follow) is read by the helper. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file **arr;
	struct file *f = NULL;

	if (fd >= fdt->max_fds)
		return NULL;
	arr = fdt->fd;
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	return f;
}

static __always_inline void map_v4(struct tg_addr *a, __u32 be_addr)
{
	a->addr[10] = 0xff;
	a->addr[11] = 0xff;
	a->addr[12] = be_addr & 0xff;
	a->addr[13] = (be_addr >> 8) & 0xff;
	a->addr[14] = (be_addr >> 16) & 0xff;
	a->addr[15] = (be_addr >> 24) & 0xff;
}

/* Whether `f` is a socket at all: two loads. Files, pipes and terminals (most fds a traced
 * process reads, writes and closes: a web server's static files, its access log) stop here. */
static __always_inline int is_socket(struct file *f)
{
	return f && (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) == S_IFSOCK;
}

/* Fill addresses if `f` is a TCP (stream, inet) socket, or a UDP one when UDP ports are set.
 * Returns 0 when it is. */
static __always_inline int sock_info(struct file *f, struct conn *c)
{
	struct socket *sock;
	struct sock *sk;
	short type;
	__u16 family;
	__u8 proto = TG_PROTO_TCP;

	if (!is_socket(f))
		return -1;
	sock = BPF_CORE_READ(f, private_data);
	type = BPF_CORE_READ(sock, type);
	sk = BPF_CORE_READ(sock, sk);
	if (type != SOCK_STREAM) {
		if (!udp_enabled || type != SOCK_DGRAM ||
		    BPF_CORE_READ(sk, sk_protocol) != TG_PROTO_UDP)
			return -1;
		proto = TG_PROTO_UDP;
		c->udp = 1;
		c->sk = (__u64)sk;
	}
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		map_v4(&c->local, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		map_v4(&c->remote, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&c->local.addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&c->remote.addr, sk, __sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	c->local.family = family;
	c->remote.family = family;
	c->local.proto = proto;
	c->remote.proto = proto;
	c->local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->remote.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return 0;
}

static __always_inline __u64 new_conn_id(void)
{
	__u32 zero = 0;
	__u64 *ctr = bpf_map_lookup_elem(&tg_conn_counter, &zero);
	__u64 n = 0;

	if (ctr)
		n = __sync_fetch_and_add(ctr, 1);
	return ((__u64)(bpf_get_smp_processor_id() + 1) << TG_CONN_ID_CPU_SHIFT) |
	       (n & ((1ULL << TG_CONN_ID_CPU_SHIFT) - 1));
}

#endif /* TELEGEN_SOCK_BPF_H */
