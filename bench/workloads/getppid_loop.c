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
#include "loop_common.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	long long t_main = now_ns();
	long long n = loop_setup(argc, argv, "GETPPID_LOOP_CPU"), i, t0, t1;
	long sum = 0;
	int cpu_start, cpu_end;

	if (n <= 0)
		return 2;
	cpu_start = sched_getcpu();
	t0 = now_ns();
	for (i = 0; i < n; i++)
		sum += syscall(SYS_getppid);
	t1 = now_ns();
	cpu_end = sched_getcpu();
	return loop_report(argv[2], n, t_main, t0, t1, sum, cpu_start, cpu_end);
}
