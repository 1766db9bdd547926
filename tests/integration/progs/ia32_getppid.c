/* ia32_getppid N: N getppid calls through the 32-bit (ia32) syscall entry, int 0x80
 * (getppid is 64 there, semget's number on x86_64), then exit (1: write on x86_64).
 * No libc: built with -m32 -nostdlib -static, so no 32-bit libc is needed. The syscall
 * tracepoints ignore compat syscalls: a tracer of syscalls:* must count none of these. */
static int sys1(int nr, int a)
{
	int r;

	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a) : "memory");
	return r;
}

static long atol_(const char *s)
{
	long n = 0;

	while (*s >= '0' && *s <= '9')
		n = n * 10 + (*s++ - '0');
	return n;
}

__attribute__((used)) void pw_main(int argc, char **argv)
{
	long n = argc > 1 ? atol_(argv[1]) : 1000;

	for (long i = 0; i < n; i++)
		sys1(64, 0);
	sys1(1, 0);
}

/* the stack at entry: argc, then argv[] */
__asm__(".globl _start\n_start:\n"
	"\tmovl %esp, %eax\n"
	"\tleal 4(%eax), %ecx\n"
	"\tandl $-16, %esp\n"
	"\tsubl $8, %esp\n"
	"\tpushl %ecx\n"
	"\tpushl (%eax)\n"
	"\tcall pw_main\n"
	"\thlt\n");
