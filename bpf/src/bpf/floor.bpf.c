// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The overhead floor: one program that returns at once, attached (by the loader, see
 * src/floor.rs) to every tracepoint the real tracer (telegen.bpf.c) attaches. Measuring a workload
 * with it separates the kernel's fixed cost of running any BPF program on those hooks from the
 * cost of what Telegen's programs do.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Bare "tracepoint" section: no auto-attach; the loader attaches it to each hook. */
SEC("tracepoint")
int tg_floor(void *ctx)
{
	return 0;
}
