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
const volatile bool exec_info = false;       /* PW_EV_EXEC_INFO / PW_EV_FORK_INFO */
const volatile __u32 xargv_max = 4096;       /* exec info: argv bytes */
const volatile __u32 xenv_max = 8192;        /* exec info: environment bytes */

struct pw_inflight {
	__u64 ts;
	__u64 args[6];
	__s32 nr;
	__u32 inlen; /* *addrlen at entry (a PW_ARG_SOCKADDR_OUT's length argument) */
	__u64 fds[3]; /* select: the first 64 bits of each fd_set argument (1-3) at entry */
	__u64 ts_in[2]; /* ppoll/select: the timeout as passed in (the call updates it) */
};

struct pw_scratch {
	/* 2 * PW_DATA_SIZE: room for a string read at the end of the blob area, and
	 * lets the verifier bound a record's size with one mask */
	__u8 buf[sizeof(struct pw_syscall) + 2 * PW_DATA_SIZE];
	__u32 inlen; /* pw_inflight.inlen of the record being built */
	__u32 _pad;
	__u64 fds[3]; /* pw_inflight.fds of the record being built */
	__u64 ts_in[2]; /* pw_inflight.ts_in of the record being built */
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

/* walking a getdents64 buffer or a pointer array (bpf_loop) */
struct pw_walk_state {
	__u64 a;     /* user address */
	__u64 end;   /* dirents: the buffer's end (a + ret) */
	__u32 count;
	__u32 flags;
};

/* one linux_dirent64: its d_reclen (a u16 at offset 16) leads to the next */
static long pw_dirent_one(__u32 j, struct pw_walk_state *st)
{
	__u16 reclen = 0;

	if (st->a + 19 > st->end)
		return 1;
	if (bpf_probe_read_user(&reclen, sizeof(reclen), (const void *)(st->a + 16))) {
		st->flags |= PW_BLOB_FAULT;
		return 1;
	}
	if (reclen < 19)
		return 1;
	st->a += reclen;
	st->count++;
	return 0;
}

/* one pointer of a NULL-terminated array (envp) */
static long pw_ptr_one(__u32 j, struct pw_walk_state *st)
{
	__u64 p = 0;

	if (bpf_probe_read_user(&p, sizeof(p), (const void *)(st->a + (__u64)j * 8))) {
		st->flags |= PW_BLOB_FAULT;
		return 1;
	}
	if (!p)
		return 1;
	st->count++;
	return 0;
}

#define PW_WALK_MAX 65535

/*
 * Capture argument i ((ik >> 8) & 0xff) of kind k (ik & 0xff) into the blob area at
 * @off, with the element size (ik >> 16) of the PW_ARG_MEM* kinds; returns the new
 * offset. Global (verified once, on its own) to keep the callers' verifier state
 * small; BPF calls take at most five arguments.
 */
__noinline __u32 pw_read_blob(__u32 off, __u32 ik, __u64 a, __u64 next, __s64 ret)
{
	struct pw_scratch *s = pw_scratch();
	__u32 i = (ik >> 8) & 0xff, k = ik & 0xff, esize = ik >> 16;
	__u32 count = 0;
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
	if (k == PW_ARG_TS_INOUT) {
		__u64 v[4] = {s->ts_in[0], s->ts_in[1], 0, 0};

		if (bpf_probe_read_user(&v[2], 16, (const void *)a))
			flags = PW_BLOB_FAULT;
		__builtin_memcpy(data, v, sizeof(v));
		n = sizeof(v);
		goto done;
	}
	if (k == PW_ARG_FDSET) {
		__u64 v[2] = {};
		__u32 j = i - 1;

		if (j < 3)
			v[0] = s->fds[j];
		if (bpf_probe_read_user(&v[1], sizeof(v[1]), (const void *)a))
			flags = PW_BLOB_FAULT;
		__builtin_memcpy(data, v, sizeof(v));
		n = sizeof(v);
		goto done;
	}
	if (k == PW_ARG_DIRENTS || k == PW_ARG_PTRS) {
		struct pw_walk_state st = {.a = a};

		if (k == PW_ARG_DIRENTS) {
			if (ret <= 0)
				goto done;
			st.end = a + (__u64)ret;
			bpf_loop(PW_WALK_MAX, pw_dirent_one, &st, 0);
		} else {
			bpf_loop(PW_WALK_MAX, pw_ptr_one, &st, 0);
		}
		flags = st.flags;
		count = st.count;
		goto done;
	}
	if (k == PW_ARG_MEM || k == PW_ARG_MEM_N || k == PW_ARG_MEM_ARG) {
		if (k == PW_ARG_MEM)
			want = esize;
		else if (k == PW_ARG_MEM_N)
			want = next > PW_BUF_MAX ? PW_BUF_MAX + 1 : (__u32)next * esize;
		else
			want = next > esize ? esize + 1 : (__u32)next;
		max = PW_BUF_MAX;
		if (k == PW_ARG_MEM_ARG && esize < max)
			max = esize;
	} else if (k == PW_ARG_STR_OUT) {
		want = ret > 0 ? (ret > PW_BUF_MAX ? PW_BUF_MAX + 1 : (__u32)ret) : 0;
		max = PW_BUF_MAX;
	} else if (k == PW_ARG_BUF_IN || k == PW_ARG_BUF_OUT) {
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

			count = s->inlen > 0xffff ? 0xffff : s->inlen;
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
	b->count = count;
	b->len = n;
	return off + PW_BLOB_HDR + (((__u32)n + 7) & ~7U);
}

/* iovecs: the table and each buffer's first bytes (bpf_loop callback state) */
struct pw_iov_state {
	__u64 a;      /* user struct iovec array */
	__u64 budget; /* bytes the call moved that are left to assign (readv: ret) */
	__u32 tab;    /* blob-area offset of the next table entry */
	__u32 pos;    /* blob-area offset of the next data byte */
	__u32 n;      /* entries to read */
	__u32 got;    /* entries read */
	__u32 cap;    /* bytes shown per buffer (buf_max) */
	__u32 flags;
};

static long pw_iov_one(__u32 j, struct pw_iov_state *st)
{
	struct pw_scratch *s = pw_scratch();
	struct { __u64 base; __u64 len; } iov = {};
	struct pw_iov_ent *ent;
	__u32 tab = st->tab, pos = st->pos, want;
	__u64 fill;
	__u8 *area;

	if (!s || j >= st->n)
		return 1;
	if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(st->a + (__u64)j * 16))) {
		st->flags |= PW_BLOB_FAULT;
		return 1;
	}
	if (tab > PW_DATA_SIZE - sizeof(struct pw_iov_ent)) {
		st->flags |= PW_BLOB_TRUNC;
		return 1;
	}
	area = s->buf + sizeof(struct pw_syscall);
	pw_bound(tab, PW_DATA_MASK);
	ent = (struct pw_iov_ent *)(area + tab);
	ent->base = iov.base;
	ent->len = iov.len;
	ent->flags = 0;
	fill = iov.len < st->budget ? iov.len : st->budget;
	st->budget -= fill;
	want = fill > st->cap ? st->cap : (__u32)fill;
	if (pos >= PW_DATA_SIZE)
		want = 0;
	else if (pos + want > PW_DATA_SIZE)
		want = PW_DATA_SIZE - pos;
	if (want < fill && want < st->cap)
		st->flags |= PW_BLOB_TRUNC; /* no room left in the record */
	pw_bound(pos, PW_DATA_MASK);
	pw_bound(want, PW_BUF_MAX * 2 - 1);
	if (want > PW_BUF_MAX)
		want = PW_BUF_MAX;
	if (want && bpf_probe_read_user(area + pos, want, (const void *)iov.base)) {
		ent->flags = PW_BLOB_FAULT;
		want = 0;
	}
	ent->got = want;
	st->pos = pos + want;
	st->tab = tab + sizeof(struct pw_iov_ent);
	st->got++;
	return 0;
}

/* PW_ARG_IOV_* (a: the iovec array, next: its length) and PW_ARG_MSG_* (a: the msghdr) */
__noinline __u32 pw_read_iov(__u32 off, __u32 ik, __u64 a, __u64 next, __s64 ret)
{
	struct pw_scratch *s = pw_scratch();
	__u32 i = (ik >> 8) & 0xff, k = ik & 0xff;
	struct pw_iov_state st = {};
	struct pw_iov_hdr *h;
	struct pw_blob *b;
	__u32 start, p, flags = 0, name_len = 0, count = 0;
	bool out = k == PW_ARG_IOV_OUT || k == PW_ARG_MSG_OUT;
	__u64 iov = a, cnt = next;
	__u8 *area;

	/* room for the blob and iov headers, a msghdr and a sockaddr */
	if (!s || off > PW_DATA_SIZE - PW_BLOB_HDR - 8 - PW_MSGHDR_SIZE - PW_SOCKADDR_MAX)
		return off;
	pw_bound(off, PW_DATA_MASK);
	area = s->buf + sizeof(struct pw_syscall);
	b = (struct pw_blob *)(area + off);
	start = off + PW_BLOB_HDR;
	st.pos = start + sizeof(struct pw_iov_hdr);
	if (!a) {
		flags = PW_BLOB_NULL;
		goto done;
	}
	if (k == PW_ARG_MSG_IN || k == PW_ARG_MSG_OUT) {
		__u64 name;
		__u32 namelen;
		__u8 *m;

		p = st.pos;
		pw_bound(p, PW_DATA_MASK);
		m = area + p;
		if (bpf_probe_read_user(m, PW_MSGHDR_SIZE, (const void *)a)) {
			flags = PW_BLOB_FAULT;
			goto done;
		}
		name = *(__u64 *)m;
		namelen = *(__u32 *)(m + 8);
		iov = *(__u64 *)(m + 16);
		cnt = *(__u64 *)(m + 24);
		st.pos = p + PW_MSGHDR_SIZE;
		if (k == PW_ARG_MSG_OUT)
			count = s->inlen > 0xffff ? 0xffff : s->inlen;
		if (name && namelen && ret >= 0) {
			__u32 nl = namelen > PW_SOCKADDR_MAX ? PW_SOCKADDR_MAX : namelen;

			p = st.pos;
			pw_bound(p, PW_DATA_MASK);
			pw_bound(nl, PW_SOCKADDR_MAX * 2 - 1);
			if (nl > PW_SOCKADDR_MAX)
				nl = PW_SOCKADDR_MAX;
			if (nl && !bpf_probe_read_user(area + p, nl, (const void *)name))
				name_len = nl;
			st.pos = p + ((name_len + 7) & ~7U);
		}
	}
	st.a = iov;
	st.n = cnt > PW_IOV_MAX ? PW_IOV_MAX : (__u32)cnt;
	if (cnt > PW_IOV_MAX)
		flags |= PW_BLOB_TRUNC;
	st.tab = st.pos;
	st.pos = st.tab + st.n * sizeof(struct pw_iov_ent);
	st.cap = pw_clamp(buf_max, PW_BUF_MAX);
	st.budget = out ? (ret > 0 ? (__u64)ret : 0) : ~0ULL;
	if (iov && st.n)
		bpf_loop(PW_IOV_MAX, pw_iov_one, &st, 0);
	flags |= st.flags;
	if (st.pos > PW_DATA_SIZE)
		st.pos = PW_DATA_SIZE;
done:
	p = start;
	pw_bound(p, PW_DATA_MASK);
	h = (struct pw_iov_hdr *)(area + p);
	h->n = st.got;
	h->name_len = name_len;
	if (flags & PW_BLOB_FAULT)
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	if (flags & PW_BLOB_TRUNC)
		pw_stat_add(PW_STAT_TRUNC, 1);
	b->arg = i;
	b->kind = k;
	b->flags = flags;
	b->count = count;
	if (flags & (PW_BLOB_NULL | PW_BLOB_FAULT) && !st.got)
		st.pos = start + sizeof(struct pw_iov_hdr);
	b->len = st.pos - start;
	return start + (((st.pos - start) + 7) & ~7U);
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

/*
 * Bytes an ioctl request / fcntl command's argument points to (0: an integer, or not
 * decoded): the common terminal and file requests strace shows (asm-generic ioctls.h,
 * x86_64 struct termios 36 bytes, struct winsize 8, struct flock 32).
 */
static __always_inline __u32 pw_cmd_size(__u32 k, __u64 cmd)
{
	if (k == PW_ARG_IOCTL) {
		switch (cmd) {
		case 0x5401: case 0x5402: case 0x5403: case 0x5404: /* TCGETS, TCSETS{,W,F} */
			return 36;
		case 0x5413: case 0x5414: /* TIOCGWINSZ, TIOCSWINSZ */
			return 8;
		case 0x540F: case 0x5410: case 0x541B: case 0x5421: /* [GS]PGRP, FIONREAD, FIONBIO */
			return 4;
		}
		return 0;
	}
	switch (cmd) {
	case 5: case 6: case 7: case 36: case 37: case 38: /* F_{GET,SET,SETW}LK, F_OFD_* */
		return 32;
	}
	return 0;
}

static __always_inline void pw_emit_syscall(__u16 kind, __s32 nr, const __u64 *args, __s64 ret,
					    __u64 ts0, __u64 pid_tgid,
					    const struct pw_nrconf *conf, __u32 inlen,
					    const __u64 *fds, const __u64 *ts_in)
{
	struct pw_scratch *s = pw_scratch();
	struct pw_syscall *e;
	__u32 off = 0;
	__u64 size;
	bool at_exit = kind == PW_EV_SYSCALL;

	if (!s)
		return;
	s->inlen = inlen;
	s->fds[0] = fds[0];
	s->fds[1] = fds[1];
	s->fds[2] = fds[2];
	s->ts_in[0] = ts_in[0];
	s->ts_in[1] = ts_in[1];
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
		if (!at_exit && (k == PW_ARG_BUF_OUT || k == PW_ARG_SOCKADDR_OUT ||
				 k == PW_ARG_DIRENTS || k == PW_ARG_STR_OUT))
			continue;
		__u32 esize = conf->sizes[i];

		if (k == PW_ARG_IOCTL || k == PW_ARG_FCNTL) {
			esize = i > 0 ? pw_cmd_size(k, args[i > 0 ? i - 1 : 0]) : 0;
			if (!esize || !at_exit)
				continue;
			k = PW_ARG_MEM;
		}
		if (k >= PW_ARG_IOV_IN && k <= PW_ARG_MSG_OUT)
			off = pw_read_iov(off, (i << 8) | k, args[i], i < 5 ? args[i + 1] : 0, ret);
		else
			off = pw_read_blob(off, (esize << 16) | (i << 8) | k,
					   args[i], i < 5 ? args[i + 1] : 0, ret);
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
	if (traced) {
		/* accept/getsockname: the buffer length the caller passed in (strace's "128 =>") */
#pragma unroll
		for (int i = 0; i < 5; i++) {
			if (conf->kinds[i] == PW_ARG_SOCKADDR_OUT && uargs[i + 1]) {
				int len = 0;

				if (!bpf_probe_read_user(&len, sizeof(len), (const void *)uargs[i + 1]))
					inf.inlen = len < 0 ? 0 : (__u32)len;
			}
			/* select: the fd sets as passed in (the call overwrites them) */
			if (i >= 1 && i <= 3 && conf->kinds[i] == PW_ARG_FDSET && uargs[i]) {
				__u64 v = 0;

				if (!bpf_probe_read_user(&v, sizeof(v), (const void *)uargs[i]))
					inf.fds[i - 1] = v;
			}
			/* ppoll/select: the timeout as passed in */
			if (conf->kinds[i] == PW_ARG_TS_INOUT && uargs[i])
				bpf_probe_read_user(inf.ts_in, sizeof(inf.ts_in), (const void *)uargs[i]);
			/* recvmsg: msg_namelen as passed in */
			if (conf->kinds[i] == PW_ARG_MSG_OUT && uargs[i]) {
				__u32 len = 0;

				if (!bpf_probe_read_user(&len, sizeof(len), (const void *)(uargs[i] + 8)))
					inf.inlen = len;
			}
		}
	}
	if (traced && (conf->flags & PW_NR_NORETURN))
		pw_emit_syscall(PW_EV_SYS_ENTER, nr, inf.args, 0, 0, pid_tgid, conf, 0, inf.fds,
				inf.ts_in);
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
						pid_tgid, &none, 0, inf->fds, inf->ts_in);
			} else {
				pw_emit_syscall(PW_EV_SYSCALL, inf->nr, inf->args, ret, inf->ts,
						pid_tgid, conf, inf->inlen, inf->fds,
						inf->ts_in);
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
	/* an untraced syscall has no inflight entry: skip the hash look-up */
	if (!count_syscalls && !count_procs) {
		__u32 key = (__u32)ctx->id;
		struct pw_nrconf *conf;

		if (key >= PW_NR_MAX)
			return 0;
		conf = bpf_map_lookup_elem(&nrconf, &key);
		if (!conf || !(conf->flags & PW_NR_TRACE))
			return 0;
	}
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
	if (exec_info) /* pw_fork_info reports new processes (and not threads) */
		return 0;
	pw_fill_hdr(&e.h, PW_EV_FORK, pid_tgid);
	e.child_tid = BPF_CORE_READ(ctx, child_pid);
	e.child_pid = e.child_tid;
	pw_submit(&e, sizeof(e));
	return 0;
}

/* exec info: the record, room for the last piece read at the end, and the cwd */
struct pw_xscratch {
	union {
		__u8 rec[sizeof(struct pw_exec_info) + PW_XDATA_SIZE + PW_XPIECE_MAX];
		/* not used as such: keeps both record types in the BTF (layout test) */
		struct pw_exec_info info;
		struct pw_fork_info fork;
	};
	__u8 cwd[PW_CWD_MAX + 256];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_xscratch);
} xscratch SEC(".maps");

static __always_inline struct pw_xscratch *pw_xscratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xscratch, &zero);
}

/* the cwd is written backwards, from the end of xscratch.cwd */
struct pw_cwd_state {
	struct dentry *d;
	struct mount *m;
	__u32 pos;   /* start of the path written so far */
	__u32 flags;
};

/* one path component (bpf_loop callback): d_parent, crossing mount points upwards */
static long pw_cwd_one(__u32 i, struct pw_cwd_state *st)
{
	struct pw_xscratch *s = pw_xscratch();
	struct dentry *d = st->d, *parent, *mroot;
	struct mount *m = st->m, *mp;
	const unsigned char *name;
	__u32 len, pos;

	if (!s)
		return 1;
	mroot = BPF_CORE_READ(m, mnt.mnt_root);
	parent = BPF_CORE_READ(d, d_parent);
	if (d == mroot || d == parent) {
		mp = BPF_CORE_READ(m, mnt_parent);
		if (d == mroot && mp && mp != m) {
			st->d = BPF_CORE_READ(m, mnt_mountpoint);
			st->m = mp;
			return 0;
		}
		if (d != mroot)
			st->flags |= PW_XI_CWD_UNREACH;
		return 1;
	}
	len = BPF_CORE_READ(d, d_name.len);
	name = BPF_CORE_READ(d, d_name.name);
	pos = st->pos;
	if (len > 255 || len + 1 > pos) {
		st->flags |= PW_XI_CWD_TRUNC;
		return 1;
	}
	pos -= len;
	pw_bound(pos, PW_CWD_MAX - 1);
	pw_bound(len, 255);
	if (bpf_probe_read_kernel(s->cwd + pos, len, name)) {
		st->flags |= PW_XI_CWD_TRUNC;
		return 1;
	}
	pos -= 1;
	pw_bound(pos, PW_CWD_MAX - 1);
	s->cwd[pos] = '/';
	st->pos = pos;
	st->d = parent;
	return 0;
}

/*
 * The environment is walked string by string (bpf_loop, PW_ENV_CHUNK bytes a read) and
 * only strings that start like a variable of interest are kept: LD_*, PYTHON*,
 * BASH_ENV=, ENV=, HIST*, PROMPT_COMMAND=, SSH_C*, SUDO_*, PERL5OPT=, NODE_OPTIONS=,
 * GCONV_PATH= (user space keeps the exact names). So a large environment cannot push
 * LD_PRELOAD out of view. A string longer than a chunk is skipped chunk by chunk.
 */
#define PW_ENV_CHUNK 1024
#define PW_ENV_ITERS 65536 /* strings (or 1 KiB chunks) walked: an env of 6 MiB of 1 KiB strings is 6144 */

struct pw_env_state {
	__u64 p;      /* next user address to read */
	__u64 end;    /* mm->env_end */
	__u32 pos;    /* next free byte of the data area */
	__u32 limit;  /* kept strings end before this */
	__u32 flags;
	__u32 skipping; /* inside a long string: drop up to its NUL */
};

/* d starts with the string literal lit (at most 15 characters); no loop to unroll */
#define PW_B(d, lit, k) (sizeof(lit) - 1 <= (k) || (d)[k] == (__u8)(lit)[(k) & 15])
#define PW_PFX(d, lit)                                                          \
	(PW_B(d, lit, 0) && PW_B(d, lit, 1) && PW_B(d, lit, 2) && PW_B(d, lit, 3) && \
	 PW_B(d, lit, 4) && PW_B(d, lit, 5) && PW_B(d, lit, 6) && PW_B(d, lit, 7) && \
	 PW_B(d, lit, 8) && PW_B(d, lit, 9) && PW_B(d, lit, 10) &&                  \
	 PW_B(d, lit, 11) && PW_B(d, lit, 12) && PW_B(d, lit, 13) && PW_B(d, lit, 14))

static __always_inline bool pw_env_wanted(const __u8 *d)
{
	switch (d[0]) {
	case 'L':
		return PW_PFX(d, "LD_");
	case 'P':
		return PW_PFX(d, "PYTHON") || PW_PFX(d, "PROMPT_COMMAND=") ||
		       PW_PFX(d, "PERL5OPT=");
	case 'B':
		return PW_PFX(d, "BASH_ENV=");
	case 'E':
		return PW_PFX(d, "ENV=");
	case 'H':
		return PW_PFX(d, "HIST");
	case 'S':
		return PW_PFX(d, "SSH_C") || PW_PFX(d, "SUDO_");
	case 'N':
		return PW_PFX(d, "NODE_OPTIONS=");
	case 'G':
		return PW_PFX(d, "GCONV_PATH=");
	}
	return false;
}

static long pw_env_one(__u32 i, struct pw_env_state *st)
{
	struct pw_xscratch *s = pw_xscratch();
	__u32 pos = st->pos, lim;
	const __u8 *d;
	long n;

	if (!s || st->p >= st->end)
		return 1;
	if (pos + 2 > st->limit || pos + 2 > PW_XDATA_SIZE) {
		st->flags |= PW_XI_ENV_TRUNC;
		return 1;
	}
	lim = PW_XDATA_SIZE - pos;
	if (lim > PW_ENV_CHUNK)
		lim = PW_ENV_CHUNK;
	pw_bound(pos, PW_XDATA_MASK);
	pw_bound(lim, 2 * PW_ENV_CHUNK - 1);
	if (lim > PW_ENV_CHUNK)
		lim = PW_ENV_CHUNK;
	if (lim < 2)
		return 1;
	d = s->rec + sizeof(struct pw_exec_info) + pos;
	n = bpf_probe_read_user_str((void *)d, lim, (const void *)st->p);
	if (n <= 0) {
		st->flags |= PW_XI_ENV_FAULT;
		return 1;
	}
	if (!st->skipping && pw_env_wanted(d)) {
		if (pos + n > st->limit) {
			st->flags |= PW_XI_ENV_TRUNC;
			return 1;
		}
		if (n == lim)
			st->flags |= PW_XI_ENV_TRUNC; /* the value is cut */
		st->pos = pos + n;
	}
	/* n == lim: the string goes on past this chunk (its last byte became the NUL) */
	if (n == lim) {
		st->skipping = 1;
		st->p += n - 1;
	} else {
		st->skipping = 0;
		st->p += n;
	}
	return 0;
}

/* copy n bytes from src (user or kernel memory) to the data area at pos; returns bytes */
static __always_inline __u32 pw_xpiece(struct pw_xscratch *s, __u32 pos, const void *src,
				       __u32 n, bool user)
{
	__u32 room;

	if (pos >= PW_XDATA_SIZE || !n)
		return 0;
	room = PW_XDATA_SIZE - pos;
	if (n > room)
		n = room;
	pw_bound(pos, PW_XDATA_MASK);
	pw_bound(n, PW_XPIECE_MAX * 2 - 1);
	if (n > PW_XPIECE_MAX)
		n = PW_XPIECE_MAX;
	if (user ? bpf_probe_read_user(s->rec + sizeof(struct pw_exec_info) + pos, n, src)
		 : bpf_probe_read_kernel(s->rec + sizeof(struct pw_exec_info) + pos, n, src))
		return 0;
	return n;
}

/* fname: the exec'd path is already at the start of the data area, n bytes with its NUL */
__noinline int pw_exec_info_emit(__u32 fname_n)
{
	struct pw_xscratch *s = pw_xscratch();
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_cwd_state cw = {};
	struct pw_exec_info *e;
	struct mm_struct *mm;
	struct vfsmount *vm;
	__u64 a, b, size;
	__u32 pos = 0, n, want;
	long r;

	if (!s)
		return 0;
	e = (struct pw_exec_info *)s->rec;
	pw_fill_hdr(&e->h, PW_EV_EXEC_INFO, pid_tgid);
	e->h.kind = PW_EV_EXEC_INFO;
	e->flags = 0;
	e->euid = BPF_CORE_READ(t, cred, euid.val);
	e->egid = BPF_CORE_READ(t, cred, egid.val);
	e->suid = BPF_CORE_READ(t, cred, suid.val);
	e->sgid = BPF_CORE_READ(t, cred, sgid.val);
	e->h.uid = BPF_CORE_READ(t, cred, uid.val);
	e->h.gid = BPF_CORE_READ(t, cred, gid.val);
	e->loginuid = 0xffffffff;
	e->sessionid = 0xffffffff;
	if (bpf_core_field_exists(t->loginuid)) {
		e->loginuid = BPF_CORE_READ(t, loginuid.val);
		e->sessionid = BPF_CORE_READ(t, sessionid);
	}
	e->start_ns = BPF_CORE_READ(t, start_time);
	e->start_boottime = BPF_CORE_READ(t, start_boottime);
	e->parent_start_boottime = BPF_CORE_READ(t, real_parent, start_boottime);
	e->cap_effective = 0;
	BPF_CORE_READ_INTO(&e->cap_effective, t, cred, cap_effective);
	e->_pad[0] = e->_pad[1] = 0;

	n = fname_n > PW_STR_MAX ? PW_STR_MAX : fname_n;
	if (n == PW_STR_MAX)
		e->flags |= PW_XI_FNAME_TRUNC;
	e->fname_len = n;
	pos = n;

	/* the cwd: walk task->fs->pwd up to the root */
	cw.d = BPF_CORE_READ(t, fs, pwd.dentry);
	vm = BPF_CORE_READ(t, fs, pwd.mnt);
	cw.m = (struct mount *)((void *)vm - bpf_core_field_offset(struct mount, mnt));
	cw.pos = PW_CWD_MAX;
	if (cw.d)
		bpf_loop(PW_CWD_DEPTH, pw_cwd_one, &cw, 0);
	e->flags |= cw.flags;
	if (cw.d && cw.pos < PW_CWD_MAX && !(cw.flags & (PW_XI_CWD_TRUNC | PW_XI_CWD_UNREACH))) {
		/* stopped before the root: deeper than PW_CWD_DEPTH? */
		struct dentry *d = cw.d;
		struct mount *m = cw.m;

		if (d != BPF_CORE_READ(m, mnt.mnt_root) || BPF_CORE_READ(m, mnt_parent) != m)
			e->flags |= PW_XI_CWD_TRUNC;
	}
	n = 0;
	if (cw.pos < PW_CWD_MAX) {
		__u32 p = cw.pos;

		pw_bound(p, PW_CWD_MAX - 1);
		n = pw_xpiece(s, pos, s->cwd + p, PW_CWD_MAX - p, false);
	} else {
		s->cwd[0] = '/';
		n = pw_xpiece(s, pos, s->cwd, 1, false);
	}
	e->cwd_len = n;
	pos += n;

	mm = BPF_CORE_READ(t, mm);
	e->argv_len = 0;
	e->env_len = 0;
	if (!mm) {
		e->flags |= PW_XI_NO_MM;
	} else {
		/* argv: the new image's arguments, NUL-separated */
		a = BPF_CORE_READ(mm, arg_start);
		b = BPF_CORE_READ(mm, arg_end);
		want = b > a ? (b - a > 0xffff ? 0xffff : b - a) : 0;
		if (want > xargv_max) {
			want = xargv_max;
			e->flags |= PW_XI_ARGV_TRUNC;
		}
		n = pw_xpiece(s, pos, (const void *)a, want, true);
		if (n < want)
			e->flags |= n ? PW_XI_ARGV_TRUNC : PW_XI_ARGV_FAULT;
		e->argv_len = n;
		pos += n;
		/* the environment: only the variables of interest, wherever they are */
		struct pw_env_state es = {};

		es.p = BPF_CORE_READ(mm, env_start);
		es.end = BPF_CORE_READ(mm, env_end);
		es.pos = pos;
		es.limit = pos + (xenv_max > PW_XPIECE_MAX ? PW_XPIECE_MAX : xenv_max);
		if (es.limit > PW_XDATA_SIZE)
			es.limit = PW_XDATA_SIZE;
		if (es.p < es.end)
			bpf_loop(PW_ENV_ITERS, pw_env_one, &es, 0);
		if (es.p < es.end && !(es.flags & PW_XI_ENV_FAULT))
			es.flags |= PW_XI_ENV_TRUNC;
		e->flags |= es.flags;
		n = es.pos > pos ? es.pos - pos : 0;
		e->env_len = n;
		pos += n;
	}
	if (e->flags & (PW_XI_ARGV_FAULT | PW_XI_ENV_FAULT))
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	if (e->flags & (PW_XI_FNAME_TRUNC | PW_XI_CWD_TRUNC | PW_XI_ARGV_TRUNC | PW_XI_ENV_TRUNC))
		pw_stat_add(PW_STAT_TRUNC, 1);

	/* the cgroup's own name (cgroup v2): a container runtime puts the id there */
	e->cgname_len = 0;
	if (pos < PW_XDATA_SIZE - PW_CGNAME_MAX) {
		const char *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, name);
		__u32 p = pos;

		pw_bound(p, PW_XDATA_MASK);
		r = cg ? bpf_probe_read_kernel_str(s->rec + sizeof(struct pw_exec_info) + p,
						   PW_CGNAME_MAX, cg) : 0;
		if (r > 1) {
			e->cgname_len = r - 1;
			pos += r - 1;
		}
	}
	/* the executable file's own name: what ran (a symlink's target, an interpreter) */
	e->exe_len = 0;
	if (mm && pos < PW_XDATA_SIZE - 256) {
		const unsigned char *xn = BPF_CORE_READ(mm, exe_file, f_path.dentry, d_name.name);
		__u32 p = pos;

		pw_bound(p, PW_XDATA_MASK);
		r = xn ? bpf_probe_read_kernel_str(s->rec + sizeof(struct pw_exec_info) + p, 256,
						   xn) : 0;
		if (r > 1) {
			e->exe_len = r - 1;
			pos += r - 1;
		}
	}
	size = pos;
	asm volatile("" : "+r"(size));
	if (size > PW_XDATA_SIZE)
		size = PW_XDATA_SIZE;
	pw_submit(e, sizeof(struct pw_exec_info) + size);
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
	loc = BPF_CORE_READ(ctx, __data_loc_filename) & 0xffff;
	if (exec_info) {
		struct pw_xscratch *x = pw_xscratch();

		if (x) {
			/* the exec'd path, as given (the tracepoint's filename) */
			((struct pw_exec_info *)x->rec)->old_tid = BPF_CORE_READ(ctx, old_pid);
			n = bpf_probe_read_kernel_str(x->rec + sizeof(struct pw_exec_info),
						      PW_STR_MAX, (void *)ctx + loc);
			return pw_exec_info_emit(n > 0 ? n : 0);
		}
	}
	e = (struct pw_exec *)s->buf;
	pw_fill_hdr(&e->h, PW_EV_EXEC, pid_tgid);
	e->old_tid = BPF_CORE_READ(ctx, old_pid);
	n = bpf_probe_read_kernel_str(e->fname, sizeof(e->fname), (void *)ctx + loc);
	e->fname_len = n > 0 ? n : 0;
	pw_submit(e, sizeof(*e));
	return 0;
}

/* exec info: new processes (not threads) with their start times; the child's task
 * is only reachable from the raw tracepoint (args: parent, child) */
SEC("raw_tracepoint/sched_process_fork")
int pw_fork_info(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_fork_info e;
	__u32 cpid, ctgid;

	if (!emit_lifecycle || !exec_info)
		return 0;
	cpid = BPF_CORE_READ(child, pid);
	ctgid = BPF_CORE_READ(child, tgid);
	if (cpid != ctgid || !pw_wanted(pid_tgid))
		return 0;
	/* pw_fork (the tracepoint, which runs too) has already added a followed child */
	pw_fill_hdr(&e.h, PW_EV_FORK_INFO, pid_tgid);
	e.child_pid = ctgid;
	e._pad = 0;
	e.child_start_ns = BPF_CORE_READ(child, start_time);
	e.child_start_boottime = BPF_CORE_READ(child, start_boottime);
	e.parent_start_boottime = BPF_CORE_READ(parent, group_leader, start_boottime);
	pw_submit(&e, sizeof(e));
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
		e.start_boottime = BPF_CORE_READ(t, group_leader, start_boottime);
		pw_submit(&e, sizeof(e));
	}
	if (filter_pids)
		bpf_map_delete_elem(&pids, &tgid);
	return 0;
}
