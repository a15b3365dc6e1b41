/* Read-ahead and write-behind of the gfarm:// backend (cache=stream,
 * libvmio/storage/gfarm-stream.c), on its own: the calls it makes below
 * itself go to an in-memory disk that counts and logs them, can fail them,
 * can hold one write in flight (the write gate) and can hold one read that
 * already copied its bytes (the read gate, which keeps a window fetch in
 * flight with the old data), so that every test asserts the exact data and
 * the exact I/O the layer did. The window fetches run on the layer's own
 * threads: tests wait for them to finish (ra_idle) before counting reads,
 * and compare the reads since a point as a set, since parallel fetches
 * reach the disk in any order. Covered: write-behind in 1 MiB units,
 * read-your-writes (staged, in flight, around a read-ahead window, a write
 * staged while a window is fetched or while its fetch waits for a drain, a
 * window fetched while a write waits to be staged), the aligned read-ahead
 * windows (one fetch on demand, the next ones prefetched, large sequential
 * reads, end of file) and what invalidates them (writes, also one landing
 * while a window is fetched; truncation), failed fetches, deferred write
 * errors, FUA, and many threads on one stream. */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>

#include <vmio/storage.h>

#include "test-common.h"

#include "storage/gfarm-stream.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BUF MiB                 /* the layer's write-behind unit and window size */
#define SMALL (64u * KiB)       /* larger writes (and non-sequential reads) go direct */
#define SIZE (4 * MiB + 3000)   /* file size: the last window is short */
#define CAP (8 * MiB)           /* the disk array; writes may grow the file */
#define WLOG 64
#define RLOG 64

/* ---- the disk below the stream ----------------------------------------- */

struct wop {
    uint64_t off;
    size_t len;
    unsigned flags;
};

struct rop {
    uint64_t off;
    size_t len;
};

static struct disk {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint8_t *data;            /* CAP bytes, zero beyond size */
    uint64_t size;
    useconds_t delay;         /* per call, outside the lock */
    int reads;                /* read calls, failed ones too */
    struct rop rlog[RLOG];    /* the first RLOG of them */
    int writes, fua_writes;   /* writes that landed */
    struct wop wlog[WLOG];    /* the first WLOG of them */
    int fail_writes;          /* fail the next n writes */
    int fail_reads;           /* fail the next n reads at fail_read_off */
    uint64_t fail_read_off;
    int gate_closed, gate_hits;   /* a write at gate_off waits while closed */
    uint64_t gate_off;
    int rgate_closed, rgate_hits; /* the first read at rgate_off, once it */
    uint64_t rgate_off;           /* has copied the data, waits while closed */
} disk;

static uint8_t *ref;           /* what the disk must hold once drained */
static struct gfstream st;
static int st_open;

static int disk_read(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off)
{
    struct disk *d = ctx;
    if (d->delay)
        usleep(d->delay);
    pthread_mutex_lock(&d->lock);
    if (d->reads < RLOG)
        d->rlog[d->reads] = (struct rop){ off, total };
    d->reads++;
    if (d->fail_reads > 0 && off == d->fail_read_off) {
        d->fail_reads--;
        pthread_mutex_unlock(&d->lock);
        return vmio_set_error("disk", EIO, "injected read failure at %" PRIu64, off);
    }
    if (off > d->size || total > d->size - off) {
        pthread_mutex_unlock(&d->lock);
        return vmio_set_error("disk", EIO, "read beyond end of file at %" PRIu64, off);
    }
    const uint8_t *src = d->data + off;
    for (int i = 0; i < iovcnt && total > 0; i++) {
        size_t k = VMIO_MIN(iov[i].iov_len, total);
        memcpy(iov[i].iov_base, src, k);
        src += k;
        total -= k;
    }
    if (d->rgate_closed && off == d->rgate_off && d->rgate_hits == 0) {
        d->rgate_hits++;
        pthread_cond_broadcast(&d->cond);
        while (d->rgate_closed)
            pthread_cond_wait(&d->cond, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int disk_write(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off,
                      unsigned flags)
{
    struct disk *d = ctx;
    if (d->delay)
        usleep(d->delay);
    pthread_mutex_lock(&d->lock);
    if (d->gate_closed && off == d->gate_off) {
        d->gate_hits++;
        pthread_cond_broadcast(&d->cond);
        while (d->gate_closed)
            pthread_cond_wait(&d->cond, &d->lock);
    }
    if (d->fail_writes > 0) {
        d->fail_writes--;
        pthread_mutex_unlock(&d->lock);
        return vmio_set_error("disk", EIO, "injected write failure at %" PRIu64, off);
    }
    if (off > CAP || total > CAP - off) {
        pthread_mutex_unlock(&d->lock);
        return vmio_set_error("disk", ENOSPC, "write beyond the disk at %" PRIu64, off);
    }
    uint8_t *dst = d->data + off;
    size_t left = total;
    for (int i = 0; i < iovcnt && left > 0; i++) {
        size_t k = VMIO_MIN(iov[i].iov_len, left);
        memcpy(dst, iov[i].iov_base, k);
        dst += k;
        left -= k;
    }
    if (off + total > d->size)
        d->size = off + total;
    if (d->writes < WLOG)
        d->wlog[d->writes] = (struct wop){ off, total, flags };
    d->writes++;
    if (flags & VMIO_REQ_FUA)
        d->fua_writes++;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static const struct gfstream_io disk_io = {
    .ctx = &disk,
    .read = disk_read,
    .write = disk_write,
};

static void gate_open(void);
static void rgate_open(void);

static void setup(void)
{
    memset(&disk, 0, sizeof disk);
    pthread_mutex_init(&disk.lock, NULL);
    pthread_cond_init(&disk.cond, NULL);
    disk.data = calloc(1, CAP);
    ref = calloc(1, CAP);
    ck_assert(disk.data && ref);
    disk.size = SIZE;
    test_fill(disk.data, SIZE, 0, 1);
    memcpy(ref, disk.data, CAP);
    ck_assert_vmio_ok(gfstream_init(&st, &disk_io, SIZE));
    st_open = 1;
}

static void teardown(void)
{
    /* Let go of anything a failed test left held. */
    gate_open();
    rgate_open();
    if (st_open)
        gfstream_destroy(&st);
    st_open = 0;
    free(disk.data);
    free(ref);
    pthread_mutex_destroy(&disk.lock);
    pthread_cond_destroy(&disk.cond);
}

static int nreads(void)
{
    pthread_mutex_lock(&disk.lock);
    int n = disk.reads;
    pthread_mutex_unlock(&disk.lock);
    return n;
}

static int nwrites(void)
{
    pthread_mutex_lock(&disk.lock);
    int n = disk.writes;
    pthread_mutex_unlock(&disk.lock);
    return n;
}

/* ---- the read-ahead windows, seen from outside ---------------------------- */

/* Until no window fetch is under way but the one held at the read gate
 * (after rgate_wait), if any: after this, nothing reads the disk behind the
 * test's back. Every fetch ends with a broadcast on the stream's condition
 * variable, the held one only after the gate opened. (The stream's lock,
 * then the disk's: the order in which the layer takes them, if at all.) */
static void ra_idle(void)
{
    pthread_mutex_lock(&st.lock);
    for (;;) {
        int fetching = 0;
        for (int i = 0; i < GFSTREAM_WINDOWS; i++)
            fetching += st.win[i].state == GFSTREAM_WIN_FETCHING;
        pthread_mutex_lock(&disk.lock);
        int held = disk.rgate_closed && disk.rgate_hits > 0;
        pthread_mutex_unlock(&disk.lock);
        if (fetching <= held)
            break;
        pthread_cond_wait(&st.cond, &st.lock);
    }
    pthread_mutex_unlock(&st.lock);
}

/* The state of the usable window at off (GFSTREAM_WIN_EMPTY: none). */
static int win_state(uint64_t off)
{
    int s = GFSTREAM_WIN_EMPTY;
    pthread_mutex_lock(&st.lock);
    for (int i = 0; i < GFSTREAM_WINDOWS; i++)
        if (st.win[i].state != GFSTREAM_WIN_EMPTY && !st.win[i].stale && st.win[i].off == off)
            s = st.win[i].state;
    pthread_mutex_unlock(&st.lock);
    return s;
}

/* Until no window starts at off. Nothing signals a write dropping a
 * window, so this polls (the condition, not the clock). */
static void until_no_window(uint64_t off)
{
    while (win_state(off) != GFSTREAM_WIN_EMPTY)
        sched_yield();
}

static uint64_t ra_hits(void)
{
    pthread_mutex_lock(&st.lock);
    uint64_t n = st.ra_hits;
    pthread_mutex_unlock(&st.lock);
    return n;
}

#define R(off, len) { (uint64_t)(off), (size_t)(len) }
#define WIN(k) R((uint64_t)(k) * BUF, BUF)   /* the whole window k */
#define LAST R(4 * BUF, SIZE - 4 * BUF)      /* the last, short window of the file */

static int fmt_reads(char *out, size_t n, const struct rop *r, int cnt)
{
    int w = 0;
    out[0] = 0;
    for (int i = 0; i < cnt && (size_t)w < n; i++)
        w += snprintf(out + w, n - (size_t)w, " %zu@%" PRIu64, r[i].len, r[i].off);
    return w;
}

/* Once the read-ahead is idle: the reads since read number from are
 * exactly these, in any order. */
static void reads_are(int from, const struct rop *exp, int n)
{
    ra_idle();
    struct rop got[RLOG] = { { 0, 0 } };
    pthread_mutex_lock(&disk.lock);
    int total = disk.reads;
    int cnt = 0;
    for (int i = from; i < total && i < RLOG; i++)
        got[cnt++] = disk.rlog[i];
    pthread_mutex_unlock(&disk.lock);
    ck_assert_int_le(total, RLOG);
    char gs[1024], es[1024];
    fmt_reads(gs, sizeof gs, got, cnt);
    fmt_reads(es, sizeof es, exp, n);
    int match = cnt == n;
    int used[RLOG] = { 0 };
    for (int j = 0; j < n && match; j++) {
        int k = 0;
        while (k < cnt && (used[k] || got[k].off != exp[j].off || got[k].len != exp[j].len))
            k++;
        if (k == cnt)
            match = 0;
        else
            used[k] = 1;
    }
    ck_assert_msg(match, "reads since read %d:%s; expected:%s", from, gs, es);
}

#define READS(from, ...)                                                        \
    reads_are((from), (const struct rop[]){ __VA_ARGS__ },                      \
              (int)(sizeof((const struct rop[]){ __VA_ARGS__ }) / sizeof(struct rop)))

/* Once the read-ahead is idle: n reads in all. */
static void nreads_is(int n)
{
    ra_idle();
    ck_assert_int_eq(nreads(), n);
}

/* Write number i (from 0) was len bytes at off with flags. */
static void wlog_is(int i, uint64_t off, size_t len, unsigned flags)
{
    pthread_mutex_lock(&disk.lock);
    ck_assert_int_gt(disk.writes, i);
    struct wop w = disk.wlog[i];
    pthread_mutex_unlock(&disk.lock);
    ck_assert_msg(w.off == off && w.len == len && w.flags == flags,
                  "write %d: %zu at %" PRIu64 " flags %u, expected %zu at %" PRIu64 " flags %u",
                  i, w.len, w.off, w.flags, len, off, flags);
}

static void fail_writes(int n)
{
    pthread_mutex_lock(&disk.lock);
    disk.fail_writes = n;
    pthread_mutex_unlock(&disk.lock);
}

/* The next n reads at off fail. */
static void fail_reads_at(uint64_t off, int n)
{
    pthread_mutex_lock(&disk.lock);
    disk.fail_reads = n;
    disk.fail_read_off = off;
    pthread_mutex_unlock(&disk.lock);
}

static void gate_close(uint64_t off)
{
    pthread_mutex_lock(&disk.lock);
    disk.gate_closed = 1;
    disk.gate_off = off;
    disk.gate_hits = 0;
    pthread_mutex_unlock(&disk.lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&disk.lock);
    disk.gate_closed = 0;
    pthread_cond_broadcast(&disk.cond);
    pthread_mutex_unlock(&disk.lock);
}

/* Until a write is held at the gate. */
static void gate_wait(void)
{
    pthread_mutex_lock(&disk.lock);
    while (disk.gate_hits == 0)
        pthread_cond_wait(&disk.cond, &disk.lock);
    pthread_mutex_unlock(&disk.lock);
}

static void *gate_open_later(void *arg)
{
    (void)arg;
    usleep(20000);
    gate_open();
    return NULL;
}

static void rgate_close(uint64_t off)
{
    pthread_mutex_lock(&disk.lock);
    disk.rgate_closed = 1;
    disk.rgate_off = off;
    disk.rgate_hits = 0;
    pthread_mutex_unlock(&disk.lock);
}

static void rgate_open(void)
{
    pthread_mutex_lock(&disk.lock);
    disk.rgate_closed = 0;
    pthread_cond_broadcast(&disk.cond);
    pthread_mutex_unlock(&disk.lock);
}

/* Until a read is held at the read gate, with the bytes it read. */
static void rgate_wait(void)
{
    pthread_mutex_lock(&disk.lock);
    while (disk.rgate_hits == 0)
        pthread_cond_wait(&disk.cond, &disk.lock);
    pthread_mutex_unlock(&disk.lock);
}

/* Until the background write (if any) has completed. */
static void wait_idle(void)
{
    pthread_mutex_lock(&st.lock);
    while (st.fl_busy)
        pthread_cond_wait(&st.cond, &st.lock);
    pthread_mutex_unlock(&st.lock);
}

/* Changes the file size below the stream, as a truncate would. */
static void disk_truncate(uint64_t size)
{
    pthread_mutex_lock(&disk.lock);
    if (size < disk.size) {
        memset(disk.data + size, 0, disk.size - size);
        memset(ref + size, 0, disk.size - size);
    }
    disk.size = size;
    pthread_mutex_unlock(&disk.lock);
}

/* A truncate through the stream. */
static void resize(uint64_t size)
{
    ck_assert_vmio_ok(gfstream_resize_begin(&st));
    disk_truncate(size);
    gfstream_resize_end(&st, size);
}

static void disk_is_ref(void)
{
    pthread_mutex_lock(&disk.lock);
    size_t i = 0;
    while (i < CAP && disk.data[i] == ref[i])
        i++;
    pthread_mutex_unlock(&disk.lock);
    ck_assert_msg(i == CAP, "disk differs from the reference at %zu", i);
}

/* len bytes of pattern seed at off through the stream, in two iovecs;
 * the reference follows a write that succeeded. */
static int swrite(uint64_t off, size_t len, uint32_t seed, int fua)
{
    uint8_t *b = malloc(len);
    if (!b)
        return -ENOMEM;
    test_fill(b, len, off, seed);
    size_t a = len / 3;
    struct iovec v[2] = { { b, a }, { b + a, len - a } };
    int r = gfstream_write(&st, v, 2, len, off, fua);
    if (r == 0)
        memcpy(ref + off, b, len);
    free(b);
    return r;
}

static int sread(uint8_t *buf, uint64_t off, size_t len)
{
    size_t a = len / 3;
    struct iovec v[2] = { { buf, a }, { buf + a, len - a } };
    return gfstream_read(&st, v, 2, len, off);
}

#define WR(off, len, seed) ck_assert_vmio_ok(swrite((off), (len), (seed), 0))

static long first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return (long)i;
    return -1;
}

/* A read through the stream returns what was last written there. */
static void read_is_ref(uint64_t off, size_t len)
{
    uint8_t *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    ck_assert_vmio_ok(sread(b, off, len));
    long i = first_diff(b, ref + off, len);
    free(b);
    ck_assert_msg(i < 0, "read of %zu at %" PRIu64 ": stale byte at %" PRIu64, len, off,
                  off + (uint64_t)i);
}

/* One stream call on another thread; a read allocates buf (the test
 * frees it). */
struct bg {
    pthread_t th;
    int write;
    uint64_t off;
    size_t len;
    uint32_t seed;
    uint8_t *buf;
    int r;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;
    b->r = b->write ? swrite(b->off, b->len, b->seed, 0) : sread(b->buf, b->off, b->len);
    return NULL;
}

static void bg_start(struct bg *b)
{
    if (!b->write) {
        b->buf = malloc(b->len);
        ck_assert_ptr_nonnull(b->buf);
    }
    ck_assert_int_eq(pthread_create(&b->th, NULL, bg_main, b), 0);
}

/* ---- write-behind ------------------------------------------------------ */

/* Small sequential writes stay in memory until 1 MiB has accumulated, then
 * reach the disk 1 MiB at a time in the background; a drain writes the
 * rest. (A fresh stream's sequence starts at offset 0.) */
START_TEST(test_wb_sequential)
{
    for (uint64_t off = 0; off < BUF; off += 4 * KiB)
        WR(off, 4 * KiB, 2);
    ck_assert_int_eq(nwrites(), 0);
    ck_assert_uint_eq(st.staged, 256);

    for (uint64_t off = BUF; off < 3 * BUF + 12 * KiB; off += 4 * KiB)
        WR(off, 4 * KiB, 3);
    wait_idle();
    ck_assert_int_eq(nwrites(), 3);
    for (int i = 0; i < 3; i++)
        wlog_is(i, (uint64_t)i * BUF, BUF, 0);
    ck_assert_int_eq(memcmp(disk.data, ref, 3 * BUF), 0);
    ck_assert_int_ne(memcmp(disk.data + 3 * BUF, ref + 3 * BUF, 12 * KiB), 0);

    ck_assert_vmio_ok(gfstream_drain(&st));
    ck_assert_int_eq(nwrites(), 4);
    wlog_is(3, 3 * BUF, 12 * KiB, 0);
    ck_assert_uint_eq(st.staged, 3 * 256 + 3);
    ck_assert_int_eq(nreads(), 0);
    disk_is_ref();

    /* Nothing buffered: a drain writes nothing. */
    ck_assert_vmio_ok(gfstream_drain(&st));
    ck_assert_int_eq(nwrites(), 4);
}
END_TEST

/* Writes that are not small and sequential go straight to the disk, after
 * the buffered writes they overlap. */
START_TEST(test_wb_direct)
{
    WR(0, 4 * KiB, 2);
    WR(4 * KiB, 4 * KiB, 3);
    ck_assert_int_eq(nwrites(), 0);

    /* Not sequential: straight through; the buffer stays. */
    WR(512 * KiB, 4 * KiB, 4);
    ck_assert_int_eq(nwrites(), 1);
    wlog_is(0, 512 * KiB, 4 * KiB, 0);
    /* Large, elsewhere: straight through; the buffer stays. */
    WR(2 * MiB, 128 * KiB, 5);
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(1, 2 * MiB, 128 * KiB, 0);

    /* Large, over the buffer: the buffer first, then the new data. */
    WR(0, 128 * KiB, 6);
    ck_assert_int_eq(nwrites(), 4);
    wlog_is(2, 0, 8 * KiB, 0);
    wlog_is(3, 0, 128 * KiB, 0);
    disk_is_ref();

    /* Small but not sequential, over a buffer: the same order. */
    WR(128 * KiB, 4 * KiB, 7);        /* sequential after the large write */
    ck_assert_int_eq(nwrites(), 4);
    WR(128 * KiB + 2 * KiB, 512, 8);
    ck_assert_int_eq(nwrites(), 6);
    wlog_is(4, 128 * KiB, 4 * KiB, 0);
    wlog_is(5, 128 * KiB + 2 * KiB, 512, 0);
    disk_is_ref();
    ck_assert_int_eq(nreads(), 0);
}
END_TEST

/* ---- read-your-writes --------------------------------------------------- */

/* A read over staged data writes it out first and returns it. */
START_TEST(test_ryw_staged)
{
    WR(0, 4 * KiB, 2);
    WR(4 * KiB, 4 * KiB, 3);
    ck_assert_int_eq(nwrites(), 0);
    read_is_ref(2 * KiB, 16 * KiB);        /* staged bytes and older ones */
    ck_assert_int_eq(nwrites(), 1);
    wlog_is(0, 0, 8 * KiB, 0);
    READS(0, R(2 * KiB, 16 * KiB));        /* not sequential: direct */
    disk_is_ref();
}
END_TEST

/* Which reads may go around the layer (the routed asynchronous path):
 * not one over staged or in-flight writes, not one that continues the
 * read sequence or falls in a window; a random one may, and it then
 * counts as the last read. */
START_TEST(test_read_bypass)
{
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 2 * BUF), 1);
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 2 * BUF + 4 * KiB), 0);   /* sequential */
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 8 * KiB), 1);
    WR(0, 4 * KiB, 2);
    WR(4 * KiB, 4 * KiB, 3);
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 6 * KiB), 0);   /* staged */
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 64 * KiB), 1);
    /* In flight: [0, 1 MiB) held at the gate. */
    for (uint64_t off = 8 * KiB; off < BUF; off += 4 * KiB)
        WR(off, 4 * KiB, 4);
    gate_close(0);
    WR(BUF, 4 * KiB, 5);
    gate_wait();
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 512 * KiB), 0);
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 3 * BUF), 1);
    gate_open();
    wait_idle();
    /* A window being read: reads inside it are the layer's. */
    read_is_ref(3 * BUF + 4 * KiB, 4 * KiB);     /* random: direct */
    read_is_ref(3 * BUF + 8 * KiB, 4 * KiB);     /* sequential: window 3 */
    ck_assert_int_eq(gfstream_read_bypass(&st, 4 * KiB, 3 * BUF + 64 * KiB), 0);
    ck_assert_int_eq(nwrites(), 1);
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
}
END_TEST

/* Writes around the layer: not a small sequential one, not one over
 * buffered bytes; one that may drops the windows over it, before and
 * after (a read-ahead may have run while it was on its way). */
START_TEST(test_write_bypass)
{
    WR(0, 4 * KiB, 2);
    ck_assert_int_eq(gfstream_write_bypass(&st, 4 * KiB, 4 * KiB, 0), 0);   /* continues */
    ck_assert_int_eq(gfstream_write_bypass(&st, 4 * KiB, 0, 0), 0);         /* staged */
    ck_assert_int_eq(gfstream_write_bypass(&st, 4 * KiB, 2 * BUF, 0), 1);
    ck_assert_int_eq(gfstream_write_bypass(&st, 128 * KiB, 2 * BUF + 4 * KiB, 0), 1);
    ck_assert_int_eq(gfstream_write_bypass(&st, 4 * KiB, 2 * BUF + 132 * KiB, 1), 1); /* FUA */
    /* A window over a bypassed write is gone. */
    read_is_ref(3 * BUF, 4 * KiB);
    read_is_ref(3 * BUF + 4 * KiB, 4 * KiB);       /* window 3 */
    ra_idle();
    ck_assert_int_eq(win_state(3 * BUF), GFSTREAM_WIN_READY);
    ck_assert_int_eq(gfstream_write_bypass(&st, 64 * KiB, 3 * BUF + 512 * KiB, 0), 1);
    ck_assert_int_eq(win_state(3 * BUF), GFSTREAM_WIN_EMPTY);
    gfstream_write_bypassed(&st, 64 * KiB, 3 * BUF + 512 * KiB);
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
}
END_TEST

/* A read over data in flight waits for it to land. */
START_TEST(test_ryw_in_flight)
{
    for (uint64_t off = 0; off < BUF; off += 4 * KiB)
        WR(off, 4 * KiB, 2);
    gate_close(0);
    WR(BUF, 4 * KiB, 3);            /* pushes [0, 1 MiB) to the writer thread */
    gate_wait();
    ck_assert_int_eq(nwrites(), 0);

    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, gate_open_later, NULL), 0);
    read_is_ref(512 * KiB, 4 * KiB);     /* returns only once the gate opened */
    pthread_join(th, NULL);
    /* It drained everything: the megabyte in flight, then what was staged. */
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(0, 0, BUF, 0);
    wlog_is(1, BUF, 4 * KiB, 0);
    READS(0, R(512 * KiB, 4 * KiB));
    disk_is_ref();
}
END_TEST

/* A window fetched on demand that would cover staged bytes beyond the
 * requested range writes them out first, so that later reads from the
 * window return them. */
START_TEST(test_ryw_window_beyond)
{
    const uint64_t x = BUF;
    read_is_ref(x - 4 * KiB, 4 * KiB);     /* random: direct; the sequence is at x */
    WR(x + 8 * KiB - 128 * KiB, 128 * KiB, 2);   /* direct; writes continue at x + 8K */
    WR(x + 8 * KiB, 4 * KiB, 3);
    WR(x + 12 * KiB, 4 * KiB, 4);
    WR(x + 16 * KiB, 4 * KiB, 5);
    ck_assert_int_eq(nwrites(), 1);
    READS(0, R(x - 4 * KiB, 4 * KiB));

    read_is_ref(x, 4 * KiB);               /* window 1 on demand, 2 to 4 prefetched */
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(1, x + 8 * KiB, 12 * KiB, 0);
    READS(1, WIN(1), WIN(2), WIN(3), LAST);
    for (uint64_t off = x + 4 * KiB; off < x + 20 * KiB; off += 4 * KiB)
        read_is_ref(off, 4 * KiB);
    nreads_is(5);
    ck_assert_uint_eq(ra_hits(), 5);
    disk_is_ref();
}
END_TEST

/* While a demand fetch waits for buffered writes in its window to land,
 * another thread stages a write inside that window: the window must not
 * be fetched without it (the reader reads directly), or a read after
 * that write was acknowledged returns the old bytes. */
START_TEST(test_ryw_stage_during_drain)
{
    read_is_ref(4 * KiB, 4 * KiB);         /* direct; the read sequence is at 8K */
    WR(128 * KiB, 128 * KiB, 2);           /* direct; writes continue at 256K */
    WR(256 * KiB, 4 * KiB, 3);             /* staged */
    ck_assert_int_eq(nwrites(), 1);

    /* The reader drains [256K, 260K) before fetching window 0. */
    gate_close(256 * KiB);
    struct bg r = { .off = 8 * KiB, .len = 4 * KiB };
    bg_start(&r);
    gate_wait();                           /* the reader waits, unlocked */
    WR(260 * KiB, 4 * KiB, 4);             /* staged meanwhile, acknowledged */
    gate_open();
    pthread_join(r.th, NULL);
    ck_assert_vmio_ok(r.r);
    ck_assert_int_eq(first_diff(r.buf, ref + 8 * KiB, 4 * KiB), -1);
    free(r.buf);
    READS(0, R(4 * KiB, 4 * KiB), R(8 * KiB, 4 * KiB));   /* no window */
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);

    read_is_ref(260 * KiB, 4 * KiB);       /* writes it out, reads it directly */
    ck_assert_int_eq(nwrites(), 3);
    wlog_is(2, 260 * KiB, 4 * KiB, 0);
    READS(2, R(260 * KiB, 4 * KiB));
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
}
END_TEST

/* A write staged while a window over it is being fetched (the fetch has
 * read the old bytes and not returned yet): the window is not served,
 * neither to the reader waiting for it (which reads directly at once) nor
 * later. */
START_TEST(test_ryw_stage_during_fetch)
{
    WR(128 * KiB, 128 * KiB, 2);           /* direct; writes continue at 256K */
    rgate_close(0);
    struct bg r = { .off = 0, .len = 4 * KiB };
    bg_start(&r);                          /* sequential: fetches window 0, held */
    rgate_wait();
    ra_idle();                             /* the prefetches of 1 to 3 are done */
    WR(256 * KiB, 4 * KiB, 3);             /* staged, acknowledged */
    ck_assert_int_eq(nwrites(), 1);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);   /* stale */
    pthread_join(r.th, NULL);              /* the fetch is still held */
    ck_assert_vmio_ok(r.r);
    ck_assert_int_eq(first_diff(r.buf, ref, 4 * KiB), -1);
    free(r.buf);
    /* The reader fell back to reading directly; once the fetch returns,
     * the window is gone. */
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3), R(0, 4 * KiB));
    rgate_open();
    ra_idle();
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);
    ck_assert_uint_eq(ra_hits(), 0);

    read_is_ref(256 * KiB, 4 * KiB);       /* writes it out, reads it directly */
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(1, 256 * KiB, 4 * KiB, 0);
    READS(5, R(256 * KiB, 4 * KiB));
    /* The next sequential read fetches window 0 again, with the write. */
    read_is_ref(260 * KiB, 4 * KiB);
    READS(6, WIN(0));
    read_is_ref(256 * KiB, 4 * KiB);       /* from the new window */
    nreads_is(7);
    ck_assert_uint_eq(ra_hits(), 2);
    disk_is_ref();
}
END_TEST

/* A sequential write that waits for the writer thread (to hand it the
 * previous buffer) while a read fetches a window over its range must not
 * leave that window holding the old bytes once it is acknowledged. */
START_TEST(test_ryw_readahead_during_push)
{
    read_is_ref(0, 4 * KiB);               /* windows 0 to 3 */
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3));
    WR(2 * MiB - 128 * KiB, 128 * KiB, 2); /* direct; writes continue at 2M */
    WR(2 * MiB, 4 * KiB, 3);               /* staged */
    WR(3 * MiB - 128 * KiB, 128 * KiB, 4); /* direct; writes continue at 3M */
    gate_close(2 * MiB);
    WR(3 * MiB, 4 * KiB, 5);               /* [2M, 2M + 4K) in flight, held; [3M, 3M + 4K) staged */
    gate_wait();
    WR(256 * KiB, 128 * KiB, 6);           /* direct; writes continue at 384K */
    ck_assert_int_eq(nwrites(), 3);
    for (int k = 0; k < 4; k++)            /* every window was written into */
        ck_assert_int_eq(win_state((uint64_t)k * BUF), GFSTREAM_WIN_EMPTY);

    /* Window 0 again, 1 prefetched; 2 is not (the write in flight). */
    read_is_ref(4 * KiB, 4 * KiB);
    READS(4, WIN(0), WIN(1));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_READY);

    /* This one drops window 0, then waits for the held write before it
     * can stage: once window 0 is gone, it waits. */
    struct bg w = { .write = 1, .off = 384 * KiB, .len = 4 * KiB, .seed = 7 };
    bg_start(&w);
    until_no_window(0);
    /* Window 0 overlaps nothing buffered: fetched now, with the old bytes
     * at 384K. */
    read_is_ref(8 * KiB, 4 * KiB);
    READS(6, WIN(0));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_READY);
    gate_open();
    pthread_join(w.th, NULL);
    ck_assert_vmio_ok(w.r);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);

    read_is_ref(384 * KiB, 4 * KiB);       /* writes it out, reads it directly */
    READS(7, R(384 * KiB, 4 * KiB));
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
}
END_TEST

/* ---- read-ahead --------------------------------------------------------- */

/* A sequential read fetches its 1 MiB-aligned window on demand and the
 * next three in the background; reading on into the next window prefetches
 * one more. Reads up to 64K inside a window are served from it. */
START_TEST(test_ra_sequential)
{
    for (uint64_t off = 0; off < BUF; off += 4 * KiB)
        read_is_ref(off, 4 * KiB);
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3));
    ck_assert_uint_eq(ra_hits(), 256);

    read_is_ref(BUF, 4 * KiB);             /* from window 1; 4 prefetched */
    READS(4, LAST);
    read_is_ref(BUF + 4 * KiB, SMALL);     /* sequential, up to 64K */
    read_is_ref(3 * BUF + 100, SMALL);     /* not sequential, inside a window */
    read_is_ref(2 * BUF - 4 * KiB, 8 * KiB);   /* across two windows */
    read_is_ref(SIZE - 100, 100);          /* the end of the file */
    nreads_is(5);
    ck_assert_uint_eq(ra_hits(), 261);
    ck_assert_int_eq(nwrites(), 0);
}
END_TEST

/* Sequential reads of up to 4 MiB are served from the windows, which the
 * read-ahead keeps fetching ahead of the reader; larger ones go straight
 * through, and so do larger-than-64K reads that are not sequential even
 * inside a window. */
START_TEST(test_ra_large)
{
    resize(CAP);                           /* windows 0 to 7 */
    read_is_ref(0, 4 * MiB + 1);           /* sequential, but over 4 MiB: direct */
    READS(0, R(0, 4 * MiB + 1));
    read_is_ref(4 * MiB + 1, 4 * MiB - 1); /* windows 4 to 7 */
    READS(1, WIN(4), WIN(5), WIN(6), WIN(7));
    ck_assert_uint_eq(ra_hits(), 1);

    resize(CAP);                           /* drops the windows */
    read_is_ref(BUF - 4 * KiB, 4 * KiB);   /* direct; the sequence is at 1M */
    READS(5, R(BUF - 4 * KiB, 4 * KiB));
    /* Exactly 4 MiB: windows 1 to 4, and as the reader enters 2, 3 and 4,
     * windows 5, 6 and 7 in place of those it left. */
    read_is_ref(BUF, 4 * MiB);
    READS(6, WIN(1), WIN(2), WIN(3), WIN(4), WIN(5), WIN(6), WIN(7));
    ck_assert_uint_eq(ra_hits(), 2);
    ck_assert_int_eq(win_state(BUF), GFSTREAM_WIN_EMPTY);
    for (int k = 4; k < 8; k++)
        ck_assert_int_eq(win_state((uint64_t)k * BUF), GFSTREAM_WIN_READY);

    read_is_ref(5 * MiB + 4 * KiB, 128 * KiB);   /* not sequential, over 64K: direct */
    READS(13, R(5 * MiB + 4 * KiB, 128 * KiB));
    read_is_ref(6 * MiB, SMALL);           /* not sequential, 64K: window 6 */
    read_is_ref(6 * MiB + SMALL, 2 * MiB - SMALL);   /* sequential: windows 6, 7 */
    nreads_is(14);
    ck_assert_uint_eq(ra_hits(), 4);
}
END_TEST

START_TEST(test_ra_random)
{
    read_is_ref(3 * MiB + 512, 4 * KiB);
    read_is_ref(MiB, 8 * KiB);
    read_is_ref(2 * MiB + 100, 512);
    read_is_ref(7, 1);
    READS(0, R(3 * MiB + 512, 4 * KiB), R(MiB, 8 * KiB), R(2 * MiB + 100, 512), R(7, 1));
    ck_assert_uint_eq(ra_hits(), 0);
}
END_TEST

/* Writes into a window drop it (and only it): the next read sees the new
 * bytes. */
START_TEST(test_ra_invalidate)
{
    read_is_ref(0, 4 * KiB);               /* windows 0 to 3 */
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3));

    WR(256 * KiB, 128 * KiB, 2);           /* large: direct */
    ck_assert_int_eq(nwrites(), 1);
    read_is_ref(300 * KiB, 4 * KiB);       /* not from the window, nor a new one */
    READS(4, R(300 * KiB, 4 * KiB));

    read_is_ref(304 * KiB, 4 * KiB);       /* sequential: window 0 again */
    READS(5, WIN(0));
    WR(600 * KiB, 4 * KiB, 3);             /* small, not sequential: direct */
    ck_assert_int_eq(nwrites(), 2);
    read_is_ref(600 * KiB, 4 * KiB);
    READS(6, R(600 * KiB, 4 * KiB));

    read_is_ref(604 * KiB, 4 * KiB);       /* window 0 again */
    READS(7, WIN(0));
    WR(604 * KiB, 4 * KiB, 4);             /* small, sequential: staged */
    ck_assert_int_eq(nwrites(), 2);
    read_is_ref(604 * KiB, 4 * KiB);       /* writes it out, reads it directly */
    ck_assert_int_eq(nwrites(), 3);
    READS(8, R(604 * KiB, 4 * KiB));

    /* A write into window 2 leaves windows 0, 1 and 3 alone. */
    read_is_ref(608 * KiB, 4 * KiB);       /* window 0 again */
    READS(9, WIN(0));
    WR(2 * MiB + 4 * KiB, 4 * KiB, 5);     /* direct */
    ck_assert_int_eq(win_state(2 * MiB), GFSTREAM_WIN_EMPTY);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_READY);
    ck_assert_int_eq(win_state(MiB), GFSTREAM_WIN_READY);
    ck_assert_int_eq(win_state(3 * MiB), GFSTREAM_WIN_READY);
    read_is_ref(2 * MiB + 4 * KiB, 4 * KiB);   /* not sequential: direct */
    READS(10, R(2 * MiB + 4 * KiB, 4 * KiB));
    read_is_ref(612 * KiB, 4 * KiB);       /* from window 0; 2 prefetched again */
    READS(11, WIN(2));
    read_is_ref(MiB + 8 * KiB, 4 * KiB);   /* from window 1; 4 prefetched for 0 */
    READS(12, LAST);
    read_is_ref(2 * MiB + 4 * KiB, 4 * KiB);   /* from window 2: the new bytes */
    read_is_ref(3 * MiB + 8 * KiB, 4 * KiB);
    nreads_is(13);
    disk_is_ref();

    /* A write appended to the staged buffer drops the window it enters. */
    WR(BUF - 132 * KiB, 128 * KiB, 6);     /* direct; writes continue at 1M - 4K */
    WR(BUF - 4 * KiB, 4 * KiB, 7);         /* staged */
    ck_assert_int_eq(win_state(MiB), GFSTREAM_WIN_READY);
    WR(BUF, 4 * KiB, 8);                   /* appended: window 1 goes */
    ck_assert_int_eq(nwrites(), 5);
    ck_assert_int_eq(win_state(MiB), GFSTREAM_WIN_EMPTY);
    ck_assert_int_eq(win_state(2 * MiB), GFSTREAM_WIN_READY);
    read_is_ref(BUF, 4 * KiB);             /* writes it out, reads it directly */
    ck_assert_int_eq(nwrites(), 6);
    wlog_is(5, BUF - 4 * KiB, 8 * KiB, 0);
    READS(13, R(BUF, 4 * KiB));
    disk_is_ref();
}
END_TEST

/* A direct write still on its way when a window is fetched over it drops
 * that window when it completes. */
START_TEST(test_ra_invalidate_after_write)
{
    gate_close(400 * KiB);
    struct bg w = { .write = 1, .off = 400 * KiB, .len = 4 * KiB, .seed = 2 };
    bg_start(&w);                          /* not sequential: direct, held */
    gate_wait();
    uint8_t b[4096];
    ck_assert_vmio_ok(sread(b, 0, sizeof b));      /* window 0: old bytes */
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_READY);
    gate_open();
    pthread_join(w.th, NULL);
    ck_assert_vmio_ok(w.r);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);
    read_is_ref(400 * KiB, 4 * KiB);
    READS(4, R(400 * KiB, 4 * KiB));
}
END_TEST

/* A write lands while a window over it is being fetched (the fetch has
 * read the old bytes and not returned yet): the window is marked stale and
 * not served: the reader waiting for it reads directly at once, without
 * waiting for the stale fetch; a sequential reader meanwhile fetches a
 * window of its own; the stale one is dropped when its fetch returns. */
START_TEST(test_ra_invalidate_while_fetching)
{
    rgate_close(0);
    struct bg r = { .off = 0, .len = 4 * KiB };
    bg_start(&r);                          /* sequential: fetches window 0, held */
    rgate_wait();
    ra_idle();                             /* the prefetches of 1 to 3 are done */
    WR(512 * KiB, 4 * KiB, 2);             /* not sequential: direct, landed */
    ck_assert_int_eq(nwrites(), 1);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);   /* stale */
    pthread_join(r.th, NULL);              /* the fetch is still held */
    ck_assert_vmio_ok(r.r);
    ck_assert_int_eq(first_diff(r.buf, ref, 4 * KiB), -1);
    free(r.buf);
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3), R(0, 4 * KiB));
    ck_assert_uint_eq(ra_hits(), 0);

    read_is_ref(512 * KiB, 4 * KiB);       /* not from the stale window: direct */
    READS(5, R(512 * KiB, 4 * KiB));
    /* A sequential reader fetches a window 0 of its own (in place of the
     * least recently used window, 1), with the new bytes. */
    read_is_ref(516 * KiB, 4 * KiB);
    READS(6, WIN(0));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_READY);
    ck_assert_int_eq(win_state(MiB), GFSTREAM_WIN_EMPTY);
    read_is_ref(512 * KiB, 4 * KiB);       /* from it */

    rgate_open();
    ra_idle();
    pthread_mutex_lock(&st.lock);
    int at0 = 0;
    for (int i = 0; i < GFSTREAM_WINDOWS; i++)
        at0 += st.win[i].state != GFSTREAM_WIN_EMPTY && st.win[i].off == 0;
    pthread_mutex_unlock(&st.lock);
    ck_assert_int_eq(at0, 1);              /* the stale window is gone */
    /* Not sequential, inside window 0; window 1 is prefetched again into
     * the slot the stale window left. */
    read_is_ref(520 * KiB, 4 * KiB);
    READS(7, WIN(1));
    ck_assert_uint_eq(ra_hits(), 3);
    disk_is_ref();
}
END_TEST

/* A prefetch never reads around buffered writes: a window over staged
 * data is not prefetched (nor any after it); the reader fetches it on
 * demand once there, after writing that data out. */
START_TEST(test_ra_prefetch_skips_staged)
{
    WR(BUF + 128 * KiB, 128 * KiB, 2);     /* direct; writes continue at 1M + 256K */
    WR(BUF + 256 * KiB, 4 * KiB, 3);       /* staged, in window 1 */
    ck_assert_int_eq(nwrites(), 1);

    read_is_ref(0, 4 * KiB);               /* window 0 only */
    READS(0, WIN(0));
    read_is_ref(4 * KiB, BUF - 4 * KiB);   /* the rest of window 0 */
    nreads_is(1);
    ck_assert_int_eq(nwrites(), 1);        /* still staged */
    ck_assert_int_eq(win_state(BUF), GFSTREAM_WIN_EMPTY);

    read_is_ref(BUF, 4 * KiB);             /* window 1 on demand, after the drain */
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(1, BUF + 256 * KiB, 4 * KiB, 0);
    READS(1, WIN(1), WIN(2), WIN(3), LAST);
    read_is_ref(BUF + 256 * KiB, 4 * KiB); /* from window 1: the staged bytes */
    nreads_is(5);
    ck_assert_uint_eq(ra_hits(), 4);
    disk_is_ref();
}
END_TEST

/* Windows end at the end of the file, and nothing is prefetched beyond. */
START_TEST(test_ra_eof)
{
    read_is_ref(3 * MiB, 4 * KiB);         /* direct */
    read_is_ref(3 * MiB + 4 * KiB, 4 * KiB);   /* window 3, and the short last one */
    READS(0, R(3 * MiB, 4 * KiB), WIN(3), LAST);
    read_is_ref(SIZE - 1000, 1000);        /* the last bytes: from the window */
    read_is_ref(SIZE - 5000, 100);
    read_is_ref(4 * MiB - 100, 200);       /* across the two */
    nreads_is(3);

    WR(SIZE - 10000, 100, 2);              /* not sequential: direct; drops window 3 */
    ck_assert_int_eq(win_state(3 * MiB), GFSTREAM_WIN_EMPTY);
    ck_assert_int_eq(win_state(4 * MiB), GFSTREAM_WIN_READY);
    read_is_ref(SIZE - 6000, 100);         /* not sequential: direct */
    read_is_ref(SIZE - 5900, 2000);        /* sequential: window 3 again */
    READS(3, R(SIZE - 6000, 100), WIN(3));
    read_is_ref(SIZE - 3900, 3900);        /* up to the end, from the windows */
    nreads_is(5);

    /* Past the end: straight to the disk, which refuses. */
    uint8_t b[4096];
    ck_assert_vmio_err_msg(sread(b, SIZE, sizeof b), EIO, "disk", "beyond end of file");
    ck_assert_vmio_err_msg(sread(b, SIZE - 100, sizeof b), EIO, "disk", "beyond end of file");
    READS(5, R(SIZE, sizeof b), R(SIZE - 100, sizeof b));
    ck_assert_uint_eq(ra_hits(), 6);
}
END_TEST

/* resize_begin writes out what is buffered and drops the windows;
 * resize_end sets the size that clamps later windows. */
START_TEST(test_ra_resize)
{
    read_is_ref(0, 4 * KiB);               /* windows 0 to 3 */
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3));
    WR(2 * MiB - 128 * KiB, 128 * KiB, 2); /* direct; writes continue at 2M */
    WR(2 * MiB, 4 * KiB, 3);               /* staged */
    ck_assert_int_eq(nwrites(), 1);

    ck_assert_vmio_ok(gfstream_resize_begin(&st));
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(1, 2 * MiB, 4 * KiB, 0);
    disk_truncate(512 * KiB);
    gfstream_resize_end(&st, 512 * KiB);
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(win_state((uint64_t)k * BUF), GFSTREAM_WIN_EMPTY);
    read_is_ref(4 * KiB, 4 * KiB);         /* sequential: a new window 0, clamped */
    READS(4, R(0, 512 * KiB));
    read_is_ref(512 * KiB - 4 * KiB, 4 * KiB);
    nreads_is(5);

    /* Grow. A window fetched while the truncate runs (between begin and
     * end) is dropped by resize_end. */
    ck_assert_vmio_ok(gfstream_resize_begin(&st));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);
    read_is_ref(60 * KiB, 4 * KiB);        /* direct; the sequence is at 64K */
    read_is_ref(64 * KiB, 4 * KiB);        /* window 0, of the old size */
    READS(5, R(60 * KiB, 4 * KiB), R(0, 512 * KiB));
    disk_truncate(2 * MiB);
    gfstream_resize_end(&st, 2 * MiB);
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);
    /* Window 0 now reaches into the new zeros; window 1 is prefetched. */
    read_is_ref(68 * KiB, 4 * KiB);
    READS(7, WIN(0), WIN(1));
    read_is_ref(512 * KiB, 4 * KiB);
    ck_assert(test_is_zero(ref + 512 * KiB, 3 * BUF / 2));
    read_is_ref(BUF, 64 * KiB);
    nreads_is(9);
    disk_is_ref();
}
END_TEST

/* ---- deferred errors ---------------------------------------------------- */

/* A background write fails: the next writes return its error (with its
 * message), the next drain returns it once. */
START_TEST(test_err_deferred)
{
    for (uint64_t off = 0; off < BUF; off += 4 * KiB)
        WR(off, 4 * KiB, 2);
    fail_writes(1);
    WR(BUF, 4 * KiB, 3);                   /* acknowledged; [0, 1M) fails behind */
    wait_idle();
    ck_assert_int_eq(nwrites(), 0);

    vmio_set_error("other", EINVAL, "unrelated");
    ck_assert_vmio_err_msg(swrite(BUF + 4 * KiB, 4 * KiB, 4, 0), EIO, "disk",
                           "injected write failure at 0");
    vmio_clear_error();
    ck_assert_vmio_err_msg(swrite(BUF + 4 * KiB, 4 * KiB, 4, 0), EIO, "disk",
                           "injected write failure at 0");
    ck_assert_vmio_err_msg(swrite(3 * MiB, 128 * KiB, 4, 0), EIO, "disk",
                           "injected write failure at 0");
    ck_assert_int_eq(nwrites(), 0);

    vmio_clear_error();
    ck_assert_vmio_err_msg(gfstream_drain(&st), EIO, "disk", "injected write failure at 0");
    ck_assert_int_eq(nwrites(), 1);        /* what was staged still went out */
    wlog_is(0, BUF, 4 * KiB, 0);
    ck_assert_vmio_ok(gfstream_drain(&st));

    /* Cleared: writes work again. The failed megabyte is the old data. */
    WR(BUF + 4 * KiB, 4 * KiB, 5);
    ck_assert_int_eq(nwrites(), 1);
    ck_assert_vmio_ok(gfstream_drain(&st));
    ck_assert_int_eq(nwrites(), 2);
    test_fill(ref, BUF, 0, 1);
    disk_is_ref();
}
END_TEST

/* resize_begin and destroy return a pending error too. */
START_TEST(test_err_resize_destroy)
{
    WR(0, 4 * KiB, 2);
    fail_writes(1);
    vmio_clear_error();
    ck_assert_vmio_err_msg(gfstream_resize_begin(&st), EIO, "disk", "injected");
    gfstream_resize_end(&st, SIZE);
    ck_assert_vmio_ok(gfstream_drain(&st));

    WR(4 * KiB, 4 * KiB, 3);               /* sequence continues at 4K */
    fail_writes(1);
    vmio_clear_error();
    int r = gfstream_destroy(&st);
    st_open = 0;
    ck_assert_vmio_err_msg(r, EIO, "disk", "injected write failure at 4096");
    ck_assert_int_eq(nwrites(), 0);
}
END_TEST

/* A write error a write already reported is still returned by destroy. */
START_TEST(test_err_destroy_after_write)
{
    WR(0, 4 * KiB, 2);
    fail_writes(1);
    /* Large, over the buffer: the buffer first, which fails. */
    ck_assert_vmio_err_msg(swrite(0, 128 * KiB, 3, 0), EIO, "disk", "injected write failure at 0");
    vmio_clear_error();
    ck_assert_vmio_err_msg(swrite(2 * MiB, 4 * KiB, 4, 0), EIO, "disk", "injected");
    ck_assert_int_eq(nwrites(), 0);
    vmio_clear_error();
    int r = gfstream_destroy(&st);
    st_open = 0;
    ck_assert_vmio_err_msg(r, EIO, "disk", "injected write failure at 0");
}
END_TEST

/* A read that had to write out staged data whose write failed returns the
 * error; the lost write is still reported by the next flush. */
START_TEST(test_err_read_over_failed)
{
    WR(0, 4 * KiB, 2);
    fail_writes(1);
    uint8_t b[4096];
    vmio_clear_error();
    ck_assert_vmio_err_msg(sread(b, 0, sizeof b), EIO, "disk", "injected write failure at 0");
    vmio_clear_error();
    ck_assert_vmio_err_msg(gfstream_drain(&st), EIO, "disk", "injected write failure at 0");
    ck_assert_vmio_ok(gfstream_drain(&st));
    ck_assert_int_eq(nwrites(), 0);
}
END_TEST

/* A failed window fetch falls back to reading what was asked directly,
 * and leaves no window: the next sequential read fetches it again. A
 * failed prefetch leaves no window either and is tried again when due. A
 * failed direct read returns its error. */
START_TEST(test_err_readahead)
{
    fail_reads_at(0, 1);
    read_is_ref(0, 4 * KiB);
    READS(0, WIN(0), WIN(1), WIN(2), WIN(3), R(0, 4 * KiB));
    ck_assert_int_eq(win_state(0), GFSTREAM_WIN_EMPTY);
    ck_assert_uint_eq(ra_hits(), 0);
    read_is_ref(4 * KiB, 4 * KiB);         /* window 0 again */
    READS(5, WIN(0));
    read_is_ref(8 * KiB, 4 * KiB);
    nreads_is(6);

    fail_reads_at(4 * MiB, 1);
    read_is_ref(MiB, 4 * KiB);             /* from window 1; 4 prefetched, fails */
    READS(6, LAST);
    ck_assert_int_eq(win_state(4 * MiB), GFSTREAM_WIN_EMPTY);
    read_is_ref(MiB + 4 * KiB, 4 * KiB);   /* from window 1; 4 prefetched again */
    READS(7, LAST);
    read_is_ref(4 * MiB, SIZE - 4 * MiB);  /* from window 4 */
    nreads_is(8);
    ck_assert_uint_eq(ra_hits(), 5);

    /* A large read that reaches a window whose fetches fail, after it
     * copied the one before: all of it directly. The fetch of window 1 is
     * held until the prefetch of 2 has failed, so that the reader fetches
     * 2 again on demand, which fails too. */
    resize(SIZE);
    read_is_ref(BUF - 4 * KiB, 4 * KiB);   /* direct; the sequence is at 1M */
    fail_reads_at(2 * MiB, 2);
    rgate_close(BUF);
    struct bg r = { .off = BUF, .len = 2 * MiB };
    bg_start(&r);
    rgate_wait();
    ra_idle();
    ck_assert_int_eq(win_state(2 * MiB), GFSTREAM_WIN_EMPTY);
    rgate_open();
    pthread_join(r.th, NULL);
    ck_assert_vmio_ok(r.r);
    ck_assert_int_eq(first_diff(r.buf, ref + BUF, 2 * MiB), -1);
    free(r.buf);
    READS(8, R(BUF - 4 * KiB, 4 * KiB), WIN(1), WIN(2), WIN(3), LAST, WIN(2), R(BUF, 2 * MiB));
    ck_assert_uint_eq(ra_hits(), 5);

    fail_reads_at(128 * KiB, 1);
    uint8_t b[4096];
    vmio_clear_error();
    ck_assert_vmio_err_msg(sread(b, 128 * KiB, sizeof b), EIO, "disk", "injected read failure");
    READS(15, R(128 * KiB, 4 * KiB));
}
END_TEST

/* ---- FUA ---------------------------------------------------------------- */

START_TEST(test_fua)
{
    WR(0, 4 * KiB, 2);
    WR(4 * KiB, 4 * KiB, 3);
    WR(8 * KiB, 4 * KiB, 4);
    ck_assert_int_eq(nwrites(), 0);

    /* Over staged data: that first, then the FUA write itself. */
    ck_assert_vmio_ok(swrite(4 * KiB, 4 * KiB, 9, 1));
    ck_assert_int_eq(nwrites(), 2);
    wlog_is(0, 0, 12 * KiB, 0);
    wlog_is(1, 4 * KiB, 4 * KiB, VMIO_REQ_FUA);
    disk_is_ref();

    /* Elsewhere: straight through, the buffer stays; never staged even
     * when sequential. */
    WR(8 * KiB, 4 * KiB, 5);               /* sequential after the FUA write: staged */
    ck_assert_int_eq(nwrites(), 2);
    ck_assert_vmio_ok(swrite(512 * KiB, 4 * KiB, 6, 1));
    ck_assert_vmio_ok(swrite(516 * KiB, 4 * KiB, 7, 1));
    ck_assert_int_eq(nwrites(), 4);
    wlog_is(2, 512 * KiB, 4 * KiB, VMIO_REQ_FUA);
    wlog_is(3, 516 * KiB, 4 * KiB, VMIO_REQ_FUA);
    ck_assert_vmio_ok(gfstream_drain(&st));
    ck_assert_int_eq(nwrites(), 5);
    wlog_is(4, 8 * KiB, 4 * KiB, 0);
    ck_assert_int_eq(disk.fua_writes, 3);
    disk_is_ref();
}
END_TEST

/* Over data in flight: the FUA write waits for it. */
START_TEST(test_fua_in_flight)
{
    for (uint64_t off = 0; off < BUF; off += 4 * KiB)
        WR(off, 4 * KiB, 2);
    gate_close(0);
    WR(BUF, 4 * KiB, 3);
    gate_wait();
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, gate_open_later, NULL), 0);
    ck_assert_vmio_ok(swrite(512 * KiB, 4 * KiB, 4, 1));
    pthread_join(th, NULL);
    ck_assert_int_eq(nwrites(), 3);
    wlog_is(0, 0, BUF, 0);
    wlog_is(1, BUF, 4 * KiB, 0);
    wlog_is(2, 512 * KiB, 4 * KiB, VMIO_REQ_FUA);
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

#define NTHREADS 4
#define REGION (512 * KiB)
#define NOPS 1500

struct worker {
    pthread_t th;
    int id, ops, failures;
    char msg[256];
};

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (uint32_t)((*s * 2685821657736338717ull) >> 32);
}

static int verify(struct worker *w, uint8_t *buf, uint64_t off, size_t len)
{
    int r = sread(buf, off, len);
    if (r < 0) {
        snprintf(w->msg, sizeof w->msg, "read %zu at %" PRIu64 ": %s", len, off, vmio_errmsg());
        return -1;
    }
    long i = first_diff(buf, ref + off, len);
    if (i >= 0) {
        snprintf(w->msg, sizeof w->msg, "read %zu at %" PRIu64 ": stale byte at %" PRIu64, len,
                 off, off + (uint64_t)i);
        return -1;
    }
    return 0;
}

static int put(struct worker *w, uint64_t off, size_t len, uint32_t seed, int fua)
{
    int r = swrite(off, len, seed, fua);
    if (r < 0) {
        snprintf(w->msg, sizeof w->msg, "write %zu at %" PRIu64 ": %s", len, off,
                 vmio_errmsg());
        return -1;
    }
    return 0;
}

/* Each thread in its own region: runs of small sequential writes and
 * reads, random ones up to 128K, a few FUA writes and drains; every read
 * checks what this thread wrote there last. The regions are smaller than
 * a read-ahead window, so that windows cover other threads' writes. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t rs = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    uint64_t base = (uint64_t)w->id * REGION;
    uint32_t seed = (uint32_t)(w->id + 1) << 24;
    uint8_t *buf = malloc(128 * KiB);
    if (!buf) {
        w->failures++;
        return NULL;
    }
    while (w->ops < NOPS && !w->failures) {
        uint32_t kind = rnd(&rs) % 100;
        if (kind < 35 || (kind >= 60 && kind < 85)) {
            /* a run of small sequential writes or reads */
            size_t bs = 512u << (rnd(&rs) % 6);             /* 512 to 16K */
            uint32_t n = 1 + rnd(&rs) % VMIO_MIN(64u, REGION / bs / 2);
            uint64_t off = base + (rnd(&rs) % (REGION / bs - n)) * bs;
            for (uint32_t i = 0; i < n && !w->failures; i++, off += bs, w->ops++)
                if (kind < 35 ? put(w, off, bs, ++seed, 0) : verify(w, buf, off, bs))
                    w->failures++;
        } else if (kind < 55 || kind >= 85) {
            /* a random write or read of up to 128K */
            size_t len = 512 * (1 + rnd(&rs) % 256);
            uint64_t off = base + 512 * (rnd(&rs) % ((REGION - len) / 512 + 1));
            if (kind < 55 ? put(w, off, len, ++seed, 0) : verify(w, buf, off, len))
                w->failures++;
            w->ops++;
        } else if (kind < 58) {
            uint64_t off = base + 512 * (rnd(&rs) % (REGION / 512 - 8));
            if (put(w, off, 4 * KiB, ++seed, 1))
                w->failures++;
            w->ops++;
        } else {
            int r = gfstream_drain(&st);
            if (r < 0) {
                snprintf(w->msg, sizeof w->msg, "drain: %s", vmio_errmsg());
                w->failures++;
            }
            w->ops++;
        }
    }
    free(buf);
    return NULL;
}

START_TEST(test_threads)
{
    /* The whole array is the file. */
    ck_assert_vmio_ok(gfstream_resize_begin(&st));
    disk_truncate(CAP);
    gfstream_resize_end(&st, CAP);
    disk.delay = 50;
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .id = i };
        ck_assert_int_eq(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(w[i].th, NULL);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d after %d ops: %s", i, w[i].ops, w[i].msg);
    ck_assert_vmio_ok(gfstream_drain(&st));
    disk_is_ref();
    ck_assert_vmio_ok(gfstream_destroy(&st));
    st_open = 0;
    disk_is_ref();
}
END_TEST

static Suite *gfarm_stream_suite(void)
{
    Suite *s = suite_create("gfarm-stream");
    TCase *tc = tcase_create("write-behind");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_wb_sequential);
    tcase_add_test(tc, test_wb_direct);
    suite_add_tcase(s, tc);
    tc = tcase_create("read-your-writes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ryw_staged);
    tcase_add_test(tc, test_ryw_in_flight);
    tcase_add_test(tc, test_read_bypass);
    tcase_add_test(tc, test_write_bypass);
    tcase_add_test(tc, test_ryw_window_beyond);
    tcase_add_test(tc, test_ryw_stage_during_drain);
    tcase_add_test(tc, test_ryw_stage_during_fetch);
    tcase_add_test(tc, test_ryw_readahead_during_push);
    suite_add_tcase(s, tc);
    tc = tcase_create("read-ahead");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ra_sequential);
    tcase_add_test(tc, test_ra_large);
    tcase_add_test(tc, test_ra_random);
    tcase_add_test(tc, test_ra_invalidate);
    tcase_add_test(tc, test_ra_invalidate_after_write);
    tcase_add_test(tc, test_ra_invalidate_while_fetching);
    tcase_add_test(tc, test_ra_prefetch_skips_staged);
    tcase_add_test(tc, test_ra_eof);
    tcase_add_test(tc, test_ra_resize);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_err_deferred);
    tcase_add_test(tc, test_err_resize_destroy);
    tcase_add_test(tc, test_err_destroy_after_write);
    tcase_add_test(tc, test_err_read_over_failed);
    tcase_add_test(tc, test_err_readahead);
    suite_add_tcase(s, tc);
    tc = tcase_create("fua");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_fua);
    tcase_add_test(tc, test_fua_in_flight);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(gfarm_stream_suite());
}
