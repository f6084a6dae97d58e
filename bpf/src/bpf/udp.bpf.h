/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * UDP datagrams: which are reported (tg_udp_ports), and their per-datagram addresses. Included
 * once by telegen.bpf.c before the data path that calls udp_pick() (it uses its maps and knobs).
 */
#ifndef TELEGEN_UDP_BPF_H
#define TELEGEN_UDP_BPF_H

/* ---- UDP: which datagrams are reported, and their per-datagram addresses ---- */

/* Read a user sockaddr (AF_INET or AF_INET6) into `a`; leaves `a` alone on failure. */
static __always_inline void read_sockaddr(__u64 uaddr, struct tg_addr *a)
{
	struct sockaddr_in in4;
	__u16 family;

	if (bpf_probe_read_user(&in4, sizeof(in4), (void *)uaddr))
		return;
	family = in4.sin_family;
	if (family == AF_INET) {
		__builtin_memset(a->addr, 0, sizeof(a->addr));
		map_v4(a, in4.sin_addr.s_addr);
	} else if (family == AF_INET6) {
		if (bpf_probe_read_user(a->addr, sizeof(a->addr),
					(void *)(uaddr + offsetof(struct sockaddr_in6, sin6_addr))))
			return;
	} else {
		return;
	}
	a->family = family;
	a->port = bpf_ntohs(in4.sin_port);
}

/*
 * Decide whether this datagram on UDP socket `c` is reported: its remote port (the syscall's
 * sockaddr when given, else the connected peer) or the socket's local port must be in
 * tg_udp_ports (or the socket is already traced and this datagram's peer is unknown). Fills
 * both addresses as they are now (the local port is bound at the first send).
 * The first reported datagram sets the role: sent to a traced remote port = CLIENT, received on a
 * traced local port = SERVER. Returns 0 to report.
 */
static __always_inline int udp_pick(struct conn *c, __u64 uaddr, __u8 dir, struct tg_addr *local,
				    struct tg_addr *remote)
{
	struct sock *sk = (void *)c->sk;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	int lp, rp;

	__builtin_memset(local, 0, sizeof(*local));
	__builtin_memset(remote, 0, sizeof(*remote));
	if (family == AF_INET) {
		map_v4(local, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		map_v4(remote, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else {
		BPF_CORE_READ_INTO(&local->addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&remote->addr, sk, __sk_common.skc_v6_daddr);
	}
	local->family = family;
	remote->family = family;
	local->proto = TG_PROTO_UDP;
	remote->proto = TG_PROTO_UDP;
	local->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	remote->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (uaddr)
		read_sockaddr(uaddr, remote);

#endif /* TELEGEN_UDP_BPF_H */
