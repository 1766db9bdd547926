/* getpgid_n N [SYNC M]: make exactly N getpgid syscalls; with SYNC, then create
 * SYNC.a, wait for SYNC.b, make M more calls, create SYNC.c, wait for SYNC.d, exit 0.
 * (getpgid: a syscall no other test traces, so a test may gate its tracepoint.) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void mark(const char *sync, char c) {
    char path[4096];
    snprintf(path, sizeof path, "%s.%c", sync, c);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0)
        close(fd);
}

static void wait_for(const char *sync, char c) {
    char path[4096];
    struct timespec ms = {0, 1000000L};
    snprintf(path, sizeof path, "%s.%c", sync, c);
    for (int i = 0; i < 30000 && access(path, F_OK) != 0; i++)
        nanosleep(&ms, NULL);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    for (long i = 0; i < n; i++)
        syscall(SYS_getpgid, 0);
    if (argc > 3) {
        long m = atol(argv[3]);
        mark(argv[2], 'a');
        wait_for(argv[2], 'b');
        for (long i = 0; i < m; i++)
            syscall(SYS_getpgid, 0);
        mark(argv[2], 'c');
        wait_for(argv[2], 'd');
    }
    return 0;
}
