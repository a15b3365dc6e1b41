/* wake-cost: what a thread wake-up costs on this machine, the number that
 * decides QD1 latency between a client and a server on the same host.
 * Two processes ping-pong one byte over a socketpair (blocking read and
 * write, as a QD1 request and its reply) with both pinned to one CPU,
 * pinned to two different CPUs, and left to the scheduler.
 *
 *   wake-cost [ROUND_TRIPS]      (default 50000)
 *
 * Prints the mean round trip of each placement in microseconds. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s) < 0) {
        perror("sched_setaffinity");
        exit(2);
    }
}

/* Mean round trip in microseconds, -1 on error. */
static double run(long n, int cpu_a, int cpu_b)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    char b = 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        pin(cpu_b);
        for (long i = 0; i < n; i++)
            if (read(sv[1], &b, 1) != 1 || write(sv[1], &b, 1) != 1)
                _exit(1);
        _exit(0);
    }
    pin(cpu_a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long i = 0;
    for (; i < n; i++)
        if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1)
            break;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int st = 0;
    waitpid(pid, &st, 0);
    close(sv[0]);
    close(sv[1]);
    if (i < n || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 /
           (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 50000;
    if (n <= 0) {
        fprintf(stderr, "usage: wake-cost [ROUND_TRIPS]\n");
        return 2;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double same = run(n, 0, 0);
    double cross = ncpu > 1 ? run(n, 0, 1) : -1;
    double freep = run(n, -1, -1);
    if (same < 0 || freep < 0 || (ncpu > 1 && cross < 0)) {
        fprintf(stderr, "wake-cost: the ping-pong failed\n");
        return 1;
    }
    printf("round trip, one CPU:        %8.2f us\n", same);
    if (ncpu > 1)
        printf("round trip, two CPUs:       %8.2f us\n", cross);
    printf("round trip, scheduler's:    %8.2f us\n", freep);
    return 0;
}
