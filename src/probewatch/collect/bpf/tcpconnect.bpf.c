// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * tcpconnect.bpf.c: active TCP opens (connect), IPv4 and IPv6, from the
 * sock:inet_sock_set_state tracepoint (no kprobes needed). CLOSE -> SYN_SENT runs
 * in the connecting task: remember who it was; when the socket leaves SYN_SENT
 * (ESTABLISHED or CLOSE) the source port is known: emit one record.
 */
#include "common.bpf.h"

#define PW_TCP_ESTABLISHED 1
#define PW_TCP_SYN_SENT 2
#define PW_AF_INET 2
#define PW_IPPROTO_TCP 6

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pw_tcp);
} conns SEC(".maps");

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int pw_tcp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct pw_tcp *e;

	if (ctx->protocol != PW_IPPROTO_TCP)
		return 0;
	if (ctx->newstate == PW_TCP_SYN_SENT) {
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		struct pw_tcp n = {};

		if (!pw_wanted(pid_tgid))
			return 0;
		pw_fill_hdr(&n.h, PW_EV_TCP, pid_tgid);
		bpf_map_update_elem(&conns, &sk, &n, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate != PW_TCP_SYN_SENT)
		return 0;
	e = bpf_map_lookup_elem(&conns, &sk);
	if (!e)
		return 0;
	e->family = ctx->family;
	e->sport = ctx->sport;
	e->dport = ctx->dport;
	e->newstate = ctx->newstate;
	/* arrays in ctx: only constant-offset loads are allowed, so copy by helper */
	if (ctx->family == PW_AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	e->latency_ns = bpf_ktime_get_ns() - e->h.ts;
	pw_submit(e, sizeof(*e));
	bpf_map_delete_elem(&conns, &sk);
	return 0;
}
