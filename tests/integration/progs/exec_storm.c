/* exec_storm SECS [big [PROGRAM]]: fork+exec /bin/true (or PROGRAM) as fast as it can for SECS seconds
 * (big: 127 argv entries of 63 bytes and three 1400-byte LD_* variables each, the
 * most an exec record holds); prints how many it started. A storm of short-lived
 * processes for probewatch watch's bounds and loss accounting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char big[128][64], env[3][1500];
	char *args[130], *envp[4];
	int secs = argc > 1 ? atoi(argv[1]) : 1, many = argc > 2 && strcmp(argv[2], "big") == 0;
	const char *prog = argc > 3 ? argv[3] : "/bin/true";
	time_t end = time(NULL) + secs;
	long n = 0;

	args[0] = "true";
	for (int i = 1; i < 128; i++) {
		memset(big[i], 'A' + i % 26, 63);
		big[i][0] = (char)('0' + i % 10);
		args[i] = big[i];
	}
	args[many ? 128 : 1] = NULL;
	for (int i = 0; i < 3; i++) {
		snprintf(env[i], 8, "LD_X%d=", i);
		memset(env[i] + 6, 'v', 1400);
		envp[i] = env[i];
	}
	envp[3] = NULL;
	while (time(NULL) < end) {
		for (int i = 0; i < 32; i++) {
			pid_t p = fork();
			if (p == 0) {
				execve(prog, args, envp);
				_exit(127);
			}
			if (p > 0)
				n++;
		}
		while (waitpid(-1, NULL, 0) > 0)
			;
	}
	printf("%ld\n", n);
	return 0;
}
