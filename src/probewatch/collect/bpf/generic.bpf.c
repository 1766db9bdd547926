// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * generic.bpf.c: the BPF backend of "probewatch trace" (probewatch.bpf_trace).
 *
 * pw_tp: one program for every tracepoint. It copies the raw record (the bytes
 * ftrace would store: fixed part plus the __data_loc data after it) into a ring
 * buffer record after a struct pw_gen_hdr; user space decodes it with the same
 * EventFormat decoder as ftrace records. The BPF cookie of each attachment is its
 * slot in map "tpconf" (event id, fixed size, where the dynamic fields' locators
 * are). The first 8 bytes of a tracepoint's BPF context hold a pt_regs pointer,
 * not the common fields: they are rebuilt (common_type, common_pid; flags and
 * preempt_count are 0).
 *
 * pw_uprobe: one program for every uprobe / uretprobe; the cookie is the slot in
 * map "uconf", which describes how to fetch each argument from pt_regs and user
 * memory (probewatch.h, struct pw_uarg).
 *
 * Counting (map "slot_counts") happens before emission; with "emit" off (count
 * mode) nothing goes to the ring buffer.
 */
#include "common.bpf.h"

const volatile bool emit = true;
const volatile __u32 tp_max = PW_TP_DATA_MAX; /* raw record bytes copied at most */
const volatile __u32 ustr_max = 256;          /* bytes per string argument (NUL incl.) */
const volatile __u32 stack_mode = 0;          /* PW_STACK_* bits: stacks after the data */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PW_GEN_SLOTS);
	__type(key, __u32);
	__type(value, struct pw_tpconf);
} tpconf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PW_GEN_SLOTS);
	__type(key, __u32);
	__type(value, struct pw_uconf);
} uconf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_GEN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} slot_counts SEC(".maps");

struct pw_tp_buf {
	struct pw_gen_hdr h;
	/* twice the maximum: the verifier is shown a read's size fits with one mask; the
	 * stacks go after the data (at most PW_TP_DATA_MAX + PW_STACK_AREA) */
	__u8 data[2 * PW_TP_DATA_MAX + PW_STACK_AREA];
};

struct pw_u_buf {
	struct pw_gen_hdr h;
	struct pw_urec r;
	/* 2 * PW_USTR_AREA: a read of up to PW_USTR_AREA bytes at any offset below
	 * PW_USTR_AREA stays inside, which is how the verifier is shown it does */
	__u8 data[2 * PW_USTR_AREA + PW_STACK_AREA];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_tp_buf);
} tp_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_u_buf);
} u_scratch SEC(".maps");

static __always_inline void pw_gen_hdr_fill(struct pw_gen_hdr *h, __u16 kind, __u64 pid_tgid,
					    __u32 slot)
{
	h->kind = kind;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ts = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->slot = slot;
	h->size = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/*
 * The stacks asked for (stack_mode) into data[off..]: a pw_stack_hdr, the kernel ips,
 * the user ips and the same user stack as build-id frames (so user space names frames
 * of a process that has exited). off is the data's size rounded up to 8 and at most
 * 2 * PW_USTR_AREA (data has PW_STACK_AREA bytes more); returns the bytes added.
 */
static __always_inline __u32 pw_stacks(void *ctx, __u8 *data, __u32 off)
{
	struct pw_stack_hdr *sh;
	__u32 k = 0, u = 0, bi = 0;
	long n;

	pw_bound(off, 2 * PW_USTR_AREA - 8);
	sh = (struct pw_stack_hdr *)&data[off];
	if (stack_mode & PW_STACK_KERNEL) {
		n = bpf_get_stack(ctx, &data[off + 16], 8 * PW_KSTACK_MAX, 0);
		if (n > 0)
			k = n;
		pw_bound(k, 2 * 8 * PW_KSTACK_MAX - 1);
		if (k > 8 * PW_KSTACK_MAX)
			k = 8 * PW_KSTACK_MAX;
	}
	if (stack_mode & PW_STACK_USER) {
		n = bpf_get_stack(ctx, &data[off + 16 + k], 8 * PW_USTACK_MAX, BPF_F_USER_STACK);
		if (n > 0)
			u = n;
		pw_bound(u, 2 * 8 * PW_USTACK_MAX - 1);
		if (u > 8 * PW_USTACK_MAX)
			u = 8 * PW_USTACK_MAX;
		n = bpf_get_stack(ctx, &data[off + 16 + k + u], 32 * PW_USTACK_MAX,
				  BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
		if (n > 0)
			bi = n;
		pw_bound(bi, 2 * 32 * PW_USTACK_MAX - 1);
		if (bi > 32 * PW_USTACK_MAX)
			bi = 32 * PW_USTACK_MAX;
	}
	sh->kbytes = k;
	sh->ubytes = u;
	sh->bbytes = bi;
	sh->_pad = 0;
	return 16 + k + u + bi;
}

static __always_inline void pw_slot_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&slot_counts, &slot);

	if (n)
		*n += 1;
}

SEC("tracepoint/sched/sched_process_fork")
int pw_gen_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

SEC("tracepoint")
int pw_tp(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 slot = (__u32)bpf_get_attach_cookie(ctx);
	struct pw_tpconf *c;
	struct pw_tp_buf *b;
	__u32 zero = 0, size, n;

	if (!pw_wanted(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&tpconf, &slot);
	if (!c)
		return 0;
	pw_slot_count(slot);
	if (!emit)
		return 0;
	b = bpf_map_lookup_elem(&tp_scratch, &zero);
	if (!b)
		return 0;
	pw_gen_hdr_fill(&b->h, PW_GEN_TP, pid_tgid, slot);
	size = c->fixed;
	n = c->n_dloc;
	for (int i = 0; i < PW_TP_DLOC_MAX; i++) {
		__u32 loc = 0, off, end;

		if (i >= n)
			break;
		off = c->dloc[i];
		if (bpf_probe_read_kernel(&loc, sizeof(loc), ctx + (off & 0x7fff)))
			continue;
		end = (loc & 0xffff) + (loc >> 16);
		if (off & PW_DLOC_REL)
			end += (off & 0x7fff) + 4;
		if (end > size)
			size = end;
	}
	if (size > tp_max) {
		size = tp_max;
		b->h.flags = PW_GEN_TRUNC;
		pw_stat_add(PW_STAT_TRUNC, 1);
	}
	if (size < 8)
		size = 8;
	pw_bound(size, 2 * PW_TP_DATA_MAX - 1);
	if (bpf_probe_read_kernel(b->data, size, ctx)) {
		pw_stat_add(PW_STAT_READ_FAIL, 1);
		return 0;
	}
	/* the common fields (the context's first 8 bytes hold a pt_regs pointer) */
	*(__u16 *)&b->data[0] = c->event_id;
	b->data[2] = 0;
	b->data[3] = 0;
	*(__s32 *)&b->data[4] = (__u32)pid_tgid;
	b->h.size = size;
	if (stack_mode) {
		__u32 off = (size + 7) & ~7U, extra;

		extra = pw_stacks(ctx, b->data, off);
		if (extra) {
			b->h.flags |= PW_GEN_STACK;
			pw_bound(off, 2 * PW_USTR_AREA - 8);
			if (extra > PW_STACK_AREA)
				extra = PW_STACK_AREA;
			pw_submit(b, sizeof(b->h) + off + extra);
			return 0;
		}
	}
	pw_submit(b, sizeof(b->h) + size);
	return 0;
}

static __always_inline int pw_uprobe_common(struct pt_regs *ctx, bool ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 slot = (__u32)bpf_get_attach_cookie(ctx);
	__u64 regs[sizeof(struct pt_regs) / 8];
	struct pw_uconf *c;
	struct pw_u_buf *b;
	__u32 zero = 0, pos = 0, nargs;

	if (!pw_wanted(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&uconf, &slot);
	if (!c)
		return 0;
	pw_slot_count(slot);
	if (!emit)
		return 0;
	b = bpf_map_lookup_elem(&u_scratch, &zero);
	if (!b)
		return 0;
	pw_gen_hdr_fill(&b->h, PW_GEN_UPROBE, pid_tgid, slot);
	if (bpf_probe_read_kernel(regs, sizeof(regs), ctx)) {
		pw_stat_add(PW_STAT_READ_FAIL, 1);
		return 0;
	}
	/* uprobe: the probed address; uretprobe: the function's entry (kernel >= 6.4) */
	b->r.ip = bpf_get_func_ip(ctx);
	b->r.ret_ip = ret ? PT_REGS_IP(ctx) : 0;
	nargs = c->nargs;
	for (int i = 0; i < PW_UARGS_MAX; i++) {
		struct pw_uarg *a = &c->args[i];
		struct pw_uval *u = &b->r.vals[i];
		__u64 v = 0;
		__u32 reg, nd, last;
		long err = 0;

		u->val = 0;
		u->len = 0;
		u->flags = 0;
		u->_pad = 0;
		if (i >= nargs)
			continue;
		reg = a->reg;
		if (reg < sizeof(regs) / 8)
			v = regs[reg];
		nd = a->nderef;
		if (nd > PW_UDEREF_MAX)
			nd = PW_UDEREF_MAX;
		/* the reads before the last one are pointer reads */
		last = nd ? nd - 1 : 0;
		for (int j = 0; j < PW_UDEREF_MAX - 1; j++) {
			__u64 p;

			if (j >= last)
				break;
			p = v + (__s64)a->off[j];
			v = 0;
			err = bpf_probe_read_user(&v, sizeof(v), (void *)p);
			if (err)
				break;
		}
		if (err) {
			u->flags = PW_UVAL_FAULT;
			pw_stat_add(PW_STAT_READ_FAIL, 1);
			continue;
		}
		if (nd == 0) {
			u->val = v;
			continue;
		}
		/* last < PW_UDEREF_MAX here; the barrier keeps clang from dropping the mask
		 * (older verifiers, e.g. 6.1's, do not carry the bound to a copy of last) */
		barrier_var(last);
		v += (__s64)a->off[last & (PW_UDEREF_MAX - 1)];
		if (a->kind == PW_UARG_INT) {
			__u64 x = 0;
			__u32 sz = a->size;

			if (sz > 8)
				sz = 8;
			if (bpf_probe_read_user(&x, sz, (void *)v)) {
				u->flags = PW_UVAL_FAULT;
				pw_stat_add(PW_STAT_READ_FAIL, 1);
			}
			u->val = x;
			continue;
		}
		if (pos >= PW_USTR_AREA) {
			/* the record is full: later strings/arrays are cut */
			u->flags = PW_UVAL_TRUNC;
			b->h.flags |= PW_GEN_TRUNC;
			pw_stat_add(PW_STAT_TRUNC, 1);
			continue;
		}
		pw_bound(pos, PW_USTR_AREA - 1);
		u->val = pos;
		if (a->kind == PW_UARG_STR) {
			__u32 max = ustr_max;
			long n;

			if (max > PW_USTR_AREA)
				max = PW_USTR_AREA;
			n = bpf_probe_read_user_str(&b->data[pos], max, (void *)v);
			if (n < 0) {
				u->flags = PW_UVAL_FAULT;
				pw_stat_add(PW_STAT_READ_FAIL, 1);
				continue;
			}
			if (n == max) {
				u->flags = PW_UVAL_TRUNC;
				pw_stat_add(PW_STAT_TRUNC, 1);
			}
			u->len = n;
			pos += n;
		} else {
			__u32 sz = a->size;

			if (sz > 512)
				sz = 512;
			if (bpf_probe_read_user(&b->data[pos], sz, (void *)v)) {
				u->flags = PW_UVAL_FAULT;
				pw_stat_add(PW_STAT_READ_FAIL, 1);
				continue;
			}
			u->len = sz;
			pos += sz;
		}
	}
	pw_bound(pos, 2 * PW_USTR_AREA - 1);
	b->h.size = sizeof(b->r) + pos;
	if (stack_mode) {
		__u32 off = (pos + 7) & ~7U, extra;

		extra = pw_stacks(ctx, b->data, off);
		if (extra) {
			b->h.flags |= PW_GEN_STACK;
			pw_bound(off, 2 * PW_USTR_AREA - 8);
			if (extra > PW_STACK_AREA)
				extra = PW_STACK_AREA;
			pw_submit(b, sizeof(b->h) + sizeof(b->r) + off + extra);
			return 0;
		}
	}
	pw_submit(b, sizeof(b->h) + sizeof(b->r) + pos);
	return 0;
}

SEC("uprobe")
int pw_uprobe(struct pt_regs *ctx)
{
	return pw_uprobe_common(ctx, false);
}

SEC("uretprobe")
int pw_uretprobe(struct pt_regs *ctx)
{
	return pw_uprobe_common(ctx, true);
}

/* ------------------------------------------------------------------------------------
 * In-kernel aggregation (agg.h): pw_tp_agg, pw_uprobe_agg and pw_uretprobe_agg take the
 * place of pw_tp / pw_uprobe / pw_uretprobe when "trace --hist / --by / --latency" runs
 * on the bpf backend. They count the slot like the others, then update map "agg"
 * instead of emitting a record.
 */
#include "agg.h"

#ifndef EEXIST
#define EEXIST 17
#endif

const volatile __u32 agg_keys = 0;  /* PW_AGGK_* */
const volatile __u32 agg_hist = 0;  /* PW_AGGH_* */
const volatile __u64 agg_step = 1;  /* PW_AGGH_LINEAR */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PW_GEN_SLOTS);
	__type(key, __u32);
	__type(value, struct pw_aggconf);
} aggconf SEC(".maps");

/* max_entries set by user space (trace --agg-keys) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct pw_agg_key);
	__type(value, struct pw_agg_val);
} agg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct pw_agg_start_key);
	__type(value, __u64);
} agg_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PW_AGGST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} agg_stats SEC(".maps");

static __always_inline void pw_agg_stat(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&agg_stats, &i);

	if (n)
		*n += 1;
}

/* x (size bytes, zero-extended) as a number: sign-extended when sign */
static __always_inline __s64 pw_agg_ext(__u64 x, __u32 size, __u32 sign)
{
	__u32 sh;

	if (size >= 8 || size == 0)
		return (__s64)x;
	sh = 64 - size * 8;
	x <<= sh;
	return sign ? ((__s64)x) >> sh : (__s64)(x >> sh);
}

/* Python's int.bit_length() */
static __always_inline __u32 pw_bitlen(__u64 v)
{
	__u32 n = 0;

	if (!v)
		return 0;
	if (v >> 32) { v >>= 32; n += 32; }
	if (v >> 16) { v >>= 16; n += 16; }
	if (v >> 8) { v >>= 8; n += 8; }
	if (v >> 4) { v >>= 4; n += 4; }
	if (v >> 2) { v >>= 2; n += 2; }
	if (v >> 1) { n += 1; }
	return n + 1;
}

/* the histogram bucket of v (as analyze/aggregate.py's log2_index / linear_index) */
static __always_inline __s64 pw_agg_bucket(__u64 v, bool sign, __u32 hist)
{
	__u64 step = agg_step ? agg_step : 1;

	if (hist == PW_AGGH_LOG2) {
		if (sign && (__s64)v < 0)
			return 0;
		return pw_bitlen(v) + 1;
	}
	if (hist == PW_AGGH_LINEAR) {
		if (sign && (__s64)v < 0) /* floor division of a negative number */
			return -(__s64)((-(__s64)v - 1) / step) - 1;
		return (__s64)(v / step);
	}
	return 0;
}

/* one event (or one latency) into map "agg" */
static __always_inline void pw_agg_add(struct pw_agg_key *k, __u64 v)
{
	struct pw_agg_val *val, init = { .count = 1, .sum = v };
	long err;

	val = bpf_map_lookup_elem(&agg, k);
	if (!val) {
		err = bpf_map_update_elem(&agg, k, &init, BPF_NOEXIST);
		if (!err)
			return;
		if (err != -EEXIST) { /* full */
			pw_agg_stat(PW_AGGST_FULL);
			return;
		}
		val = bpf_map_lookup_elem(&agg, k); /* another CPU made it meanwhile */
		if (!val) {
			pw_agg_stat(PW_AGGST_FULL);
			return;
		}
	}
	val->count += 1;
	val->sum += v;
}

static __always_inline void pw_agg_key_init(struct pw_agg_key *k, __u64 pid_tgid, __u32 slot)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (agg_keys & PW_AGGK_COMM)
		bpf_get_current_comm(k->comm, sizeof(k->comm));
	if (agg_keys & PW_AGGK_PID)
		k->pid = pid_tgid >> 32;
	if (agg_keys & PW_AGGK_TID)
		k->tid = (__u32)pid_tgid;
	if (agg_keys & PW_AGGK_CPU)
		k->cpu = bpf_get_smp_processor_id();
	if (agg_keys & PW_AGGK_SLOT)
		k->slot = slot;
}

/* a number that is not a field: pid, tid, cpu; false for the others */
static __always_inline bool pw_agg_task_num(struct pw_aggsrc *s, __u64 pid_tgid, __u64 *v)
{
	switch (s->kind) {
	case PW_AGGS_PID:
		*v = pid_tgid >> 32;
		return true;
	case PW_AGGS_TID:
		*v = (__u32)pid_tgid;
		return true;
	case PW_AGGS_CPU:
		*v = bpf_get_smp_processor_id();
		return true;
	}
	return false;
}

/* a tracepoint's number (false: the event has none) */
static __always_inline bool pw_agg_tp_num(void *ctx, struct pw_aggsrc *s, __u64 pid_tgid,
					  __u64 *v)
{
	__u64 x = 0;
	__u32 sz;

	if (s->kind != PW_AGGS_TP)
		return pw_agg_task_num(s, pid_tgid, v);
	sz = s->size;
	if (sz > 8)
		sz = 8;
	if (sz == 0)
		sz = 1;
	if (bpf_probe_read_kernel(&x, sz, ctx + (s->off & 0x7fff)))
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	*v = pw_agg_ext(x, sz, s->sign);
	return true;
}

/* an INT argument of a uprobe, fetched as pw_uprobe_common does (0 when a read faults) */
static __always_inline __u64 pw_agg_uarg(__u64 *regs, struct pw_uarg *a)
{
	__u64 v = 0;
	__u32 reg, nd, last;
	long err = 0;

	reg = a->reg;
	if (reg < sizeof(struct pt_regs) / 8)
		v = regs[reg];
	nd = a->nderef;
	if (nd > PW_UDEREF_MAX)
		nd = PW_UDEREF_MAX;
	if (nd == 0)
		return v;
	last = nd - 1;
	for (int j = 0; j < PW_UDEREF_MAX - 1; j++) {
		__u64 p;

		if (j >= last)
			break;
		p = v + (__s64)a->off[j];
		v = 0;
		err = bpf_probe_read_user(&v, sizeof(v), (void *)p);
		if (err)
			break;
	}
	if (err) {
		pw_stat_add(PW_STAT_READ_FAIL, 1);
		return 0;
	}
	barrier_var(last);
	v += (__s64)a->off[last & (PW_UDEREF_MAX - 1)];
	{
		__u64 x = 0;
		__u32 sz = a->size;

		if (sz > 8)
			sz = 8;
		if (sz == 0)
			sz = 1;
		if (bpf_probe_read_user(&x, sz, (void *)v))
			pw_stat_add(PW_STAT_READ_FAIL, 1);
		return x;
	}
}

static __always_inline bool pw_agg_u_num(__u64 *regs, struct pw_uconf *uc, struct pw_aggsrc *s,
					 __u64 pid_tgid, __u64 *v)
{
	struct pw_uarg *a;
	__u32 i;

	if (s->kind != PW_AGGS_UARG)
		return pw_agg_task_num(s, pid_tgid, v);
	i = s->off;
	if (i >= PW_UARGS_MAX)
		return false;
	a = &uc->args[i];
	*v = pw_agg_ext(pw_agg_uarg(regs, a), a->size, s->sign);
	return true;
}

/* --latency: an enter remembers its time, an exit adds the time since into "agg" */
static __always_inline bool pw_agg_latency(struct pw_aggconf *c, __u64 pid_tgid, __u64 *d)
{
	struct pw_agg_start_key sk = { .tid = (__u32)pid_tgid, .pair = c->pair };
	__u64 now = bpf_ktime_get_ns(), *t0;
	long err;

	if (c->role == PW_AGGR_ENTER) {
		err = bpf_map_update_elem(&agg_start, &sk, &now, BPF_NOEXIST);
		if (err == -EEXIST) { /* an enter without its exit: overwritten */
			pw_agg_stat(PW_AGGST_UNMATCHED);
			bpf_map_update_elem(&agg_start, &sk, &now, BPF_ANY);
		} else if (err) {
			pw_agg_stat(PW_AGGST_START_FULL);
		}
		return false;
	}
	t0 = bpf_map_lookup_elem(&agg_start, &sk);
	if (!t0) {
		pw_agg_stat(PW_AGGST_UNMATCHED);
		return false;
	}
	*d = now - *t0;
	if (now < *t0) {
		bpf_map_delete_elem(&agg_start, &sk);
		pw_agg_stat(PW_AGGST_UNMATCHED);
		return false;
	}
	bpf_map_delete_elem(&agg_start, &sk);
	return true;
}

SEC("tracepoint")
int pw_tp_agg(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 slot = (__u32)bpf_get_attach_cookie(ctx);
	struct pw_aggconf *c;
	struct pw_agg_key k;
	__u64 v = 0, f = 0;

	if (!pw_wanted(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&aggconf, &slot);
	if (!c)
		return 0;
	pw_slot_count(slot);
	if (c->role == PW_AGGR_SKIP)
		return 0;
	if (c->role != PW_AGGR_AGG) {
		if (!pw_agg_latency(c, pid_tgid, &v))
			return 0;
	} else if (c->value.kind != PW_AGGS_NONE) {
		if (!pw_agg_tp_num(ctx, &c->value, pid_tgid, &v))
			return 0;
	}
	pw_agg_key_init(&k, pid_tgid, slot);
	k.pair = c->pair;
	if (c->key[0].kind != PW_AGGS_NONE && pw_agg_tp_num(ctx, &c->key[0], pid_tgid, &f))
		k.f[0] = f;
	if (c->key[1].kind != PW_AGGS_NONE && pw_agg_tp_num(ctx, &c->key[1], pid_tgid, &f))
		k.f[1] = f;
	k.bucket = pw_agg_bucket(v, c->role == PW_AGGR_AGG && c->value.sign, agg_hist);
	pw_agg_add(&k, v);
	return 0;
}

static __always_inline int pw_uprobe_agg_common(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 slot = (__u32)bpf_get_attach_cookie(ctx);
	__u64 regs[sizeof(struct pt_regs) / 8];
	struct pw_aggconf *c;
	struct pw_uconf *uc;
	struct pw_agg_key k;
	__u64 v = 0, f = 0;

	if (!pw_wanted(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&aggconf, &slot);
	uc = bpf_map_lookup_elem(&uconf, &slot);
	if (!c || !uc)
		return 0;
	pw_slot_count(slot);
	if (c->role == PW_AGGR_SKIP)
		return 0;
	if (c->role != PW_AGGR_AGG) {
		if (!pw_agg_latency(c, pid_tgid, &v))
			return 0;
		if (c->key[0].kind == PW_AGGS_NONE) { /* nothing to read from the registers */
			pw_agg_key_init(&k, pid_tgid, slot);
			k.pair = c->pair;
			k.bucket = pw_agg_bucket(v, false, agg_hist);
			pw_agg_add(&k, v);
			return 0;
		}
	}
	/* the arguments: the registers (user space fills key[0] before key[1]) */
	if (bpf_probe_read_kernel(regs, sizeof(regs), ctx)) {
		pw_stat_add(PW_STAT_READ_FAIL, 1);
		return 0;
	}
	if (c->role == PW_AGGR_AGG && c->value.kind != PW_AGGS_NONE &&
	    !pw_agg_u_num(regs, uc, &c->value, pid_tgid, &v))
		return 0;
	pw_agg_key_init(&k, pid_tgid, slot);
	k.pair = c->pair;
	if (c->key[0].kind != PW_AGGS_NONE && pw_agg_u_num(regs, uc, &c->key[0], pid_tgid, &f))
		k.f[0] = f;
	if (c->key[1].kind != PW_AGGS_NONE && pw_agg_u_num(regs, uc, &c->key[1], pid_tgid, &f))
		k.f[1] = f;
	k.bucket = pw_agg_bucket(v, c->role == PW_AGGR_AGG && c->value.sign, agg_hist);
	pw_agg_add(&k, v);
	return 0;
}

SEC("uprobe")
int pw_uprobe_agg(struct pt_regs *ctx)
{
	return pw_uprobe_agg_common(ctx);
}

SEC("uretprobe")
int pw_uretprobe_agg(struct pt_regs *ctx)
{
	return pw_uprobe_agg_common(ctx);
}
