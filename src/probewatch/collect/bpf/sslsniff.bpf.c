// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * sslsniff.bpf.c: TLS plaintext where the library hands it over (sslsniff.h).
 *
 * At a function's entry the buffer pointer (and the _ex out-length pointer) is kept
 * per thread in "active"; at its return the length comes from the return value (or
 * from *written / *readbytes), and up to data_max bytes are copied in the kernel, in
 * chunks of PW_SSL_CHUNK bytes, one ring record each. What lies beyond data_max is
 * counted (record len vs captured, stats PW_STAT_SSL_CUT), never shown.
 *
 * The socket: while a thread is inside a TLS call, the syscall tracepoints of
 * read/write/send/recv (user space attaches pw_ssl_sys to them) read the fd's socket
 * (task->files->fdt->fd[fd] -> struct socket -> sock) and keep fd and 4-tuple for that
 * TLS object in "conns": a later call that moves buffered data without a syscall
 * still knows its connection.
 *
 * Go (crypto/tls): stacks move, so no uretprobes: user space puts pw_go_exit on every
 * RET of (*Conn).Read/Write. Register ABI: receiver in RAX, b.ptr RBX, b.len RCX;
 * n returns in RAX; the goroutine (R14 holds g) keys the call, as it may move
 * between threads while it waits.
 *
 * pw_readline (bash's readline() return) is here too: probewatch watch loads this
 * object beside syscalls.bpf.o, sharing its ring buffer and pid set, as the
 * user-space layer of its events (typed lines, TLS plaintext).
 */
#include "common.bpf.h"
#include "sslsniff.h"
#include "readline.bpf.h"

#define PW_S_IFMT 00170000
#define PW_S_IFSOCK 0140000
#define PW_AF_INET 2
#define PW_AF_INET6 10

const volatile __u32 data_max = 16384; /* bytes copied per call at most */

struct pw_ssl_key {
	__u32 tgid;
	__u32 _pad;
	__u64 id; /* tid (C libraries) or g (Go) */
};

struct pw_ssl_state {
	__u64 buf;
	__u64 lenp; /* _ex: size_t *written / *readbytes */
	__u64 obj;
	__u64 start_ns;
	__u32 cookie;
	__u32 has_sock;
	struct pw_ssl_conn c;
};

struct pw_conn_key {
	__u32 tgid;
	__u32 _pad;
	__u64 obj;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pw_ssl_key);
	__type(value, struct pw_ssl_state);
} active SEC(".maps");

/* Go: tid -> the goroutine inside a call on that thread (for the syscall probe) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} go_cur SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pw_conn_key);
	__type(value, struct pw_ssl_conn);
} conns SEC(".maps");

struct pw_ssl_scratch {
	struct pw_ssl r;
	__u8 data[2 * PW_SSL_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_ssl_scratch);
} sslbuf SEC(".maps");

SEC("tracepoint/sched/sched_process_fork")
int pw_fork(struct trace_event_raw_sched_process_fork *ctx)
{
	pw_follow_fork(ctx);
	return 0;
}

static __always_inline void pw_enter(struct pt_regs *ctx, __u64 id, __u64 obj, __u64 buf,
				     __u64 lenp)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_ssl_key k = { .tgid = pid_tgid >> 32, .id = id };
	struct pw_ssl_state s = {};

	if (!pw_wanted(pid_tgid))
		return;
	s.buf = buf;
	s.lenp = lenp;
	s.obj = obj;
	s.start_ns = bpf_ktime_get_ns();
	s.cookie = (__u32)bpf_get_attach_cookie(ctx);
	s.c.fd = -1;
	/* a nested call on the same thread (a library calling its own API) keeps the outer */
	bpf_map_update_elem(&active, &k, &s, BPF_NOEXIST);
}

SEC("uprobe")
int pw_ssl_enter(struct pt_regs *ctx)
{
	pw_enter(ctx, (__u32)bpf_get_current_pid_tgid(), PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0);
	return 0;
}

SEC("uprobe")
int pw_ssl_enter_ex(struct pt_regs *ctx)
{
	pw_enter(ctx, (__u32)bpf_get_current_pid_tgid(), PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx),
		 PT_REGS_PARM4(ctx));
	return 0;
}

/* the socket behind fd of the current task, into c; false when fd is not a socket */
static __always_inline bool pw_sock_of(int fd, struct pw_ssl_conn *c)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds;
	struct file *f = NULL;
	struct socket *sock;
	struct sock *sk;
	__u16 fam;
	umode_t mode;

	if (fd < 0 || !fdt || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return false;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & PW_S_IFMT) != PW_S_IFSOCK)
		return false;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return false;
	c->fd = fd;
	fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	c->family = fam;
	c->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (fam == PW_AF_INET) {
		bpf_core_read(c->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(c->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (fam == PW_AF_INET6) {
		bpf_core_read(c->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(c->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	return true;
}

/* syscalls:sys_enter_{read,write,sendto,recvfrom,sendmsg,recvmsg,readv,writev}: fd is arg 0 */
SEC("tracepoint/syscalls/sys_enter_write")
int pw_ssl_sys(struct trace_event_raw_sys_enter *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_ssl_key k = { .tgid = pid_tgid >> 32, .id = (__u32)pid_tgid };
	struct pw_ssl_state *s = bpf_map_lookup_elem(&active, &k);
	struct pw_conn_key ck = {};
	__u32 tid = (__u32)pid_tgid;
	__u64 *g;

	if (!s) {
		g = bpf_map_lookup_elem(&go_cur, &tid);
		if (!g)
			return 0;
		k.id = *g;
		s = bpf_map_lookup_elem(&active, &k);
		if (!s)
			return 0;
	}
	if (s->has_sock)
		return 0;
	if (!pw_sock_of((int)ctx->args[0], &s->c))
		return 0;
	s->has_sock = 1;
	ck.tgid = k.tgid;
	ck.obj = s->obj;
	bpf_map_update_elem(&conns, &ck, &s->c, BPF_ANY);
	return 0;
}

struct pw_emit_ctx {
	__u64 buf;
	__u32 captured;
	__u32 nchunks;
	struct pw_ssl r;
};

static long pw_emit_chunk(__u32 i, struct pw_emit_ctx *e)
{
	__u32 zero = 0;
	struct pw_ssl_scratch *sc = bpf_map_lookup_elem(&sslbuf, &zero);
	__u32 off = i * PW_SSL_CHUNK;
	__u32 n;

	if (!sc || (i && off >= e->captured)) /* data_max 0: one record, no data */
		return 1;
	n = e->captured - off;
	if (n > PW_SSL_CHUNK)
		n = PW_SSL_CHUNK;
	pw_bound(n, 2 * PW_SSL_CHUNK - 1);
	__builtin_memcpy(&sc->r, &e->r, sizeof(sc->r));
	sc->r.offset = off;
	sc->r.chunk_len = n;
	if (i + 1 >= e->nchunks)
		sc->r.flags |= PW_SSL_LAST;
	if (bpf_probe_read_user(sc->data, n, (const void *)(e->buf + off))) {
		sc->r.flags |= PW_SSL_FAULT;
		sc->r.chunk_len = 0;
		n = 0;
		pw_stat_add(PW_STAT_READ_FAIL, 1);
	}
	pw_bound(n, 2 * PW_SSL_CHUNK - 1);
	pw_submit(sc, sizeof(sc->r) + n);
	return 0;
}

static __always_inline void pw_exit(struct pt_regs *ctx, __u64 id, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pw_ssl_key k = { .tgid = pid_tgid >> 32, .id = id };
	struct pw_ssl_state *s = bpf_map_lookup_elem(&active, &k);
	struct pw_emit_ctx e = {};
	struct pw_conn_key ck = {};
	struct pw_ssl_conn *cc;
	__u32 lim = data_max;
	__u64 len = 0;

	if (!s)
		return;
	/* a nested call's return leaves the outer call's state alone */
	if (s->cookie != (__u32)bpf_get_attach_cookie(ctx))
		return;
	if (s->lenp) {
		if (ret == 1)
			bpf_probe_read_user(&len, sizeof(len), (const void *)s->lenp);
	} else if (ret > 0) {
		len = ret;
	}
	if (len > 0x7fffffff)
		len = 0;
	if (len) {
		pw_fill_hdr(&e.r.h, PW_EV_SSL, pid_tgid);
		e.r.start_ns = s->start_ns;
		e.r.obj = s->obj;
		e.r.cookie = s->cookie;
		e.r.len = len;
		if (s->has_sock) {
			e.r.c = s->c;
			e.r.flags |= PW_SSL_SOCK;
		} else {
			ck.tgid = k.tgid;
			ck.obj = s->obj;
			cc = bpf_map_lookup_elem(&conns, &ck);
			if (cc) {
				e.r.c = *cc;
				e.r.flags |= PW_SSL_SOCK;
			} else {
				e.r.c.fd = -1;
			}
		}
		if (lim > PW_SSL_CHUNK * PW_SSL_MAX_CHUNKS)
			lim = PW_SSL_CHUNK * PW_SSL_MAX_CHUNKS;
		e.captured = len < lim ? len : lim;
		e.r.captured = e.captured;
		if (e.captured < len) {
			e.r.flags |= PW_SSL_CUT;
			pw_stat_add(PW_STAT_TRUNC, 1);
			pw_stat_add(PW_STAT_SSL_CUT, len - e.captured);
		}
		pw_stat_add(PW_STAT_SSL_BYTES, e.captured);
		e.buf = s->buf;
		e.nchunks = (e.captured + PW_SSL_CHUNK - 1) / PW_SSL_CHUNK;
		if (e.nchunks == 0)
			e.nchunks = 1; /* data_max 0: one record, no data */
		bpf_loop(e.nchunks, pw_emit_chunk, &e, 0);
	}
	bpf_map_delete_elem(&active, &k);
}

SEC("uretprobe")
int pw_ssl_exit(struct pt_regs *ctx)
{
	pw_exit(ctx, (__u32)bpf_get_current_pid_tgid(), PT_REGS_RC(ctx));
	return 0;
}

#if defined(__TARGET_ARCH_x86)
#define PW_GO_G(ctx) ((ctx)->r14)
#define PW_GO_ARG1(ctx) ((ctx)->ax)
#define PW_GO_ARG2(ctx) ((ctx)->bx)
#define PW_GO_ARG3(ctx) ((ctx)->cx)
#else
#define PW_GO_G(ctx) (((struct user_pt_regs *)(ctx))->regs[28])
#define PW_GO_ARG1(ctx) PT_REGS_PARM1(ctx)
#define PW_GO_ARG2(ctx) PT_REGS_PARM2(ctx)
#define PW_GO_ARG3(ctx) PT_REGS_PARM3(ctx)
#endif

SEC("uprobe")
int pw_go_enter(struct pt_regs *ctx)
{
	__u64 g = PW_GO_G(ctx);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	pw_enter(ctx, g, PW_GO_ARG1(ctx), PW_GO_ARG2(ctx), 0);
	bpf_map_update_elem(&go_cur, &tid, &g, BPF_ANY);
	return 0;
}

SEC("uprobe")
int pw_go_exit(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	pw_exit(ctx, PW_GO_G(ctx), (long)PW_GO_ARG1(ctx));
	bpf_map_delete_elem(&go_cur, &tid);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(pw_readline, const void *ret)
{
	pw_readline_ret(ret);
	return 0;
}
