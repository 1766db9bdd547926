/* Allocations of known sizes from known call sites, for probewatch mallocs.
 * Sizes are chosen in log2 buckets that the C library's own start-up does not use,
 * so the histogram counts in those buckets are exact. Built -O0 with frame pointers. */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void *keep[64];

__attribute__((noinline)) void grow(void) {           /* 10 x 100000: kept */
  for (int i = 0; i < 10; i++) keep[i] = malloc(100000);
}
__attribute__((noinline)) void churn(void) {          /* 1000 x 5000: all freed */
  for (int i = 0; i < 1000; i++) free(malloc(5000));
}
__attribute__((noinline)) void arrays(void) {         /* 7 x calloc(300, 1000): 2 freed */
  for (int i = 0; i < 7; i++) keep[10 + i] = calloc(300, 1000);
  free(keep[10]);
  free(keep[11]);
}
__attribute__((noinline)) void resize(void) {         /* realloc 3000000 -> 5000000 */
  void *p = realloc(NULL, 3000000);
  keep[20] = realloc(p, 5000000);
}
__attribute__((noinline)) void aligned(void) {        /* 3 x posix_memalign 40000 */
  for (int i = 0; i < 3; i++) posix_memalign(&keep[30 + i], 64, 40000);
}
__attribute__((noinline)) void maps(void) {           /* 3 x mmap 8 MiB: 1 unmapped */
  for (int i = 0; i < 3; i++)
    keep[40 + i] = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
  munmap(keep[40], 8 << 20);
}
int main(int argc, char **argv) {
  grow(); churn(); arrays(); resize(); aligned(); maps();
  if (argc > 1) pause();   /* "wait": stay alive for -p */
  return 0;
}
