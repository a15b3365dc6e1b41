/* The migration engine end to end through the public API: sender and
 * receiver over TCP loopback, every codec mode over rounds of scripted
 * changes (byte-exact result and digest), several regions, live memory
 * tracked with userfaultfd-wp under a writer thread, and the failures:
 * a receiver that disconnects, a corrupted byte, a sender killed
 * mid-round, a digest mismatch, mismatched regions, bad arguments. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <vmio/migrate.h>

#include "test-common.h"

#define PS 4096u

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint8_t *alloc_region(size_t len)
{
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(m != MAP_FAILED);
    return m;
}

/* Guest-like content: zero pages, duplicates, text, sparse integers,
 * random bytes. */
static void fill(uint8_t *m, size_t pages, uint64_t seed)
{
    for (size_t pg = 0; pg < pages; pg++) {
        uint8_t *p = m + pg * PS;
        switch (rnd(&seed) % 5) {
        case 0:
            memset(p, 0, PS);
            break;
        case 1:
            for (unsigned i = 0; i < PS; i++)
                p[i] = (uint8_t)(i * 7 + (unsigned)(pg % 3));
            break;
        case 2:
            for (unsigned i = 0; i < PS; i++)
                p[i] = "abc def\n"[rnd(&seed) % 8];
            break;
        case 3:
            memset(p, 0, PS);
            for (unsigned i = 0; i < 20; i++)
                p[rnd(&seed) % PS] = (uint8_t)rnd(&seed);
            break;
        default:
            for (unsigned i = 0; i < PS; i += 8) {
                uint64_t v = rnd(&seed);
                memcpy(p + i, &v, 8);
            }
        }
    }
}

/* ---- a receiver in a thread --------------------------------------------- */

struct rx {
    vmio_migrate_receiver *rc;
    int port;
    int fd;                      /* > 0: receive on this connected socket */
    int r;
    char err[512];
    pthread_t th;
};

static void *rx_main(void *arg)
{
    struct rx *x = arg;
    x->r = x->fd > 0 ? vmio_migrate_receive_fd(x->rc, x->fd) : vmio_migrate_receive(x->rc);
    snprintf(x->err, sizeof x->err, "%s", x->r < 0 ? vmio_errmsg() : "");
    return NULL;
}

/* rx_listen, then rx_run: a test that forks a sender does so in between,
 * while this process has one thread (a child forked from a threaded
 * process may inherit a lock held by another thread, the allocator's
 * among them, and hang). */
static void rx_listen(struct rx *x, const struct vmio_migrate_options *o)
{
    memset(x, 0, sizeof(*x));
    ck_assert_vmio_ok(vmio_migrate_receiver_new(o, &x->rc));
    x->port = vmio_migrate_receiver_listen(x->rc, "tcp://127.0.0.1:0");
    ck_assert_msg(x->port > 0, "listen: %s", vmio_errmsg());
}

static void rx_run(struct rx *x)
{
    ck_assert_int_eq(pthread_create(&x->th, NULL, rx_main, x), 0);
}

static void rx_start(struct rx *x, const struct vmio_migrate_options *o)
{
    rx_listen(x, o);
    rx_run(x);
}

static void rx_join(struct rx *x)
{
    pthread_join(x->th, NULL);
}

static void addr(char *buf, size_t n, int port)
{
    snprintf(buf, n, "tcp://127.0.0.1:%d", port);
}

/* ---- scripted rounds through the bitmap source -------------------------- */

struct script {
    uint8_t *mem;
    size_t pages;
    unsigned calls, rounds;
    uint64_t seed;
    int lie;                   /* change a page without reporting it */
};

static int script_dirty(void *opaque, uint32_t region, uint64_t *bitmap, uint64_t npages)
{
    struct script *s = opaque;
    ck_assert_uint_eq(region, 0);
    ck_assert_uint_eq(npages, s->pages);
    if (s->calls++ >= s->rounds)
        return 0;
    for (unsigned k = 0; k < s->pages / 8; k++) {
        size_t pg = 8 + rnd(&s->seed) % (s->pages - 8);   /* 0..7 never reported */
        uint8_t *p = s->mem + pg * PS;
        switch (rnd(&s->seed) % 6) {
        case 0:
            memset(p, 0, PS);                                   /* to zero */
            break;
        case 1:
            memcpy(p, s->mem + (rnd(&s->seed) % s->pages) * PS, PS); /* duplicate */
            break;
        case 2:
            p[rnd(&s->seed) % PS] ^= 0x5a;                      /* one byte */
            break;
        case 3:
            for (unsigned i = 0; i < 64; i++)                   /* scattered */
                p[rnd(&s->seed) % PS] = (uint8_t)rnd(&s->seed);
            break;
        case 4:
            break;                                              /* written, unchanged */
        default:
            fill(p, 1, rnd(&s->seed));
        }
        bitmap[pg / 64] |= 1ull << (pg % 64);
    }
    if (s->lie && s->calls == s->rounds)
        s->mem[3 * PS + 17] ^= 0xff;                            /* not reported */
    return 0;
}

struct mode {
    const char *name;
    uint32_t codecs;
    uint32_t policy;
};
#define M(c) VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_##c)
static const struct mode modes[] = {
    { "raw", M(RAW), VMIO_MIGRATE_FIXED },
    { "zero", M(ZERO), VMIO_MIGRATE_FIXED },
    { "rle", M(ZERO) | M(RLE), VMIO_MIGRATE_FIXED },
    { "delta", M(ZERO) | M(DELTA) | M(SKIP), VMIO_MIGRATE_FIXED },
    { "dedup", M(ZERO) | M(DEDUP) | M(SKIP), VMIO_MIGRATE_FIXED },
    { "zstd", M(ZSTD), VMIO_MIGRATE_FIXED },
    { "lz4", M(LZ4), VMIO_MIGRATE_FIXED },
    { "all-fixed", VMIO_MIGRATE_CODECS_ALL, VMIO_MIGRATE_FIXED },
    { "all-adaptive", VMIO_MIGRATE_CODECS_ALL, VMIO_MIGRATE_ADAPTIVE },
};

struct round_log {
    unsigned n;
    struct vmio_migrate_round_stats st[64];
};

static void on_round(void *opaque, const struct vmio_migrate_round_stats *st)
{
    struct round_log *l = opaque;
    if (l->n < 64)
        l->st[l->n++] = *st;
}

START_TEST(t_modes)
{
    const struct mode *m = &modes[_i];
    const size_t pages = 2048;
    uint8_t *mem = alloc_region(pages * PS);
    fill(mem, pages, 42);
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .codecs = m->codecs,
                                      .policy = m->policy, .max_rounds = 4,
                                      .downtime_ns = 1, .batch_pages = 64,
                                      .delta_cache_bytes = 4u << 20 };
    struct rx x;
    rx_start(&x, &o);
    vmio_migrate_sender *s;
    ck_assert_vmio_ok(vmio_migrate_sender_new(&o, &s));
    struct vmio_migrate_region reg = { sizeof(reg), PS, mem, pages * PS, "ram" };
    ck_assert_int_eq(vmio_migrate_sender_add_region(s, &reg), 0);
    struct script sc = { mem, pages, 0, 3, 7, 0 };
    ck_assert_vmio_ok(vmio_migrate_track_bitmap(s, script_dirty, &sc));
    struct round_log log = { 0 };
    vmio_migrate_set_round_fn(s, on_round, &log);
    char to[64];
    addr(to, sizeof to, x.port);
    int r = vmio_migrate_send(s, to);
    rx_join(&x);
    ck_assert_msg(r == 0, "mode %s: send: %s", m->name, vmio_errmsg());
    ck_assert_msg(x.r == 0, "mode %s: receive: %s", m->name, x.err);

    /* byte-exact and the same digest */
    struct vmio_migrate_region dst;
    ck_assert_vmio_ok(vmio_migrate_receiver_region(x.rc, 0, &dst));
    ck_assert_uint_eq(dst.length, pages * PS);
    ck_assert_str_eq(dst.name, "ram");
    ck_assert_msg(memcmp(dst.base, mem, pages * PS) == 0, "mode %s: memory differs", m->name);
    uint8_t d1[16], d2[16];
    ck_assert_vmio_ok(vmio_migrate_receiver_digest(x.rc, d1));
    ck_assert_vmio_ok(vmio_migrate_digest(&reg, 1, d2));
    ck_assert(memcmp(d1, d2, 16) == 0);

    /* statistics: rounds 0..3 pre-copy + the final one; every page of
     * round 0 accounted for by exactly the codecs allowed */
    int rounds = vmio_migrate_sender_rounds(s);
    ck_assert_int_eq(rounds, 5);
    ck_assert_uint_eq(log.n, 5);
    uint64_t codec_pages = 0;
    struct vmio_migrate_round_stats st = { .struct_size = sizeof(st) };
    ck_assert_vmio_ok(vmio_migrate_sender_round_stats(s, 0, &st));
    ck_assert_uint_eq(st.pages, pages);
    ck_assert_uint_eq(st.raw_bytes, pages * PS);
    for (int c = 0; c < VMIO_MIGRATE_CODEC_COUNT; c++) {
        codec_pages += st.codec_pages[c];
        if (st.codec_pages[c])
            ck_assert_msg(c == VMIO_MIGRATE_CODEC_RAW || (m->codecs & VMIO_MIGRATE_MASK(c)),
                          "mode %s used codec %s", m->name, vmio_migrate_codec_name(c));
    }
    ck_assert_uint_eq(codec_pages, pages);
    if (m->codecs != M(RAW))
        ck_assert_msg(st.wire_bytes < st.raw_bytes, "mode %s: %llu wire bytes for %llu",
                      m->name, (unsigned long long)st.wire_bytes,
                      (unsigned long long)st.raw_bytes);
    ck_assert_vmio_ok(vmio_migrate_sender_round_stats(s, 1, &st));
    ck_assert_uint_gt(st.dirty_pages, 0);
    ck_assert_uint_eq(st.pages, st.dirty_pages);
    ck_assert_uint_eq(memcmp(&st, &log.st[1], sizeof st), 0);
    ck_assert_vmio_err(vmio_migrate_sender_round_stats(s, 9, &st), ERANGE,
                       "vmio_migrate_sender_round_stats");
    struct vmio_migrate_receiver_stats rs = { .struct_size = sizeof(rs) };
    ck_assert_vmio_ok(vmio_migrate_receiver_get_stats(x.rc, &rs));
    ck_assert_uint_eq(rs.rounds, 5);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    munmap(mem, pages * PS);
}
END_TEST

/* Two regions, 4 KiB and 16 KiB pages, destination given by the caller. */
START_TEST(t_regions)
{
    size_t l0 = 512 * PS, l1 = 64 * 16384;
    uint8_t *a = alloc_region(l0), *b = alloc_region(l1);
    uint8_t *da = alloc_region(l0), *db = alloc_region(l1);
    fill(a, l0 / PS, 1);
    fill(b, l1 / PS, 2);
    memcpy(b + 16384, a, 16384);    /* duplicate content across regions */
    memset(da, 0xee, l0);           /* destination not zeroed: ZERO must write */
    struct vmio_migrate_options o = { .struct_size = sizeof(o) };
    struct rx x;
    memset(&x, 0, sizeof x);
    ck_assert_vmio_ok(vmio_migrate_receiver_new(&o, &x.rc));
    struct vmio_migrate_region r0 = { sizeof(r0), PS, da, l0, "low" };
    struct vmio_migrate_region r1 = { sizeof(r1), 16384, db, l1, "high" };
    ck_assert_int_eq(vmio_migrate_receiver_add_region(x.rc, &r0), 0);
    ck_assert_int_eq(vmio_migrate_receiver_add_region(x.rc, &r1), 1);
    x.port = vmio_migrate_receiver_listen(x.rc, "127.0.0.1:0");
    ck_assert_int_gt(x.port, 0);
    pthread_create(&x.th, NULL, rx_main, &x);
    vmio_migrate_sender *s;
    ck_assert_vmio_ok(vmio_migrate_sender_new(&o, &s));
    struct vmio_migrate_region s0 = { sizeof(s0), PS, a, l0, "low" };
    struct vmio_migrate_region s1 = { sizeof(s1), 16384, b, l1, "high" };
    ck_assert_int_eq(vmio_migrate_sender_add_region(s, &s0), 0);
    ck_assert_int_eq(vmio_migrate_sender_add_region(s, &s1), 1);
    char to[64];
    addr(to, sizeof to, x.port);
    int r = vmio_migrate_send(s, to);   /* no dirty source: one stopped round */
    rx_join(&x);
    ck_assert_msg(r == 0, "send: %s", vmio_errmsg());
    ck_assert_msg(x.r == 0, "receive: %s", x.err);
    ck_assert_int_eq(vmio_migrate_sender_rounds(s), 1);
    ck_assert(memcmp(a, da, l0) == 0);
    ck_assert(memcmp(b, db, l1) == 0);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    munmap(a, l0);
    munmap(b, l1);
    munmap(da, l0);
    munmap(db, l1);
}
END_TEST

/* ---- live memory under a writer: userfaultfd-wp ------------------------ */

struct writer {
    uint8_t *mem;
    size_t pages;
    atomic_int pause, parked, quit;
    atomic_ulong writes;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t seed = 99;
    while (!atomic_load(&w->quit)) {
        if (atomic_load(&w->pause)) {
            atomic_store(&w->parked, 1);
            while (atomic_load(&w->pause) && !atomic_load(&w->quit))
                usleep(200);
            continue;
        }
        size_t pg = rnd(&seed) % w->pages;
        uint64_t v = atomic_fetch_add(&w->writes, 1) + 1;
        memcpy(w->mem + pg * PS + (rnd(&seed) % (PS / 8)) * 8, &v, 8);
        if (v % 256 == 0)
            usleep(100);
    }
    return NULL;
}

static int writer_stop(void *opaque)
{
    struct writer *w = opaque;
    atomic_store(&w->pause, 1);
    while (!atomic_load(&w->parked))
        usleep(100);
    return 0;
}

START_TEST(t_uffd_writer)
{
    const size_t pages = 8192;
    struct writer w = { .mem = alloc_region(pages * PS), .pages = pages };
    fill(w.mem, pages, 5);
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .max_rounds = 6,
                                      .downtime_ns = 1000000 };
    struct rx x;
    rx_start(&x, &o);
    vmio_migrate_sender *s;
    ck_assert_vmio_ok(vmio_migrate_sender_new(&o, &s));
    struct vmio_migrate_region reg = { sizeof(reg), PS, w.mem, pages * PS, NULL };
    ck_assert_int_eq(vmio_migrate_sender_add_region(s, &reg), 0);
    int r = vmio_migrate_track_uffd(s);
    ck_assert_msg(r == 0, "track_uffd: %s", vmio_errmsg());
    vmio_migrate_set_stop_fn(s, writer_stop, &w);
    pthread_t th;
    pthread_create(&th, NULL, writer_main, &w);
    while (atomic_load(&w.writes) < 1000)
        usleep(100);
    char to[64];
    addr(to, sizeof to, x.port);
    r = vmio_migrate_send(s, to);
    rx_join(&x);
    ck_assert_msg(r == 0, "send: %s", vmio_errmsg());
    ck_assert_msg(x.r == 0, "receive: %s", x.err);
    unsigned long writes = atomic_load(&w.writes);
    /* every write made before the stop arrived: the memories are equal */
    struct vmio_migrate_region dst;
    vmio_migrate_receiver_region(x.rc, 0, &dst);
    ck_assert_msg(memcmp(dst.base, w.mem, pages * PS) == 0, "memory differs");
    int rounds = vmio_migrate_sender_rounds(s);
    ck_assert_int_ge(rounds, 2);
    uint64_t later = 0;
    for (int i = 1; i < rounds; i++) {
        struct vmio_migrate_round_stats st = { .struct_size = sizeof(st) };
        vmio_migrate_sender_round_stats(s, (uint32_t)i, &st);
        later += st.pages;
    }
    ck_assert_msg(later > 0, "no page was resent after %lu writes", writes);
    atomic_store(&w.quit, 1);
    pthread_join(th, NULL);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    munmap(w.mem, pages * PS);
}
END_TEST

/* ---- faults --------------------------------------------------------------- */

/* A TCP proxy between sender and receiver that forwards until limit bytes
 * (then closes both sides), or flips the byte at offset flip. */
struct proxy {
    int lfd, port, to_port;
    uint64_t limit, flip;
    pthread_t th;
};

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    int c = accept(p->lfd, NULL, NULL);
    int d = connect_port(p->to_port);
    uint64_t fwd = 0;
    char buf[65536];
    struct pollfd pf[2] = { { c, POLLIN, 0 }, { d, POLLIN, 0 } };
    for (;;) {
        if (poll(pf, 2, 10000) <= 0)
            break;
        if (pf[1].revents) {     /* receiver -> sender: pass through */
            ssize_t n = read(d, buf, sizeof buf);
            if (n <= 0 || write(c, buf, (size_t)n) != n)
                break;
        }
        if (pf[0].revents) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0)
                break;
            if (p->flip >= fwd && p->flip < fwd + (uint64_t)n)
                buf[p->flip - fwd] ^= 0x10;
            if (p->limit && fwd + (uint64_t)n >= p->limit)
                n = (ssize_t)(p->limit - fwd);
            if (write(d, buf, (size_t)n) != n)
                break;
            fwd += (uint64_t)n;
            if (p->limit && fwd >= p->limit)
                break;
        }
    }
    close(c);
    close(d);
    return NULL;
}

static void proxy_start(struct proxy *p, int to_port, uint64_t limit, uint64_t flip)
{
    p->to_port = to_port;
    p->limit = limit;
    p->flip = flip;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(p->lfd, 1), 0);
    socklen_t sl = sizeof a;
    getsockname(p->lfd, (struct sockaddr *)&a, &sl);
    p->port = ntohs(a.sin_port);
    pthread_create(&p->th, NULL, proxy_main, p);
}

static void proxy_join(struct proxy *p)
{
    pthread_join(p->th, NULL);
    close(p->lfd);
}

/* Send a 4 MiB region through a proxy; returns the sender's result. */
static int send_via_proxy(struct rx *x, uint64_t limit, uint64_t flip, char *serr, size_t n)
{
    const size_t pages = 1024;
    uint8_t *mem = alloc_region(pages * PS);
    fill(mem, pages, 11);
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .timeout_ms = 5000 };
    rx_start(x, &o);
    struct proxy p;
    proxy_start(&p, x->port, limit, flip);
    vmio_migrate_sender *s;
    ck_assert_vmio_ok(vmio_migrate_sender_new(&o, &s));
    struct vmio_migrate_region reg = { sizeof(reg), PS, mem, pages * PS, NULL };
    vmio_migrate_sender_add_region(s, &reg);
    char to[64];
    addr(to, sizeof to, p.port);
    int r = vmio_migrate_send(s, to);
    snprintf(serr, n, "%s", r < 0 ? vmio_errmsg() : "");
    rx_join(x);
    proxy_join(&p);
    vmio_migrate_sender_free(s);
    munmap(mem, pages * PS);
    return r;
}

START_TEST(t_receiver_disconnects)
{
    struct rx x;
    char serr[512];
    int r = send_via_proxy(&x, 300000, UINT64_MAX, serr, sizeof serr);
    ck_assert_int_lt(r, 0);
    ck_assert_msg(strstr(serr, "vmio_migrate_send: ") == serr, "%s", serr);
    ck_assert_msg(strstr(serr, "receiver") != NULL, "%s", serr);
    ck_assert_int_lt(x.r, 0);
    ck_assert_msg(strstr(x.err, "truncated") != NULL, "%s", x.err);
    uint8_t d[16];
    ck_assert_vmio_err(vmio_migrate_receiver_digest(x.rc, d), ENODATA,
                       "vmio_migrate_receiver_digest");
    vmio_migrate_receiver_free(x.rc);
}
END_TEST

START_TEST(t_corrupt_byte)
{
    struct rx x;
    char serr[512];
    /* a byte inside the first PAGES record (after HELLO and ROUND) */
    int r = send_via_proxy(&x, 0, 200000, serr, sizeof serr);
    ck_assert_int_lt(r, 0);
    ck_assert_int_eq(x.r, -EBADMSG);
    ck_assert_msg(strstr(x.err, "checksum mismatch") != NULL, "%s", x.err);
    ck_assert_msg(strstr(serr, "checksum mismatch") != NULL, "sender: %s", serr);
    vmio_migrate_receiver_free(x.rc);
}
END_TEST

/* Two ends of a TCP connection on loopback: *a connected, *b accepted. */
static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(*a, 0);
    ck_assert_int_eq(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
    *b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(*b, 0);
    close(l);
}

/* The sender dies in the middle of the stream (or, on a slow machine such
 * as under valgrind, before its first byte): the receiver reports that
 * the sender closed the connection. The connection exists before the
 * fork, so the receiver never waits for a sender that was killed before
 * it connected. */
START_TEST(t_sender_killed)
{
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .timeout_ms = 10000 };
    struct rx x;
    memset(&x, 0, sizeof x);
    ck_assert_vmio_ok(vmio_migrate_receiver_new(&o, &x.rc));
    int sfd, rfd;
    tcp_pair(&sfd, &rfd);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(rfd);
        const size_t pages = 4096;
        uint8_t *mem = alloc_region(pages * PS);
        fill(mem, pages, 3);
        struct vmio_migrate_options so = { .struct_size = sizeof(so), .link_rate = 4u << 20,
                                           .codecs = M(RAW) };
        vmio_migrate_sender *s;
        vmio_migrate_sender_new(&so, &s);
        struct vmio_migrate_region reg = { sizeof(reg), PS, mem, pages * PS, NULL };
        vmio_migrate_sender_add_region(s, &reg);
        vmio_migrate_send_fd(s, sfd);  /* 16 MiB at 4 MiB/s: killed before the end */
        _exit(0);
    }
    close(sfd);
    x.fd = rfd;
    rx_run(&x);
    usleep(700000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rx_join(&x);
    close(rfd);
    ck_assert_int_eq(x.r, -EPIPE);
    ck_assert_msg(strstr(x.err, "vmio_migrate_receive_fd: the sender closed the connection") == x.err,
                  "%s", x.err);
    vmio_migrate_receiver_free(x.rc);
}
END_TEST

START_TEST(t_digest_mismatch)
{
    const size_t pages = 256;
    uint8_t *mem = alloc_region(pages * PS);
    fill(mem, pages, 8);
    struct vmio_migrate_options o = { .struct_size = sizeof(o), .max_rounds = 2,
                                      .downtime_ns = 1 };
    struct rx x;
    rx_start(&x, &o);
    vmio_migrate_sender *s;
    vmio_migrate_sender_new(&o, &s);
    struct vmio_migrate_region reg = { sizeof(reg), PS, mem, pages * PS, NULL };
    vmio_migrate_sender_add_region(s, &reg);
    struct script sc = { mem, pages, 0, 1, 3, 1 };
    vmio_migrate_track_bitmap(s, script_dirty, &sc);
    char to[64];
    addr(to, sizeof to, x.port);
    int r = vmio_migrate_send(s, to);
    rx_join(&x);
    ck_assert_vmio_err_msg(r, EIO, "vmio_migrate_send", "digest");
    ck_assert_int_eq(x.r, -EIO);
    ck_assert_msg(strstr(x.err, "digest") != NULL, "%s", x.err);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    munmap(mem, pages * PS);
}
END_TEST

START_TEST(t_region_mismatch)
{
    uint8_t *a = alloc_region(64 * PS), *b = alloc_region(32 * PS);
    struct vmio_migrate_options o = { .struct_size = sizeof(o) };
    struct rx x;
    memset(&x, 0, sizeof x);
    vmio_migrate_receiver_new(&o, &x.rc);
    struct vmio_migrate_region rr = { sizeof(rr), PS, b, 32 * PS, NULL };
    vmio_migrate_receiver_add_region(x.rc, &rr);
    x.port = vmio_migrate_receiver_listen(x.rc, "tcp://127.0.0.1:0");
    pthread_create(&x.th, NULL, rx_main, &x);
    vmio_migrate_sender *s;
    vmio_migrate_sender_new(&o, &s);
    struct vmio_migrate_region sr = { sizeof(sr), PS, a, 64 * PS, NULL };
    vmio_migrate_sender_add_region(s, &sr);
    char to[64];
    addr(to, sizeof to, x.port);
    int r = vmio_migrate_send(s, to);
    rx_join(&x);
    ck_assert_int_lt(r, 0);
    ck_assert_msg(strstr(vmio_errmsg(), "262144 bytes") != NULL, "%s", vmio_errmsg());
    ck_assert_int_eq(x.r, -EINVAL);
    ck_assert_msg(strstr(x.err, "131072 bytes") != NULL, "%s", x.err);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(x.rc);
    munmap(a, 64 * PS);
    munmap(b, 32 * PS);
}
END_TEST

START_TEST(t_bad_args)
{
    vmio_migrate_sender *s;
    struct vmio_migrate_options bad = { .struct_size = 0 };
    ck_assert_vmio_err(vmio_migrate_sender_new(&bad, &s), EINVAL, "vmio_migrate_sender_new");
    struct vmio_migrate_options pol = { .struct_size = sizeof(pol), .policy = 9 };
    ck_assert_vmio_err(vmio_migrate_sender_new(&pol, &s), EINVAL, "vmio_migrate_sender_new");
    ck_assert_vmio_ok(vmio_migrate_sender_new(NULL, &s));
    uint8_t *m = alloc_region(16 * PS);
    struct vmio_migrate_region r = { sizeof(r), 3000, m, 16 * PS, NULL };
    ck_assert_vmio_err_msg(vmio_migrate_sender_add_region(s, &r), EINVAL,
                           "vmio_migrate_sender_add_region", "power of two");
    r.page_size = PS;
    r.length = PS + 1;
    ck_assert_vmio_err(vmio_migrate_sender_add_region(s, &r), EINVAL,
                       "vmio_migrate_sender_add_region");
    r.length = 16 * PS;
    r.base = m + 1;
    ck_assert_vmio_err(vmio_migrate_sender_add_region(s, &r), EINVAL,
                       "vmio_migrate_sender_add_region");
    ck_assert_vmio_err_msg(vmio_migrate_send(s, "tcp://127.0.0.1:1"), EINVAL,
                           "vmio_migrate_send", "no memory regions");
    r.base = m;
    ck_assert_int_eq(vmio_migrate_sender_add_region(s, &r), 0);
    ck_assert_vmio_err_msg(vmio_migrate_send(s, "nbd://x:1"), EINVAL, "vmio_migrate_send",
                           "scheme");
    ck_assert_vmio_err_msg(vmio_migrate_send(s, "tcp://host"), EINVAL, "vmio_migrate_send",
                           "port");
    ck_assert_vmio_err_msg(vmio_migrate_send(s, "tcp://127.0.0.1:99999"), EINVAL,
                           "vmio_migrate_send", "port");
    ck_assert_vmio_err(vmio_migrate_track_xen(s, 1), EBUSY, "vmio_migrate_track_xen");
    ck_assert_vmio_ok(vmio_migrate_track_bitmap(s, script_dirty, NULL));
    ck_assert_vmio_err(vmio_migrate_track_uffd(s), EBUSY, "vmio_migrate_track_uffd");
    vmio_migrate_sender_free(s);
    ck_assert_str_eq(vmio_migrate_codec_name(VMIO_MIGRATE_CODEC_DEDUP), "dedup");
    ck_assert_ptr_null(vmio_migrate_codec_name(99));
    vmio_migrate_receiver *rc;
    ck_assert_vmio_ok(vmio_migrate_receiver_new(NULL, &rc));
    ck_assert_vmio_err(vmio_migrate_receive(rc), EINVAL, "vmio_migrate_receive");
    struct vmio_migrate_region out;
    ck_assert_vmio_err(vmio_migrate_receiver_region(rc, 0, &out), ERANGE,
                       "vmio_migrate_receiver_region");
    vmio_migrate_receiver_free(rc);
    munmap(m, 16 * PS);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("migrate-engine");
    TCase *tc = tcase_create("engine");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, t_modes, 0, (int)(sizeof(modes) / sizeof(modes[0])));
    tcase_add_test(tc, t_regions);
    tcase_add_test(tc, t_uffd_writer);
    tcase_add_test(tc, t_receiver_disconnects);
    tcase_add_test(tc, t_corrupt_byte);
    tcase_add_test(tc, t_sender_killed);
    tcase_add_test(tc, t_digest_mismatch);
    tcase_add_test(tc, t_region_mismatch);
    tcase_add_test(tc, t_bad_args);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return test_run(suite());
}
