/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Copying a syscall's payload into the per-CPU scratch record, included once by telegen.bpf.c
 * (it uses its knobs and struct scratch): the first capture_bytes of what the syscall moved and,
 * when it moved more, its last tail_bytes right after them (tg_event.tail). Plain buffers and
 * iovec arrays (the first TG_MAX_IOV iovecs read in one helper call, later ones one at a time,
 * up to TG_MAX_IOV_WALK).
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

/* Where the `i`-th iovec of the syscall's array at `arr` is in s->iov: the first TG_MAX_IOV
 * were copied there in one go; a later one is read on its own into the slot after them (map
 * memory: a stack copy here tripped the verifier's stack tracking in bpf_loop callbacks).
 * -1 when it could not be read. */
static __always_inline __s64 iov_slot(struct scratch *s, __u64 arr, __u64 i)
{
	if (i < TG_MAX_IOV)
		return i;
	if (bpf_probe_read_user(&s->iov[TG_MAX_IOV], sizeof(struct iovec),
				(void *)(arr + i * sizeof(struct iovec))))
		return -1;
	return TG_MAX_IOV;
}

/* State of the prefix copy over an iovec array (a bpf_loop callback's context). */
struct iov_head {
	struct scratch *s;
	__u64 arr;  /* the array, in user memory */
	__u64 cnt;  /* iovecs in it (at most TG_MAX_IOV_WALK) */
	__u64 want; /* prefix bytes wanted */
	__u64 off;  /* prefix bytes copied */
};

/* One iovec of the prefix copy; 1 stops the loop. */
static long iov_head_step(__u64 i, void *ctx)
{
	struct iov_head *h = ctx;
	struct scratch *s = h->s;
	struct iovec iov;
	__u64 len, off;
	__s64 k;

	if (i >= h->cnt || h->off >= h->want || h->off >= TG_MAX_CAPTURE)
		return 1;
	k = iov_slot(s, h->arr, i);
	if (k < 0)
		return 1;
	iov = s->iov[k & (2 * TG_MAX_IOV - 1)];
	len = iov.iov_len;
	if (len > h->want - h->off)
		len = h->want - h->off;
	barrier_var(len);
	if (len > TG_MAX_CAPTURE)
		len = TG_MAX_CAPTURE;
	len &= (2 * TG_MAX_CAPTURE - 1);
	off = h->off & (TG_MAX_CAPTURE - 1);
	if (bpf_probe_read_user(s->payload + off, len, iov.iov_base))
		return 1;
	h->off = off + len;
	return 0;
}

/* State of the tail walk over an iovec array (a bpf_loop callback's context, on the stack). */
struct iov_tail {
	struct scratch *s;
	__u64 arr;   /* the array, in user memory */
	__u64 cnt;   /* iovecs in it (at most TG_MAX_IOV_WALK) */
	__u64 dst0;  /* where the tail goes in s->payload */
	__u64 moved; /* bytes the syscall moved */
	__u64 tl;    /* tail bytes wanted */
	__u64 pos;   /* where the current iovec starts in the bytes moved */
	__u64 tgot;  /* tail bytes copied */
};

/* One iovec of the tail walk; 1 stops the loop. */
static long iov_tail_step(__u64 i, void *ctx)
{
	struct iov_tail *t = ctx;
	struct scratch *s = t->s;
	__u64 tstart = t->moved - t->tl;
	__u64 len, skip, n, tgot;
	struct iovec iov;
	__s64 k;

	if (i >= t->cnt || t->tgot >= t->tl || t->pos >= t->moved)
		return 1;
	k = iov_slot(s, t->arr, i);
	if (k < 0)
		return 1;
	iov = s->iov[k & (2 * TG_MAX_IOV - 1)];
	len = iov.iov_len;
	if (len > t->moved - t->pos)
		len = t->moved - t->pos;
	if (t->pos + len > tstart) {
		skip = tstart > t->pos ? tstart - t->pos : 0;
		n = len - skip;
		if (n > t->tl - t->tgot)
			n = t->tl - t->tgot;
		barrier_var(n);
		if (n > TG_MAX_TAIL)
			n = TG_MAX_TAIL;
		n &= (2 * TG_MAX_TAIL - 1);
		tgot = t->tgot & (TG_MAX_TAIL - 1);
		if (bpf_probe_read_user(s->payload + (t->dst0 & (2 * TG_MAX_CAPTURE - 1)) + tgot, n,
					iov.iov_base + skip))
			return 1;
		t->tgot = tgot + n;
	}
	t->pos += len;
	return 0;
}

/*
 * The last `tl` of the `moved` bytes an iovec syscall moved, copied to s->payload + `dst0`;
 * returns `tl`, or 0 if they could not all be copied. A read fills its iovecs only up to
 * `moved`, so the end is found by walking the iovecs from the first (at most TG_MAX_IOV_WALK
 * of them: an end beyond is not copied). The walk is a bpf_loop callback, verified once: as an
 * inline bounded loop in every syscall program it multiplied the verifier's work (agent start
 * went from 0.8 s to 5.3 s of CPU).
 */
static __always_inline __u32 copy_iov_tail(struct scratch *s, __u64 arr, __u64 cnt,
					   __u64 dst0, __u64 moved, __u64 tl)
{
	struct iov_tail t = {
		.s = s,
		.arr = arr,
		.cnt = cnt,
		.dst0 = dst0,
		.moved = moved,
		.tl = tl,
	};

	bpf_loop(TG_MAX_IOV_WALK, iov_tail_step, &t, 0);
	return t.tgot == tl ? tl : 0;
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
		__u64 off;
		__u64 cnt = a->iovcnt;
		__u64 sz;
		struct iov_head h = { .s = s, .arr = a->buf, .want = want };

		if (cnt > TG_MAX_IOV_WALK)
			cnt = TG_MAX_IOV_WALK;
		/* The first iovecs in one read: a helper call costs more than the loop around it. */
		sz = (cnt < TG_MAX_IOV ? cnt : TG_MAX_IOV) * sizeof(struct iovec);
		barrier_var(sz);
		if (sz > TG_MAX_IOV * sizeof(struct iovec))
			sz = TG_MAX_IOV * sizeof(struct iovec);
		sz &= (2 * TG_MAX_IOV * sizeof(struct iovec) - 1);
		if (bpf_probe_read_user(s->iov, sz, (void *)a->buf))
			return 0;
		h.cnt = cnt;
		/* A bpf_loop callback, verified once (see copy_iov_tail). */
		bpf_loop(TG_MAX_IOV_WALK, iov_head_step, &h, 0);
		off = h.off;
		if (off > want)
			off = want;
		if (tl && off == want)
			s->ev.tail = copy_iov_tail(s, a->buf, cnt, want, moved, tl);
		return off;
	}
	return 0;
}

#endif /* TELEGEN_PAYLOAD_BPF_H */
