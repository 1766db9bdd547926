/* probewatch test target: functions with known arguments, USDT probes, an IFUNC,
 * a static function that also exists in pw_sem.c (ambiguous name), and a call into
 * libpw.so.  Built by tests/targets/build.py in several variants (PIE, non-PIE,
 * stripped + separate debug file).
 *
 * usage: pw_target [N]      run the calls N times (default 1) and exit
 *        pw_target wait     print "ready", wait for a line on stdin, run once, exit
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pw_sdt.h"

int pw_lib_mul(int a, int b); /* libpw.so */
int pw_sem_fire(int x);       /* pw_sem.c */
int pw_sem_local_call(int x); /* pw_sem.c */

long pw_counter = 41;

__attribute__((noinline)) int pw_add(int a, long b)
{
    __asm__ volatile("" ::: "memory");
    return (int)(a + b);
}

static char pw_greeting[64];

__attribute__((noinline)) const char *pw_greet(const char *who)
{
    __asm__ volatile("" ::: "memory");
    snprintf(pw_greeting, sizeof(pw_greeting), "hello, %s", who);
    return pw_greeting;
}

__attribute__((noinline)) long pw_many(long a0, long a1, long a2, long a3, long a4, long a5,
                                       long a6, long a7)
{
    __asm__ volatile("" ::: "memory");
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

/* same name as a static function in pw_sem.c: "pw_local" is ambiguous */
static __attribute__((noinline)) int pw_local(int x)
{
    __asm__ volatile("" ::: "memory");
    return x * 3;
}

/* an IFUNC with two implementations named the way glibc names them */
__attribute__((noinline)) int __pw_ifunc_generic(int x) { return x + 1; }
__attribute__((noinline)) int __pw_ifunc_fast(int x) { return x + 1; }
static int (*pw_ifunc_resolver(void))(int)
{
    return getenv("PW_SLOW") ? __pw_ifunc_generic : __pw_ifunc_fast;
}
int pw_ifunc(int x) __attribute__((ifunc("pw_ifunc_resolver")));

static void pw_round(int i)
{
    volatile int a = -7;
    volatile long b = 5000000000L;
    const char *name = "probewatch";
    int r = pw_add(a, b);
    PW_PROBE3(pwtest, add, a, b, name);
    PW_PROBE1(pwtest, konst, 5);
    PW_PROBE1(pwtest, global, pw_counter);
    PW_PROBE1(pwtest, twice, 1);
    PW_PROBE1(pwother, add, 2);
    const char *g = pw_greet(name);
    long m = pw_many(1, 2, 3, 4, 5, 6, 77, 88);
    int s = pw_sem_fire(i);
    int l = pw_local(i) + pw_sem_local_call(i);
    int p = pw_lib_mul(6, 7);
    int f = pw_ifunc(i);
    PW_PROBE1(pwtest, twice, 2);
    printf("round %d: add=%d greet=%s many=%ld sem=%d local=%d lib=%d ifunc=%d\n", i, r, g, m, s,
           l, p, f);
}

int main(int argc, char **argv)
{
    int n = 1;
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        char line[16];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
            return 1;
    } else if (argc > 1) {
        n = atoi(argv[1]);
    }
    for (int i = 0; i < n; i++)
        pw_round(i);
    return 0;
}
