/* The sender's pipeline under contention: many encode threads, batches of
 * one to three pages (so that pool slots are recycled all the time and
 * fetch, commit, pack and send of neighbouring batches overlap), several
 * regions of odd sizes and two page sizes, rounds of scripted changes.
 * Every record must arrive intact (a record reused or changed before the
 * writer sent it fails its checksum) and the destination must be
 * byte-exact. Run under ThreadSanitizer, this is also the race check of
 * the batch life cycle. */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <vmio/migrate.h>

#include "test-common.h"

#define PS 4096u
#define NREG 4
#define ROUNDS 5

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Regions of odd sizes: one page, a few pages, a larger one and one of
 * 16 KiB pages. */
static const struct {
    uint32_t page_size;
    uint64_t pages;
} layout[NREG] = { { PS, 1 }, { PS, 37 }, { PS, 301 }, { 16384, 19 } };

static void fill_page(uint8_t *p, uint32_t ps, uint64_t *seed)
{
    switch (rnd(seed) % 4) {
    case 0:
        memset(p, 0, ps);
        break;
    case 1:
        memset(p, 0, ps);
        for (unsigned i = 0; i < 16; i++)
            p[rnd(seed) % ps] = (uint8_t)rnd(seed);
        break;
    case 2:
        for (uint32_t i = 0; i < ps; i++)
            p[i] = "abc def\n"[rnd(seed) % 8];
        break;
    default:
        for (uint32_t i = 0; i < ps; i += 8) {
            uint64_t v = rnd(seed);
            memcpy(p + i, &v, 8);
        }
    }
}

struct script {
    uint8_t *mem[NREG];
    unsigned calls;            /* collections, all regions */
    uint64_t seed;
};

/* Between rounds: change about a third of each region's pages. */
static int script_dirty(void *opaque, uint32_t region, uint64_t *bitmap, uint64_t npages)
{
    struct script *s = opaque;
    ck_assert_uint_lt(region, NREG);
    ck_assert_uint_eq(npages, layout[region].pages);
    if (s->calls++ >= (unsigned)(ROUNDS - 1) * NREG)
        return 0;
    uint32_t ps = layout[region].page_size;
    for (uint64_t pg = 0; pg < npages; pg++) {
        if (rnd(&s->seed) % 3)
            continue;
        fill_page(s->mem[region] + pg * ps, ps, &s->seed);
        bitmap[pg / 64] |= 1ull << (pg % 64);
    }
    return 0;
}

struct rx {
    vmio_migrate_receiver *rc;
    int port, r;
    char err[512];
    pthread_t th;
};

static void *rx_main(void *arg)
{
    struct rx *x = arg;
    x->r = vmio_migrate_receive(x->rc);
    snprintf(x->err, sizeof x->err, "%s", x->r < 0 ? vmio_errmsg() : "");
    return NULL;
}

static const uint32_t threads[] = { 2, 4, 8, 16 };
static const uint32_t batches[] = { 1, 2, 3 };
#define M(c) VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_##c)
static const struct {
    const char *name;
    uint32_t codecs, policy;
} modes[] = {
    { "raw+zero", M(RAW) | M(ZERO), VMIO_MIGRATE_FIXED },
    { "all", VMIO_MIGRATE_CODECS_ALL, VMIO_MIGRATE_ADAPTIVE },
};
#define NTHREADS (sizeof(threads) / sizeof(threads[0]))
#define NBATCHES (sizeof(batches) / sizeof(batches[0]))
#define NMODES (sizeof(modes) / sizeof(modes[0]))

START_TEST(t_stress)
{
    unsigned i = (unsigned)_i;
    uint32_t nthreads = threads[i % NTHREADS];
    uint32_t batch = batches[i / NTHREADS % NBATCHES];
    unsigned mode = i / NTHREADS / NBATCHES;
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .codecs = modes[mode].codecs,
                                      .policy = modes[mode].policy,
                                      .gpu = VMIO_MIGRATE_GPU_OFF, .threads = nthreads,
                                      .batch_pages = batch, .max_rounds = ROUNDS,
                                      .downtime_ns = 1, .delta_cache_bytes = 1u << 20 };
    struct script sc = { .seed = 0x1234567ull + i };
    struct vmio_migrate_region reg[NREG];
    for (unsigned k = 0; k < NREG; k++) {
        size_t len = layout[k].pages * layout[k].page_size;
        sc.mem[k] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert(sc.mem[k] != MAP_FAILED);
        for (uint64_t pg = 0; pg < layout[k].pages; pg++)
            fill_page(sc.mem[k] + pg * layout[k].page_size, layout[k].page_size, &sc.seed);
        reg[k] = (struct vmio_migrate_region){ sizeof(reg[k]), layout[k].page_size, sc.mem[k],
                                               len, NULL };
    }

    struct rx x;
    memset(&x, 0, sizeof x);
    ck_assert_vmio_ok(vmio_migrate_receiver_new(&o, &x.rc));
    x.port = vmio_migrate_receiver_listen(x.rc, "tcp://127.0.0.1:0");
    ck_assert_msg(x.port > 0, "listen: %s", vmio_errmsg());
    ck_assert_int_eq(pthread_create(&x.th, NULL, rx_main, &x), 0);

    vmio_migrate_sender *s;
    ck_assert_vmio_ok(vmio_migrate_sender_new(&o, &s));
    for (unsigned k = 0; k < NREG; k++)
        ck_assert_int_eq(vmio_migrate_sender_add_region(s, &reg[k]), (int)k);
    ck_assert_vmio_ok(vmio_migrate_track_bitmap(s, script_dirty, &sc));
    char to[64];
    snprintf(to, sizeof to, "tcp://127.0.0.1:%d", x.port);
    int r = vmio_migrate_send(s, to);
    char serr[512];
    snprintf(serr, sizeof serr, "%s", r < 0 ? vmio_errmsg() : "");
    pthread_join(x.th, NULL);
    ck_assert_msg(r == 0 && x.r == 0, "%u threads, %u-page batches, %s: send: %s; receive: %s",
                  nthreads, batch, modes[mode].name, serr, x.err);
    ck_assert_int_eq(vmio_migrate_sender_rounds(s), ROUNDS + 1);

    for (unsigned k = 0; k < NREG; k++) {
        struct vmio_migrate_region d;
        ck_assert_vmio_ok(vmio_migrate_receiver_region(x.rc, k, &d));
        ck_assert_uint_eq(d.length, reg[k].length);
        ck_assert_msg(memcmp(d.base, sc.mem[k], d.length) == 0,
                      "%u threads, %u-page batches, %s: region %u differs", nthreads, batch,
                      modes[mode].name, k);
    }
    uint8_t d1[16], d2[16];
    ck_assert_vmio_ok(vmio_migrate_receiver_digest(x.rc, d1));
    ck_assert_vmio_ok(vmio_migrate_digest(reg, NREG, d2));
    ck_assert(memcmp(d1, d2, 16) == 0);

    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    for (unsigned k = 0; k < NREG; k++)
        munmap(sc.mem[k], reg[k].length);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("migrate-stress");
    TCase *tc = tcase_create("stress");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, t_stress, 0, (int)(NTHREADS * NBATCHES * NMODES));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return test_run(suite());
}
