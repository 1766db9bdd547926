/* USDT probe guarded by a semaphore (the ".probes" counter the kernel bumps through
 * the uprobe ref_ctr_offset), and a second static "pw_local". */
#define _SDT_HAS_SEMAPHORES 1
#include "pw_sdt.h"

#ifdef PW_HAVE_SDT
__extension__ unsigned short pwtest_withsem_semaphore __attribute__((unused))
__attribute__((section(".probes")));
#define PW_WITHSEM_ENABLED() __builtin_expect(pwtest_withsem_semaphore, 0)
#else
#define PW_WITHSEM_ENABLED() 0
#endif

static __attribute__((noinline)) int pw_local(int x)
{
    __asm__ volatile("" ::: "memory");
    return x * 5;
}

__attribute__((noinline)) int pw_sem_fire(int x)
{
    int fired = 0;
    if (PW_WITHSEM_ENABLED()) {
        PW_PROBE1(pwtest, withsem, x + 100);
        fired = 1;
    }
    return fired;
}

int pw_sem_local_call(int x) { return pw_local(x); }
