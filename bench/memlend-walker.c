/* bench/memlend-walker.c: the array walker of the memory-lending benchmark
 * (bench/memlend.sh). It allocates an array of --size bytes, fills it, and
 * then walks it in blocks of --bs bytes: sequential or random, reading or
 * writing, for --seconds per pattern, and prints one JSON object with the
 * MB/s of each walk. Run inside a memory cgroup whose memory.max is below
 * --size, the array goes through swap, and the walk measures the swap
 * device.
 *
 * Every 8-byte word holds a value derived from its index and from the
 * generation of its 1 KiB unit (bumped by each write), so every read checks
 * what it got: a swap device that returns stale or wrong pages cannot give
 * fast wrong numbers. After the walks a full pass checks the whole array.
 *
 *   memlend-walker --size BYTES [--bs LIST] [--pattern LIST] [--seconds S]
 *                  [--seed N] [--label TEXT]
 *   memlend-walker --hold --size BYTES --stop-file PATH [--rate OPS]
 *
 * LIST is comma-separated: block sizes with K/M suffixes (1K .. 1M), and
 * patterns among seqread, seqwrite, randread, randwrite. --hold keeps the
 * array in use (random verified 4 KiB reads and writes, --rate per second)
 * until PATH exists or SIGTERM arrives, then checks everything: the swap
 * filler of the switch-time measurement. --inject-error flips one bit after
 * the fill, to show that the checks catch it. Exit status 0 when no word was
 * wrong, 1 on a mismatch, 2 on a usage or setup error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define UNIT 1024u                  /* generation granularity: 1 KiB */
#define WORDS_PER_UNIT (UNIT / 8u)
#define MAX_LIST 16

enum pattern { SEQREAD, SEQWRITE, RANDREAD, RANDWRITE };
static const char *const pattern_names[] = {"seqread", "seqwrite", "randread", "randwrite"};

struct walker {
    uint64_t *data;
    size_t size;            /* bytes, a multiple of UNIT */
    uint16_t *gen;          /* generation of each unit */
    uint64_t seed;
    uint64_t rng;
    uint64_t errors;
    uint64_t first_bad;     /* byte offset of the first wrong word */
};

struct counters {
    double t;
    long majflt;
    long long pswpin, pswpout;
};

static volatile sig_atomic_t stop_signal;

static void on_term(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The value word w must hold at generation g. */
static inline uint64_t expect(const struct walker *w, uint64_t word, uint16_t g)
{
    return (word * UINT64_C(0x9E3779B97F4A7C15)) ^ ((uint64_t)g * UINT64_C(0xD6E8FEB86659FD93)) ^
           w->seed;
}

static void write_units(struct walker *w, size_t unit0, size_t nunits)
{
    for (size_t u = unit0; u < unit0 + nunits; u++) {
        uint16_t g = ++w->gen[u];
        uint64_t base = (uint64_t)u * WORDS_PER_UNIT;
        uint64_t *p = w->data + base;
        for (unsigned i = 0; i < WORDS_PER_UNIT; i++)
            p[i] = expect(w, base + i, g);
    }
}

static void check_units(struct walker *w, size_t unit0, size_t nunits)
{
    for (size_t u = unit0; u < unit0 + nunits; u++) {
        uint16_t g = w->gen[u];
        uint64_t base = (uint64_t)u * WORDS_PER_UNIT;
        const uint64_t *p = w->data + base;
        for (unsigned i = 0; i < WORDS_PER_UNIT; i++) {
            if (p[i] != expect(w, base + i, g)) {
                if (w->errors == 0)
                    w->first_bad = (base + i) * 8;
                w->errors++;
            }
        }
    }
}

static long long vmstat(const char *key)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char name[64];
    long long v, r = -1;
    if (!f)
        return -1;
    while (fscanf(f, "%63s %lld", name, &v) == 2) {
        if (strcmp(name, key) == 0) {
            r = v;
            break;
        }
    }
    fclose(f);
    return r;
}

static void sample(struct counters *c)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    c->majflt = ru.ru_majflt;
    c->pswpin = vmstat("pswpin");
    c->pswpout = vmstat("pswpout");
    c->t = now();
}

static void print_stats(const char *name, const struct counters *a, const struct counters *b,
                        uint64_t bytes, uint64_t errors)
{
    double s = b->t - a->t;
    printf("\"%s\": {\"bytes\": %" PRIu64 ", \"seconds\": %.3f, \"mb_per_s\": %.2f, "
           "\"major_faults\": %ld, \"pswpin\": %lld, \"pswpout\": %lld, \"errors\": %" PRIu64 "}",
           name, bytes, s, s > 0 ? (double)bytes / s / 1e6 : 0.0, b->majflt - a->majflt,
           b->pswpin - a->pswpin, b->pswpout - a->pswpout, errors);
}

/* One pattern with one block size for about `seconds`; at most `passes`
 * times the array (sequential walks wrap around). */
static void walk(struct walker *w, enum pattern pat, size_t bs, double seconds, double passes,
                 bool first)
{
    size_t nblocks = w->size / bs, upb = bs / UNIT, next = 0;
    uint64_t bytes = 0, limit = (uint64_t)(passes * (double)w->size), errors0 = w->errors;
    struct counters a, b;
    sample(&a);
    double deadline = a.t + seconds;
    while (bytes < limit) {
        size_t blk;
        if (pat == SEQREAD || pat == SEQWRITE) {
            blk = next;
            next = next + 1 == nblocks ? 0 : next + 1;
        } else {
            blk = (size_t)(xorshift(&w->rng) % nblocks);
        }
        if (pat == SEQWRITE || pat == RANDWRITE)
            write_units(w, blk * upb, upb);
        else
            check_units(w, blk * upb, upb);
        bytes += bs;
        /* The clock costs little next to a block, even a 1 KiB one. */
        if (now() >= deadline)
            break;
    }
    sample(&b);
    printf("%s    {\"pattern\": \"%s\", \"bs\": %zu, ", first ? "" : ",\n", pattern_names[pat], bs);
    print_stats("walk", &a, &b, bytes, w->errors - errors0);
    printf("}");
    fflush(stdout);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end != '\0' || v == 0)
        return -1;
    *out = v;
    return 0;
}

static void usage(void)
{
    fputs("usage: memlend-walker --size BYTES [--bs 1K,64K,1M] [--pattern seqread,...]\n"
          "                      [--seconds S] [--passes N] [--seed N] [--label TEXT]\n"
          "       memlend-walker --hold --size BYTES --stop-file PATH [--rate OPS]\n",
          stderr);
}

/* --hold: keep the array in use until stopped; report the longest stall. */
static void hold(struct walker *w, const char *stop_file, double rate)
{
    size_t nunits4k = w->size / 4096;
    uint64_t ops = 0, slow = 0;
    double worst = 0, t0 = now();
    struct stat st;
    struct counters a, b;
    sample(&a);
    while (!stop_signal && stat(stop_file, &st) != 0) {
        double t = now();
        size_t u = (size_t)(xorshift(&w->rng) % nunits4k) * 4;
        if (ops % 2)
            write_units(w, u, 4);
        else
            check_units(w, u, 4);
        double d = now() - t;
        if (d > worst)
            worst = d;
        if (d > 0.1)
            slow++;
        ops++;
        double wait = t0 + (double)ops / rate - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    sample(&b);
    printf("  \"hold\": {\"ops\": %" PRIu64 ", \"seconds\": %.3f, \"max_op_ms\": %.1f, "
           "\"ops_over_100ms\": %" PRIu64 ", \"major_faults\": %ld, \"pswpin\": %lld, "
           "\"pswpout\": %lld},\n",
           ops, b.t - a.t, worst * 1e3, slow, b.majflt - a.majflt, b.pswpin - a.pswpin,
           b.pswpout - a.pswpout);
}

int main(int argc, char **argv)
{
    uint64_t size = 0, bss[MAX_LIST], seed = 1;
    size_t nbs = 0, npat = 0;
    enum pattern pats[MAX_LIST];
    double seconds = 5, passes = 1e9, rate = 100;
    const char *label = "", *stop_file = NULL;
    bool hold_mode = false, inject = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--hold") == 0 || strcmp(a, "--inject-error") == 0) {
            *(a[2] == 'h' ? &hold_mode : &inject) = true;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--size") == 0) {
            if (parse_size(v, &size) < 0)
                goto bad;
        } else if (strcmp(a, "--bs") == 0 || strcmp(a, "--pattern") == 0) {
            char *copy = strdup(v), *save = NULL;
            if (!copy)
                return 2;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (a[2] == 'b') {
                    if (nbs == MAX_LIST || parse_size(tok, &bss[nbs]) < 0 || bss[nbs] < UNIT ||
                        bss[nbs] > (1u << 20) || bss[nbs] % UNIT) {
                        free(copy);
                        goto bad;
                    }
                    nbs++;
                } else {
                    size_t k;
                    for (k = 0; k < 4 && strcmp(tok, pattern_names[k]) != 0; k++)
                        ;
                    if (k == 4 || npat == MAX_LIST) {
                        free(copy);
                        goto bad;
                    }
                    pats[npat++] = (enum pattern)k;
                }
            }
            free(copy);
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = atof(v);
        } else if (strcmp(a, "--passes") == 0) {
            passes = atof(v);
        } else if (strcmp(a, "--rate") == 0) {
            rate = atof(v);
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 0);
        } else if (strcmp(a, "--label") == 0) {
            if (strpbrk(v, "\"\\") || strlen(v) > 200)
                goto bad;
            label = v;
        } else if (strcmp(a, "--stop-file") == 0) {
            stop_file = v;
        } else {
            goto bad;
        }
        continue;
bad:
        fprintf(stderr, "memlend-walker: bad argument: %s %s\n", a, v);
        usage();
        return 2;
    }
    if (size == 0 || seconds <= 0 || passes <= 0 || rate <= 0 || (hold_mode && !stop_file)) {
        usage();
        return 2;
    }
    if (nbs == 0)
        bss[nbs++] = 4096;
    if (npat == 0)
        for (int k = 0; k < 4; k++)
            pats[npat++] = (enum pattern)k;
    for (size_t i = 0; i < nbs; i++)
        if (size % bss[i] || size < (hold_mode ? 4096 : bss[i])) {
            fprintf(stderr, "memlend-walker: --size must be a multiple of every --bs\n");
            return 2;
        }
    if (hold_mode && size % 4096) {
        fprintf(stderr, "memlend-walker: --size must be a multiple of 4096 with --hold\n");
        return 2;
    }

    struct walker w = {.size = (size_t)size, .seed = seed | 1, .rng = seed * 0x2545F4914F6CDD1DULL | 1};
    w.data = mmap(NULL, w.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w.gen = calloc(w.size / UNIT, sizeof *w.gen);
    if (w.data == MAP_FAILED || !w.gen) {
        fprintf(stderr, "memlend-walker: cannot allocate %zu bytes: %s\n", w.size, strerror(errno));
        return 2;
    }
    /* 4 KiB pages, as the swap path sees them. */
    madvise(w.data, w.size, MADV_NOHUGEPAGE);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    struct counters a, b;
    printf("{\n  \"label\": \"%s\", \"size\": %zu, \"seed\": %" PRIu64 ",\n  ", label, w.size, seed);
    sample(&a);
    write_units(&w, 0, w.size / UNIT);
    sample(&b);
    print_stats("fill", &a, &b, w.size, 0);
    if (inject) /* proves that the checks can fail: one bit, mid-array */
        w.data[w.size / 16] ^= 1;
    printf(",\n");
    fflush(stdout);

    if (hold_mode) {
        fprintf(stderr, "memlend-walker: filled %zu bytes, holding\n", w.size);
        hold(&w, stop_file, rate);
    } else {
        printf("  \"runs\": [\n");
        bool first = true;
        for (size_t i = 0; i < nbs; i++) {
            for (size_t k = 0; k < npat; k++) {
                walk(&w, pats[k], (size_t)bss[i], seconds, passes, first);
                first = false;
            }
        }
        printf("\n  ],\n");
    }
    /* Everything, once more: catches a wrong page that no walk read back. */
    uint64_t before = w.errors;
    sample(&a);
    check_units(&w, 0, w.size / UNIT);
    sample(&b);
    printf("  ");
    print_stats("verify", &a, &b, w.size, w.errors - before);
    printf(",\n  \"errors\": %" PRIu64 ", \"first_bad_offset\": %" PRId64 "\n}\n", w.errors,
           w.errors ? (int64_t)w.first_bad : (int64_t)-1);
    fflush(stdout);
    if (w.errors)
        fprintf(stderr, "memlend-walker: %" PRIu64 " wrong words, first at byte %" PRIu64 "\n",
                w.errors, w.first_bad);
    return w.errors ? 1 : 0;
}
