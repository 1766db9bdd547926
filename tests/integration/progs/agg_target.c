/* agg_target: known work for the aggregation tests (build with -O0 -fno-builtin).
 *   agg_target malloc   malloc 3 x 3000, 5 x 20000, 2 x 300000 bytes (freed)
 *   agg_target nap      agg_nap(4.3 ms) 5 times, then agg_nap(17 ms) 3 times
 * nap runs SCHED_FIFO with a 1 ns timer slack (when allowed) so that a loaded machine
 * wakes it in time: each nap stays well inside its log2 bucket.
 */
#include <sched.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <string.h>
#include <time.h>

__attribute__((noinline)) void agg_nap(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void take(size_t n, int times) {
    for (int i = 0; i < times; i++) {
        void *p = malloc(n);
        if (!p)
            exit(2);
        free(p);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "malloc") == 0) {
        take(3000, 3);
        take(20000, 5);
        take(300000, 2);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "nap") == 0) {
        struct sched_param sp = {.sched_priority = 10};
        sched_setscheduler(0, SCHED_FIFO, &sp);
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        for (int i = 0; i < 5; i++)
            agg_nap(4300);
        for (int i = 0; i < 3; i++)
            agg_nap(17000);
        return 0;
    }
    return 1;
}
