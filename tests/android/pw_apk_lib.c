/* A native library as an app ships it in its APK (lib/<abi>/libpwapk.so), for
 * tests/android/. Self-contained (no relocations, no libc): the loader maps its code
 * straight from the APK and calls into it. With -DPW_HAVE_SDT it carries a USDT
 * probe pwapk:add(a, b, s) too. */
#include "pw_sdt.h"

__attribute__((noinline)) long pw_apk_add(int a, long b, const char *s)
{
    long n = 0;
    PW_PROBE3(pwapk, add, a, b, s);
    while (s[n])
        n++;
    __asm__ volatile("" ::: "memory");
    return a + b + n;
}
