/* SPDX-License-Identifier: MIT */
/*
 * readline.bpf.h: a line read by bash's readline(), from its uretprobe (the returned
 * string). Shared by bashreadline.bpf.c and sslsniff.bpf.c (watch's user-space layer).
 */
#ifndef PW_READLINE_BPF_H
#define PW_READLINE_BPF_H

#include "common.bpf.h"

static __always_inline void pw_readline_ret(const void *ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_readline e;
	long n;

	if (!ret || !pw_wanted(pid_tgid))
		return;
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
}

#endif /* PW_READLINE_BPF_H */
