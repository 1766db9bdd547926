/* fork_getppid N [SLEEP_MS]: N getppid calls in each of four tasks: the process, a
 * thread of it, a child and a grandchild (forked before any call), so a tracer that
 * follows children and threads sees exactly 4*N; waits for all of them, exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long n;

static void *calls(void *arg)
{
	(void)arg;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return NULL;
}

int main(int argc, char **argv)
{
	n = argc > 1 ? atol(argv[1]) : 1000;
	long ms = argc > 2 ? atol(argv[2]) : 0;
	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	pid_t child = fork();
	if (child == 0) {
		pid_t grandchild = fork();
		calls(NULL);
		if (grandchild > 0)
			waitpid(grandchild, NULL, 0);
		_exit(0);
	}
	pthread_t t;
	pthread_create(&t, NULL, calls, NULL);
	calls(NULL);
	pthread_join(t, NULL);
	waitpid(child, NULL, 0);
	return 0;
}
