/* Map a library's code segment straight out of an APK, as Android's dynamic linker
 * does for a stored, page-aligned lib/<abi>/*.so entry, and call pw_apk_add in it
 * (tests/android/).
 *
 * usage: pw_apk_loader APK MAP_OFFSET MAP_LEN FUNC_DELTA N [wait]
 *   mmaps MAP_LEN bytes of APK at file offset MAP_OFFSET (PROT_READ|PROT_EXEC), then
 *   for k < N calls the function at base + FUNC_DELTA as
 *   f(k, -k * 1000000007, "apk-k") and prints "k result"; with "wait" it first prints
 *   "ready PID" and waits for a line on stdin.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef long (*add_fn)(int, long, const char *);

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: pw_apk_loader APK MAP_OFFSET MAP_LEN FUNC_DELTA N [wait]\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    off_t off = strtoll(argv[2], NULL, 0);
    size_t len = strtoull(argv[3], NULL, 0);
    size_t delta = strtoull(argv[4], NULL, 0);
    int n = atoi(argv[5]);
    char *base = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, off);
    if (base == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    add_fn f = (add_fn)(void *)(base + delta);
    if (argc > 6 && strcmp(argv[6], "wait") == 0) {
        char line[16];
        printf("ready %d\n", (int)getpid());
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
            return 1;
    }
    for (int k = 0; k < n; k++) {
        char label[32];
        snprintf(label, sizeof(label), "apk-%d", k);
        printf("%d %ld\n", k, f(k, -(long)k * 1000000007L, label));
    }
    fflush(stdout);
    return 0;
}
