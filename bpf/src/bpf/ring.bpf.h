/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which ring buffer a record goes to and writing it there, included once by telegen.bpf.c (it
 * uses its knobs, tg_rings and the stats map): the ring of the connection's home CPU, spilling
 * into the current CPU's ring when that one is three quarters full.
 */
#ifndef TELEGEN_RING_BPF_H
#define TELEGEN_RING_BPF_H

static __always_inline void *cpu_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&tg_rings, &cpu);
}

/*
 * The ring for a record of connection `conn_id`: that of the CPU in its id, the CPU that wrote
 * the connection's first record, whose shard owns the connection. A thread the scheduler moves to
 * another CPU thus keeps writing its connections' records where their owner reads them; in the
 * ring of the CPU it runs on, that ring's shard would copy each record and forward it to the
 * owner (with one nginx worker left to the scheduler on 2 CPUs, 66-81% of all records). The
 * current CPU's ring for an id without a CPU, or whose CPU has no ring.
 */
static __always_inline void *conn_ring(__u64 conn_id)
{
	__u32 home = (__u32)((conn_id & ~TG_CONN_ID_PROVISIONAL) >> TG_CONN_ID_CPU_SHIFT);
	void *rb;

	if (home && home <= TG_MAX_CPUS) {
		home -= 1;
		rb = bpf_map_lookup_elem(&tg_rings, &home);
		if (rb)
			return rb;
	}
	return cpu_ring();
}

static __always_inline void submit(struct scratch *s, __u32 captured)
{
	struct tg_stats *st = stats();
	void *rb = conn_ring(s->ev.conn_id);
	__u64 size = sizeof(struct tg_event) + (captured & (2 * TG_MAX_CAPTURE - 1));
	__u64 flags = BPF_RB_NO_WAKEUP;
	long err = -1;

	if (rb) {
		__u64 pending = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);

		/* A home ring close to full (all connections of a busy thread share one home, and
		 * its shard may be late) spills into the ring of this CPU, as records were written
		 * before rings were chosen by home: a burst spreads over the rings of the CPUs that
		 * wrote it instead of overflowing one. */
		if (spill_bytes && pending >= spill_bytes) {
			void *here = cpu_ring();

			/* Nowhere to spill when this CPU is the home one. */
			if (here && here != rb) {
				rb = here;
				pending = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
			}
		}
		if (pending >= wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
		err = bpf_ringbuf_output(rb, s, size, flags);
	}
	if (st) {
		if (err)
			__sync_fetch_and_add(&st->dropped, 1);
		else
			__sync_fetch_and_add(&st->emitted, 1);
	}
}

#endif /* TELEGEN_RING_BPF_H */
