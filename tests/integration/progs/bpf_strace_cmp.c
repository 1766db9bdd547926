/* bpf_strace_cmp TMPDIR: a fixed sequence of syscalls between two marker access()
 * calls, for comparing `probewatch syscalls -f` with `strace -f` line by line. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char a[512], b[512], buf[64];
    snprintf(a, sizeof a, "%s/file one", dir);
    snprintf(b, sizeof b, "%s/file-two", dir);

    access("/pw-start-marker", F_OK);

    int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
    read(fd, buf, sizeof buf);
    close(fd);
    open("/nonexistent/x", O_RDONLY);

    fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    write(fd, "hello\tworld\n\001\0020\"q\\ and a much longer tail that strace cuts", 59);
    close(fd);
    rename(a, b);
    unlink(b);
    unlink(b);
    mkdir(a, 0755);
    rmdir(a);

    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(1)};
    inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&s4, sizeof s4);
    close(fd);

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(2)};
    inet_pton(AF_INET6, "::1", &s6.sin6_addr);
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connect(fd, (struct sockaddr *)&s6, sizeof s6);
    close(fd);

    struct sockaddr_un su = {.sun_family = AF_UNIX};
    strcpy(su.sun_path, "/nonexistent.sock");
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&su, sizeof su);
    close(fd);

    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(p, 4096, PROT_READ);
    munmap(p, 4096);
    kill(getpid(), 0);
    dup2(1, 9);
    close(9);
    lseek(0, 0, SEEK_CUR);

    pid_t child = fork();
    if (child == 0) {
        write(1, "child\n", 6);
        access("/pw-child-marker", R_OK | W_OK);
        _exit(3);
    }
    waitpid(child, NULL, 0);

    access("/pw-end-marker", F_OK);
    return 0;
}
