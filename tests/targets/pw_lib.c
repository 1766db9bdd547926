/* libpw.so: a shared library for symbol -> offset tests */
__attribute__((noinline)) int pw_lib_mul(int a, int b)
{
    __asm__ volatile("" ::: "memory");
    return a * b;
}
