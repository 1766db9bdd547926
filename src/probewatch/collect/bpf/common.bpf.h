/* SPDX-License-Identifier: MIT */
/*
 * common.bpf.h: what every probewatch BPF object shares — the filters (pid set
 * followed through fork, comm, uid, cgroup; configured through .rodata and the
 * "pids" map), the loss counters ("stats") and the record header.
 */
#ifndef PW_COMMON_BPF_H
#define PW_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "probewatch.h"

char LICENSE[] SEC("license") = "GPL";

/* configuration: written by user space before load, constants to the verifier */
const volatile __u32 self_pid = 0;      /* never trace the tracer */
const volatile bool filter_pids = false; /* only tgids in map "pids" */
const volatile bool follow_forks = true; /* children of traced tgids join "pids" */
const volatile bool filter_comm = false;
const volatile char targ_comm[PW_COMM_LEN] = {};
const volatile bool filter_uid = false;
const volatile __u32 targ_uid = 0;
const volatile bool filter_cgroup = false;
const volatile __u64 targ_cgroup = 0;

/* LRU: the programs that see no process exit never delete a pid, and a plain hash
 * stopped following children after PW_MAX_PIDS forks in all (a traced build or loop
 * went blind at its 8,192nd child). Exited processes are never looked up again, so
 * they are the ones evicted; every event of a traced process and every fork of one
 * refreshes its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PW_MAX_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* size set by user space (bpf_map__set_max_entries) before load */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* v &= mask, in a way clang cannot drop as redundant: the verifier needs it */
#define pw_bound(v, mask)                     \
	do {                                  \
		asm volatile("" : "+r"(v));   \
		(v) &= (mask);                \
	} while (0)

static __always_inline void pw_stat_add(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &slot);

	if (v)
		*v += n;
}

static __always_inline bool pw_comm_matches(void)
{
	char c[PW_COMM_LEN];

	bpf_get_current_comm(c, sizeof(c));
	for (int i = 0; i < PW_COMM_LEN; i++) {
		if (c[i] != targ_comm[i])
			return false;
		if (!c[i])
			break;
	}
	return true;
}

/* should the current task be traced? */
static __always_inline bool pw_wanted(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;

	if (self_pid && tgid == self_pid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (filter_uid && (__u32)bpf_get_current_uid_gid() != targ_uid)
		return false;
	if (filter_cgroup && bpf_get_current_cgroup_id() != targ_cgroup)
		return false;
	if (filter_comm && !pw_comm_matches())
		return false;
	return true;
}

static __always_inline void pw_fill_hdr(struct pw_hdr *h, __u16 kind, __u64 pid_tgid)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 ug = bpf_get_current_uid_gid();

	h->kind = kind;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ts = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->ppid = BPF_CORE_READ(t, real_parent, tgid);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->_pad = 0;
	h->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* submit a record built elsewhere; counts generated and lost */
static __always_inline void pw_submit(void *data, __u64 size)
{
	pw_stat_add(PW_STAT_GENERATED, 1);
	if (bpf_ringbuf_output(&events, data, size, 0))
		pw_stat_add(PW_STAT_RB_LOST, 1);
}

/* sched_process_fork runs in the parent: a child of a traced process is traced */
static __always_inline bool pw_follow_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 child = BPF_CORE_READ(ctx, child_pid);
	__u8 one = 1;

	if (!filter_pids)
		return true;
	if (!bpf_map_lookup_elem(&pids, &parent)) {
		/* an unrelated new process (or thread) may get the pid of a traced process
		 * that exited and is still in the set: it is taken out before it runs */
		bpf_map_delete_elem(&pids, &child);
		return false;
	}
	if (follow_forks)
		bpf_map_update_elem(&pids, &child, &one, BPF_NOEXIST);
	return true;
}

#endif /* PW_COMMON_BPF_H */
