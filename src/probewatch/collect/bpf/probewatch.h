/* SPDX-License-Identifier: MIT */
/*
 * probewatch.h: the records the BPF programs put into the ring buffer, and the
 * configuration structs user space writes into maps. Shared by every *.bpf.c;
 * the Python side mirrors these layouts with struct.Struct in loader.py (a unit
 * test compares both against the BTF of the built objects).
 *
 * All records start with struct pw_hdr; hdr.kind says which struct follows.
 */
#ifndef PROBEWATCH_H
#define PROBEWATCH_H

#define PW_COMM_LEN 16
#define PW_NR_MAX 1024        /* syscall numbers below this are traced */
#define PW_MAX_PIDS 32768     /* pid filter set (LRU: the live traced processes) */
#define PW_STR_MAX 4096       /* one path / string argument, with its NUL */
#define PW_BUF_MAX 4096       /* data buffers (read/write) */
#define PW_SOCKADDR_MAX 128   /* sizeof(struct sockaddr_storage) */
#define PW_ARGV_CAP 128       /* hard cap on argv entries */
#define PW_DATA_SIZE 8192     /* blob area of one syscall record (power of 2) */
#define PW_DATA_MASK (PW_DATA_SIZE - 1)
#define PW_BLOB_HDR 8

/* hdr.kind */
enum pw_kind {
	PW_EV_SYSCALL = 1,   /* a syscall and its return (entry and exit joined) */
	PW_EV_SYS_ENTER = 2, /* the entry of execve/execveat/exit/exit_group */
	PW_EV_FORK = 3,
	PW_EV_EXEC = 4,
	PW_EV_EXIT = 5,
	PW_EV_TCP = 6,
	PW_EV_READLINE = 7,
	PW_EV_EXEC_INFO = 8, /* sched_process_exec with the new image's full context */
	PW_EV_FORK_INFO = 9, /* a new process (not a thread), with its start time */
};

/* per-CPU counters, map "stats" */
enum pw_stat {
	PW_STAT_GENERATED = 0, /* records the programs tried to submit */
	PW_STAT_RB_LOST = 1,   /* ... of which the ring buffer had no room for */
	PW_STAT_READ_FAIL = 2, /* user-memory reads that failed */
	PW_STAT_TRUNC = 3,     /* strings/argv/buffers cut short */
	PW_STAT_MAX = 8,
};

/* argument kinds, per syscall number and argument index (map "nrconf") */
enum pw_arg_kind {
	PW_ARG_NONE = 0,
	PW_ARG_STR = 1,          /* NUL-terminated string (path, name) */
	PW_ARG_BUF_IN = 2,       /* buffer of length args[i+1], read at exit */
	PW_ARG_BUF_OUT = 3,      /* buffer of length ret, read at exit */
	PW_ARG_SOCKADDR = 4,     /* struct sockaddr *, length args[i+1] */
	PW_ARG_SOCKADDR_OUT = 5, /* struct sockaddr *, length *(int *)args[i+1], at exit */
	PW_ARG_ARGV = 6,         /* char *const argv[] */
	PW_ARG_MEM = 7,          /* sizes[i] bytes (a struct), read at exit */
	PW_ARG_MEM_N = 8,        /* sizes[i] * args[i+1] bytes (an array), at exit */
	PW_ARG_DIRENTS = 9,      /* linux_dirent64 buffer of ret bytes: blob.count = entries */
	PW_ARG_PTRS = 10,        /* NULL-terminated pointer array: blob.count = entries */
	PW_ARG_MEM_ARG = 11,     /* args[i+1] bytes, at most sizes[i], at exit */
	PW_ARG_STR_OUT = 12,     /* ret bytes (a path the call wrote: getcwd), at exit */
	PW_ARG_IOV_IN = 13,      /* struct iovec[args[i+1]] and each buffer (writev) */
	PW_ARG_IOV_OUT = 14,     /* the same, the buffers' first ret bytes (readv) */
	PW_ARG_MSG_IN = 15,      /* struct user_msghdr, its name and its iovecs (sendmsg) */
	PW_ARG_MSG_OUT = 16,     /* the same, the buffers' first ret bytes (recvmsg) */
	PW_ARG_FDSET = 17,       /* fd_set (select): fds 0-63 at entry, then at exit (2 u64) */
	PW_ARG_IOCTL = 18,       /* ioctl's arg: the struct its request (args[1]) names, at exit */
	PW_ARG_FCNTL = 19,       /* fcntl's arg: struct flock for the lock commands, at exit */
	PW_ARG_TS_INOUT = 20,    /* 16 bytes (a timeout the call updates) at entry, then at exit */
};

/*
 * The data of a PW_ARG_IOV_* / PW_ARG_MSG_* blob: struct pw_iov_hdr; for a msghdr its
 * PW_MSGHDR_SIZE bytes and name_len bytes of msg_name (padded to 8); then n struct
 * pw_iov_ent; then each entry's got bytes, back to back. blob.count: for
 * PW_ARG_MSG_OUT, msg_namelen as passed in.
 */
#define PW_IOV_MAX 16
#define PW_MSGHDR_SIZE 56

struct pw_iov_hdr {
	__u32 n;        /* entries that follow */
	__u32 name_len; /* msg_name bytes after the msghdr */
};

struct pw_iov_ent {
	__u64 base;
	__u64 len;
	__u32 got;   /* bytes of its buffer in the data */
	__u32 flags; /* PW_BLOB_FAULT: reading its buffer failed */
};

/* nrconf.flags */
#define PW_NR_TRACE 1    /* emit records for this syscall */
#define PW_NR_NORETURN 2 /* emit at entry (execve: memory gone at exit; exit_group) */

/* blob.flags */
#define PW_BLOB_TRUNC 1 /* cut short at the configured maximum */
#define PW_BLOB_FAULT 2 /* reading user memory failed: no data */
#define PW_BLOB_NULL 4  /* the pointer was NULL */

struct pw_nrconf {
	__u8 kinds[6];
	__u8 flags;
	__s8 argv_arg; /* index of a PW_ARG_ARGV argument or -1 */
	__u16 sizes[6]; /* bytes per element for PW_ARG_MEM* kinds */
};

struct pw_hdr {
	__u16 kind;
	__u16 flags;
	__u32 cpu;
	__u64 ts; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid; /* thread-group id */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 _pad;
	__u64 cgroup;
	char comm[PW_COMM_LEN];
}; /* 64 bytes */

/* PW_EV_SYSCALL / PW_EV_SYS_ENTER, followed by data_len bytes of blobs */
struct pw_syscall {
	struct pw_hdr h;
	__s64 ret;
	__u64 dur_ns;
	__u64 args[6];
	__s32 nr;
	__u32 data_len;
}; /* 144 bytes */

/* one captured argument; data follows, the next blob starts 8-aligned */
struct pw_blob {
	__u8 arg;   /* argument index */
	__u8 kind;  /* enum pw_arg_kind */
	__u16 flags;
	__u16 count; /* argv/dirents/ptrs: entries; sockaddr out: *addrlen at entry */
	__u16 len;   /* bytes of data */
};

/* PW_EV_FORK */
struct pw_fork {
	struct pw_hdr h;
	__u32 child_pid;
	__u32 child_tid;
};

/* PW_EV_EXEC (sched_process_exec: the new image) */
struct pw_exec {
	struct pw_hdr h;
	__u32 old_tid;
	__u32 fname_len;
	char fname[256];
};

/*
 * PW_EV_EXEC_INFO: sched_process_exec read in the kernel, so that a process that
 * lives under a millisecond is still known right: the exec'd path, the new argv
 * (mm->arg_start..arg_end), the cwd (task->fs->pwd, walked up to the root), the
 * first env_max bytes of the environment (mm->env_start..), the credentials, the
 * login uid and the cgroup's own name. Data follows, back to back in this order:
 * fname (NUL-terminated), cwd (no NUL), argv (NUL-separated), env (the variables of
 * interest, NUL-separated), cgroup name (no NUL), the executable file's own name (no
 * NUL: symlinks resolved, a script's interpreter); the record is
 * sizeof(struct pw_exec_info) + the lengths.
 */
#define PW_XDATA_SIZE 16384   /* data area of one exec record (power of 2) */
#define PW_XDATA_MASK (PW_XDATA_SIZE - 1)
#define PW_XPIECE_MAX 8192    /* the largest one piece (argv, env) may be */
#define PW_CWD_MAX 4096       /* cwd bytes */
#define PW_CWD_DEPTH 128      /* path components walked at most */
#define PW_CGNAME_MAX 256

/* pw_exec_info.flags */
#define PW_XI_FNAME_TRUNC 0x1
#define PW_XI_CWD_TRUNC 0x2   /* deeper than PW_CWD_DEPTH or longer than PW_CWD_MAX */
#define PW_XI_ARGV_TRUNC 0x4
#define PW_XI_ENV_TRUNC 0x8
#define PW_XI_ARGV_FAULT 0x10
#define PW_XI_ENV_FAULT 0x20
#define PW_XI_NO_MM 0x40      /* no mm (kernel thread): no argv/env */
#define PW_XI_CWD_UNREACH 0x80 /* the cwd is outside this mount namespace / unlinked */

struct pw_exec_info {
	struct pw_hdr h;          /* uid, gid: the real ids; ppid: real_parent's tgid */
	__u32 old_tid;
	__u32 flags;              /* PW_XI_* */
	__u32 euid;
	__u32 egid;
	__u32 suid;
	__u32 sgid;
	__u32 loginuid;           /* audit login uid; 0xffffffff when unset */
	__u32 sessionid;
	__u64 start_ns;           /* task start, CLOCK_MONOTONIC */
	__u64 start_boottime;     /* task start, CLOCK_BOOTTIME (/proc/PID/stat's clock) */
	__u64 parent_start_boottime;
	__u64 cap_effective;
	__u16 fname_len;          /* with its NUL */
	__u16 cwd_len;
	__u16 argv_len;
	__u16 env_len;
	__u16 cgname_len;
	__u16 exe_len;            /* basename of the executable file (mm->exe_file) */
	__u16 _pad[2];
}; /* 144 bytes, then the data */

/* PW_EV_FORK_INFO: sched_process_fork of a new process (a new thread gives none) */
struct pw_fork_info {
	struct pw_hdr h;
	__u32 child_pid;
	__u32 _pad;
	__u64 child_start_ns;        /* CLOCK_MONOTONIC */
	__u64 child_start_boottime;  /* CLOCK_BOOTTIME */
	__u64 parent_start_boottime; /* of the forking process */
};

/* PW_EV_EXIT (sched_process_exit of a whole process) */
struct pw_exit {
	struct pw_hdr h;
	__s32 exit_code; /* wait status: code << 8 | signal */
	__u32 _pad;
	__u64 start_ns;  /* task start (CLOCK_MONOTONIC), for lifetimes */
	__u64 start_boottime; /* task start (CLOCK_BOOTTIME): which incarnation of the pid */
};

/* PW_EV_TCP: an active TCP open (connect) and its outcome */
struct pw_tcp {
	struct pw_hdr h;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u16 newstate; /* TCP_ESTABLISHED (1) or TCP_CLOSE (7) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 latency_ns; /* SYN_SENT -> newstate */
};

/* PW_EV_READLINE */
struct pw_readline {
	struct pw_hdr h;
	__u32 len;
	__u32 flags; /* PW_BLOB_* */
	char line[256];
};

/* per-syscall and per-process counters (maps sys_counts, proc_counts) */
struct pw_count {
	__u64 calls;
	__u64 errors;
	__u64 time_ns;
};

/*
 * generic.bpf.c: one tracepoint program attached to any number of tracepoints and
 * one uprobe program attached to any number of uprobes/uretprobes. The BPF cookie
 * of each attachment is its "slot": the index of its configuration (map "tpconf"
 * or "uconf") and the slot user space finds in the record header.
 */
#define PW_GEN_SLOTS 4096     /* attachments per run */
#define PW_TP_DATA_MAX 4096   /* raw tracepoint record bytes copied at most */
#define PW_TP_DLOC_MAX 8      /* __data_loc / __rel_loc fields looked at per event */
#define PW_UARGS_MAX 8        /* arguments per uprobe */
#define PW_UDEREF_MAX 4       /* memory reads per argument */
#define PW_USTR_AREA 4096     /* strings/arrays of one uprobe record (power of 2) */

/* pw_gen_hdr.kind */
#define PW_GEN_TP 16
#define PW_GEN_UPROBE 17

/* pw_gen_hdr.flags */
#define PW_GEN_TRUNC 1 /* the record was cut short (PW_TP_DATA_MAX / ustr_max) */

#define PW_GEN_STACK 2 /* the record ends in stacks: a pw_stack_hdr at the data's
			* size rounded up to 8, then the kernel ips, the user ips and the
			* user frames as struct bpf_stack_build_id */

/* stack_mode (rodata) bits */
#define PW_STACK_KERNEL 1
#define PW_STACK_USER 2
#define PW_KSTACK_MAX 64 /* kernel frames per record */
#define PW_USTACK_MAX 32 /* user frames per record (ips and build-id frames each) */
#define PW_STACK_AREA (16 + 8 * PW_KSTACK_MAX + (8 + 32) * PW_USTACK_MAX) /* 1808 */

struct pw_stack_hdr {
	__u32 kbytes; /* bytes of kernel ips after this header */
	__u32 ubytes; /* then bytes of user ips */
	__u32 bbytes; /* then bytes of struct bpf_stack_build_id (same user stack) */
	__u32 _pad;
};

/* pw_tpconf.dloc[] bit 15: a __rel_loc field (offset relative to the field's end) */
#define PW_DLOC_REL 0x8000

/* pw_uarg.kind */
#define PW_UARG_INT 0   /* a number: the register, or size bytes read at the end */
#define PW_UARG_STR 1   /* a NUL-terminated string at the address */
#define PW_UARG_ARRAY 2 /* size bytes (count * element size) at the address */

/* pw_uval.flags */
#define PW_UVAL_FAULT 1 /* a memory read failed */
#define PW_UVAL_TRUNC 2 /* the string filled ustr_max */

struct pw_gen_hdr {
	__u16 kind;
	__u16 flags;
	__u32 cpu;
	__u64 ts; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid; /* thread-group id */
	__u32 tid;
	__u32 slot; /* the attachment's cookie */
	__u32 size; /* bytes of data after the header */
	char comm[PW_COMM_LEN];
}; /* 48 bytes */

/* per tracepoint attachment: how big its records are */
struct pw_tpconf {
	__u16 event_id;  /* common_type of the format */
	__u16 fixed;     /* the format's fixed part, common fields included */
	__u16 n_dloc;
	__u16 _pad;
	__u16 dloc[PW_TP_DLOC_MAX]; /* offsets of the dynamic fields' u32 locators */
};

/* one uprobe argument: v = regs[reg]; then per off[i]: v = *(u64 *)(v + off[i]),
 * the last read being size bytes (INT), or the string / array at v + off[last] */
struct pw_uarg {
	__u8 reg;    /* u64 index into struct pt_regs */
	__u8 nderef; /* number of off[] entries used */
	__u8 kind;   /* PW_UARG_* */
	__u8 _pad;
	__u16 size;  /* INT: bytes of the last read (1, 2, 4, 8); ARRAY: bytes */
	__u16 _pad2;
	__s32 off[PW_UDEREF_MAX];
};

struct pw_uconf {
	__u32 nargs;
	__u32 _pad;
	struct pw_uarg args[PW_UARGS_MAX];
};

/* one argument's value in a PW_GEN_UPROBE record */
struct pw_uval {
	__u64 val;   /* INT: the value; STR/ARRAY: offset of the data after the values */
	__u16 len;   /* STR/ARRAY: bytes of data (a string's NUL included) */
	__u16 flags; /* PW_UVAL_* */
	__u32 _pad;
};

/* PW_GEN_UPROBE data: ip (uprobe: the probed address; uretprobe: the function's),
 * ret_ip (uretprobe: the return address), one pw_uval per argument, then the
 * string/array bytes */
struct pw_urec {
	__u64 ip;
	__u64 ret_ip;
	struct pw_uval vals[PW_UARGS_MAX];
};

#endif /* PROBEWATCH_H */
