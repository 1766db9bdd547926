// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * mallocs.bpf.c: allocations aggregated in the kernel (like bcc's memleak).
 *
 * uprobes on the allocator's entry points save the size per thread; uretprobes take
 * the returned address and the user stack of the call site and keep
 *   - "hist":  a log2 histogram of the sizes asked for (every call);
 *   - "allocs": address -> (size, process, stack) of each allocation not freed yet;
 *   - "sites": (process, stack) -> outstanding bytes and count;
 *   - "stacks": the call-site stacks as (build-id, file offset) frames, so that they
 *     can be symbolized after the process is gone.
 * free (and realloc's old pointer) take an allocation back out. Nothing crosses to
 * user space per call: user space reads the maps every interval.
 */
#include "common.bpf.h"

#define PWM_STACK_DEPTH 16
#define PWM_BUCKETS 64

/* allocations smaller than this are counted in the histogram only */
const volatile __u64 min_size = 0;
/* anonymous mmaps of at least this many bytes made outside the allocator count as
 * allocations (munmap frees them); 0: mmap is not tracked */
const volatile __u64 mmap_min = 0;

#define PWM_MAP_ANONYMOUS 0x20

/* map "mstats" slots */
enum {
	PWM_CALLS = 0,      /* allocation calls seen (returned) */
	PWM_FAILED = 1,     /* ... that returned NULL */
	PWM_FREES = 2,      /* frees of a tracked allocation */
	PWM_FREE_UNKNOWN = 3, /* frees of an address not tracked (allocated earlier, or small) */
	PWM_FULL = 4,       /* allocations not tracked: "allocs" was full */
	PWM_NO_STACK = 5,   /* allocations whose stack could not be taken */
	PWM_MAX = 8,
};

struct pwm_alloc {
	__u64 size;
	__u32 pid;
	__s32 stack_id;
};

struct pwm_site_key {
	__u32 pid;
	__s32 stack_id;
};

struct pwm_site {
	__u64 bytes;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32); /* tid */
	__type(value, __u64); /* size asked for */
} sizes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32); /* tid */
	__type(value, __u64); /* realloc: the old pointer; posix_memalign: memptr */
} aux SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32); /* tid */
	__type(value, __u64); /* an mmap's length, between its entry and exit */
} mmaps SEC(".maps");

/* the syscall tracepoints' records (events/syscalls/sys_{enter,exit}_mmap/format) */
struct pwm_sys_enter {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

struct pwm_sys_exit {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18); /* set by user space */
	__type(key, __u64);
	__type(value, struct pwm_alloc);
} allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pwm_site_key);
	__type(value, struct pwm_site);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PWM_STACK_DEPTH * sizeof(struct bpf_stack_build_id));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PWM_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PWM_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mstats SEC(".maps");

static __always_inline void pwm_count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&mstats, &slot);

	if (v)
		*v += 1;
}

/* floor(log2(v)) for v > 0; bucket 0 holds 0 and 1 */
static __always_inline __u32 pwm_log2(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFF) << 5; v >>= shift; r |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline int pwm_enter(__u64 size)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;

	if (!pw_wanted(id))
		return 0;
	bpf_map_update_elem(&sizes, &tid, &size, BPF_ANY);
	return 0;
}

static __always_inline void pwm_forget(__u64 addr)
{
	struct pwm_alloc *a;
	struct pwm_site_key k;
	struct pwm_site *s;

	if (!addr)
		return;
	a = bpf_map_lookup_elem(&allocs, &addr);
	if (!a) {
		pwm_count(PWM_FREE_UNKNOWN);
		return;
	}
	k.pid = a->pid;
	k.stack_id = a->stack_id;
	s = bpf_map_lookup_elem(&sites, &k);
	if (s) {
		__sync_fetch_and_sub(&s->bytes, a->size);
		__sync_fetch_and_sub(&s->count, 1);
	}
	bpf_map_delete_elem(&allocs, &addr);
	pwm_count(PWM_FREES);
}

/* one allocation of ``size`` bytes at ``addr`` (0: it failed) by the current task */
static __always_inline int pwm_record(void *ctx, __u64 addr, __u64 size)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 b;
	__u64 *slot;
	struct pwm_alloc a = {};
	struct pwm_site_key k;
	struct pwm_site *s, one;

	pwm_count(PWM_CALLS);
	b = pwm_log2(size);
	if (b >= PWM_BUCKETS)
		b = PWM_BUCKETS - 1;
	slot = bpf_map_lookup_elem(&hist, &b);
	if (slot)
		*slot += 1;
	if (!addr) {
		pwm_count(PWM_FAILED);
		return 0;
	}
	if (size < min_size)
		return 0;
	a.size = size;
	a.pid = id >> 32;
	a.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (a.stack_id < 0)
		pwm_count(PWM_NO_STACK);
	if (bpf_map_update_elem(&allocs, &addr, &a, BPF_ANY)) {
		pwm_count(PWM_FULL);
		return 0;
	}
	k.pid = a.pid;
	k.stack_id = a.stack_id;
	s = bpf_map_lookup_elem(&sites, &k);
	if (!s) {
		one.bytes = 0;
		one.count = 0;
		bpf_map_update_elem(&sites, &k, &one, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&sites, &k);
		if (!s)
			return 0;
	}
	__sync_fetch_and_add(&s->bytes, size);
	__sync_fetch_and_add(&s->count, 1);
	return 0;
}

static __always_inline int pwm_leave(struct pt_regs *ctx, __u64 addr)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u64 *szp = bpf_map_lookup_elem(&sizes, &tid);
	__u64 size;

	if (!szp)
		return 0;
	size = *szp;
	bpf_map_delete_elem(&sizes, &tid);
	return pwm_record(ctx, addr, size);
}

/* anonymous mmaps the program makes itself (not the allocator's: those are in a
 * malloc call, whose size is pending in "sizes") */
SEC("tracepoint/syscalls/sys_enter_mmap")
int pwm_mmap_enter(struct pwm_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;
	__u64 len = ctx->args[1];

	if (!mmap_min || !pw_wanted(id))
		return 0;
	if (!(ctx->args[3] & PWM_MAP_ANONYMOUS) || len < mmap_min)
		return 0;
	if (bpf_map_lookup_elem(&sizes, &tid))
		return 0;
	bpf_map_update_elem(&mmaps, &tid, &len, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int pwm_mmap_exit(struct pwm_sys_exit *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u64 *lenp = bpf_map_lookup_elem(&mmaps, &tid);
	__u64 len;

	if (!lenp)
		return 0;
	len = *lenp;
	bpf_map_delete_elem(&mmaps, &tid);
	return pwm_record(ctx, ctx->ret < 0 && ctx->ret > -4096 ? 0 : (__u64)ctx->ret, len);
}

/* munmap of a tracked mapping frees it (whole: a partial munmap counts as all) */
SEC("tracepoint/syscalls/sys_enter_munmap")
int pwm_munmap(struct pwm_sys_enter *ctx)
{
	if (!mmap_min || !pw_wanted(bpf_get_current_pid_tgid()))
		return 0;
	pwm_forget(ctx->args[0]);
	return 0;
}

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

/* malloc(size), valloc(size), pvalloc(size) */
SEC("uprobe")
int BPF_KPROBE(pwm_malloc, __u64 size)
{
	return pwm_enter(size);
}

/* calloc(n, size) */
SEC("uprobe")
int BPF_KPROBE(pwm_calloc, __u64 n, __u64 size)
{
	return pwm_enter(n * size);
}

/* aligned_alloc(align, size), memalign(align, size) */
SEC("uprobe")
int BPF_KPROBE(pwm_aligned, __u64 align, __u64 size)
{
	return pwm_enter(size);
}

/* every allocator above returns the address */
SEC("uretprobe")
int BPF_KRETPROBE(pwm_ret, void *ret)
{
	return pwm_leave(ctx, (__u64)ret);
}

/* realloc(ptr, size): the old block goes when the call succeeds */
SEC("uprobe")
int BPF_KPROBE(pwm_realloc, __u64 ptr, __u64 size)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;

	if (!pw_wanted(id))
		return 0;
	bpf_map_update_elem(&aux, &tid, &ptr, BPF_ANY);
	bpf_map_update_elem(&sizes, &tid, &size, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pwm_realloc_ret, void *ret)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u64 *old = bpf_map_lookup_elem(&aux, &tid);
	__u64 *szp = bpf_map_lookup_elem(&sizes, &tid);

	if (old) {
		/* success, or realloc(p, 0) that freed p */
		if (ret || (szp && *szp == 0))
			pwm_forget(*old);
		bpf_map_delete_elem(&aux, &tid);
	}
	if (szp && *szp == 0) {  /* a free, not an allocation */
		bpf_map_delete_elem(&sizes, &tid);
		return 0;
	}
	return pwm_leave(ctx, (__u64)ret);
}

/* posix_memalign(memptr, align, size): the address is stored at *memptr */
SEC("uprobe")
int BPF_KPROBE(pwm_memalign_posix, void **memptr, __u64 align, __u64 size)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;
	__u64 p = (__u64)memptr;

	if (!pw_wanted(id))
		return 0;
	bpf_map_update_elem(&aux, &tid, &p, BPF_ANY);
	bpf_map_update_elem(&sizes, &tid, &size, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pwm_memalign_posix_ret, int ret)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u64 *memptr = bpf_map_lookup_elem(&aux, &tid);
	__u64 addr = 0;

	if (!memptr)
		return 0;
	if (ret == 0)
		bpf_probe_read_user(&addr, sizeof(addr), (void *)*memptr);
	bpf_map_delete_elem(&aux, &tid);
	return pwm_leave(ctx, addr);
}

/* free(ptr) */
SEC("uprobe")
int BPF_KPROBE(pwm_free, __u64 ptr)
{
	if (!pw_wanted(bpf_get_current_pid_tgid()))
		return 0;
	pwm_forget(ptr);
	return 0;
}
