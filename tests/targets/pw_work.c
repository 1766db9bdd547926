/* probewatch test target for library probes and USDT semaphores (tests/integration/
 * test_uprobes.py builds it with gcc; -DPW_HAVE_SDT when <sys/sdt.h> is there).
 *
 * usage: pw_work getpid N        call getpid() N times, print "getpid N <pid>"
 *        pw_work malloc SIZE...  malloc (and free) each SIZE once, print "malloc ok"
 *        pw_work sem             for each line read on stdin print one line
 *                                  "tick K sem=S fired=F"
 *                                where S is the value of the pwwork:tick semaphore
 *                                and F is 1 when the guarded probe fired (S != 0),
 *                                then flush; K counts the lines from 0. Exits at EOF
 *                                or on a line "q".
 *
 * The pwwork:tick probe carries (int K, long -K * 1000000007, const char *"tick-K"):
 * a negative 64-bit value and a string, so a test can check exact arguments.
 */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pw_sdt.h"

#ifdef PW_HAVE_SDT
__extension__ unsigned short pwwork_tick_semaphore __attribute__((unused))
__attribute__((section(".probes")));
#define PW_TICK_SEMAPHORE() (*(volatile unsigned short *)&pwwork_tick_semaphore)
#else
#define PW_TICK_SEMAPHORE() 0
#endif

static int do_getpid(long n)
{
    long sum = 0;
    for (long i = 0; i < n; i++)
        sum += getpid();
    printf("getpid %ld %d\n", n, (int)(sum / (n ? n : 1)));
    return 0;
}

static int do_malloc(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        size_t size = strtoul(argv[i], NULL, 10);
        volatile char *p = malloc(size);
        if (!p)
            return 1;
        p[0] = 1;
        free((void *)p);
    }
    printf("malloc ok\n");
    return 0;
}

static int do_sem(void)
{
    char line[64], label[32];
    for (int k = 0; fgets(line, sizeof(line), stdin); k++) {
        if (line[0] == 'q')
            break;
        unsigned sem = PW_TICK_SEMAPHORE();
        int fired = 0;
        if (sem) {
            volatile int kk = k;
            volatile long big = -(long)k * 1000000007L;
            snprintf(label, sizeof(label), "tick-%d", k);
            const char *lp = label;
            PW_PROBE3(pwwork, tick, kk, big, lp);
            fired = 1;
        }
        printf("tick %d sem=%u fired=%d\n", k, sem, fired);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "getpid") == 0)
        return do_getpid(atol(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "malloc") == 0)
        return do_malloc(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "sem") == 0)
        return do_sem();
    fprintf(stderr, "usage: pw_work getpid N | malloc SIZE... | sem\n");
    return 2;
}
