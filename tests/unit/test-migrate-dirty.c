/* Dirty sources of the migration sender (libvmio/migrate/dirty-*.c).
 *
 * The userfaultfd source runs against the real kernel: untouched and read
 * memory is clean after start, exactly the written pages are reported and
 * collect re-arms them, a writer thread racing with repeated collects never
 * loses a write, region pages larger than the system page, a 256 MiB
 * region's collect cost (VMIO_TEST_DIRTY_MIB sets another size), memory
 * that is not private anonymous is refused, a kernel or sandbox without
 * the needed features is reported clearly (simulated with seccomp in a
 * child), and stop leaves the memory as it was. The bitmap source: the
 * callback's bits arrive ORed into the engine's bitmap, its errors come
 * back with the error convention.
 *
 * The uffd tests need Linux 6.7 (exit 77 without it, after the bitmap
 * tests ran). */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/userfaultfd.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "test-common.h"

#include "core/internal.h"
#include "migrate/dirty.h"

#define API "vmio_migrate_track_uffd"
#define RUN "vmio_migrate_send"
#define SYS_PAGE 4096u

/* ---- utilities --------------------------------------------------------- */

static uint8_t *map_anon(size_t len, int huge)
{
    /* 2 MiB alignment so that the huge page case really gets THPs. */
    size_t align = 2u << 20;
    uint8_t *raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ck_assert_msg(raw != MAP_FAILED, "mmap: %s", strerror(errno));
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    munmap(p + len, (size_t)(raw + len + align - (p + len)));
    ck_assert_int_eq(madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE), 0);
    return p;
}

static struct vmio_mig_dirty *uffd_new1(void *base, uint64_t len, uint32_t ps)
{
    struct vmio_mig_region_desc r = { .base = base, .length = len, .page_size = ps };
    struct vmio_mig_dirty *d = NULL;
    int rc = vmio_mig_dirty_uffd_new(API, &r, 1, &d);
    ck_assert_msg(rc == 0, "uffd_new: %d (%s)", rc, vmio_errmsg());
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d->ops->name, "uffd");
    return d;
}

static uint64_t *bm_new(uint64_t npages)
{
    uint64_t *b = calloc((npages + 63) / 64 + 1, sizeof *b);
    ck_assert_ptr_nonnull(b);
    return b;
}

static int bm_test(const uint64_t *b, uint64_t i)
{
    return (int)((b[i / 64] >> (i % 64)) & 1);
}

static void bm_set(uint64_t *b, uint64_t i)
{
    b[i / 64] |= UINT64_C(1) << (i % 64);
}

static uint64_t bm_count(const uint64_t *b, uint64_t npages)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < (npages + 63) / 64; i++)
        n += (uint64_t)__builtin_popcountll(b[i]);
    return n;
}

/* Collect a region into a fresh bitmap (caller frees). */
static uint64_t *collect(struct vmio_mig_dirty *d, uint32_t region, uint64_t npages)
{
    uint64_t *b = bm_new(npages);
    int rc = d->ops->collect(d, region, b, npages);
    ck_assert_msg(rc == 0, "collect: %d (%s)", rc, vmio_errmsg());
    return b;
}

/* The reported set is exactly pages[0..n). */
static void expect_exactly(const uint64_t *b, uint64_t npages, const uint64_t *pages, size_t n)
{
    uint64_t *want = bm_new(npages);
    for (size_t i = 0; i < n; i++)
        bm_set(want, pages[i]);
    for (uint64_t i = 0; i < npages; i++)
        ck_assert_msg(bm_test(b, i) == bm_test(want, i), "page %llu: reported %d, written %d",
                      (unsigned long long)i, bm_test(b, i), bm_test(want, i));
    free(want);
}

static void touch(uint8_t *base, uint64_t page, uint32_t ps, uint8_t v)
{
    ((volatile uint8_t *)base)[page * ps + (page * 131) % ps] = v;
}

/* Whether the smaps VmFlags of the mapping holding addr include flag. */
static int vma_has_flag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int in = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            char pat[8];
            snprintf(pat, sizeof pat, " %s", flag);
            found = strstr(line + 8, pat) != NULL;
            break;
        }
    }
    fclose(f);
    ck_assert_msg(found >= 0, "no smaps entry for %p", addr);
    return found;
}

/* ---- bitmap source ----------------------------------------------------- */

struct cb_state {
    uint32_t region;
    uint64_t npages;
    int calls;
    int was_zero;
    int ret;
    uint64_t pages[8];
    size_t n;
    int overflow;   /* also set every bit past npages in the last word */
};

static int cb_fn(void *opaque, uint32_t region, uint64_t *bitmap, uint64_t npages)
{
    struct cb_state *s = opaque;
    s->calls++;
    s->region = region;
    s->npages = npages;
    s->was_zero = test_is_zero(bitmap, (size_t)((npages + 63) / 64) * 8);
    for (size_t i = 0; i < s->n; i++)
        bm_set(bitmap, s->pages[i]);
    if (s->overflow && npages % 64)
        bitmap[npages / 64] |= ~UINT64_C(0) << (npages % 64);
    return s->ret;
}

/* Under valgrind (which does not implement the userfaultfd syscall and
 * runs everything ~50x slower) the races are shorter and the
 * permission simulations, which depend on that syscall, are left to the
 * normal run. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

START_TEST(test_bitmap_or)
{
    struct cb_state s = { .pages = { 0, 63, 64, 99 }, .n = 4, .overflow = 1 };
    struct vmio_mig_dirty *d = NULL;
    ck_assert_vmio_ok(vmio_mig_dirty_bitmap_new(cb_fn, &s, &d));
    ck_assert_str_eq(d->ops->name, "bitmap");
    ck_assert(d->ops->pause == NULL);
    ck_assert_int_eq(d->ops->start(d), 0);
    ck_assert_int_eq(s.calls, 0);

    const uint64_t npages = 100;
    uint64_t *b = bm_new(npages);
    bm_set(b, 5);   /* already set by the engine: must survive */
    ck_assert_int_eq(d->ops->collect(d, 3, b, npages), 0);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_uint_eq(s.region, 3);
    ck_assert_uint_eq(s.npages, npages);
    ck_assert_int_eq(s.was_zero, 1);
    const uint64_t want[] = { 0, 5, 63, 64, 99 };
    expect_exactly(b, npages, want, 5);
    ck_assert_uint_eq(b[1] >> 36, 0);   /* nothing past npages */
    ck_assert_uint_eq(b[2], 0);

    /* The callback gets a zeroed bitmap again although the engine's is not. */
    s.n = 1;
    s.pages[0] = 42;
    ck_assert_int_eq(d->ops->collect(d, 0, b, npages), 0);
    ck_assert_int_eq(s.was_zero, 1);
    const uint64_t want2[] = { 0, 5, 42, 63, 64, 99 };
    expect_exactly(b, npages, want2, 6);
    free(b);
    d->ops->stop(d);
    d->ops->free(d);
}
END_TEST

START_TEST(test_bitmap_errors)
{
    struct vmio_mig_dirty *d = NULL;
    ck_assert_vmio_err(vmio_mig_dirty_bitmap_new(NULL, NULL, &d), EINVAL,
                       "vmio_migrate_track_bitmap");
    ck_assert_ptr_null(d);
    struct cb_state s = { .pages = { 1 }, .n = 1, .ret = -ENOSPC };
    ck_assert_vmio_err(vmio_mig_dirty_bitmap_new(cb_fn, &s, NULL), EFAULT,
                       "vmio_migrate_track_bitmap");
    ck_assert_vmio_ok(vmio_mig_dirty_bitmap_new(cb_fn, &s, &d));

    uint64_t b[2] = { 0, 0 };
    ck_assert_vmio_err_msg(d->ops->collect(d, 7, b, 70), ENOSPC, RUN, "region 7");
    ck_assert_uint_eq(b[0], 0);   /* nothing merged from a failed callback */
    s.ret = 3;
    ck_assert_vmio_err_msg(d->ops->collect(d, 1, b, 70), EINVAL, RUN, "returned 3");
    s.ret = 0;
    ck_assert_int_eq(d->ops->collect(d, 1, b, 70), 0);
    ck_assert_uint_eq(b[0], 2);
    d->ops->stop(d);
    d->ops->free(d);
}
END_TEST

/* ---- uffd source: exact reports ---------------------------------------- */

START_TEST(test_uffd_untouched)
{
    const uint64_t npages = 512;
    uint8_t *m = map_anon(npages * SYS_PAGE, 0);
    /* Half the pages populated before tracking starts, half never. */
    for (uint64_t i = 0; i < npages; i += 2)
        touch(m, i, SYS_PAGE, 1);
    struct vmio_mig_dirty *d = uffd_new1(m, npages * SYS_PAGE, SYS_PAGE);
    ck_assert_int_eq(d->ops->start(d), 0);
    uint64_t *b = collect(d, 0, npages);
    ck_assert_uint_eq(bm_count(b, npages), 0);
    free(b);
    /* Round 0 reads every page: reads are not writes. */
    uint64_t sum = 0;
    for (uint64_t i = 0; i < npages * SYS_PAGE; i++)
        sum += ((volatile uint8_t *)m)[i];
    ck_assert_uint_eq(sum, npages / 2);
    b = collect(d, 0, npages);
    ck_assert_uint_eq(bm_count(b, npages), 0);
    free(b);
    d->ops->stop(d);
    d->ops->free(d);
    munmap(m, npages * SYS_PAGE);
}
END_TEST

START_TEST(test_uffd_exact)
{
    const uint64_t npages = 300;
    int huge = _i;  /* 0: 4 KiB pages, 1: transparent huge pages */
    uint8_t *m = map_anon(npages * SYS_PAGE, huge);
    if (huge)
        memset(m, 0x11, npages * SYS_PAGE);   /* populated with THPs */
    else
        for (uint64_t i = 0; i < npages; i += 3)
            touch(m, i, SYS_PAGE, 1);
    struct vmio_mig_dirty *d = uffd_new1(m, npages * SYS_PAGE, SYS_PAGE);
    ck_assert_int_eq(d->ops->start(d), 0);

    /* first, last, scattered, neighbours, one page written twice, both
     * populated and never-populated pages */
    const uint64_t w[] = { 0, npages - 1, 7, 100, 101, 200, 258, 259, 260 };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(w); i++)
        touch(m, w[i], SYS_PAGE, (uint8_t)(i + 2));
    touch(m, 200, SYS_PAGE, 0x77);
    uint64_t *b = collect(d, 0, npages);
    expect_exactly(b, npages, w, VMIO_ARRAY_SIZE(w));
    free(b);

    /* Re-armed: nothing until the next writes, then exactly those. */
    b = collect(d, 0, npages);
    ck_assert_uint_eq(bm_count(b, npages), 0);
    free(b);
    const uint64_t w2[] = { 3, 200, npages - 1 };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(w2); i++)
        touch(m, w2[i], SYS_PAGE, 0x55);
    /* A write through the kernel (read(2) into the region) counts too. */
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(read(fd, m + 150 * SYS_PAGE + 10, 100), 100);
    close(fd);
    const uint64_t w2b[] = { 3, 150, 200, npages - 1 };
    b = collect(d, 0, npages);
    expect_exactly(b, npages, w2b, VMIO_ARRAY_SIZE(w2b));
    /* collect ORs: a second collect into the same bitmap keeps the bits. */
    touch(m, 9, SYS_PAGE, 1);
    ck_assert_int_eq(d->ops->collect(d, 0, b, npages), 0);
    const uint64_t w3[] = { 3, 9, 150, 200, npages - 1 };
    expect_exactly(b, npages, w3, VMIO_ARRAY_SIZE(w3));
    free(b);

    /* start again: everything clean. */
    touch(m, 1, SYS_PAGE, 1);
    ck_assert_int_eq(d->ops->start(d), 0);
    b = collect(d, 0, npages);
    ck_assert_uint_eq(bm_count(b, npages), 0);
    free(b);
    d->ops->free(d);    /* without stop */
    munmap(m, npages * SYS_PAGE);
}
END_TEST

/* Region pages of 16 KiB and 64 KiB over 4 KiB system pages, two regions
 * in one source: a page is dirty when any of its system pages was written,
 * and collecting one region leaves the other's writes pending. */
START_TEST(test_uffd_page_sizes)
{
    const uint64_t len0 = 64 * 16384, len1 = 16 * 65536;
    uint8_t *m0 = map_anon(len0, 0), *m1 = map_anon(len1, 0);
    struct vmio_mig_region_desc r[2] = {
        { .base = m0, .length = len0, .page_size = 16384 },
        { .base = m1, .length = len1, .page_size = 65536 },
    };
    struct vmio_mig_dirty *d = NULL;
    ck_assert_vmio_ok(vmio_mig_dirty_uffd_new(API, r, 2, &d));
    ck_assert_int_eq(d->ops->start(d), 0);

    m0[4096] = 1;                       /* system page 1 of page 0 */
    m0[6 * 16384 - 1] = 1;              /* last byte of page 5 */
    m0[9 * 16384 + 2 * 4096] = 1;       /* two system pages of page 9 */
    m0[9 * 16384 + 3 * 4096 + 5] = 1;
    m0[63 * 16384] = 1;                 /* first byte of the last page */
    m1[65536 + 12 * 4096] = 1;          /* region 1, page 1 */
    memset(m1 + 65536 * 14 - 10, 2, 20);   /* straddles pages 13 and 14 */

    uint64_t *b = collect(d, 0, 64);
    const uint64_t w0[] = { 0, 5, 9, 63 };
    expect_exactly(b, 64, w0, 4);
    free(b);
    /* Region 0's collect did not touch region 1's state. */
    b = collect(d, 1, 16);
    const uint64_t w1[] = { 1, 13, 14 };
    expect_exactly(b, 16, w1, 3);
    free(b);
    b = collect(d, 0, 64);
    ck_assert_uint_eq(bm_count(b, 64), 0);
    free(b);

    /* Wrong region or bitmap size. */
    uint64_t small[1] = { 0 };
    ck_assert_vmio_err_msg(d->ops->collect(d, 2, small, 16), EINVAL, RUN, "no region 2");
    ck_assert_vmio_err_msg(d->ops->collect(d, 1, small, 17), EINVAL, RUN, "16 pages");
    d->ops->stop(d);
    d->ops->free(d);
    munmap(m0, len0);
    munmap(m1, len1);
}
END_TEST

/* ---- uffd source: a writer racing with collects ------------------------ */

struct race {
    uint8_t *mem;
    uint64_t npages;        /* of the region */
    uint64_t span;          /* the writer writes pages [0, span) */
    _Atomic uint64_t collects_done;
    atomic_int stop;
    /* the writer's log: page and collects_done read before the write */
    uint64_t *page;
    uint64_t *seen;
    _Atomic uint64_t n;
    uint64_t cap;
};

static void *writer_main(void *arg)
{
    struct race *r = arg;
    uint64_t x = 0x2545F4914F6CDD1Dull, n = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed) && n < r->cap) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t p = x % r->span;
        uint64_t c = atomic_load_explicit(&r->collects_done, memory_order_acquire);
        ((volatile uint64_t *)(r->mem + p * SYS_PAGE))[(x >> 40) % 512] = n;
        r->page[n] = p;
        r->seen[n] = c;
        n++;
        atomic_store_explicit(&r->n, n, memory_order_relaxed);
        if ((n & 1023) == 0)
            sched_yield();
    }
    return NULL;
}

START_TEST(test_uffd_writer_race)
{
    int huge = _i;
    struct race r = { .npages = 8192, .cap = 4u << 20 };
    r.span = r.npages * 3 / 4;
    r.mem = map_anon(r.npages * SYS_PAGE, huge);
    if (huge)
        memset(r.mem, 1, r.npages * SYS_PAGE);
    r.page = malloc(r.cap * sizeof *r.page);
    r.seen = malloc(r.cap * sizeof *r.seen);
    uint64_t *last = malloc(r.npages * sizeof *last);    /* last collect reporting */
    uint64_t *first = malloc(r.npages * sizeof *first);  /* first collect reporting */
    ck_assert(r.page && r.seen && last && first);
    for (uint64_t i = 0; i < r.npages; i++)
        last[i] = first[i] = UINT64_MAX;

    uint64_t min_writes = under_valgrind() ? 5000 : 50000;
    unsigned min_collects = under_valgrind() ? 100 : 1000;
    struct vmio_mig_dirty *d = uffd_new1(r.mem, r.npages * SYS_PAGE, SYS_PAGE);
    ck_assert_int_eq(d->ops->start(d), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &r), 0);

    /* At least 1000 collects, 50000 writes and 0.5 s of racing (at most
     * 10 s on a loaded machine), then a last collect. */
    uint64_t *b = bm_new(r.npages), reported = 0, rounds = 0;
    double t_min = test_now() + 0.5, t_max = t_min + 10;
    for (uint64_t k = 0; rounds == 0; k++) {
        double now = test_now();
        if ((k >= min_collects && now >= t_min && atomic_load(&r.n) >= min_writes) || now >= t_max) {
            rounds = k;
            /* The last collect starts after every write completed. */
            atomic_store(&r.stop, 1);
            pthread_join(th, NULL);
        }
        memset(b, 0, (r.npages + 63) / 64 * 8);
        ck_assert_int_eq(d->ops->collect(d, 0, b, r.npages), 0);
        atomic_store_explicit(&r.collects_done, k + 1, memory_order_release);
        for (uint64_t p = 0; p < r.npages; p++)
            if (bm_test(b, p)) {
                if (first[p] == UINT64_MAX)
                    first[p] = k;
                last[p] = k;
                reported++;
            }
    }
    free(b);
    uint64_t nw = atomic_load(&r.n);
    ck_assert_msg(nw >= min_writes, "the writer did only %llu writes", (unsigned long long)nw);

    /* Never lost: each write is reported by a collect that had not
     * finished before the write began. */
    uint64_t *firstw = malloc(r.npages * sizeof *firstw);
    ck_assert_ptr_nonnull(firstw);
    for (uint64_t p = 0; p < r.npages; p++)
        firstw[p] = UINT64_MAX;
    for (uint64_t i = 0; i < nw; i++) {
        uint64_t p = r.page[i];
        ck_assert_msg(last[p] != UINT64_MAX && last[p] >= r.seen[i],
                      "write %llu to page %llu (after %llu collects) lost: last reported "
                      "by collect %lld", (unsigned long long)i, (unsigned long long)p,
                      (unsigned long long)r.seen[i],
                      last[p] == UINT64_MAX ? -1LL : (long long)last[p]);
        if (r.seen[i] < firstw[p])
            firstw[p] = r.seen[i];
    }
    /* And nothing invented: a page is reported only once a write to it
     * could have begun. */
    for (uint64_t p = 0; p < r.npages; p++)
        if (first[p] != UINT64_MAX)
            ck_assert_msg(firstw[p] != UINT64_MAX && first[p] >= firstw[p],
                          "page %llu reported by collect %llu before any write",
                          (unsigned long long)p, (unsigned long long)first[p]);
    printf("writer race (%s): %llu writes, %llu collects, %llu page reports\n",
           huge ? "THP" : "4 KiB", (unsigned long long)nw, (unsigned long long)rounds + 1,
           (unsigned long long)reported);
    d->ops->stop(d);
    d->ops->free(d);
    free(firstw);
    free(first);
    free(last);
    free(r.page);
    free(r.seen);
    munmap(r.mem, r.npages * SYS_PAGE);
}
END_TEST

/* ---- uffd source: a large region --------------------------------------- */

START_TEST(test_uffd_large)
{
    uint64_t mib = 256;
    const char *env = getenv("VMIO_TEST_DIRTY_MIB");
    if (env && atoi(env) > 0)
        mib = (uint64_t)atoi(env);
    const uint64_t len = mib << 20, npages = len / SYS_PAGE;
    uint8_t *m = map_anon(len, 0);
    for (uint64_t i = 0; i < npages; i++)
        touch(m, i, SYS_PAGE, 1);
    struct vmio_mig_dirty *d = uffd_new1(m, len, SYS_PAGE);
    double t0 = test_now();
    ck_assert_int_eq(d->ops->start(d), 0);
    double t_start = test_now() - t0;

    /* 1% of the pages, random (deterministic), some repeated. */
    uint64_t nw = npages / 100, *w = malloc(nw * sizeof *w), x = 88172645463325252ull;
    ck_assert_ptr_nonnull(w);
    for (uint64_t i = 0; i < nw; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = x % npages;
        touch(m, w[i], SYS_PAGE, 2);
    }
    t0 = test_now();
    uint64_t *b = collect(d, 0, npages);
    double t_dirty = test_now() - t0;
    expect_exactly(b, npages, w, nw);
    uint64_t ndirty = bm_count(b, npages);
    free(b);
    t0 = test_now();
    b = collect(d, 0, npages);
    double t_clean = test_now() - t0;
    ck_assert_uint_eq(bm_count(b, npages), 0);
    free(b);
    /* Every other page: npages / 2 separate ranges, many times what one
     * PAGEMAP_SCAN call returns. */
    for (uint64_t i = 1; i < npages; i += 2)
        touch(m, i, SYS_PAGE, 4);
    t0 = test_now();
    b = collect(d, 0, npages);
    double t_half = test_now() - t0;
    for (uint64_t i = 0; i < npages; i++)
        ck_assert_msg(bm_test(b, i) == (int)(i & 1), "page %llu", (unsigned long long)i);
    free(b);
    /* Everything written: one range. */
    for (uint64_t i = 0; i < npages; i++)
        touch(m, i, SYS_PAGE, 3);
    t0 = test_now();
    b = collect(d, 0, npages);
    double t_all = test_now() - t0;
    ck_assert_uint_eq(bm_count(b, npages), npages);
    free(b);
    t0 = test_now();
    d->ops->stop(d);
    double t_stop = test_now() - t0;
    printf("uffd %llu MiB: start %.2f ms, collect with %llu pages (1%%) dirty %.2f ms, "
           "clean %.2f ms, every other page %.2f ms, all dirty %.2f ms, stop %.2f ms\n",
           (unsigned long long)mib, t_start * 1e3, (unsigned long long)ndirty,
           t_dirty * 1e3, t_clean * 1e3, t_half * 1e3, t_all * 1e3, t_stop * 1e3);
    d->ops->free(d);
    free(w);
    munmap(m, len);
}
END_TEST

/* ---- uffd source: refused memory and arguments ------------------------- */

START_TEST(test_uffd_reject)
{
    struct vmio_mig_dirty *d = NULL;
    char dir[256], path[300];
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/mem", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 1 << 20), 0);

    const int kinds[] = { MAP_SHARED, MAP_PRIVATE };
    for (size_t k = 0; k < 2; k++) {
        uint8_t *f = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, kinds[k], fd, 0);
        ck_assert(f != MAP_FAILED);
        struct vmio_mig_region_desc r = { .base = f, .length = 1 << 20, .page_size = 4096 };
        ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, &r, 1, &d), EINVAL, API,
                               "not private anonymous memory");
        ck_assert_msg(strstr(vmio_errmsg(), path) != NULL, "%s", vmio_errmsg());
        ck_assert_ptr_null(d);
        munmap(f, 1 << 20);
    }
    close(fd);
    test_rmtree(dir);

    uint8_t *s = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert(s != MAP_FAILED);
    struct vmio_mig_region_desc r = { .base = s, .length = 1 << 20, .page_size = 4096 };
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, &r, 1, &d), EINVAL, API,
                           "not private anonymous memory");
    munmap(s, 1 << 20);

    /* A hole in the middle of the region. */
    uint8_t *m = map_anon(1 << 20, 0);
    munmap(m + 65536, 4096);
    r.base = m;
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, &r, 1, &d), EINVAL, API,
                           "not mapped");
    munmap(m, 1 << 20);

    m = map_anon(1 << 20, 0);
    r.base = m;
    r.page_size = 8192 + 4096;
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, &r, 1, &d), EINVAL, API, "page size");
    r.page_size = 16384;
    r.base = m + 4096;
    r.length = 65536;
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, &r, 1, &d), EINVAL, API,
                           "not a multiple");
    struct vmio_mig_region_desc two[2] = {
        { .base = m, .length = 65536, .page_size = 4096 },
        { .base = m + 61440, .length = 8192, .page_size = 4096 },
    };
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, two, 2, &d), EINVAL, API, "overlap");
    ck_assert_vmio_err(vmio_mig_dirty_uffd_new(API, two, 2, NULL), EFAULT, API);
    ck_assert_ptr_null(d);

    /* The same memory cannot be tracked twice at once. */
    struct vmio_mig_dirty *d1 = uffd_new1(m, 1 << 20, 4096);
    ck_assert_vmio_err_msg(vmio_mig_dirty_uffd_new(API, two, 1, &d), EBUSY, API,
                           "already tracked");
    ck_assert_ptr_null(d);
    d1->ops->free(d1);
    munmap(m, 1 << 20);
}
END_TEST

/* Memory replaced under the tracker is an error, not silently clean. */
START_TEST(test_uffd_remapped)
{
    const uint64_t npages = 32, len = npages * SYS_PAGE;
    uint8_t *m = map_anon(len, 0);
    struct vmio_mig_dirty *d = uffd_new1(m, len, SYS_PAGE);
    ck_assert_int_eq(d->ops->start(d), 0);
    void *p = mmap(m + 8 * SYS_PAGE, 2 * SYS_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ck_assert_ptr_eq(p, m + 8 * SYS_PAGE);
    uint64_t *b = bm_new(npages);
    ck_assert_vmio_err_msg(d->ops->collect(d, 0, b, npages), EPERM, RUN,
                           "no longer tracked");
    free(b);
    d->ops->free(d);
    munmap(m, len);
}
END_TEST

/* ---- uffd source: stop -------------------------------------------------- */

START_TEST(test_uffd_stop)
{
    const uint64_t npages = 64, len = npages * SYS_PAGE;
    uint8_t *m = map_anon(len, 0);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 0);
    struct vmio_mig_dirty *d = uffd_new1(m, len, SYS_PAGE);
    d->ops->stop(d);    /* without start */
    ck_assert_int_eq(vma_has_flag(m, "uw"), 0);
    /* start after stop tracks again (a second send). */
    ck_assert_int_eq(d->ops->start(d), 0);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 1);
    touch(m, 2, SYS_PAGE, 1);
    uint64_t *b0 = collect(d, 0, npages);
    const uint64_t w0[] = { 2 };
    expect_exactly(b0, npages, w0, 1);
    free(b0);
    d->ops->free(d);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 0);

    d = uffd_new1(m, len, SYS_PAGE);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 1);
    ck_assert_int_eq(d->ops->start(d), 0);
    touch(m, 3, SYS_PAGE, 1);
    d->ops->stop(d);
    d->ops->stop(d);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 0);
    uint64_t *b = bm_new(npages);
    ck_assert_vmio_err_msg(d->ops->collect(d, 0, b, npages), EINVAL, RUN, "stopped");
    free(b);
    d->ops->free(d);
    /* Writable as before, and free for another tracker. */
    memset(m, 0x5a, len);
    ck_assert_int_eq(m[len - 1], 0x5a);
    d = uffd_new1(m, len, SYS_PAGE);
    ck_assert_int_eq(d->ops->start(d), 0);
    touch(m, 60, SYS_PAGE, 1);
    b = collect(d, 0, npages);
    const uint64_t w[] = { 60 };
    expect_exactly(b, npages, w, 1);
    free(b);
    d->ops->free(d);
    ck_assert_int_eq(vma_has_flag(m, "uw"), 0);
    munmap(m, len);
}
END_TEST

/* ---- uffd source: what the kernel or the sandbox refuses --------------- */

/* In a child: become nobody and/or install a seccomp filter making one
 * syscall, or one ioctl command, fail with errno; then try to create a
 * source and send back the result and message. */
struct deny {
    int nobody;
    long nr;                /* syscall to deny, or -1 */
    uint32_t ioctl_cmd;     /* with nr == SYS_ioctl: only this command */
    int err;
};

/* The low 32 bits of the ioctl command argument in struct seccomp_data. */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ARG1_LOW (offsetof(struct seccomp_data, args[1]) + 4)
#else
#define ARG1_LOW offsetof(struct seccomp_data, args[1])
#endif

static int child_try(const struct deny *dn, char *msg, size_t msglen)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        uint8_t *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        if (m == MAP_FAILED)
            _exit(100);
        /* Changing uid makes the process undumpable, which would close
         * /proc/self/pagemap to it: undo that. */
        if (dn->nobody && geteuid() == 0 &&
            (setgid(65534) != 0 || setuid(65534) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0))
            _exit(101);
        if (dn->nr >= 0) {
            struct sock_filter ioctl_f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)dn->nr, 0, 3),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG1_LOW),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, dn->ioctl_cmd, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)dn->err),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            };
            struct sock_filter sys_f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)dn->nr, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)dn->err),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            };
            struct sock_fprog prog;
            if (dn->nr == SYS_ioctl) {
                prog.len = (unsigned short)VMIO_ARRAY_SIZE(ioctl_f);
                prog.filter = ioctl_f;
            } else {
                prog.len = (unsigned short)VMIO_ARRAY_SIZE(sys_f);
                prog.filter = sys_f;
            }
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
                prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
                _exit(102);
        }
        struct vmio_mig_region_desc r = { .base = m, .length = 65536, .page_size = 4096 };
        struct vmio_mig_dirty *d = NULL;
        int rc = vmio_mig_dirty_uffd_new(API, &r, 1, &d);
        if (rc == 0) {
            /* It must work, then. */
            if (d->ops->start(d) != 0)
                _exit(103);
            m[5000] = 1;
            uint64_t b = 0;
            if (d->ops->collect(d, 0, &b, 16) != 0 || b != 2)
                _exit(104);
            d->ops->free(d);
        }
        char out[300];
        int n = snprintf(out, sizeof out, "%d %d %s", rc, vmio_errno(), vmio_errmsg());
        if (write(pfd[1], out, (size_t)n) != n)
            _exit(105);
        _exit(0);
    }
    close(pfd[1]);
    char buf[300] = { 0 };
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(pfd[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    close(pfd[0]);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
    int rc = 0, en = 0, pos = 0;
    ck_assert_int_ge(sscanf(buf, "%d %d %n", &rc, &en, &pos), 2);
    snprintf(msg, msglen, "%s", buf + pos);
    if (rc < 0)
        ck_assert_int_eq(en, -rc);
    return rc;
}

START_TEST(test_uffd_denied)
{
    char msg[300];
    if (under_valgrind())
        return;
    /* Unprivileged, with vm.unprivileged_userfaultfd at its default 0: the
     * user-mode-only userfaultfd is enough. */
    struct deny nobody = { .nobody = 1, .nr = -1 };
    ck_assert_msg(child_try(&nobody, msg, sizeof msg) == 0, "%s", msg);

    /* No userfaultfd syscall allowed and /dev/userfaultfd is root's. */
    struct deny nosys = { .nobody = 1, .nr = SYS_userfaultfd, .err = EPERM };
    ck_assert_int_eq(child_try(&nosys, msg, sizeof msg), -EPERM);
    ck_assert_msg(strncmp(msg, API ": ", strlen(API) + 2) == 0, "%s", msg);
    ck_assert_msg(strstr(msg, "vm.unprivileged_userfaultfd") != NULL, "%s", msg);

    /* Without the syscall, root still gets one from /dev/userfaultfd. */
    if (geteuid() == 0 && access("/dev/userfaultfd", R_OK | W_OK) == 0) {
        struct deny devnode = { .nr = SYS_userfaultfd, .err = EPERM };
        ck_assert_msg(child_try(&devnode, msg, sizeof msg) == 0, "%s", msg);
    }

    /* A kernel without PAGEMAP_SCAN answers ENOTTY. */
    struct deny noscan = { .nr = SYS_ioctl, .ioctl_cmd = (uint32_t)0xC0606610u, .err = ENOTTY };
    ck_assert_int_eq(child_try(&noscan, msg, sizeof msg), -ENOTSUP);
    ck_assert_str_eq(msg, API ": kernel lacks PAGEMAP_SCAN (needs Linux 6.7)");

    /* A kernel without UFFD_FEATURE_WP_ASYNC refuses the feature bits. */
    struct deny noasync = { .nr = SYS_ioctl, .ioctl_cmd = (uint32_t)UFFDIO_API, .err = EINVAL };
    ck_assert_int_eq(child_try(&noasync, msg, sizeof msg), -ENOTSUP);
    ck_assert_msg(strstr(msg, "UFFD_FEATURE_WP_ASYNC") && strstr(msg, "Linux 6.7"), "%s", msg);
}
END_TEST

/* ---- main -------------------------------------------------------------- */

int main(void)
{
    Suite *s = suite_create("migrate-dirty");
    TCase *tc = tcase_create("bitmap");
    tcase_add_test(tc, test_bitmap_or);
    tcase_add_test(tc, test_bitmap_errors);
    suite_add_tcase(s, tc);

    /* Does this kernel have what the uffd source needs? */
    uint8_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct vmio_mig_region_desc r = { .base = m, .length = 4096, .page_size = 4096 };
    struct vmio_mig_dirty *d = NULL;
    int rc = m == MAP_FAILED ? -ENOMEM : vmio_mig_dirty_uffd_new(API, &r, 1, &d);
    if (rc == 0)
        d->ops->free(d);
    else
        printf("uffd tests skipped: %s\n", vmio_errmsg());
    if (m != MAP_FAILED)
        munmap(m, 4096);

    if (rc == 0) {
        tc = tcase_create("uffd");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_uffd_untouched);
        tcase_add_loop_test(tc, test_uffd_exact, 0, 2);
        tcase_add_test(tc, test_uffd_page_sizes);
        tcase_add_loop_test(tc, test_uffd_writer_race, 0, 2);
        tcase_add_test(tc, test_uffd_large);
        tcase_add_test(tc, test_uffd_reject);
        tcase_add_test(tc, test_uffd_remapped);
        tcase_add_test(tc, test_uffd_stop);
        tcase_add_test(tc, test_uffd_denied);
        suite_add_tcase(s, tc);
    }
    int ret = test_run(s);
    if (ret == EXIT_SUCCESS && rc != 0)
        return 77;
    return ret;
}
