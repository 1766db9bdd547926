// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * bashreadline.bpf.c: lines typed into bash, from a uretprobe on readline() in the
 * bash binary (user space attaches it at the symbol's file offset).
 */
#include "common.bpf.h"

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pw_readline, const void *ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_readline e;
	long n;

	if (!ret || !pw_wanted(pid_tgid))
		return 0;
	pw_fill_hdr(&e.h, PW_EV_READLINE, pid_tgid);
	e.flags = 0;
	n = bpf_probe_read_user_str(e.line, sizeof(e.line), ret);
	if (n < 0) {
		e.flags = PW_BLOB_FAULT;
		pw_stat_add(PW_STAT_READ_FAIL, 1);
		n = 0;
	} else if (n == sizeof(e.line)) {
		e.flags = PW_BLOB_TRUNC;
		pw_stat_add(PW_STAT_TRUNC, 1);
	}
	e.len = n;
	pw_submit(&e, sizeof(e));
	return 0;
}
