/*
 * uprobe_loop: the workload of bench/uprobe_cost.py.
 *
 *   uprobe_loop N REPORT
 *
 * Calls the function pw_bench_fn(i) N times in a tight loop (it is not inlined and
 * does almost nothing, so an untraced call costs a few nanoseconds) and writes a small
 * "key value" report to the file REPORT (not stdout: under a tracer stdout belongs to
 * the tracer). Times are CLOCK_MONOTONIC nanoseconds:
 *
 *   pid          this process's pid
 *   calls        N
 *   t_loop_start just before the first call
 *   t_loop_end   just after the last one
 *   ns_per_call  (t_loop_end - t_loop_start) / N
 *   utime_ns     own user CPU (getrusage RUSAGE_SELF), at the end
 *   stime_ns     own system CPU (uprobe handling is charged here)
 *   checksum     sum of the return values (keeps the calls from being optimised away)
 *   cpu_start    the CPU the loop started on, cpu_end the one it ended on
 *
 * With UPROBE_LOOP_CPU=K in the environment it pins itself to CPU K first.
 *
 * Build: gcc -O2 -o uprobe_loop uprobe_loop.c
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long pw_bench_fn(long x)
{
	__asm__ volatile("" ::: "memory");
	return x + 1;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long tv_ns(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000000LL + (long long)tv.tv_usec * 1000LL;
}

int main(int argc, char **argv)
{
	long long n, i, t0, t1;
	long sum = 0;
	int cpu_start, cpu_end;
	const char *pin = getenv("UPROBE_LOOP_CPU");
	struct rusage ru;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: %s N REPORT\n", argv[0]);
		return 2;
	}
	n = atoll(argv[1]);
	if (n <= 0) {
		fprintf(stderr, "%s: N must be > 0\n", argv[0]);
		return 2;
	}
	if (pin && *pin) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(atoi(pin), &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0) {
			perror("sched_setaffinity");
			return 1;
		}
	}

	cpu_start = sched_getcpu();
	t0 = now_ns();
	for (i = 0; i < n; i++)
		sum += pw_bench_fn(i);
	t1 = now_ns();
	cpu_end = sched_getcpu();

	getrusage(RUSAGE_SELF, &ru);
	f = fopen(argv[2], "w");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	fprintf(f, "pid %d\ncalls %lld\nt_loop_start %lld\nt_loop_end %lld\n", (int)getpid(), n,
		t0, t1);
	fprintf(f, "ns_per_call %.3f\nutime_ns %lld\nstime_ns %lld\nchecksum %ld\n",
		(double)(t1 - t0) / (double)n, tv_ns(ru.ru_utime), tv_ns(ru.ru_stime), sum);
	fprintf(f, "cpu_start %d\ncpu_end %d\n", cpu_start, cpu_end);
	if (fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	return 0;
}
