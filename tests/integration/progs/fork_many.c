/* fork_many N: N children one after another, each making one getppid call and
 * exiting; the parent makes none. A tracer following children sees exactly N. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;

	for (long i = 0; i < n; i++) {
		pid_t p = fork();

		if (p < 0)
			return 1;
		if (p == 0) {
			syscall(SYS_getppid);
			_exit(0);
		}
		if (waitpid(p, NULL, 0) != p)
			return 1;
	}
	return 0;
}
