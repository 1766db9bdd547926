// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * syscalls.bpf.c: every syscall's entry and exit (number, six arguments, return
 * value, duration) with the user memory its arguments point to (paths, argv,
 * sockaddrs, data buffers); process lifecycle (fork, exec, exit); in-kernel
 * counting per syscall and per process for summary modes.
 *
 * Attach either the raw_syscalls pair (every syscall) or the *_one pair to chosen
 * syscalls:sys_enter_X / sys_exit_X tracepoints. Both context layouts carry the
 * arguments at offset 16; raw_syscalls has "long id" at 8, syscalls:* "int nr".
 * What is captured per syscall number comes from map "nrconf", which user space
 * fills from the kernel's own syscall tracepoint formats.
 */
#include "common.bpf.h"

const volatile bool emit_events = true;      /* records for PW_NR_TRACE numbers */
const volatile bool count_syscalls = false;  /* sys_counts */
const volatile bool count_procs = false;     /* proc_counts */
const volatile bool emit_lifecycle = false;  /* fork/exec/exit records */
const volatile __u32 str_max = 4096;         /* bytes per string argument */
const volatile __u32 buf_max = 32;           /* bytes of data buffers */
const volatile __u32 argv_max = 64;          /* argv entries */
const volatile __u32 arg_max = 256;          /* bytes per argv entry */

struct pw_inflight {
	__u64 ts;
	__u64 args[6];
	__s32 nr;
	__u32 _pad;
};

struct pw_scratch {
	/* 2 * PW_DATA_SIZE: room for a string read at the end of the blob area, and
	 * lets the verifier bound a record's size with one mask */
	__u8 buf[sizeof(struct pw_syscall) + 2 * PW_DATA_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PW_NR_MAX);
	__type(key, __u32);
	__type(value, struct pw_nrconf);
} nrconf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pw_inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_NR_MAX);
	__type(key, __u32);
	__type(value, struct pw_count);
} sys_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct pw_count);
} proc_counts SEC(".maps");

/* the two tracepoint context layouts (see the top of this file) */
struct pw_raw_enter_ctx {
	__u64 common;
	long id;
	unsigned long args[6];
};
struct pw_raw_exit_ctx {
	__u64 common;
	long id;
	long ret;
};
struct pw_one_enter_ctx {
	__u64 common;
	int nr;
	int _pad;
	unsigned long args[6];
};
struct pw_one_exit_ctx {
	__u64 common;
	int nr;
	int _pad;
	long ret;
};

static __always_inline struct pw_scratch *pw_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline __u32 pw_clamp(__u32 v, __u32 max)
{
	if (v > max)
		v = max;
	return v;
}

/*
 * A string read with bpf_probe_read_user_str() that filled its buffer (it returns
 * the size, NUL included) is cut short unless the user string ends just there: a
 * path of PATH_MAX - 1 bytes fits PW_STR_MAX exactly and is whole.
 */
static __always_inline bool pw_ends_at(__u64 a, __u32 at)
{
	char c = 1;

	return !bpf_probe_read_user(&c, 1, (const void *)(a + at)) && c == 0;
}

/*
 * Capture argument i (ik >> 8) of kind k (ik & 0xff) into the blob area at @off;
 * returns the new offset. Global (verified once, on its own) to keep the callers'
 * verifier state small; BPF calls take at most five arguments.
 */
__noinline __u32 pw_read_blob(__u32 off, __u32 ik, __u64 a, __u64 next, __s64 ret)
{
	struct pw_scratch *s = pw_scratch();
	__u32 i = ik >> 8, k = ik & 0xff;
	struct pw_blob *b;
	__u8 *data;
	long n = 0;
	__u32 want = 0, max = 0;
	__u16 flags = 0;

	if (!s || off > PW_DATA_SIZE - PW_BLOB_HDR || i > 5)
		return off;
	pw_bound(off, PW_DATA_MASK);
	b = (struct pw_blob *)(s->buf + sizeof(struct pw_syscall) + off);
	data = (__u8 *)b + PW_BLOB_HDR;
	if (!a) {
		flags = PW_BLOB_NULL;
		goto done;
	}
	if (k == PW_ARG_STR) {
		max = pw_clamp(str_max, PW_STR_MAX);
		if (max < 2)
			max = 2;
		if (off + max + PW_BLOB_HDR > PW_DATA_SIZE)
			max = PW_DATA_SIZE - off - PW_BLOB_HDR;
		if (max < 2 || max > PW_STR_MAX) {
			flags = PW_BLOB_TRUNC;
			goto done;
		}
		pw_bound(max, PW_STR_MAX * 2 - 1);
		if (max > PW_STR_MAX)
			max = PW_STR_MAX;
		n = bpf_probe_read_user_str(data, max, (const void *)a);
		if (n < 0) {
			flags = PW_BLOB_FAULT;
			n = 0;
		} else if (n == max && !pw_ends_at(a, max - 1)) {
			flags = PW_BLOB_TRUNC;
		}
		goto done;
	}
	if (k == PW_ARG_BUF_IN || k == PW_ARG_BUF_OUT) {
		if (k == PW_ARG_BUF_IN)
			want = (__u32)pw_clamp(next > 0xffffffffULL ? 0xffffffffU : (__u32)next, 0xffffffffU);
		else
			want = ret > 0 ? (ret > PW_BUF_MAX ? PW_BUF_MAX + 1 : (__u32)ret) : 0;
		max = pw_clamp(buf_max, PW_BUF_MAX);
	} else if (k == PW_ARG_SOCKADDR || k == PW_ARG_SOCKADDR_OUT) {
		if (k == PW_ARG_SOCKADDR) {
			want = next > PW_SOCKADDR_MAX ? PW_SOCKADDR_MAX : (__u32)next;
		} else {
			int len = 0;

			if (!next || ret < 0 || bpf_probe_read_user(&len, sizeof(len), (const void *)next))
				goto done;
			want = len < 0 ? 0 : (__u32)len;
		}
		max = PW_SOCKADDR_MAX;
	} else {
		return off;
	}
	if (want > max) {
		flags = PW_BLOB_TRUNC;
		want = max;
	}
	if (off + want + PW_BLOB_HDR > PW_DATA_SIZE) {
		flags = PW_BLOB_TRUNC;
		want = PW_DATA_SIZE - off - PW_BLOB_HDR;
	}
	pw_bound(want, PW_BUF_MAX * 2 - 1);
	if (want > PW_BUF_MAX)
		want = PW_BUF_MAX;
	if (want) {
		if (bpf_probe_read_user(data, want, (const void *)a)) {
			flags = PW_BLOB_FAULT;
			want = 0;
		}
	}
	n = want;
done:
	if (flags & PW_BLOB_FAULT)
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	if (flags & PW_BLOB_TRUNC)
		pw_stat_add(PW_STAT_TRUNC, 1);
	b->arg = i;
	b->kind = k;
	b->flags = flags;
	b->count = 0;
	b->len = n;
	return off + PW_BLOB_HDR + (((__u32)n + 7) & ~7U);
}

/* argv: up to argv_max strings of up to arg_max bytes, back to back */
struct pw_argv_state {
	__u64 a;     /* user pointer to the argv array */
	__u32 pos;   /* next free byte in the blob area */
	__u32 count;
	__u32 amax;
	__u32 nmax;
	__u32 flags;
};

/* one argv entry; bpf_loop callback (verified once, not per iteration) */
static long pw_argv_one(__u32 j, struct pw_argv_state *st)
{
	struct pw_scratch *s = pw_scratch();
	const char *p = NULL;
	__u32 pos = st->pos, lim = st->amax;
	long n;

	if (!s)
		return 1;
	if (j >= st->nmax) {
		if (!bpf_probe_read_user(&p, sizeof(p), (const void *)(st->a + j * 8)) && p)
			st->flags |= PW_BLOB_TRUNC;
		return 1;
	}
	if (bpf_probe_read_user(&p, sizeof(p), (const void *)(st->a + j * 8))) {
		st->flags |= PW_BLOB_FAULT;
		return 1;
	}
	if (!p)
		return 1;
	if (pos + 2 > PW_DATA_SIZE) {
		st->flags |= PW_BLOB_TRUNC;
		return 1;
	}
	if (pos + lim > PW_DATA_SIZE)
		lim = PW_DATA_SIZE - pos;
	pw_bound(pos, PW_DATA_MASK);
	pw_bound(lim, PW_STR_MAX * 2 - 1);
	if (lim > PW_STR_MAX)
		lim = PW_STR_MAX;
	if (lim < 2)
		return 1;
	n = bpf_probe_read_user_str(s->buf + sizeof(struct pw_syscall) + pos, lim, p);
	if (n < 0) {
		st->flags |= PW_BLOB_FAULT;
		return 1;
	}
	if (n == lim && !pw_ends_at((__u64)p, lim - 1))
		st->flags |= PW_BLOB_TRUNC;
	st->pos += n;
	st->count++;
	return 0;
}

__noinline __u32 pw_read_argv(__u32 off, __u32 i, __u64 a)
{
	struct pw_scratch *s = pw_scratch();
	struct pw_argv_state st = {};
	struct pw_blob *b;
	__u32 start;

	if (!s || off > PW_DATA_SIZE - PW_BLOB_HDR)
		return off;
	pw_bound(off, PW_DATA_MASK);
	b = (struct pw_blob *)(s->buf + sizeof(struct pw_syscall) + off);
	start = off + PW_BLOB_HDR;
	st.a = a;
	st.pos = start;
	st.amax = pw_clamp(arg_max, PW_STR_MAX);
	if (st.amax < 2)
		st.amax = 2;
	st.nmax = pw_clamp(argv_max, PW_ARGV_CAP);
	if (!a)
		st.flags = PW_BLOB_NULL;
	else
		bpf_loop(PW_ARGV_CAP + 1, pw_argv_one, &st, 0);
	if (st.flags & PW_BLOB_FAULT)
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	if (st.flags & PW_BLOB_TRUNC)
		pw_stat_add(PW_STAT_TRUNC, 1);
	b->arg = i;
	b->kind = PW_ARG_ARGV;
	b->flags = st.flags;
	b->count = st.count;
	b->len = st.pos - start;
	return start + (((st.pos - start) + 7) & ~7U);
}

static __always_inline void pw_emit_syscall(__u16 kind, __s32 nr, const __u64 *args, __s64 ret,
					    __u64 ts0, __u64 pid_tgid,
					    const struct pw_nrconf *conf)
{
	struct pw_scratch *s = pw_scratch();
	struct pw_syscall *e;
	__u32 off = 0;
	__u64 size;
	bool at_exit = kind == PW_EV_SYSCALL;

	if (!s)
		return;
	e = (struct pw_syscall *)s->buf;
	pw_fill_hdr(&e->h, kind, pid_tgid);
	e->ret = ret;
	e->dur_ns = at_exit && ts0 ? e->h.ts - ts0 : 0;
	e->nr = nr;
#pragma unroll
	for (int i = 0; i < 6; i++)
		e->args[i] = args[i];
#pragma unroll
	for (int i = 0; i < 6; i++) {
		__u32 k = conf->kinds[i];

		if (k == PW_ARG_NONE || k == PW_ARG_ARGV)
			continue;
		/* no-return syscalls are emitted at entry: only inputs are there */
		if (!at_exit && (k == PW_ARG_BUF_OUT || k == PW_ARG_SOCKADDR_OUT))
			continue;
		off = pw_read_blob(off, (i << 8) | k, args[i], i < 5 ? args[i + 1] : 0, ret);
	}
	if (conf->argv_arg >= 0 && conf->argv_arg < 6) {
		__u32 ai = conf->argv_arg;

		if (ai < 6)
			off = pw_read_argv(off, ai, args[ai]);
	}
	if (off > PW_DATA_SIZE)
		off = PW_DATA_SIZE;
	e->data_len = off;
	size = off;
	/* keep clang from dropping the mask the verifier needs to bound the size */
	asm volatile("" : "+r"(size));
	size &= (2 * PW_DATA_SIZE - 1);
	pw_submit(e, sizeof(struct pw_syscall) + size);
}

static __always_inline void pw_count(__s32 nr, __u64 pid_tgid, bool err, __u64 dur, bool call)
{
	__u32 key = nr;

	if (count_syscalls && key < PW_NR_MAX) {
		struct pw_count *c = bpf_map_lookup_elem(&sys_counts, &key);

		if (c) {
			c->calls += call;
			c->errors += err;
			c->time_ns += dur;
		}
	}
	if (count_procs) {
		__u32 pid = pid_tgid >> 32;
		struct pw_count *c = bpf_map_lookup_elem(&proc_counts, &pid);

		if (!c) {
			struct pw_count zero = {};

			bpf_map_update_elem(&proc_counts, &pid, &zero, BPF_NOEXIST);
			c = bpf_map_lookup_elem(&proc_counts, &pid);
		}
		if (c) {
			__sync_fetch_and_add(&c->calls, call);
			__sync_fetch_and_add(&c->errors, err);
			__sync_fetch_and_add(&c->time_ns, dur);
		}
	}
}

static __always_inline int pw_sys_enter(__s32 nr, const unsigned long *uargs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, key = nr;
	struct pw_nrconf *conf;
	struct pw_inflight inf = {};
	bool traced;

	if (key >= PW_NR_MAX || !pw_wanted(pid_tgid))
		return 0;
	conf = bpf_map_lookup_elem(&nrconf, &key);
	if (!conf)
		return 0;
	traced = emit_events && (conf->flags & PW_NR_TRACE);
	if (count_syscalls || count_procs)
		pw_count(nr, pid_tgid, false, 0, true);
	if (!traced && !count_syscalls && !count_procs)
		return 0;
	inf.ts = bpf_ktime_get_ns();
	inf.nr = nr;
#pragma unroll
	for (int i = 0; i < 6; i++)
		inf.args[i] = uargs[i];
	if (traced && (conf->flags & PW_NR_NORETURN))
		pw_emit_syscall(PW_EV_SYS_ENTER, nr, inf.args, 0, 0, pid_tgid, conf);
	bpf_map_update_elem(&inflight, &tid, &inf, BPF_ANY);
	return 0;
}

static __always_inline int pw_sys_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, key;
	struct pw_inflight *inf;
	struct pw_nrconf *conf;
	__u64 dur;

	inf = bpf_map_lookup_elem(&inflight, &tid);
	if (!inf)
		return 0;
	dur = bpf_ktime_get_ns() - inf->ts;
	key = inf->nr;
	if (count_syscalls || count_procs)
		pw_count(inf->nr, pid_tgid, ret < 0 && ret > -4096, dur, false);
	if (emit_events && key < PW_NR_MAX) {
		conf = bpf_map_lookup_elem(&nrconf, &key);
		if (conf && (conf->flags & PW_NR_TRACE)) {
			/* execve: entry went out at entry; this carries the return */
			if (conf->flags & PW_NR_NORETURN) {
				struct pw_nrconf none = {.argv_arg = -1};

				pw_emit_syscall(PW_EV_SYSCALL, inf->nr, inf->args, ret, inf->ts,
						pid_tgid, &none);
			} else {
				pw_emit_syscall(PW_EV_SYSCALL, inf->nr, inf->args, ret, inf->ts,
						pid_tgid, conf);
			}
		}
	}
	bpf_map_delete_elem(&inflight, &tid);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int pw_raw_enter(struct pw_raw_enter_ctx *ctx)
{
	/* ctx fields only at constant offsets: copy the arguments out first */
	unsigned long a[6] = {ctx->args[0], ctx->args[1], ctx->args[2],
			      ctx->args[3], ctx->args[4], ctx->args[5]};

	return pw_sys_enter((__s32)ctx->id, a);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int pw_raw_exit(struct pw_raw_exit_ctx *ctx)
{
	return pw_sys_exit(ctx->ret);
}

/*
 * syscalls:sys_enter_X records hold only X's arguments: a program that reads past
 * the record may not attach (EACCES), so there is one program per argument count.
 * The section name is a placeholder; user space attaches to the chosen tracepoints.
 */
#define PW_ONE_ENTER(N)                                                        \
	SEC("tracepoint/syscalls/sys_enter_getppid")                             \
	int pw_one_enter##N(struct pw_one_enter_ctx *ctx)                        \
	{                                                                      \
		unsigned long a[6] = {};                                       \
		if (N > 0) a[0] = ctx->args[0];                                \
		if (N > 1) a[1] = ctx->args[1];                                \
		if (N > 2) a[2] = ctx->args[2];                                \
		if (N > 3) a[3] = ctx->args[3];                                \
		if (N > 4) a[4] = ctx->args[4];                                \
		if (N > 5) a[5] = ctx->args[5];                                \
		return pw_sys_enter(ctx->nr, a);                               \
	}

PW_ONE_ENTER(0)
PW_ONE_ENTER(1)
PW_ONE_ENTER(2)
PW_ONE_ENTER(3)
PW_ONE_ENTER(4)
PW_ONE_ENTER(5)
PW_ONE_ENTER(6)

SEC("tracepoint/syscalls/sys_exit_openat")
int pw_one_exit(struct pw_one_exit_ctx *ctx)
{
	return pw_sys_exit(ctx->ret);
}

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	struct pw_fork e;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!pw_follow_fork(ctx) || !emit_lifecycle || !pw_wanted(pid_tgid))
		return 0;
	pw_fill_hdr(&e.h, PW_EV_FORK, pid_tgid);
	e.child_tid = BPF_CORE_READ(ctx, child_pid);
	e.child_pid = e.child_tid;
	pw_submit(&e, sizeof(e));
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int pw_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct pw_scratch *s = pw_scratch();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_exec *e;
	unsigned int loc;
	long n;

	if (!emit_lifecycle || !s || !pw_wanted(pid_tgid))
		return 0;
	e = (struct pw_exec *)s->buf;
	pw_fill_hdr(&e->h, PW_EV_EXEC, pid_tgid);
	e->old_tid = BPF_CORE_READ(ctx, old_pid);
	loc = BPF_CORE_READ(ctx, __data_loc_filename) & 0xffff;
	n = bpf_probe_read_kernel_str(e->fname, sizeof(e->fname), (void *)ctx + loc);
	e->fname_len = n > 0 ? n : 0;
	pw_submit(e, sizeof(*e));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int pw_exit(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct pw_exit e;

	/* only the last thread of a process (signal->live dropped to 0 before) */
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	if (emit_lifecycle && pw_wanted(pid_tgid)) {
		pw_fill_hdr(&e.h, PW_EV_EXIT, pid_tgid);
		e.exit_code = BPF_CORE_READ(t, exit_code);
		e._pad = 0;
		e.start_ns = BPF_CORE_READ(t, start_time);
		pw_submit(&e, sizeof(e));
	}
	if (filter_pids)
		bpf_map_delete_elem(&pids, &tgid);
	return 0;
}
