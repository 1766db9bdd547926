/*
 * getppid_loop: the syscall firehose workload for bench/syscall_firehose.py.
 *
 *   getppid_loop N REPORT
 *
 * Makes N syscall(SYS_getppid) calls in a tight loop and writes a small
 * "key value" report to the file REPORT (not to stdout: under a tracer stdout
 * belongs to the tracer). Times are CLOCK_MONOTONIC nanoseconds, the same clock
 * as Python's time.monotonic_ns(), so the driver can compute start-up time:
 *
 *   pid          this process's pid
 *   calls        N
 *   t_main       when main() began
 *   t_loop_start just before the first getppid (the first traced syscall)
 *   t_loop_end   just after the last one
 *   ns_per_call  (t_loop_end - t_loop_start) / N
 *   utime_ns     own user CPU (getrusage RUSAGE_SELF), at the end
 *   stime_ns     own system CPU
 *   cpu_start    the CPU the loop started on (sched_getcpu)
 *   cpu_end      the CPU it ended on
 *
 * With GETPPID_LOOP_CPU=K in the environment it pins itself to CPU K first.
 *
 * Build: gcc -O2 -o getppid_loop getppid_loop.c
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
	long long t_main = now_ns();
	long long n, i, t0, t1;
	long sum = 0;
	int cpu_start, cpu_end;
	const char *pin = getenv("GETPPID_LOOP_CPU");
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
		sum += syscall(SYS_getppid);
	t1 = now_ns();
	cpu_end = sched_getcpu();

	getrusage(RUSAGE_SELF, &ru);
	f = fopen(argv[2], "w");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	fprintf(f, "pid %d\ncalls %lld\nt_main %lld\nt_loop_start %lld\nt_loop_end %lld\n",
		(int)getpid(), n, t_main, t0, t1);
	fprintf(f, "ns_per_call %.3f\nutime_ns %lld\nstime_ns %lld\nchecksum %ld\n",
		(double)(t1 - t0) / (double)n, tv_ns(ru.ru_utime), tv_ns(ru.ru_stime), sum);
	fprintf(f, "cpu_start %d\ncpu_end %d\n", cpu_start, cpu_end);
	if (fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	return 0;
}
