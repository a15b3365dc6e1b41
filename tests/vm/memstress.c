/* memstress: a memory-stress program that verifies every page it wrote.
 *
 * It allocates N MiB of anonymous memory and fills every page with a
 * verifiable pattern: a header (page index, generation, checksum) and a
 * body derived from (index, generation). Then it walks the pages again and
 * again: each page is verified, then rewritten with the next generation.
 * Run in a memory cgroup whose memory.max is well below N, its pages really
 * travel to swap and back, so a swap device that loses or mixes up data
 * shows up as corrupted pages.
 *
 *   memstress --size MiB [--seconds S] [--passes N] [--ready-file F]
 *             [--stop-file F] [--status-file F] [--quiet] [--corrupt-page I]
 *
 * Stops after S seconds, N passes, when the stop file appears, or on
 * SIGTERM/SIGINT, always after a final verification pass. Prints one line
 * per pass and a summary ("memstress: ... corrupted=C"); every corrupted
 * page is reported (the first 20 in detail). Exit status: 0 no corruption,
 * 1 corrupted pages, 2 usage or allocation errors. --corrupt-page I
 * flips one byte of page I after the first pass: the self-check that a
 * corrupted page is caught (exit status 1).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct page_hdr {
    uint64_t index;
    uint64_t generation;
    uint64_t checksum;  /* of the body, seeded with index and generation */
    uint64_t magic;
};

#define MAGIC 0x6d656d7374726573ull  /* "memstres" */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    (void)sig;
    stop_signal = 1;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t body_word(uint64_t index, uint64_t gen, size_t i)
{
    return mix(index * 0x100000001b3ull ^ (gen << 40) ^ (uint64_t)i);
}

static uint64_t body_sum(const uint64_t *w, size_t n, uint64_t index, uint64_t gen)
{
    uint64_t s = mix(index ^ (gen << 32));
    for (size_t i = 0; i < n; i++)
        s = mix(s ^ w[i]);
    return s;
}

static void fill_page(unsigned char *p, size_t psize, uint64_t index, uint64_t gen)
{
    struct page_hdr h;
    uint64_t *w = (uint64_t *)(void *)(p + sizeof h);
    size_t n = (psize - sizeof h) / 8;
    for (size_t i = 0; i < n; i++)
        w[i] = body_word(index, gen, i);
    h.index = index;
    h.generation = gen;
    h.checksum = body_sum(w, n, index, gen);
    h.magic = MAGIC;
    memcpy(p, &h, sizeof h);
}

/* 0 when the page holds (index, gen); else a short reason. */
static const char *check_page(const unsigned char *p, size_t psize, uint64_t index,
                              uint64_t gen, size_t *bad_words)
{
    struct page_hdr h;
    const uint64_t *w = (const uint64_t *)(const void *)(p + sizeof h);
    size_t n = (psize - sizeof h) / 8;
    memcpy(&h, p, sizeof h);
    *bad_words = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] != body_word(index, gen, i))
            (*bad_words)++;
    if (h.magic != MAGIC)
        return "bad magic (page lost or zeroed)";
    if (h.index != index)
        return "page of another index";
    if (h.generation != gen)
        return "stale generation";
    if (*bad_words)
        return "body differs";
    if (h.checksum != body_sum(w, n, index, gen))
        return "checksum differs";
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: memstress --size MiB [--seconds S] [--passes N] [--ready-file F]\n"
                "                 [--stop-file F] [--status-file F] [--quiet] [--corrupt-page I]\n");
}

static void write_status(const char *path, uint64_t pass, uint64_t pages, uint64_t corrupted)
{
    if (!path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        return;
    fprintf(fp, "pass=%llu pages=%llu corrupted=%llu\n", (unsigned long long)pass,
            (unsigned long long)pages, (unsigned long long)corrupted);
    if (fclose(fp) == 0)
        rename(tmp, path);
}

int main(int argc, char **argv)
{
    unsigned long long mib = 0, passes = 0, corrupt = 0;
    int do_corrupt = 0;
    double seconds = 0;
    const char *ready = NULL, *stopf = NULL, *statusf = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        errno = 0;
        if (!strcmp(a, "--size")) {
            mib = strtoull(v, &end, 10);
            if (errno || *end || mib == 0)
                goto bad;
        } else if (!strcmp(a, "--passes")) {
            passes = strtoull(v, &end, 10);
            if (errno || *end)
                goto bad;
        } else if (!strcmp(a, "--corrupt-page")) {
            corrupt = strtoull(v, &end, 10);
            do_corrupt = 1;
            if (errno || *end)
                goto bad;
        } else if (!strcmp(a, "--seconds")) {
            seconds = strtod(v, &end);
            if (errno || *end || seconds < 0)
                goto bad;
        } else if (!strcmp(a, "--ready-file")) {
            ready = v;
        } else if (!strcmp(a, "--stop-file")) {
            stopf = v;
        } else if (!strcmp(a, "--status-file")) {
            statusf = v;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "memstress: bad argument %s %s\n", a, v);
        usage(stderr);
        return 2;
    }
    if (!mib) {
        usage(stderr);
        return 2;
    }
    size_t psize = (size_t)sysconf(_SC_PAGESIZE);
    size_t npages = (size_t)(mib << 20) / psize;
    unsigned char *mem = mmap(NULL, npages * psize, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *gens = calloc(npages, sizeof *gens);
    if (mem == MAP_FAILED || !gens) {
        fprintf(stderr, "memstress: cannot allocate %llu MiB: %s\n", mib, strerror(errno));
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    double t0 = now_s();
    for (size_t i = 0; i < npages; i++) {
        gens[i] = 1;
        fill_page(mem + i * psize, psize, i, 1);
    }
    if (!quiet)
        printf("memstress: filled %zu pages (%llu MiB) in %.1f s\n", npages, mib, now_s() - t0);
    fflush(stdout);
    if (ready) {
        FILE *fp = fopen(ready, "w");
        if (fp)
            fclose(fp);
    }

    uint64_t corrupted = 0, reported = 0, pass = 0, verified = 0;
    int last = 0;
    for (;;) {
        double ps = now_s();
        uint64_t bad_this = 0;
        if (stop_signal || (stopf && access(stopf, F_OK) == 0) ||
            (seconds > 0 && ps - t0 >= seconds) || (passes && pass + 1 >= passes))
            last = 1;  /* this pass verifies and rewrites no more */
        for (size_t i = 0; i < npages; i++) {
            unsigned char *p = mem + i * psize;
            size_t bw;
            const char *why = check_page(p, psize, i, gens[i], &bw);
            verified++;
            if (why) {
                corrupted++;
                bad_this++;
                if (reported++ < 20) {
                    struct page_hdr h;
                    memcpy(&h, p, sizeof h);
                    printf("memstress: CORRUPTED page %zu (pass %llu): %s; expected gen %llu, "
                           "header index %llu gen %llu, %zu body words differ\n",
                           i, (unsigned long long)pass, why, (unsigned long long)gens[i],
                           (unsigned long long)h.index, (unsigned long long)h.generation, bw);
                }
                /* Repair so that the next pass does not count it again. */
            }
            if (!last || why) {
                gens[i]++;
                fill_page(p, psize, i, gens[i]);
            }
        }
        pass++;
        if (!quiet)
            printf("memstress: pass %llu: %zu pages verified in %.1f s, corrupted %llu\n",
                   (unsigned long long)pass, npages, now_s() - ps, (unsigned long long)bad_this);
        fflush(stdout);
        write_status(statusf, pass, verified, corrupted);
        if (do_corrupt && pass == 1 && corrupt < npages)
            mem[corrupt * psize + psize / 2] ^= 0x40;
        if (last)
            break;
    }
    printf("memstress: done: %llu passes, %llu page verifications, corrupted=%llu\n",
           (unsigned long long)pass, (unsigned long long)verified,
           (unsigned long long)corrupted);
    return corrupted ? 1 : 0;
}
