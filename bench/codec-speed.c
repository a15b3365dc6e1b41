/* Per-core speed of the migration page codecs (libvmio/migrate/codec.c):
 * the zero-page test on a 1 GiB buffer (all zero, and mixed pages), delta
 * encode and decode of changed pages, RLE of sparse pages, SHA-256 of
 * pages (nettle, and the portable code the GPU runs), batch analysis.
 * One thread; GB/s of input per thread CPU second, best of 3 passes.
 *
 *   build-dir/bench/codec-speed [--mib N]     (zero-test buffer, 1024) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/codec.h"
#include "migrate/page-codec.h"

#define PS 4096u

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "codec-speed: out of memory\n");
        exit(1);
    }
    return p;
}

static volatile long sink;

static void report(const char *what, double bytes, double best)
{
    printf("%-44s %8.2f GB/s\n", what, bytes / best / 1e9);
}

/* vmio_mig_is_zero over buf page by page (as the engine calls it). */
static void zero_pages(const char *what, const uint8_t *buf, size_t len)
{
    double best = 1e9;
    for (int pass = 0; pass < 3; pass++) {
        long z = 0;
        double t0 = cpu_now();
        for (size_t off = 0; off < len; off += PS)
            z += vmio_mig_is_zero(buf + off, PS);
        double t = cpu_now() - t0;
        best = t < best ? t : best;
        sink = z;
    }
    report(what, (double)len, best);
}

int main(int argc, char **argv)
{
    size_t mib = 1024;
    if (argc == 3 && !strcmp(argv[1], "--mib"))
        mib = strtoul(argv[2], NULL, 0);
    size_t len = mib << 20;

    /* ---- zero test ---- */
    uint8_t *buf = xmalloc(len);
    memset(buf, 0, len);    /* real pages, not the shared zero page */
    {
        double best = 1e9;
        for (int pass = 0; pass < 3; pass++) {
            double t0 = cpu_now();
            sink = vmio_mig_is_zero(buf, len);
            double t = cpu_now() - t0;
            best = t < best ? t : best;
        }
        report("is_zero, one 1 GiB zero buffer", (double)len, best);
    }
    zero_pages("is_zero, 4 KiB zero pages", buf, len);
    for (size_t off = 0; off < len; off += PS)
        if (rnd() & 1)
            buf[off + rnd() % PS] = 1;
    zero_pages("is_zero, half zero, half one byte set", buf, len);
    for (size_t off = 0; off < len; off += PS)
        buf[off + PS - 1] = 1;
    zero_pages("is_zero, last byte set (full scans)", buf, len);
    free(buf);

    /* ---- delta ---- */
    size_t np = 65536;     /* 256 MiB of pages + 256 MiB of references */
    uint8_t *ref = xmalloc(np * PS), *page = xmalloc(np * PS), *enc = xmalloc(np * PS);
    uint32_t *elen = xmalloc(np * sizeof *elen);
    for (size_t i = 0; i < np * PS; i += 8) {
        uint64_t r = rnd(), v = r % 3 == 0 ? r >> 40 : r % 3 == 1 ? 0 : r;
        memcpy(ref + i, &v, 8);
    }
    memcpy(page, ref, np * PS);
    for (size_t i = 0; i < np; i++) {
        uint32_t ch = (PS / 8) * (uint32_t)(1 + rnd() % 5) / 100;
        for (uint32_t k = 0; k < ch; k++) {
            uint64_t v = rnd();
            memcpy(page + i * PS + (rnd() % (PS / 8)) * 8, &v, 8);
        }
    }
    double best = 1e9;
    uint64_t total = 0;
    for (int pass = 0; pass < 3; pass++) {
        total = 0;
        double t0 = cpu_now();
        for (size_t i = 0; i < np; i++) {
            long n = vmio_mig_delta_encode(page + i * PS, ref + i * PS, PS, enc + i * PS, PS);
            elen[i] = n < 0 ? 0 : (uint32_t)n;
            total += (uint64_t)elen[i];
        }
        double t = cpu_now() - t0;
        best = t < best ? t : best;
    }
    report("delta encode, 1-5 % of words changed", (double)np * PS, best);
    printf("%-44s %8.0f B/page\n", "  encoded size", (double)total / (double)np);
    uint8_t *dst = xmalloc(np * PS);
    memcpy(dst, ref, np * PS);
    best = 1e9;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cpu_now();
        for (size_t i = 0; i < np; i++)
            if (vmio_mig_delta_decode(dst + i * PS, PS, enc + i * PS, elen[i]) < 0)
                abort();
        double t = cpu_now() - t0;
        best = t < best ? t : best;
    }
    if (memcmp(dst, page, np * PS)) {
        fprintf(stderr, "codec-speed: decode mismatch\n");
        return 1;
    }
    report("delta decode (page bytes out)", (double)np * PS, best);

    /* ---- RLE of sparse pages ---- */
    memset(page, 0, np * PS);
    for (size_t i = 0; i < np; i++)
        for (int k = 0; k < 16; k++)
            page[i * PS + rnd() % PS] = (uint8_t)rnd();
    best = 1e9;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cpu_now();
        long s = 0;
        for (size_t i = 0; i < np; i++)
            s += vmio_mig_delta_encode(page + i * PS, NULL, PS, enc + i * PS, PS);
        double t = cpu_now() - t0;
        best = t < best ? t : best;
        sink = s;
    }
    report("RLE encode, 16 random bytes per page", (double)np * PS, best);

    /* ---- hashes ---- */
    for (size_t i = 0; i < np * PS; i++)
        page[i] = (uint8_t)rnd();
    size_t nh = 16384;
    uint8_t h[32];
    best = 1e9;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cpu_now();
        for (size_t i = 0; i < nh; i++)
            vmio_mig_hash(page + i * PS, PS, h);
        double t = cpu_now() - t0;
        best = t < best ? t : best;
    }
    report("SHA-256 of 4 KiB pages (nettle)", (double)nh * PS, best);
    best = 1e9;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = cpu_now();
        for (size_t i = 0; i < nh / 4; i++)
            vmio_pc_sha256(page + i * PS, PS, h);
        double t = cpu_now() - t0;
        best = t < best ? t : best;
    }
    report("SHA-256 of 4 KiB pages (portable, GPU code)", (double)nh / 4 * PS, best);
    sink = h[0];

    /* ---- batch analysis: a mix of zero, changed and new pages ---- */
    size_t nb = 16384;
    uint8_t *has_ref = xmalloc(nb);
    struct vmio_mig_page_out *out = xmalloc(nb * sizeof *out);
    memcpy(ref, page, nb * PS);
    for (size_t i = 0; i < nb; i++) {
        uint8_t *p = page + i * PS;
        has_ref[i] = (uint8_t)(i % 4 != 3);
        switch (i % 4) {
        case 0:
            memset(p, 0, PS);
            break;
        case 1:
        case 2:
            for (int k = 0; k < 10; k++)
                p[rnd() % PS] ^= 0x11;
            break;
        default:
            break;
        }
    }
    for (uint32_t flags = VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA;
         flags <= (VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA | VMIO_MIG_A_HASH);
         flags += VMIO_MIG_A_HASH) {
        struct vmio_mig_batch b = {.page_size = PS, .n = (uint32_t)nb, .flags = flags,
                                   .pages = page, .refs = ref, .has_ref = has_ref,
                                   .out = out, .enc = enc};
        best = 1e9;
        for (int pass = 0; pass < 3; pass++) {
            double t0 = cpu_now();
            vmio_mig_analyze_cpu(&b);
            double t = cpu_now() - t0;
            best = t < best ? t : best;
        }
        report(flags & VMIO_MIG_A_HASH ? "analyze_cpu, 1/4 zero 1/2 delta, +hash"
                                       : "analyze_cpu, 1/4 zero 1/2 delta",
               (double)nb * PS, best);
    }
    free(has_ref);
    free(out);
    free(ref);
    free(page);
    free(enc);
    free(dst);
    free(elen);
    return 0;
}
