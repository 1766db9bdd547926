// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * bashreadline.bpf.c: lines typed into bash, from a uretprobe on readline() in the
 * bash binary (user space attaches it at the symbol's file offset).
 */
#include "common.bpf.h"
#include "readline.bpf.h"

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pw_readline, const void *ret)
{
	pw_readline_ret(ret);
	return 0;
}
