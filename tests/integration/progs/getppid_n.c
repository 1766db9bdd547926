/* getppid_n N [SLEEP_MS]: make exactly N getppid syscalls, then exit 0. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    long ms = argc > 2 ? atol(argv[2]) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    return argc > 3 ? atoi(argv[3]) : 0;
}
