/*
 * getppid_batches: the workload of bench/count_toggle.py.
 *
 *   getppid_batches SECONDS OUT
 *
 * Makes syscall(SYS_getppid) calls in batches of 4096 for SECONDS seconds and writes one
 * line per batch to the file OUT: "END_NS DURATION_NS" (CLOCK_MONOTONIC, the clock of
 * Python's time.monotonic_ns()). The driver attaches and detaches tracers meanwhile and
 * sorts the batches by what was attached while they ran. The first line is "pid PID".
 * With GETPPID_LOOP_CPU=K in the environment it pins itself to CPU K first.
 *
 * Build: gcc -O2 -o getppid_batches getppid_batches.c
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 4096
#define MAX_BATCHES (1 << 20)

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static long long ends[MAX_BATCHES], durs[MAX_BATCHES];
	const char *pin = getenv("GETPPID_LOOP_CPU");
	long long stop, b0, b1, n = 0;
	long sum = 0;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: %s SECONDS OUT\n", argv[0]);
		return 2;
	}
	if (pin && *pin) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(atoi(pin), &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			perror("sched_setaffinity");
	}
	b0 = now_ns();
	stop = b0 + (long long)(atof(argv[1]) * 1e9);
	while (n < MAX_BATCHES) {
		for (int i = 0; i < BATCH; i++)
			sum += syscall(SYS_getppid);
		b1 = now_ns();
		ends[n] = b1;
		durs[n++] = b1 - b0;
		b0 = b1;
		if (b1 >= stop)
			break;
	}
	f = fopen(argv[2], "w");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	fprintf(f, "pid %d\n", (int)getpid());
	for (long long i = 0; i < n; i++)
		fprintf(f, "%lld %lld\n", ends[i], durs[i]);
	return fclose(f) != 0 || sum == 0;
}
