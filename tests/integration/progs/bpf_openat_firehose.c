/* bpf_openat_firehose N [PATH [-t]]: exactly N openat+close of an existing file.
 * With -t, prints "start_ns end_ns" (CLOCK_MONOTONIC) on stderr for benchmarks. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    const char *path = argc > 2 ? argv[2] : "/etc/hostname";
    int timed = argc > 3 && strcmp(argv[3], "-t") == 0;
    long bad = 0;
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = openat(AT_FDCWD, path, O_RDONLY);
        if (fd < 0)
            bad++;
        else
            close(fd);
    }
    if (timed)
        fprintf(stderr, "firehose %lld %lld\n", t0, now_ns());
    return bad ? 1 : 0;
}
