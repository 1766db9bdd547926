/*
 * loop_common.h: what the bench loop workloads share: argument parsing, optional CPU
 * pinning, CLOCK_MONOTONIC timing and the "key value" report file (see the workloads'
 * headers for the keys). The workload itself is the loop in each main().
 */
#ifndef PW_LOOP_COMMON_H
#define PW_LOOP_COMMON_H
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
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

/* N from argv (usage: PROG N REPORT), then pin to CPU $pin_env if set. 0 = error. */
static long long loop_setup(int argc, char **argv, const char *pin_env)
{
	const char *pin = getenv(pin_env);
	long long n;

	if (argc != 3) {
		fprintf(stderr, "usage: %s N REPORT\n", argv[0]);
		return 0;
	}
	n = atoll(argv[1]);
	if (n <= 0) {
		fprintf(stderr, "%s: N must be > 0\n", argv[0]);
		return 0;
	}
	if (pin && *pin) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(atoi(pin), &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0) {
			perror("sched_setaffinity");
			return 0;
		}
	}
	return n;
}

/* The report; t_main < 0 leaves that key out. Returns the exit status. */
static int loop_report(const char *path, long long n, long long t_main, long long t0,
		       long long t1, long sum, int cpu_start, int cpu_end)
{
	struct rusage ru;
	FILE *f;

	getrusage(RUSAGE_SELF, &ru);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		return 1;
	}
	fprintf(f, "pid %d\ncalls %lld\n", (int)getpid(), n);
	if (t_main >= 0)
		fprintf(f, "t_main %lld\n", t_main);
	fprintf(f, "t_loop_start %lld\nt_loop_end %lld\n", t0, t1);
	fprintf(f, "ns_per_call %.3f\nutime_ns %lld\nstime_ns %lld\nchecksum %ld\n",
		(double)(t1 - t0) / (double)n, tv_ns(ru.ru_utime), tv_ns(ru.ru_stime), sum);
	fprintf(f, "cpu_start %d\ncpu_end %d\n", cpu_start, cpu_end);
	if (fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}
#endif
