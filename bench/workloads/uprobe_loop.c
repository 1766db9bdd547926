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
#include "loop_common.h"

__attribute__((noinline)) long pw_bench_fn(long x)
{
	__asm__ volatile("" ::: "memory");
	return x + 1;
}

int main(int argc, char **argv)
{
	long long n = loop_setup(argc, argv, "UPROBE_LOOP_CPU"), i, t0, t1;
	long sum = 0;
	int cpu_start, cpu_end;

	if (n <= 0)
		return 2;
	cpu_start = sched_getcpu();
	t0 = now_ns();
	for (i = 0; i < n; i++)
		sum += pw_bench_fn(i);
	t1 = now_ns();
	cpu_end = sched_getcpu();
	return loop_report(argv[2], n, -1, t0, t1, sum, cpu_start, cpu_end);
}
