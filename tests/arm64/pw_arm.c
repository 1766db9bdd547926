/* probewatch arm64 test target: cross-compiled on the host (aarch64-linux-gnu-gcc, see
 * tests/arm64/build.py) and run inside the arm64 guest by tests/arm64/guest/.
 *
 * usage: pw_arm add N        calls pw_arm_add(k, -k * 1000000007, "arm-k") for k < N and
 *                            fires USDT pwarm:hit(k, -k * 1000000007, "arm-k") each time;
 *                            then USDT pwarm:total(S); prints "add N sum S"
 *        pw_arm getppid N    getppid() N times
 *        pw_arm open PATH    openat(PATH, O_RDONLY|O_CLOEXEC), then openat("/",
 *                            O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC) (the open flags
 *                            arm64 numbers differently from x86_64), then fstatat(PATH)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "pw_sdt.h"

__attribute__((noinline)) long pw_arm_add(int a, long b, const char *s)
{
    __asm__ volatile("" ::: "memory");
    return a + b + (long)strlen(s);
}

static int do_add(int n)
{
    long sum = 0;
    char label[32];
    for (int k = 0; k < n; k++) {
        volatile int kk = k;
        volatile long big = -(long)k * 1000000007L;
        snprintf(label, sizeof(label), "arm-%d", k);
        const char *volatile lp = label;
        sum += pw_arm_add(kk, big, lp);
        /* volatile operands: gcc writes memory operands (-4@[sp, 28]) for some */
        PW_PROBE3(pwarm, hit, kk, big, lp);
    }
    PW_PROBE1(pwarm, total, sum); /* a register operand (-8@x19) */
    printf("add %d sum %ld\n", n, sum);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "add") == 0)
        return do_add(atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "getppid") == 0) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++)
            getppid();
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "open") == 0) {
        struct stat st;
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        int dfd = open("/", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r = fstatat(AT_FDCWD, argv[2], &st, 0);
        printf("open %d %d %d\n", fd, dfd >= 0, r);
        return 0;
    }
    fprintf(stderr, "usage: pw_arm add N | getppid N | open PATH\n");
    return 2;
}
