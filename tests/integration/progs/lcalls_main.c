/* calls libpwl.so's functions with known arguments (see lcalls_lib.c) */
#include <stdio.h>
const char *pwl_greet(const char *who, int times);
unsigned long pwl_sum(unsigned char c, short s, long l, unsigned long u);
struct pwl_box { int v; };
void pwl_note(struct pwl_box *b, int m);
int pwl_vsum(int n, ...);
int main(void) {
  struct pwl_box b = {0};
  pwl_greet("world", 3);
  pwl_greet("x", -2);
  pwl_sum('A', -5, -70000, 5000000000UL);
  pwl_note(NULL, 7);
  pwl_vsum(2, 10, 20);
  return b.v;
}
