/* <sys/sdt.h> when available (Debian: systemtap-sdt-dev), else no-op probes */
#ifndef PW_SDT_H
#define PW_SDT_H
#ifdef PW_HAVE_SDT
#include <sys/sdt.h>
#define PW_PROBE1(p, n, a) STAP_PROBE1(p, n, a)
#define PW_PROBE3(p, n, a, b, c) STAP_PROBE3(p, n, a, b, c)
#else
#define PW_PROBE1(p, n, a) ((void)(a))
#define PW_PROBE3(p, n, a, b, c) ((void)(a), (void)(b), (void)(c))
#endif
#endif
