/* marks N: N times write the mark 'cmark {"i":I}' to trace_marker, then getppid();
   a begin/end pair (B|cspan ... E|cspan) around the loop. The mark format is
   probewatch.mark's (src/probewatch/marks.py). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void put(int fd, const char *s) {
    if (write(fd, s, strlen(s)) < 0) {
        perror("write trace_marker");
        exit(1);
    }
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3;
    const char *path = argc > 2 ? argv[2] : "/sys/kernel/tracing/trace_marker";
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    char buf[64];
    put(fd, "B|cspan");
    for (long i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, "cmark {\"i\":%ld}", i);
        put(fd, buf);
        syscall(SYS_getppid);
    }
    put(fd, "E|cspan");
    close(fd);
    return 0;
}
