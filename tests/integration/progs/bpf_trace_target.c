/* bpf_trace_target N: deterministic calls for uprobe tests of both backends.
 *
 * Round i (0-based) calls bt_add(i - 3, i * 1000000007L), bt_name("item-<i>", i),
 * bt_pair(&{i, -i, "pair-<i>"}) and returns 0. Built with -O1 by tests/conftest.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_pair {
	int x;
	long y;
	const char *label;
};

__attribute__((noinline)) long bt_add(int a, long b)
{
	__asm__ volatile("" ::: "memory");
	return a + b;
}

__attribute__((noinline)) int bt_name(const char *s, unsigned n)
{
	__asm__ volatile("" ::: "memory");
	return (int)strlen(s) + (int)n;
}

__attribute__((noinline)) int bt_pair(const struct bt_pair *p)
{
	__asm__ volatile("" ::: "memory");
	return p->x + (int)p->y + (int)strlen(p->label);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 3;
	long sum = 0;
	char buf[32], lab[32];

	for (long i = 0; i < n; i++) {
		struct bt_pair p = {(int)i, -i, lab};

		snprintf(buf, sizeof(buf), "item-%ld", i);
		snprintf(lab, sizeof(lab), "pair-%ld", i);
		sum += bt_add((int)i - 3, i * 1000000007L);
		sum += bt_name(buf, (unsigned)i);
		sum += bt_pair(&p);
	}
	return sum == 42 ? 3 : 0;
}
