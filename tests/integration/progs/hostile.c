/*
 * A process that does what an attacker would to a monitor's output: comm, paths and
 * argv with bytes that are not UTF-8, newlines that forge lines, terminal escapes.
 *
 *   hostile open DIR      openat(AT_FDCWD, ...) on hostile names under DIR (glibc: the
 *                         upper half of the dfd register is 0), the same with dfd
 *                         sign-extended to 64 bits, a NULL path, a path of exactly
 *                         4095 bytes and one of 4096 (ENAMETOOLONG)
 *   hostile exec [PROG]   prctl(PR_SET_NAME) to a hostile comm, then execve of
 *                         PROG (default /bin/true) with hostile argv and env
 *   hostile comm NAME     set comm to NAME and exit (for -c tests)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *names[] = {
	"\xff\xfe",
	"x\nsshd  99999 1 0 /usr/sbin/sshd -D",
	"\x1b[2K\rhidden",
	"back\\slash",
	"tab\there",
};

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "open")) {
		char path[8192];
		size_t n = sizeof(names) / sizeof(names[0]);

		for (size_t i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/%s", argv[2], names[i]);
			openat(AT_FDCWD, path, O_RDONLY); /* ENOENT is fine */
		}
		/* dfd sign-extended: the register holds 0xffffffffffffff9c */
		syscall(SYS_openat, (long)AT_FDCWD, "/dev/null/signext", O_RDONLY, 0);
		/* NULL path: EFAULT */
		syscall(SYS_openat, (long)AT_FDCWD, (char *)NULL, O_RDONLY, 0);
		/* exactly PATH_MAX - 1 = 4095 bytes: whole, not truncated */
		memset(path, 0, sizeof(path));
		for (int i = 0; i < 4095; i++) /* "/a/a/...": no component too long */
			path[i] = i % 2 ? 'a' : '/';
		openat(AT_FDCWD, path, O_RDONLY);
		/* 4096 bytes: cut at 4095 (and ENAMETOOLONG) */
		path[4095] = '/';
		openat(AT_FDCWD, path, O_RDONLY);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "exec")) {
		const char *prog = argc >= 3 ? argv[2] : "/bin/true";
		char *av[] = {(char *)prog, (char *)names[0], (char *)names[1], (char *)names[2],
			      (char *)names[3], "", NULL};
		char *ev[] = {"X=\xff", "Y=\n", NULL};

		prctl(PR_SET_NAME, "ev\xff\n\x1b[1m", 0, 0, 0);
		execve(prog, av, ev);
		return 1;
	}
	if (argc >= 3 && !strcmp(argv[1], "comm")) {
		prctl(PR_SET_NAME, argv[2], 0, 0, 0);
		usleep(100000);
		getppid();
		return 0;
	}
	fprintf(stderr, "usage: hostile open DIR | exec [PROG] | comm NAME\n");
	return 2;
}
