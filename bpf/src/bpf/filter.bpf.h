/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Upkeep of the process filter (tg_allowed) on exec, fork and exit, included once by
 * telegen.bpf.c after the maps and filter_changed() it uses.
 */
#ifndef TELEGEN_FILTER_BPF_H
#define TELEGEN_FILTER_BPF_H

SEC("tracepoint/sched/sched_process_exec")
int tg_exec(void *ctx)
{
	char comm[16] = {};
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = TG_ALLOW_BY_NAME;

	__u8 *allowed;

	if (!filter_enabled)
		return 0;
	bpf_get_current_comm(&comm, sizeof(comm));
	if (bpf_map_lookup_elem(&tg_comm_filter, &comm)) {
		bpf_map_update_elem(&tg_allowed, &tgid, &one, BPF_ANY);
		filter_changed();
		return 0;
	}
	/* Allowed by name through its parent, and now another program: no longer ours. */
	allowed = bpf_map_lookup_elem(&tg_allowed, &tgid);
	if (allowed && *allowed == TG_ALLOW_BY_NAME) {
		bpf_map_delete_elem(&tg_allowed, &tgid);
		filter_changed();
	}
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
int tg_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 child = ctx->child_pid;
	__u8 *how;
	__u8 v;

	if (!filter_enabled)
		return 0;
	how = bpf_map_lookup_elem(&tg_allowed, &parent);
	if (how) {
		v = *how;
		bpf_map_update_elem(&tg_allowed, &child, &v, BPF_ANY);
		/* A CPU may remember `child` as a process of the same pid that was not allowed. */
		filter_changed();
	}
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tg_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;

	/* The thread's task_state (syscall arguments, SSL call) goes with the task. The process's
	 * entry goes with its main thread (an entry keyed by another thread's id was never looked
	 * up: no process had that pid while the thread lived). */
	if (filter_enabled && !bpf_map_delete_elem(&tg_allowed, &tid) && tid == id >> 32)
		filter_changed();
	return 0;
}

#endif /* TELEGEN_FILTER_BPF_H */
