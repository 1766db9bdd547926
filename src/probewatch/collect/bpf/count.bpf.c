// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * count.bpf.c: the cheapest way to count tracepoint hits in the kernel
 * ("probewatch trace --count" on the bpf backend, collect/bpf/count.py).
 *
 * No record is built and nothing is copied: raw tracepoints (the tracepoint's own
 * arguments, no perf buffer), one per-CPU array of counters whose lookup the verifier
 * inlines, no hash map, no atomics on the hot path.
 *
 * - syscalls:sys_enter_X / sys_exit_X: one program on raw_syscalls sys_enter /
 *   sys_exit counts every syscall by number (counts[nr], counts[PW_NR_MAX + nr]);
 *   user space reads the numbers it was asked for. sys_enter has the number as its
 *   second argument; sys_exit reads it from pt_regs (orig_ax / syscallno), which a
 *   BTF-typed program (tp_btf) loads directly and a raw_tp program through
 *   bpf_probe_read_kernel. Both kinds are here; user space picks one.
 * - any other tracepoint: a raw_tp program per tracepoint (pw_cnt_tp0..15, each with
 *   its own counter: raw tracepoints have no attach cookie before Linux 6.10).
 * - pid scoping: a bitmap of thread-group ids (map "pid_bits", one bit per pid up to
 *   pid_max, an ARRAY so the lookup is inlined), children added at fork, removed when
 *   their last thread exits.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "probewatch.h"

char LICENSE[] SEC("license") = "GPL";

#define PW_CNT_TPS 16 /* other tracepoints counted at once */
#define PW_CNT_EXIT PW_NR_MAX
#define PW_CNT_TP (2 * PW_NR_MAX)

const volatile __u32 self_pid = 0;       /* never count the tracer */
const volatile bool filter_pids = false; /* only tgids set in "pid_bits" */

/* [0, NR): sys_enter by number; [NR, 2 NR): sys_exit by number; then the tracepoints */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * PW_NR_MAX + PW_CNT_TPS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* bit (tgid & 63) of word tgid / 64; max_entries set by user space (pid_max / 64) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pid_bits SEC(".maps");

static __always_inline bool pw_cnt_wanted(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (filter_pids) {
		__u32 k = tgid >> 6;
		__u64 *w = bpf_map_lookup_elem(&pid_bits, &k);

		return w && ((*w >> (tgid & 63)) & 1);
	}
	return tgid != self_pid;
}

static __always_inline void pw_cnt(__u32 k)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &k);

	if (n)
		*n += 1;
}

/*
 * The syscall number in pt_regs, and whether the syscall is a compat one (a 32-bit
 * task's), which the syscall tracepoints ignore (trace_get_syscall_nr): on x86_64 a
 * code segment other than the 64-bit user one (__USER_CS, 0x33); on arm64 an AArch32
 * task (PSR_MODE32_BIT in pstate).
 */
#if defined(__TARGET_ARCH_x86)
#define PW_REGS_NR(regs) ((regs)->orig_ax)
#define PW_CORE_NR(regs) BPF_CORE_READ(regs, orig_ax)
#define PW_REGS_COMPAT(regs) ((regs)->cs != 0x33)
#define PW_CORE_COMPAT(regs) (BPF_CORE_READ(regs, cs) != 0x33)
#else
#define PW_REGS_NR(regs) ((__u32)(regs)->syscallno)
#define PW_CORE_NR(regs) ((__u32)BPF_CORE_READ(regs, syscallno))
#define PW_REGS_COMPAT(regs) ((regs)->pstate & 0x10)
#define PW_CORE_COMPAT(regs) (BPF_CORE_READ(regs, pstate) & 0x10)
#endif

/* raw_syscalls:sys_enter(struct pt_regs *regs, long id) */
SEC("raw_tp/sys_enter")
int pw_cnt_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 nr = ctx->args[1];

	if (nr >= PW_NR_MAX || !pw_cnt_wanted())
		return 0;
	if (PW_CORE_COMPAT((struct pt_regs *)ctx->args[0]))
		return 0;
	pw_cnt(nr);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(pw_cnt_enter_btf, struct pt_regs *regs, long id)
{
	__u64 nr = id;

	if (nr >= PW_NR_MAX || PW_REGS_COMPAT(regs) || !pw_cnt_wanted())
		return 0;
	pw_cnt(nr);
	return 0;
}

/* raw_syscalls:sys_exit(struct pt_regs *regs, long ret) */
SEC("raw_tp/sys_exit")
int pw_cnt_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u64 nr = PW_CORE_NR(regs);

	if (nr >= PW_NR_MAX || !pw_cnt_wanted() || PW_CORE_COMPAT(regs))
		return 0;
	pw_cnt(PW_CNT_EXIT + nr);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pw_cnt_exit_btf, struct pt_regs *regs, long ret)
{
	__u64 nr = PW_REGS_NR(regs);

	if (nr >= PW_NR_MAX || PW_REGS_COMPAT(regs) || !pw_cnt_wanted())
		return 0;
	pw_cnt(PW_CNT_EXIT + nr);
	return 0;
}

#define PW_CNT_TP_PROG(i)                                 \
	SEC("raw_tp")                                     \
	int pw_cnt_tp##i(struct bpf_raw_tracepoint_args *ctx) \
	{                                                 \
		if (pw_cnt_wanted())                      \
			pw_cnt(PW_CNT_TP + i);            \
		return 0;                                 \
	}

PW_CNT_TP_PROG(0)
PW_CNT_TP_PROG(1)
PW_CNT_TP_PROG(2)
PW_CNT_TP_PROG(3)
PW_CNT_TP_PROG(4)
PW_CNT_TP_PROG(5)
PW_CNT_TP_PROG(6)
PW_CNT_TP_PROG(7)
PW_CNT_TP_PROG(8)
PW_CNT_TP_PROG(9)
PW_CNT_TP_PROG(10)
PW_CNT_TP_PROG(11)
PW_CNT_TP_PROG(12)
PW_CNT_TP_PROG(13)
PW_CNT_TP_PROG(14)
PW_CNT_TP_PROG(15)

/* sched_process_fork runs in the parent: a child of a counted process is counted */
SEC("tracepoint/sched/sched_process_fork")
int pw_cnt_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 child = BPF_CORE_READ(ctx, child_pid);
	__u32 k = parent >> 6;
	__u64 *w = bpf_map_lookup_elem(&pid_bits, &k);

	if (!w || !((*w >> (parent & 63)) & 1))
		return 0;
	k = child >> 6;
	w = bpf_map_lookup_elem(&pid_bits, &k);
	if (w)
		__sync_fetch_and_or(w, 1ULL << (child & 63));
	return 0;
}

/* the last thread of a counted process exits (signal->live already 0): its pid leaves
 * the set, so a later process that gets the same pid is not counted. Attached after
 * the counting programs (a raw tracepoint runs its programs in the order attached). */
SEC("raw_tp/sched_process_exit")
int pw_cnt_gone(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 k = tgid >> 6;
	__u64 *w;

	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	w = bpf_map_lookup_elem(&pid_bits, &k);
	if (w && ((*w >> (tgid & 63)) & 1))
		__sync_fetch_and_and(w, ~(1ULL << (tgid & 63)));
	return 0;
}
