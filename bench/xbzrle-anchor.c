/* Benchmark driver of bench/delta-vs-xbzrle.sh: QEMU's XBZRLE encoder
 * (migration/xbzrle.c of the QEMU source, compiled by the script, never
 * part of libvmio) against libvmio's delta codec (codec.c) on the same
 * (old page, new page) pairs, one thread.
 *
 *   xbzrle-anchor [--page-size N] [--pages N] [SNAP0 SNAP1 ...]
 *
 * With image files (consecutive guest-memory snapshots of one size), the
 * pairs are every page that differs between SNAPk and SNAPk+1 and is not
 * all zero in SNAPk+1 (both QEMU and libvmio send those as zero pages
 * before trying a delta). Without files, synthetic pairs: 8-byte words of
 * pointer/counter-like data with 1-5 % of the words rewritten, text with a
 * few short overwrites, and arrays of 32-bit counters bumped at a stride.
 *
 * Both encoders get the same capacity, the page size (what QEMU's ram.c
 * passes; a page that does not fit is sent raw and counted as page-size
 * bytes here). Output, per encoder: pages, encoded bytes, pages that
 * became smaller, encode GB/s of input per core (thread CPU time, best of
 * 5 alternating passes); the decoders of both are run once to check every
 * encoding. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "migrate/codec.h"

/* QEMU 7.2 migration/xbzrle.h */
int xbzrle_encode_buffer(uint8_t *old_buf, uint8_t *new_buf, int slen, uint8_t *dst, int dlen);
int xbzrle_decode_buffer(uint8_t *src, int slen, uint8_t *dst, int dlen);

struct pairs {
    uint32_t ps;
    size_t n, cap;
    uint8_t *old, *new_;
};

static void die(const char *msg)
{
    fprintf(stderr, "xbzrle-anchor: %s\n", msg);
    exit(1);
}

static void add_pair(struct pairs *p, const uint8_t *o, const uint8_t *n)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 1024;
        p->old = realloc(p->old, p->cap * p->ps);
        p->new_ = realloc(p->new_, p->cap * p->ps);
        if (!p->old || !p->new_)
            die("out of memory");
    }
    memcpy(p->old + p->n * p->ps, o, p->ps);
    memcpy(p->new_ + p->n * p->ps, n, p->ps);
    p->n++;
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

#define PASSES 5

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Synthetic pairs, a third of each kind. */
static void synth(struct pairs *p, size_t npages)
{
    uint32_t ps = p->ps;
    uint8_t *o = malloc(ps), *n = malloc(ps);
    static const char words[] = "the of and to in is you that it he was for on are as with "
                                "his they at be this have from or one had by word but not ";
    if (!o || !n)
        die("out of memory");
    for (size_t i = 0; i < npages; i++) {
        switch (i % 3) {
        case 0: {
            /* pointers, small integers and zeros; 1-5 % of words rewritten */
            uint64_t *w = (uint64_t *)(void *)o;
            for (uint32_t k = 0; k < ps / 8; k++) {
                uint64_t r = rnd();
                w[k] = r % 3 == 0 ? 0x7f0000000000ull + (r >> 20 & 0xffffff0)
                       : r % 3 == 1 ? r >> 50 : 0;
            }
            memcpy(n, o, ps);
            uint32_t nw = ps / 8, ch = nw * (uint32_t)(1 + rnd() % 5) / 100;
            for (uint32_t k = 0; k < ch; k++) {
                uint64_t v = rnd();
                memcpy(n + (rnd() % nw) * 8, &v, 8);
            }
            break;
        }
        case 1: {
            /* text; 1-4 overwrites of 4-32 bytes */
            for (uint32_t k = 0; k < ps; k++)
                o[k] = (uint8_t)words[(k * 7 + rnd() % 3) % (sizeof words - 1)];
            memcpy(n, o, ps);
            int edits = 1 + (int)(rnd() % 4);
            for (int e = 0; e < edits; e++) {
                uint32_t at = (uint32_t)(rnd() % ps), len = 4 + (uint32_t)(rnd() % 29);
                for (uint32_t k = at; k < ps && k < at + len; k++)
                    n[k] = (uint8_t)('a' + rnd() % 26);
            }
            break;
        }
        default: {
            /* 64-byte records with a 32-bit counter; a fraction bumped */
            for (uint32_t k = 0; k < ps; k++)
                o[k] = (uint8_t)(k % 64 < 16 ? rnd() : k % 64 < 24 ? 0 : k);
            memcpy(n, o, ps);
            uint32_t frac = 1 + (uint32_t)(rnd() % 8);
            for (uint32_t k = 0; k < ps; k += 64) {
                if (rnd() % 8 < frac) {
                    uint32_t c;
                    memcpy(&c, n + k + 16, 4);
                    c += 1 + (uint32_t)(rnd() % 3);
                    memcpy(n + k + 16, &c, 4);
                }
            }
            break;
        }
        }
        if (memcmp(o, n, ps))
            add_pair(p, o, n);
    }
    free(o);
    free(n);
}

static const uint8_t *map_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "xbzrle-anchor: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        die("mmap failed");
    *len = (size_t)st.st_size;
    return m;
}

/* Changed, non-zero pages between consecutive snapshots. */
static void from_files(struct pairs *p, int nfiles, char **files, size_t *zero_skipped)
{
    size_t la, lb;
    const uint8_t *a = map_file(files[0], &la);
    for (int f = 1; f < nfiles; f++) {
        const uint8_t *b = map_file(files[f], &lb);
        size_t len = la < lb ? la : lb;
        for (size_t off = 0; off + p->ps <= len; off += p->ps) {
            if (!memcmp(a + off, b + off, p->ps))
                continue;
            if (vmio_mig_is_zero(b + off, p->ps)) {
                (*zero_skipped)++;
                continue;
            }
            add_pair(p, a + off, b + off);
        }
        munmap((void *)(uintptr_t)a, la);
        a = b;
        la = lb;
    }
    munmap((void *)(uintptr_t)a, la);
}

struct result {
    uint64_t bytes, smaller, over;
    double best;
};

/* One pass of one encoder over every pair; returns its thread CPU time
 * (the machine may be shared: time spent preempted is not the codec's). */
static double pass(const struct pairs *p, int qemu, uint8_t *dst, struct result *r)
{
    uint64_t bytes = 0, smaller = 0, over = 0;
    double t0 = cpu_now();
    for (size_t i = 0; i < p->n; i++) {
        uint8_t *o = p->old + i * p->ps, *n = p->new_ + i * p->ps;
        long l = qemu ? xbzrle_encode_buffer(o, n, (int)p->ps, dst, (int)p->ps)
                      : vmio_mig_delta_encode(n, o, p->ps, dst, p->ps);
        if (l < 0) {
            bytes += p->ps;
            over++;
        } else {
            bytes += (uint64_t)l;
            smaller += (uint32_t)l < p->ps;
        }
    }
    double t = cpu_now() - t0;
    r->bytes = bytes;
    r->smaller = smaller;
    r->over = over;
    return t;
}

/* Passes alternate between the encoders, so that a slow phase of the
 * machine hits both; the best pass of each counts. */
static void run_both(const struct pairs *p, uint8_t *dst, struct result *q, struct result *v)
{
    q->best = v->best = 1e9;
    for (int k = 0; k < PASSES; k++) {
        double t = pass(p, 1, dst, q);
        q->best = t < q->best ? t : q->best;
        t = pass(p, 0, dst, v);
        v->best = t < v->best ? t : v->best;
    }
}

/* Every encoding of both decodes back to the new page. */
static void verify(const struct pairs *p)
{
    uint8_t *enc = malloc(p->ps), *page = malloc(p->ps);
    if (!enc || !page)
        die("out of memory");
    for (size_t i = 0; i < p->n; i++) {
        const uint8_t *o = p->old + i * p->ps, *n = p->new_ + i * p->ps;
        int l = xbzrle_encode_buffer((uint8_t *)(uintptr_t)o, (uint8_t *)(uintptr_t)n,
                                     (int)p->ps, enc, (int)p->ps);
        if (l > 0) {
            memcpy(page, o, p->ps);
            if (xbzrle_decode_buffer(enc, l, page, (int)p->ps) < 0 || memcmp(page, n, p->ps))
                die("QEMU's XBZRLE round trip failed");
        }
        long m = vmio_mig_delta_encode(n, o, p->ps, enc, p->ps);
        if (m >= 0) {
            memcpy(page, o, p->ps);
            if (vmio_mig_delta_decode(page, p->ps, enc, (size_t)m) || memcmp(page, n, p->ps))
                die("libvmio delta round trip failed");
        }
    }
    free(enc);
    free(page);
}

static void print(const char *name, const struct pairs *p, const struct result *r)
{
    double in = (double)p->n * p->ps;
    printf("%-8s pages %zu  encoded %llu bytes (%.1f %% of input, %.0f B/page)  "
           "smaller %llu  over-cap %llu  encode %.2f GB/s\n",
           name, p->n, (unsigned long long)r->bytes, 100.0 * (double)r->bytes / in,
           (double)r->bytes / (double)p->n, (unsigned long long)r->smaller,
           (unsigned long long)r->over, in / r->best / 1e9);
}

int main(int argc, char **argv)
{
    struct pairs p = {.ps = 4096};
    size_t npages = 32768, zero_skipped = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--page-size") && i + 1 < argc)
            p.ps = (uint32_t)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
            npages = strtoul(argv[++i], NULL, 0);
        else
            break;
    }
    if (p.ps < VMIO_MIG_PAGE_MIN || p.ps > VMIO_MIG_PAGE_MAX)
        die("page size out of range");
    if (argc - i == 1)
        die("give at least two snapshots, or none for synthetic pages");
    if (argc - i >= 2) {
        from_files(&p, argc - i, argv + i, &zero_skipped);
        printf("input: %d snapshots, %zu changed non-zero pages (%zu changed to zero "
               "skipped)\n", argc - i, p.n, zero_skipped);
    } else {
        synth(&p, npages);
        printf("input: %zu synthetic changed pages of %u bytes\n", p.n, p.ps);
    }
    if (p.n == 0)
        die("no changed pages");
    verify(&p);
    uint8_t *dst = malloc(p.ps);
    if (!dst)
        die("out of memory");
    struct result q, v;
    run_both(&p, dst, &q, &v);
    print("xbzrle", &p, &q);
    print("libvmio", &p, &v);
    printf("size ratio libvmio/xbzrle %.3f  speed ratio libvmio/xbzrle %.2f\n",
           (double)v.bytes / (double)q.bytes, q.best / v.best);
    printf("RESULT pages=%zu xbzrle_bytes=%llu vmio_bytes=%llu xbzrle_smaller=%llu "
           "vmio_smaller=%llu xbzrle_gbs=%.3f vmio_gbs=%.3f\n",
           p.n, (unsigned long long)q.bytes, (unsigned long long)v.bytes,
           (unsigned long long)q.smaller, (unsigned long long)v.smaller,
           (double)p.n * p.ps / q.best / 1e9, (double)p.n * p.ps / v.best / 1e9);
    free(dst);
    free(p.old);
    free(p.new_);
    return 0;
}
