/* group-job: a communication-heavy parallel job for bench/group-sched.sh,
 * the workload of the VM-group scheduling-effect measurement.
 *
 *   group-job [--procs N] [--rounds R] [--work W]   run the job once and
 *                                                   print its completion time
 *   group-job --hog                                 spin on one CPU until killed
 *   group-job --shm FILE --rank K --ranks N         one rank of the job across
 *                                                   VMs (run in each guest)
 *
 * N processes run R rounds. In each round every process computes W steps of
 * a small integer recurrence, then sends one 16-byte message to each of the
 * N-1 others (all-to-all, each process has one pipe as its inbox) and waits
 * until it has the N-1 messages of that round before the next one. One
 * process that is not running holds up all the others: the job finishes
 * fast only when its processes run at the same time, which is what grouping
 * the VMs of a parallel job tries to approach.
 *
 * Output (one line): procs=N rounds=R work=W seconds=S, S being the time
 * from the start signal to the exit of the last process. Exit status 0, or
 * 1 when a process failed (a message of the wrong round, a short read).
 *
 * Across VMs (--shm): the ranks live in different guests and share only a
 * memory region, the group's ivshmem BAR (FILE: the PCI device's
 * resource2 in sysfs). Each rank computes W steps, publishes its round in
 * its own 64-byte slot and polls until every rank has published that round
 * (polling, as HPC codes on shared memory or RDMA do): a rank whose vCPU is
 * not running holds up the others. The controller (bench/group-sched.sh,
 * on the host, through the same memory) starts run r by writing R, W and
 * then r into the header; each rank writes r into its slot's "done" word at
 * the end and waits for the next run. Runs until killed. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64

struct msg {
    uint32_t from;
    uint32_t round;
    uint64_t value;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* One process of the job: rank me of n, inbox[i][0] is process i's read end. */
static int worker(unsigned me, unsigned n, unsigned rounds, unsigned work, int inbox[][2],
                  int start_fd)
{
    /* A peer can be at most one round ahead (it needs our message of the
     * round it is in), so counts per round parity suffice. */
    unsigned have[2] = { 0, 0 };
    uint64_t x = me + 1;
    char go;

    if (read_full(start_fd, &go, 1) < 0)
        return 1;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < work; i++)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        struct msg m = { me, r, x };
        for (unsigned p = 0; p < n; p++) {
            if (p != me && write_full(inbox[p][1], &m, sizeof m) < 0) {
                fprintf(stderr, "group-job: rank %u: write: %s\n", me, strerror(errno));
                return 1;
            }
        }
        while (have[r & 1] < n - 1) {
            struct msg in;
            if (read_full(inbox[me][0], &in, sizeof in) < 0) {
                fprintf(stderr, "group-job: rank %u: short read\n", me);
                return 1;
            }
            if (in.round != r && in.round != r + 1) {
                fprintf(stderr, "group-job: rank %u: round %u message in round %u\n", me,
                        in.round, r);
                return 1;
            }
            have[in.round & 1]++;
        }
        have[r & 1] = 0;
    }
    /* Keep the result alive so the compute loop is not optimised away. */
    return x == 42 ? 2 : 0;
}

static int hog(void)
{
    volatile uint64_t x = 1;
    for (;;)
        x = x * 6364136223846793005ull + 1;
    return 0;
}

/* The --shm layout, in 64-bit words: header at 0 (run, rounds, work),
 * rank k's slot at 8 * (k + 1) (round reached, run done). */
#define SHM_RUN 0
#define SHM_ROUNDS 1
#define SHM_WORK 2
#define SHM_SLOT(k) (8 * ((size_t)(k) + 1))
#define SHM_MAX_RANKS 64

static uint64_t shm_load(volatile uint64_t *w, size_t i)
{
    return __atomic_load_n(&w[i], __ATOMIC_ACQUIRE);
}

static void shm_store(volatile uint64_t *w, size_t i, uint64_t v)
{
    __atomic_store_n(&w[i], v, __ATOMIC_RELEASE);
}

static int shm_rank(const char *path, unsigned me, unsigned n)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "group-job: %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t len = SHM_SLOT(n) * sizeof(uint64_t);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        fprintf(stderr, "group-job: mmap %s: %s\n", path, strerror(errno));
        return 1;
    }
    volatile uint64_t *w = m;
    uint64_t last = shm_load(w, SHM_SLOT(me) + 1), x = me + 1;
    printf("group-job: rank %u of %u ready\n", me, n);
    fflush(stdout);
    for (;;) {
        const struct timespec ms = { 0, 1000000 };
        uint64_t run = shm_load(w, SHM_RUN);
        if (run == 0 || run == last) {
            nanosleep(&ms, NULL);
            continue;
        }
        uint64_t rounds = shm_load(w, SHM_ROUNDS), work = shm_load(w, SHM_WORK);
        for (uint64_t r = 1; r <= rounds; r++) {
            for (uint64_t i = 0; i < work; i++)
                x = x * 6364136223846793005ull + 1442695040888963407ull;
            /* Round numbers of a run: (run << 32) | r, so that a run never
             * sees the rounds of the previous one as reached. */
            uint64_t mark = run << 32 | r;
            shm_store(w, SHM_SLOT(me), mark);
            for (unsigned k = 0; k < n; k++)
                while (shm_load(w, SHM_SLOT(k)) < mark)
                    ;
        }
        shm_store(w, SHM_SLOT(me) + 1, run);
        last = run;
        if (x == 42)
            printf("group-job: unlikely\n");
    }
}

static unsigned arg_uint(const char *opt, const char *s, unsigned min, unsigned max)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "group-job: %s wants a number in %u..%u, not '%s'\n", opt, min, max, s);
        exit(2);
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    unsigned n = 4, rounds = 20000, work = 2000, rank = 0, ranks = 0;
    const char *shm = NULL;
    static int inbox[MAX_PROCS][2];
    int start[2];
    pid_t pids[MAX_PROCS];
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hog") == 0)
            return hog();
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: group-job [--procs N] [--rounds R] [--work W] | --hog |\n"
                            "       --shm FILE --rank K --ranks N\n");
            return 2;
        }
        if (strcmp(argv[i], "--procs") == 0)
            n = arg_uint("--procs", argv[++i], 2, MAX_PROCS);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = arg_uint("--rounds", argv[++i], 1, 100000000);
        else if (strcmp(argv[i], "--work") == 0)
            work = arg_uint("--work", argv[++i], 0, 100000000);
        else if (strcmp(argv[i], "--shm") == 0)
            shm = argv[++i];
        else if (strcmp(argv[i], "--rank") == 0)
            rank = arg_uint("--rank", argv[++i], 0, SHM_MAX_RANKS - 1);
        else if (strcmp(argv[i], "--ranks") == 0)
            ranks = arg_uint("--ranks", argv[++i], 1, SHM_MAX_RANKS);
        else {
            fprintf(stderr, "group-job: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (shm) {
        if (ranks == 0 || rank >= ranks) {
            fprintf(stderr, "group-job: --shm needs --ranks N and --rank K < N\n");
            return 2;
        }
        return shm_rank(shm, rank, ranks);
    }
    signal(SIGPIPE, SIG_IGN);
    for (unsigned i = 0; i < n; i++) {
        if (pipe(inbox[i]) < 0) {
            perror("group-job: pipe");
            return 1;
        }
    }
    if (pipe(start) < 0) {
        perror("group-job: pipe");
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("group-job: fork");
            return 1;
        }
        if (pids[i] == 0) {
            close(start[1]);
            _exit(worker(i, n, rounds, work, inbox, start[0]));
        }
    }
    close(start[0]);
    /* Everyone is forked: start them together. */
    char go[MAX_PROCS];
    memset(go, 'g', sizeof go);
    double t0 = now();
    if (write_full(start[1], go, n) < 0) {
        perror("group-job: start");
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    double t1 = now();
    printf("procs=%u rounds=%u work=%u seconds=%.3f\n", n, rounds, work, t1 - t0);
    return failed;
}
