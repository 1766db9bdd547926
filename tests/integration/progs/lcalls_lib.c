/* libpwl.so for probewatch ltrace's DWARF prototypes (built with -g by the test) */
#include <stddef.h>
typedef unsigned long pwl_size;
enum pwl_mode { PWL_A = 1, PWL_B = 7 };
struct pwl_box { int v; };

const char *pwl_greet(const char *who, int times) { return times > 0 ? who : "none"; }
pwl_size pwl_sum(unsigned char c, short s, long l, pwl_size u) { return c + s + l + u; }
void pwl_note(struct pwl_box *b, enum pwl_mode m) { if (b) b->v = m; }
int pwl_vsum(int n, ...) { return n; }
