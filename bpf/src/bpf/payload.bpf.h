/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Copying a syscall's payload into the per-CPU scratch record, included once by telegen.bpf.c
 * (it uses its knobs and struct scratch): the first capture_bytes of what the syscall moved and,
 * when it moved more, its last tail_bytes right after them (tg_event.tail). Plain buffers and
 * iovec arrays (read in one helper call; at most TG_MAX_IOV iovecs are walked).
 */
#ifndef TELEGEN_PAYLOAD_BPF_H
#define TELEGEN_PAYLOAD_BPF_H

/* Bytes of the end to copy after a prefix of `head` bytes when the syscall moved `moved`. */
static __always_inline __u64 tail_len(__u64 head, __u64 moved)
{
	__u64 t = tail_bytes;

	if (moved <= head)
		return 0;
	if (t > moved - head)
		t = moved - head;
	if (t > TG_MAX_TAIL)
		t = TG_MAX_TAIL;
	return t;
}

/*
 * The last `tl` of the `moved` bytes an iovec syscall moved, copied to s->payload + `dst0`;
 * returns `tl`, or 0 if they could not all be copied. A read fills its iovecs only up to
 * `moved`, so the end is found by walking the iovecs from the first (at most TG_MAX_IOV of
 * them: an end beyond is not copied). A loop of its own after the prefix loop: one loop doing
 * both made the verifier give up (too many states).
 */
static __always_inline __u32 copy_iov_tail(struct scratch *s, __u32 cnt, __u64 dst0,
					   __u64 moved, __u64 tl)
{
	__u64 tstart = moved - tl;
	__u64 pos = 0;  /* where iovec i starts in the bytes moved */
	__u64 tgot = 0; /* tail bytes copied */
	struct iovec iov;
	int i;

	dst0 &= (2 * TG_MAX_CAPTURE - 1);
	for (i = 0; i < TG_MAX_IOV; i++) {
		__u64 len, skip, n;

		if (i >= cnt || tgot >= tl || pos >= moved)
			break;
		iov = s->iov[i];
		len = iov.iov_len;
		if (len > moved - pos)
			len = moved - pos;
		if (pos + len > tstart) {
			skip = tstart > pos ? tstart - pos : 0;
			n = len - skip;
			if (n > tl - tgot)
				n = tl - tgot;
			barrier_var(n);
			if (n > TG_MAX_TAIL)
				n = TG_MAX_TAIL;
			n &= (2 * TG_MAX_TAIL - 1);
			tgot &= (TG_MAX_TAIL - 1);
			if (bpf_probe_read_user(s->payload + dst0 + tgot, n, iov.iov_base + skip))
				break;
			tgot += n;
		}
		pos += len;
	}
	return tgot == tl ? tl : 0;
}

/*
 * Copy the first `want` of the `moved` bytes the syscall moved into s->payload and, when that
 * is not all of them, the last tail_len() bytes right after the prefix (s->ev.tail says how
 * many). Returns the prefix length; the record carries prefix + tail. The tail is dropped (0)
 * when the prefix came out short or the end lies beyond the iovecs walked.
 */
static __always_inline __u32 copy_payload(struct scratch *s, struct call_args *a, __u64 want,
					  __u64 moved)
{
	__u64 n = want;
	__u64 tl;

	s->ev.tail = 0;
	if (want > TG_MAX_CAPTURE)
		return 0;
	tl = tail_len(want, moved);
	if (a->op == OP_PLAIN) {
		barrier_var(n);
		if (n > TG_MAX_CAPTURE)
			n = TG_MAX_CAPTURE;
		n &= (2 * TG_MAX_CAPTURE - 1);
		if (bpf_probe_read_user(s->payload, n, (void *)a->buf))
			return 0;
		if (tl) {
			__u64 dst = want & (2 * TG_MAX_CAPTURE - 1);

			barrier_var(tl);
			if (tl > TG_MAX_TAIL)
				tl = TG_MAX_TAIL;
			tl &= (2 * TG_MAX_TAIL - 1);
			if (!bpf_probe_read_user(s->payload + dst, tl, (void *)(a->buf + moved - tl)))
				s->ev.tail = tl;
		}
		return n;
	}
	if (a->op == OP_IOV) {
		__u64 off = 0;
		__u64 cnt = a->iovcnt;
		__u64 sz;
		struct iovec iov;
		int i;

		/* The iovec array in one read: a helper call costs more than the loop around it. */
		if (cnt > TG_MAX_IOV)
			cnt = TG_MAX_IOV;
		sz = cnt * sizeof(struct iovec);
		barrier_var(sz);
		if (sz > TG_MAX_IOV * sizeof(struct iovec))
			sz = TG_MAX_IOV * sizeof(struct iovec);
		sz &= (2 * TG_MAX_IOV * sizeof(struct iovec) - 1);
		if (bpf_probe_read_user(s->iov, sz, (void *)a->buf))
			return 0;
		/* A bounded loop, not unrolled: the verifier walks it (kernel >= 5.3). */
		for (i = 0; i < TG_MAX_IOV; i++) {
			__u64 len;

			if (i >= cnt || off >= want || off >= TG_MAX_CAPTURE)
				break;
			iov = s->iov[i];
			len = iov.iov_len;
			if (len > want - off)
				len = want - off;
			barrier_var(len);
			if (len > TG_MAX_CAPTURE)
				len = TG_MAX_CAPTURE;
			len &= (2 * TG_MAX_CAPTURE - 1);
			off &= (TG_MAX_CAPTURE - 1);
			if (bpf_probe_read_user(s->payload + off, len, iov.iov_base))
				break;
			off += len;
		}
		if (off > want)
			off = want;
		if (tl && off == want)
			s->ev.tail = copy_iov_tail(s, cnt, want, moved, tl);
		return off;
	}
	return 0;
}

#endif /* TELEGEN_PAYLOAD_BPF_H */
