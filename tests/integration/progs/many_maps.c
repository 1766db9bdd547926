/* many_maps N SECS: N single-page mappings (alternating protections, so none merge),
 * then sleep: a /proc/PID/maps that costs tens of ms to read. */
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  char *p = mmap(0, (size_t)n * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (int i = 0; i < n; i += 2) mprotect(p + (size_t)i * 4096, 4096, PROT_READ | PROT_WRITE);
  sleep(atoi(argv[2]));
  return 0;
}
