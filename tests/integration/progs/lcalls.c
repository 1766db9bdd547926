/* Library calls with known arguments, for probewatch ltrace against ltrace.
 * lcalls            one pass of every call below, then exit 0
 * lcalls loop       call getppid() every 10 ms until killed (for -p)
 * lcalls count N    N malloc/free pairs of 24 bytes (for -c)
 * Built with -fno-builtin so that gcc keeps every call a call. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "loop") == 0) {
    for (;;) { getppid(); usleep(10000); }
  }
  if (argc > 2 && strcmp(argv[1], "count") == 0) {
    long n = atol(argv[2]);
    for (long i = 0; i < n; i++) free(malloc(24));
    return 0;
  }
  char *p = malloc(16);
  strcpy(p, "hello");
  printf("%s %zu %d %c %x\n", p, strlen(p), -42, 'q', 4096);
  void *q = calloc(3, 8);
  q = realloc(q, 100);
  free(q);
  free(p);
  puts("tab\there \"quoted\" and a long tail past thirty-two chars");
  int fd = open("/etc/hostname", O_RDONLY);
  close(fd);
  close(-1);
  setenv("PW_LCALLS", "v1", 1);
  printf("%s\n", getenv("PW_LCALLS"));
  getenv("PW_LCALLS_UNSET_NAME");
  atoi("-17");
  strcmp("abc", "abd");
  memset(argv[0], 'x', 0);
  access("/nonexistent/pw", F_OK);
  fflush(stdout);
  return 3;
}
