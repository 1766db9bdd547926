/* stack_target N: main calls st_f1 which calls st_f2, N times; then one getppid.
 * Built with frame pointers (tests/integration/test_perf_stacks.py), so a user stack
 * taken in st_f2 reads st_f2 < st_f1 < main. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline)) int st_f2(int x)
{
	__asm__ volatile("" ::: "memory");
	return x * 2;
}

__attribute__((noinline)) int st_f1(int x)
{
	int r = st_f2(x + 1);
	__asm__ volatile("" ::: "memory");
	return r + 1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1;
	int s = 0;
	for (long i = 0; i < n; i++)
		s += st_f1((int)i);
	syscall(SYS_getppid);
	return s == -1;
}
