/* The migration GPU offload on a real GPU: random and adversarial batches
 * analyzed on the device must equal vmio_mig_analyze_cpu() exactly (kinds,
 * lengths, hashes, encoding bytes) and decode back to the page with the
 * CPU decoder; batches on their own streams must overlap; misuse is
 * refused. Without a usable GPU (no driver, no device, or a build without
 * kernels) it checks that the reason is stated clearly and exits 77. */
#include <pthread.h>

#include "test-common.h"

#include "migrate/codec.h"
#include "migrate/gpu.h"

#define API "test"

static struct vmio_mig_gpu *gpu;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void rnd_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* Page i of the batch (and its reference) in one of many shapes, chosen
 * for the decisions of codec.h: zero, unchanged, tiny and large changes,
 * differences 1..4 bytes apart (the literal merge rule), encodings right
 * around the size limit, uleb128 skips of 1..3 bytes. */
static void make_page(uint8_t *page, uint8_t *ref, uint8_t *has_ref, uint32_t ps, int shape)
{
    memset(page, 0, ps);
    *has_ref = 0;
    switch (shape) {
    case 0:     /* zero, maybe with a non-zero reference */
        if (rnd() & 1) {
            rnd_bytes(ref, ps);
            *has_ref = 1;
        }
        break;
    case 1:     /* one byte anywhere, the first and the last included */
    {
        uint32_t at = (uint32_t)(rnd() % 3 == 0 ? (rnd() & 1 ? 0 : ps - 1) : rnd() % ps);
        page[at] = (uint8_t)(1 + rnd() % 255);
        break;
    }
    case 2:     /* random: RAW */
        rnd_bytes(page, ps);
        if (rnd() & 1) {
            rnd_bytes(ref, ps);
            *has_ref = 1;
        }
        break;
    case 3:     /* equal to its reference: empty DELTA */
        rnd_bytes(page, ps);
        memcpy(ref, page, ps);
        *has_ref = 1;
        break;
    case 4:     /* reference with scattered changes */
    {
        rnd_bytes(ref, ps);
        memcpy(page, ref, ps);
        uint32_t k = 1 + (uint32_t)(rnd() % (rnd() & 1 ? 16 : ps / 8));
        for (uint32_t j = 0; j < k; j++)
            page[rnd() % ps] ^= (uint8_t)(1 + rnd() % 255);
        *has_ref = 1;
        break;
    }
    case 5:     /* differences exactly g equal bytes apart, g = 1..4 */
    {
        uint32_t g = 1 + (uint32_t)(rnd() % 4), start = (uint32_t)(rnd() % 64);
        rnd_bytes(ref, ps);
        memcpy(page, ref, ps);
        uint32_t count = 1 + (uint32_t)(rnd() % 200);
        for (uint32_t at = start; at < ps && count; at += g + 1, count--)
            page[at] = (uint8_t)~ref[at];
        *has_ref = 1;
        break;
    }
    case 6:     /* sparse non-zero bytes every m: RLE length sweeps the limit */
    {
        /* Each isolated byte costs ~3 bytes (skip, n, byte): m around
         * 3 * ps / limit puts the encoding just under or over it. */
        uint32_t m = 2 + (uint32_t)(rnd() % 4);
        uint32_t stop = (uint32_t)(rnd() % ps);
        for (uint32_t at = (uint32_t)(rnd() % m); at < ps; at += m)
            if (at < stop || rnd() % 4 == 0)
                page[at] = (uint8_t)(1 + rnd() % 255);
        break;
    }
    case 7:     /* one contiguous changed run against a reference */
    {
        rnd_bytes(ref, ps);
        memcpy(page, ref, ps);
        uint32_t len = 1 + (uint32_t)(rnd() % ps), at = (uint32_t)(rnd() % (ps - len + 1));
        for (uint32_t j = 0; j < len; j++)
            page[at + j] = (uint8_t)(ref[at + j] + 1);
        *has_ref = 1;
        break;
    }
    case 8:     /* zero reference, page with a few runs: DELTA == RLE shape */
    {
        memset(ref, 0, ps);
        *has_ref = 1;
        for (int r = 0; r < 3; r++) {
            uint32_t at = (uint32_t)(rnd() % ps), len = 1 + (uint32_t)(rnd() % 300);
            for (uint32_t j = 0; j < len && at + j < ps; j++)
                page[at + j] = (uint8_t)(1 + rnd() % 255);
        }
        break;
    }
    default:    /* 9: long equal prefix, change in the last bytes */
        rnd_bytes(ref, ps);
        memcpy(page, ref, ps);
        page[ps - 1 - rnd() % 3] ^= 0x5a;
        *has_ref = 1;
        break;
    }
}

static void fill_batch(struct vmio_mig_gpu_batch *b, uint32_t n, uint32_t flags, int shape)
{
    uint32_t ps = b->batch.page_size;
    b->batch.n = n;
    b->batch.flags = flags;
    for (uint32_t i = 0; i < n; i++)
        make_page(b->pages + (size_t)i * ps, b->refs + (size_t)i * ps, &b->has_ref[i], ps,
                  shape >= 0 ? shape : (int)(rnd() % 10));
}

/* The GPU's results against the CPU path on copies of the same input,
 * and every encoding decoded back with the CPU decoder. Returns the
 * number of pages of each kind through kinds[4]. */
static void check_against_cpu(const struct vmio_mig_gpu_batch *b, unsigned kinds[4])
{
    const struct vmio_mig_batch *g = &b->batch;
    uint32_t n = g->n, ps = g->page_size;
    size_t bytes = (size_t)n * ps + 1;
    struct vmio_mig_page_out *out = calloc(n + 1, sizeof *out);
    uint8_t *enc = malloc(bytes), *pages = malloc(bytes), *refs = malloc(bytes);
    uint8_t *has = malloc(n + 1), *tmp = malloc(ps);
    ck_assert(out && enc && pages && refs && has && tmp);
    memcpy(pages, g->pages, (size_t)n * ps);
    memcpy(refs, g->refs, (size_t)n * ps);
    memcpy(has, g->has_ref, n);
    struct vmio_mig_batch c = { .page_size = ps, .n = n, .flags = g->flags, .pages = pages,
                                .refs = refs, .has_ref = has, .out = out, .enc = enc };
    vmio_mig_analyze_cpu(&c);
    for (uint32_t i = 0; i < n; i++) {
        const struct vmio_mig_page_out *a = &g->out[i], *e = &out[i];
        ck_assert_msg(a->kind == e->kind && a->len == e->len,
                      "page %u: GPU kind %u len %u, CPU kind %u len %u", i, a->kind, a->len,
                      e->kind, e->len);
        ck_assert_msg(memcmp(a->reserved, e->reserved, sizeof a->reserved) == 0,
                      "page %u: reserved bytes differ", i);
        ck_assert_msg(memcmp(a->hash, e->hash, VMIO_MIG_HASH_SIZE) == 0,
                      "page %u: hash differs (flags %#x)", i, g->flags);
        if (kinds && a->kind < 4)
            kinds[a->kind]++;
        if (a->kind != VMIO_MIG_KIND_DELTA && a->kind != VMIO_MIG_KIND_RLE)
            continue;
        ck_assert_msg(memcmp(g->enc + (size_t)i * ps, enc + (size_t)i * ps, a->len) == 0,
                      "page %u: encoding bytes differ (kind %u, %u bytes)", i, a->kind,
                      a->len);
        if (a->kind == VMIO_MIG_KIND_DELTA)
            memcpy(tmp, g->refs + (size_t)i * ps, ps);
        else
            memset(tmp, 0, ps);
        ck_assert_int_eq(vmio_mig_delta_decode(tmp, ps, g->enc + (size_t)i * ps, a->len), 0);
        ck_assert_msg(memcmp(tmp, g->pages + (size_t)i * ps, ps) == 0,
                      "page %u: decodes to other bytes", i);
    }
    free(out);
    free(enc);
    free(pages);
    free(refs);
    free(has);
    free(tmp);
}

static void run(struct vmio_mig_gpu_batch *b)
{
    ck_assert_vmio_ok(vmio_mig_gpu_analyze(gpu, b));
    ck_assert_vmio_ok(vmio_mig_gpu_wait(gpu, b));
}

static const uint32_t flag_sets[] = {
    0,
    VMIO_MIG_A_RLE,
    VMIO_MIG_A_DELTA,
    VMIO_MIG_A_HASH,
    VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA,
    VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA | VMIO_MIG_A_HASH,
};

START_TEST(test_matches_cpu)
{
    static const uint32_t sizes[] = { 4096, 8192, 65536 };
    unsigned kinds[4] = { 0 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t ps = sizes[s], max = ps == 65536 ? 64 : 512;
        struct vmio_mig_gpu_batch *b;
        ck_assert_vmio_ok(vmio_mig_gpu_alloc_batch(gpu, ps, max, &b));
        ck_assert_uint_eq(b->batch.page_size, ps);
        for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
            rng_state = 1000 * s + f;
            /* Mixed shapes, then each shape alone (a batch of one kind
             * only: everything packed, or nothing). */
            for (int shape = -1; shape < 10; shape++) {
                fill_batch(b, shape < 0 ? max : 1 + (uint32_t)(rnd() % max), flag_sets[f],
                           shape);
                run(b);
                check_against_cpu(b, kinds);
            }
        }
        vmio_mig_gpu_free_batch(gpu, b);
    }
    /* The shapes reached every kind. */
    for (int k = 0; k < 4; k++)
        ck_assert_msg(kinds[k] > 0, "no page of kind %d", k);
}
END_TEST

/* Empty and single-page batches; a batch reused with other contents;
 * stale encodings of the previous run never show. */
START_TEST(test_sizes_and_reuse)
{
    struct vmio_mig_gpu_batch *b;
    ck_assert_vmio_ok(vmio_mig_gpu_alloc_batch(gpu, 4096, 1024, &b));
    b->batch.n = 0;
    run(b);
    rng_state = 7;
    for (int i = 0; i < 20; i++) {
        uint32_t n = i % 3 == 0 ? 1 : i % 3 == 1 ? 1024 : 1 + (uint32_t)(rnd() % 1024);
        fill_batch(b, n, flag_sets[i % 6], -1);
        memset(b->batch.out, 0xa5, sizeof(struct vmio_mig_page_out) * n);
        run(b);
        check_against_cpu(b, NULL);
    }
    vmio_mig_gpu_free_batch(gpu, b);
}
END_TEST

START_TEST(test_misuse)
{
    struct vmio_mig_gpu_batch *b;
    ck_assert_vmio_err(vmio_mig_gpu_alloc_batch(gpu, 3000, 8, &b), EINVAL,
                       "vmio_mig_gpu_alloc_batch");
    ck_assert_vmio_err(vmio_mig_gpu_alloc_batch(gpu, 131072, 8, &b), EINVAL,
                       "vmio_mig_gpu_alloc_batch");
    ck_assert_vmio_err(vmio_mig_gpu_alloc_batch(gpu, 4096, 0, &b), EINVAL,
                       "vmio_mig_gpu_alloc_batch");
    ck_assert_vmio_err(vmio_mig_gpu_alloc_batch(gpu, 65536, 1u << 15, &b), EINVAL,
                       "vmio_mig_gpu_alloc_batch");
    ck_assert_vmio_ok(vmio_mig_gpu_alloc_batch(gpu, 4096, 16, &b));
    ck_assert_vmio_err(vmio_mig_gpu_wait(gpu, b), EINVAL, "vmio_mig_gpu_wait");
    fill_batch(b, 16, VMIO_MIG_A_RLE, -1);
    b->batch.n = 17;
    ck_assert_vmio_err(vmio_mig_gpu_analyze(gpu, b), EINVAL, "vmio_mig_gpu_analyze");
    b->batch.n = 16;
    const uint8_t *saved = b->batch.pages;
    b->batch.pages = b->refs;
    ck_assert_vmio_err_msg(vmio_mig_gpu_analyze(gpu, b), EINVAL, "vmio_mig_gpu_analyze",
                           "replaced");
    b->batch.pages = saved;
    b->batch.page_size = 8192;
    ck_assert_vmio_err_msg(vmio_mig_gpu_analyze(gpu, b), EINVAL, "vmio_mig_gpu_analyze",
                           "page size changed");
    b->batch.page_size = 4096;
    ck_assert_vmio_ok(vmio_mig_gpu_analyze(gpu, b));
    ck_assert_vmio_err(vmio_mig_gpu_analyze(gpu, b), EBUSY, "vmio_mig_gpu_analyze");
    ck_assert_vmio_ok(vmio_mig_gpu_wait(gpu, b));
    check_against_cpu(b, NULL);
    /* Freed while in flight: waits first. */
    ck_assert_vmio_ok(vmio_mig_gpu_analyze(gpu, b));
    vmio_mig_gpu_free_batch(gpu, b);
}
END_TEST

struct worker {
    struct vmio_mig_gpu_batch *b;
    uint64_t seed;
    int ok;
};

/* Batches used from threads other than the one that opened the device. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t s = w->seed;
    for (int i = 0; i < 10; i++) {
        /* Deterministic content per thread without the shared rng. */
        uint32_t ps = w->b->batch.page_size;
        w->b->batch.n = w->b->max_pages;
        w->b->batch.flags = VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA | VMIO_MIG_A_HASH;
        for (uint32_t p = 0; p < w->b->max_pages; p++) {
            uint8_t *pg = w->b->pages + (size_t)p * ps, *rf = w->b->refs + (size_t)p * ps;
            test_fill(rf, ps, p, (uint32_t)s);
            memcpy(pg, rf, ps);
            for (uint32_t k = 0; k < (p % 7) * 9; k++)
                pg[(k * 131 + p) % ps] ^= 0x11;
            w->b->has_ref[p] = (uint8_t)(p % 3 != 0);
            if (p % 5 == 0)
                memset(pg, 0, ps);
        }
        if (vmio_mig_gpu_analyze(gpu, w->b) < 0 || vmio_mig_gpu_wait(gpu, w->b) < 0)
            return NULL;
        s++;
    }
    w->ok = 1;
    return NULL;
}

START_TEST(test_threads)
{
    struct worker w[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (struct worker){ .seed = 100u * (unsigned)i };
        ck_assert_vmio_ok(vmio_mig_gpu_alloc_batch(gpu, 4096, 256, &w[i].b));
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].ok, "worker %d failed: %s", i, vmio_errmsg());
        check_against_cpu(w[i].b, NULL);
        vmio_mig_gpu_free_batch(gpu, w[i].b);
    }
}
END_TEST

/* Batches on their own streams overlap: NB batches queued together finish
 * clearly sooner than the same batches one after the other. The batches
 * are small (1 MiB) and their pages the costliest to analyze (random,
 * hashed, DELTA and RLE both tried to the limit): a kernel with one
 * thread per page takes about as long for 256 pages as for 2048, so run
 * one at a time, the kernels dominate, and queued together they run side
 * by side on the GPU's multiprocessors and overlap the copies. */
START_TEST(test_pipelined_overlap)
{
    enum { NB = 8, PAGES = 256 };
    struct vmio_mig_gpu_batch *b[NB];
    rng_state = 99;
    for (int i = 0; i < NB; i++) {
        ck_assert_vmio_ok(vmio_mig_gpu_alloc_batch(gpu, 4096, PAGES, &b[i]));
        fill_batch(b[i], PAGES, VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA | VMIO_MIG_A_HASH, 2);
    }
    run(b[0]);  /* warm-up: module, JIT, first-touch costs */
    double serial = 1e9, piped = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = test_now();
        for (int i = 0; i < NB; i++)
            run(b[i]);
        double t1 = test_now();
        for (int i = 0; i < NB; i++)
            ck_assert_vmio_ok(vmio_mig_gpu_analyze(gpu, b[i]));
        for (int i = 0; i < NB; i++)
            ck_assert_vmio_ok(vmio_mig_gpu_wait(gpu, b[i]));
        double t2 = test_now();
        serial = t1 - t0 < serial ? t1 - t0 : serial;
        piped = t2 - t1 < piped ? t2 - t1 : piped;
    }
    printf("%s: %d batches of %d pages: one at a time %.2f ms, queued together %.2f ms "
           "(%.2fx)\n", vmio_mig_gpu_name(gpu), NB, PAGES, serial * 1e3, piped * 1e3,
           serial / piped);
    for (int i = 0; i < NB; i++) {
        check_against_cpu(b[i], NULL);
        vmio_mig_gpu_free_batch(gpu, b[i]);
    }
    ck_assert_msg(piped < 0.7 * serial, "no overlap: %.3f ms queued vs %.3f ms serial",
                  piped * 1e3, serial * 1e3);
}
END_TEST

int main(void)
{
    /* The NVIDIA driver's ioctls and JIT are not memcheck-clean: under
     * valgrind (the unit suite's --setup valgrind) this test only runs
     * natively. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload")) {
        printf("SKIP: under valgrind (the CUDA driver is not memcheck-clean)\n");
        return 77;
    }
    int r = vmio_mig_gpu_open(API, &gpu);
    if (r < 0) {
        const char *msg = vmio_errmsg();
        /* The skip must say why, in words a user can act on. */
        int clear = strncmp(msg, API ": ", strlen(API ": ")) == 0 &&
                    (r == -ENODEV ? strstr(msg, "CUDA") != NULL
                                  : r == -ENOTSUP && strstr(msg, "built without CUDA kernels"));
        if (!clear) {
            printf("FAIL: vmio_mig_gpu_open: %d with an unclear message: %s\n", r, msg);
            return EXIT_FAILURE;
        }
        printf("SKIP: no GPU: %s\n", msg);
        return 77;
    }
    printf("GPU: %s\n", vmio_mig_gpu_name(gpu));
    Suite *s = suite_create("migrate-gpu");
    TCase *tc = tcase_create("gpu");
    tcase_set_timeout(tc, 300);
    /* One device context for the whole run: no fork after CUDA init. */
    tcase_add_test(tc, test_matches_cpu);
    tcase_add_test(tc, test_sizes_and_reuse);
    tcase_add_test(tc, test_misuse);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_pipelined_overlap);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vmio_mig_gpu_close(gpu);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
