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
 *   best_batch_ns_per_call  the fastest batch of BATCH (4096) calls, per call: on a
 *                shared machine the batches that ran without being preempted or
 *                sharing their CPU show the cost itself (one clock read per batch)
 *   batches      full batches timed
 *
 * With GETPPID_LOOP_CPU=K in the environment it pins itself to CPU K first.
 *
 * Build: gcc -O2 -o getppid_loop getppid_loop.c
 */
#include "loop_common.h"
#include <sys/syscall.h>

#define BATCH 4096

int main(int argc, char **argv)
{
	long long t_main = now_ns();
	long long n = loop_setup(argc, argv, "GETPPID_LOOP_CPU"), i, t0, t1, b0;
	long long best = -1, batches = 0;
	FILE *f;
	long sum = 0;
	int cpu_start, cpu_end;

	if (n <= 0)
		return 2;
	cpu_start = sched_getcpu();
	t0 = now_ns();
	for (i = 0, b0 = t0; i < n;) {
		long long lim = n - i > BATCH ? i + BATCH : n, b1;

		for (; i < lim; i++)
			sum += syscall(SYS_getppid);
		b1 = now_ns();
		if (lim % BATCH == 0 && (best < 0 || b1 - b0 < best)) {
			best = b1 - b0;
		}
		batches += lim % BATCH == 0;
		b0 = b1;
	}
	t1 = now_ns();
	cpu_end = sched_getcpu();
	if (loop_report(argv[2], n, t_main, t0, t1, sum, cpu_start, cpu_end))
		return 1;
	f = fopen(argv[2], "a");
	if (!f)
		return 1;
	if (best >= 0)
		fprintf(f, "best_batch_ns_per_call %.3f\n", (double)best / BATCH);
	fprintf(f, "batches %lld\n", batches);
	return fclose(f) != 0;
}
