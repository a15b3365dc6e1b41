/* The RDMA transport (libvmio/transport/rdma.c) against a real RDMA
 * device: the message stream (ordering, chunking, credit flow under a
 * slow reader), pollable readiness, one-sided WRITE/READ from many
 * threads, a bad remote key, and a peer that dies. Needs an RDMA device
 * with an address in $VMIO_RDMA_ADDR (the tests/vm guest sets up
 * soft-RoCE); exits 77 (skip) without one. */
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>

#include "test-common.h"

#include "transport/transport.h"

#include <sys/stat.h>
#include <vmio/vmio.h>

#define MIN_(a, b) ((a) < (b) ? (a) : (b))

#define API "test"

static const char *addr;
static uint16_t next_port = 18800;

struct pair {
    struct vmio_transport *c, *s;
};

struct acceptor {
    struct vmio_rdma_listener *l;
    int fd;
    struct vmio_transport *t;
    int r;
};

static void *accept_main(void *arg)
{
    struct acceptor *a = arg;
    for (int i = 0; i < 500; i++) {
        struct pollfd p = { .fd = a->fd, .events = POLLIN };
        poll(&p, 1, 20);
        a->r = vmio_rdma_accept(API, a->l, &a->t);
        if (a->r != -EAGAIN)
            return NULL;
    }
    return NULL;
}

static unsigned busy_poll_us;   /* $VMIO_TEST_BUSY_POLL: run everything busy polling */

static struct pair connect_pair(const struct vmio_rdma_opts *given)
{
    struct vmio_rdma_opts opts = { 0 };
    if (given)
        opts = *given;
    opts.busy_poll_us = busy_poll_us;
    const struct vmio_rdma_opts *o = &opts;
    struct acceptor a = { 0 };
    uint16_t port = next_port++;
    int r = vmio_rdma_listen(API, addr, port, o, &a.l, &a.fd);
    ck_assert_msg(r == 0, "listen: %s", vmio_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, accept_main, &a);
    struct pair p = { 0 };
    r = vmio_rdma_connect(API, addr, port, 5000, o, &p.c);
    ck_assert_msg(r == 0, "connect: %s", vmio_errmsg());
    pthread_join(th, NULL);
    ck_assert_msg(a.r == 0, "accept: %d %s", a.r, vmio_errmsg());
    p.s = a.t;
    vmio_rdma_listener_close(a.l);
    ck_assert(vmio_transport_is_rdma(p.c) && vmio_transport_is_rdma(p.s));
    return p;
}

static void close_pair(struct pair *p)
{
    vmio_transport_close(p->c);
    vmio_transport_close(p->s);
}

/* ---- stream ------------------------------------------------------------ */

struct echo {
    struct vmio_transport *t;
    size_t total;
};

/* Echo everything back in pieces of whatever recv_some returns. */
static void *echo_main(void *arg)
{
    struct echo *e = arg;
    static char buf[300000];
    size_t done = 0;
    while (done < e->total) {
        long n = vmio_transport_recv_some(e->t, buf, sizeof buf);
        if (n <= 0)
            break;
        struct iovec v = { buf, (size_t)n };
        if (vmio_transport_sendv(e->t, &v, 1) < 0)
            break;
        done += (size_t)n;
    }
    return NULL;
}

struct reader {
    struct vmio_transport *t;
    size_t total;
    uint32_t seed;
    long bad;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    char *buf = malloc(rd->total);
    rd->bad = -2;    /* receive failed */
    if (buf && vmio_transport_recv(rd->t, buf, rd->total) == 0)
        rd->bad = test_check(buf, rd->total, 0, rd->seed);   /* -1: all good */
    free(buf);
    return NULL;
}

START_TEST(test_stream_echo)
{
    struct vmio_rdma_opts o = { .recv_depth = 16, .msg_size = 4096 };
    struct pair p = connect_pair(&o);
    /* Messages of many sizes, vectored, far more bytes than the buffers
     * and credits of either side hold. */
    size_t total = 24u << 20;
    char *data = malloc(total);
    test_fill(data, total, 0, 7);
    struct echo e = { p.s, total };
    struct reader rd = { p.c, total, 7, 0 };
    pthread_t te, tr;
    pthread_create(&te, NULL, echo_main, &e);
    pthread_create(&tr, NULL, reader_main, &rd);
    size_t off = 0;
    unsigned k = 1;
    while (off < total) {
        size_t n = MIN_(total - off, (size_t)(k * 7919u % 200000u) + 1);
        struct iovec v[3] = { { data + off, n / 3 }, { data + off + n / 3, n / 3 },
                              { data + off + 2 * (n / 3), n - 2 * (n / 3) } };
        ck_assert_int_eq(vmio_transport_sendv(p.c, v, 3), 0);
        off += n;
        k++;
    }
    pthread_join(tr, NULL);
    pthread_join(te, NULL);
    ck_assert_msg(rd.bad == -1, "echoed stream %s (at byte %ld)",
                  rd.bad == -2 ? "not received" : "differs", rd.bad);
    free(data);
    close_pair(&p);
}
END_TEST

/* A reader that starts late while the writer sends thousands of tiny
 * messages: credits stop the writer, nothing fails with receiver-not-ready,
 * and everything arrives in order. */
enum { SLOW_N = 5000 };

static void *seq_reader(void *arg)
{
    struct reader *rd = arg;
    usleep(300000);
    rd->bad = 0;
    for (uint32_t i = 0; i < SLOW_N; i++) {
        uint32_t got;
        if (vmio_transport_recv(rd->t, &got, 4) != 0 || got != i * 2654435761u) {
            rd->bad = (long)i + 1;
            break;
        }
    }
    return NULL;
}

START_TEST(test_stream_slow_reader)
{
    struct vmio_rdma_opts o = { .recv_depth = 8, .msg_size = 256 };
    struct pair p = connect_pair(&o);
    struct reader rd = { p.s, 0, 0, -1 };
    pthread_t tr;
    pthread_create(&tr, NULL, seq_reader, &rd);
    for (uint32_t i = 0; i < SLOW_N; i++) {
        uint32_t v = i * 2654435761u;
        struct iovec io = { &v, 4 };
        ck_assert_int_eq(vmio_transport_sendv(p.c, &io, 1), 0);
    }
    pthread_join(tr, NULL);
    ck_assert_msg(rd.bad == 0, "message %ld lost or out of order", rd.bad - 1);
    close_pair(&p);
}
END_TEST

START_TEST(test_stream_order_and_poll)
{
    struct pair p = connect_pair(NULL);
    ck_assert_int_eq(vmio_transport_readable(p.s), 0);
    vmio_transport_set_pollable(p.s);
    struct pollfd pf = { .fd = p.s->fd, .events = POLLIN };
    ck_assert_int_eq(poll(&pf, 1, 0), 0);
    enum { N = 3008 };   /* read back in groups of 16 */
    for (uint32_t i = 0; i < N; i++) {
        uint32_t v = i * 2654435761u;
        struct iovec io = { &v, 4 };
        ck_assert_int_eq(vmio_transport_sendv(p.c, &io, 1), 0);
        if (i == 0) {
            ck_assert_int_eq(poll(&pf, 1, 5000), 1);
            ck_assert_int_eq(vmio_transport_readable(p.s), 1);
        }
        if (i % 16 == 15) {
            for (uint32_t j = i - 15; j <= i; j++) {
                uint32_t got;
                ck_assert_int_eq(vmio_transport_recv(p.s, &got, 4), 0);
                ck_assert_msg(got == j * 2654435761u, "message %u out of order", j);
            }
        }
    }
    for (int spin = 0; spin < 100 && vmio_transport_readable(p.s); spin++)
        usleep(1000);
    ck_assert_int_eq(vmio_transport_readable(p.s), 0);
    ck_assert_int_eq(poll(&pf, 1, 0), 0);
    close_pair(&p);
}
END_TEST

/* ---- one-sided ---------------------------------------------------------- */

struct os_args {
    struct vmio_transport *t;
    struct vmio_mr *mr;
    char *local;
    uint64_t raddr;
    uint32_t rkey;
    size_t len;
    int idx, r;
};

static void *os_main(void *arg)
{
    struct os_args *a = arg;
    char *mine = a->local + (size_t)a->idx * a->len;
    uint64_t remote = a->raddr + (uint64_t)a->idx * a->len;
    test_fill(mine, a->len, (uint64_t)a->idx * a->len, 99);
    a->r = a->t->ops->rdma_write(a->t, a->mr, mine, a->len, remote, a->rkey);
    if (a->r == 0) {
        memset(mine, 0, a->len);
        a->r = a->t->ops->rdma_read(a->t, a->mr, mine, a->len, remote, a->rkey);
    }
    if (a->r == 0 && test_check(mine, a->len, (uint64_t)a->idx * a->len, 99) != -1)
        a->r = -EBADMSG;
    return NULL;
}

START_TEST(test_one_sided_threads)
{
    struct pair p = connect_pair(NULL);
    enum { T = 32 };
    size_t len = 256u << 10;
    char *rbuf = aligned_alloc(4096, T * len), *lbuf = aligned_alloc(4096, T * len);
    memset(rbuf, 0, T * len);
    struct vmio_mr *rmr, *lmr;
    ck_assert_int_eq(p.s->ops->mr_reg(p.s, rbuf, T * len, &rmr), 0);
    ck_assert_int_eq(p.c->ops->mr_reg(p.c, lbuf, T * len, &lmr), 0);
    /* An MR of one connection is valid on another on the same device. */
    ck_assert_ptr_eq(lmr->domain, p.s->domain);
    struct os_args a[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        a[i] = (struct os_args){ p.c, lmr, lbuf, (uintptr_t)rbuf, rmr->rkey, len, i, 0 };
        pthread_create(&th[i], NULL, os_main, &a[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(a[i].r == 0, "thread %d: %d", i, a[i].r);
    }
    ck_assert_int_eq(test_check(rbuf, T * len, 0, 99), -1);
    /* The stream still works after one-sided traffic. */
    uint64_t v = 42, got = 0;
    struct iovec io = { &v, sizeof v };
    ck_assert_int_eq(vmio_transport_sendv(p.c, &io, 1), 0);
    ck_assert_int_eq(vmio_transport_recv(p.s, &got, sizeof got), 0);
    ck_assert(got == 42);
    vmio_mr_dereg(rmr);
    vmio_mr_dereg(lmr);
    close_pair(&p);
    free(rbuf);
    free(lbuf);
}
END_TEST

/* A wrong remote key fails the operation and breaks the connection on
 * both sides; nothing hangs. */
START_TEST(test_bad_rkey)
{
    struct pair p = connect_pair(NULL);
    char *rbuf = aligned_alloc(4096, 65536), *lbuf = aligned_alloc(4096, 65536);
    struct vmio_mr *rmr, *lmr;
    ck_assert_int_eq(p.s->ops->mr_reg(p.s, rbuf, 65536, &rmr), 0);
    ck_assert_int_eq(p.c->ops->mr_reg(p.c, lbuf, 65536, &lmr), 0);
    int r = p.c->ops->rdma_write(p.c, lmr, lbuf, 4096, (uintptr_t)rbuf, rmr->rkey ^ 0x5a5a00);
    ck_assert_int_eq(r, -EIO);
    r = p.c->ops->rdma_read(p.c, lmr, lbuf, 4096, (uintptr_t)rbuf, rmr->rkey);
    ck_assert_int_lt(r, 0);
    uint64_t v = 1;
    struct iovec io = { &v, sizeof v };
    ck_assert_int_lt(vmio_transport_sendv(p.c, &io, 1), 0);
    /* The server side sees the end of the connection. */
    uint64_t got;
    double t0 = test_now();
    ck_assert_int_lt(vmio_transport_recv(p.s, &got, sizeof got), 0);
    ck_assert(test_now() - t0 < 30);
    vmio_mr_dereg(rmr);
    vmio_mr_dereg(lmr);
    close_pair(&p);
    free(rbuf);
    free(lbuf);
}
END_TEST

struct blocked {
    struct vmio_transport *t;
    int r;
};

static void *blocked_recv(void *arg)
{
    struct blocked *b = arg;
    char buf[8];
    b->r = vmio_transport_recv(b->t, buf, sizeof buf);
    return NULL;
}

/* The peer goes away while we wait for data: recv returns an error. */
START_TEST(test_peer_dies)
{
    struct pair p = connect_pair(NULL);
    struct blocked b = { p.c, 1 };
    pthread_t th;
    pthread_create(&th, NULL, blocked_recv, &b);
    usleep(100000);
    double t0 = test_now();
    vmio_transport_close(p.s);
    pthread_join(th, NULL);
    ck_assert_msg(b.r == -EPIPE || b.r == -ECONNRESET, "recv gave %d", b.r);
    ck_assert(test_now() - t0 < 30);
    uint64_t v = 1;
    struct iovec io = { &v, sizeof v };
    ck_assert_int_lt(vmio_transport_sendv(p.c, &io, 1), 0);
    vmio_transport_close(p.c);
}
END_TEST

/* Registration beyond the locked-memory limit fails with a message that
 * names RLIMIT_MEMLOCK (Check runs each test in its own process, so the
 * limit and the lost privileges stay here). */
START_TEST(test_memlock_limit)
{
    struct rlimit rl = { 1u << 20, 1u << 20 };
    ck_assert_int_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
    if (getuid() == 0) {    /* root ignores the limit (CAP_IPC_LOCK) */
        ck_assert_int_eq(setgid(65534), 0);
        ck_assert_int_eq(setuid(65534), 0);
    }
    struct vmio_rdma_opts o = { .recv_depth = 2, .msg_size = 256 };
    struct pair p = connect_pair(&o);
    size_t len = 16u << 20;
    char *buf = aligned_alloc(4096, len);
    memset(buf, 1, len);
    struct vmio_mr *mr = NULL;
    int r = p.c->ops->mr_reg(p.c, buf, len, &mr);
    ck_assert_msg(r == -ENOMEM || r == -EPERM || r == -EAGAIN, "mr_reg gave %d", r);
    ck_assert_msg(strstr(vmio_errmsg(), "RLIMIT_MEMLOCK") != NULL, "%s", vmio_errmsg());
    close_pair(&p);
    free(buf);
}
END_TEST

/* A queue-pair error in the middle of storage traffic: the client names a
 * wrong remote key once, the server's RDMA WRITE fails and the connection
 * is torn down; the client reconnects, resends, and every byte read is
 * right. The server keeps serving. */
extern unsigned vmio_remote_inject_bad_rkey;

/* An in-process vmio server on the RDMA address, exporting a new directory
 * with an 8 MiB image of pattern seed 5. */
struct srv_fixture {
    char dir[256], secret[300];
    vmio_server *srv;
    int port;
};

static void srv_start(struct srv_fixture *x, size_t len)
{
    test_mkdtemp(x->dir, sizeof x->dir);
    char path[300];
    snprintf(path, sizeof path, "%s/img.raw", x->dir);
    snprintf(x->secret, sizeof x->secret, "%s/secret", x->dir);
    char *data = malloc(len);
    test_fill(data, len, 0, 5);
    FILE *fp = fopen(path, "w");
    ck_assert(fp && fwrite(data, 1, len, fp) == len);
    fclose(fp);
    free(data);
    fp = fopen(x->secret, "w");
    ck_assert(fp && fputs("rdma-storage-test-secret-0123", fp) >= 0);
    fclose(fp);
    chmod(x->secret, 0600);
    ck_assert_int_eq(vmio_server_new(&x->srv), 0);
    ck_assert_int_eq(vmio_server_set_secret_file(x->srv, x->secret), 0);
    ck_assert_int_eq(vmio_server_add_export(x->srv, "img", x->dir, 0), 0);
    ck_assert_int_eq(vmio_server_listen(x->srv, addr, 0), 0);
    x->port = vmio_server_port(x->srv);
    ck_assert_msg(vmio_server_listen_rdma(x->srv, addr, (uint16_t)x->port) == 0, "%s",
                  vmio_errmsg());
    ck_assert_int_eq(vmio_server_start(x->srv), 0);
}

static void srv_stop(struct srv_fixture *x)
{
    ck_assert_int_eq(vmio_server_stop(x->srv), 0);
    vmio_server_free(x->srv);
    test_rmtree(x->dir);
}

static vmio_file *srv_open(struct srv_fixture *x, const char *opts, unsigned flags)
{
    char uri[400];
    snprintf(uri, sizeof uri, "vmio://%s:%d/img/img.raw?transport=rdma%s", addr, x->port, opts);
    struct vmio_open_options oo = { .struct_size = sizeof oo, .secret_file = x->secret };
    vmio_file *f;
    ck_assert_msg(vmio_open_ex(uri, flags, &oo, &f) == 0, "%s", vmio_errmsg());
    return f;
}

START_TEST(test_storage_qp_error_recovers)
{
    size_t len = 8u << 20;
    struct srv_fixture x;
    srv_start(&x, len);
    char *got = aligned_alloc(4096, len);
    vmio_file *f = srv_open(&x, "", VMIO_O_RDONLY);
    ck_assert_int_eq(vmio_register_memory(f, got, len), 0);
    __atomic_store_n(&vmio_remote_inject_bad_rkey, 1, __ATOMIC_RELAXED);
    memset(got, 0, len);
    ck_assert_msg(vmio_pread(f, got, len, 0) == 0, "%s", vmio_errmsg());
    ck_assert_int_eq(test_check(got, len, 0, 5), -1);
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(vmio_get_stats(f, &st), 0);
    ck_assert_msg(st.reconnects >= 1, "no reconnect after the QP error");
    ck_assert_msg(strcmp(st.transport, "rdma") == 0, "transport '%s'", st.transport);
    ck_assert(st.rdma_bytes >= len);
    ck_assert_int_eq(vmio_close(f), 0);
    /* Another client is served normally. */
    f = srv_open(&x, "", VMIO_O_RDONLY);
    memset(got, 0, len);
    ck_assert_int_eq(vmio_pread(f, got, len, 0), 0);
    ck_assert_int_eq(test_check(got, len, 0, 5), -1);
    ck_assert_int_eq(vmio_close(f), 0);
    srv_stop(&x);
    free(got);
}
END_TEST

/* rdma-regcache: unregistered caller buffers registered on first use and
 * found again (zero copy both ways, no bounce); eviction beyond the limit;
 * vmio_unregister_memory() forgets cached memory. */
START_TEST(test_storage_regcache)
{
    size_t len = 8u << 20, part = 1u << 20;
    struct srv_fixture x;
    srv_start(&x, len);
    char *buf = malloc(len);
    vmio_file *f = srv_open(&x, "&rdma-regcache=16", VMIO_O_RDWR);
    for (int pass = 0; pass < 2; pass++) {
        memset(buf, 0, len);
        for (size_t off = 0; off < len; off += part)
            ck_assert_msg(vmio_pread(f, buf + off, part, off) == 0, "%s", vmio_errmsg());
        ck_assert_int_eq(test_check(buf, len, 0, 5), -1);
    }
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(vmio_get_stats(f, &st), 0);
    ck_assert(st.rdma_bytes == 2 * len && st.bounce_bytes == 0 && st.inline_bytes == 0);
    ck_assert_msg(st.regcache_misses <= 9 && st.regcache_hits >= 7, "hits %llu misses %llu",
                  (unsigned long long)st.regcache_hits, (unsigned long long)st.regcache_misses);
    /* Writes from cached memory, read back through the same cache. */
    test_fill(buf, len, 0, 6);
    for (size_t off = 0; off < len; off += part)
        ck_assert_int_eq(vmio_pwrite(f, buf + off, part, off, 0), 0);
    memset(buf, 0, len);
    ck_assert_int_eq(vmio_pread(f, buf, part, 0), 0);
    ck_assert_int_eq(test_check(buf, part, 0, 6), -1);
    ck_assert_int_eq(vmio_unregister_memory(f, buf), 0);
    ck_assert_vmio_err(vmio_unregister_memory(f, buf), ENOENT, "vmio_unregister_memory");
    ck_assert_int_eq(vmio_close(f), 0);
    /* A small cache evicts: every part misses again. */
    f = srv_open(&x, "&rdma-regcache=2", VMIO_O_RDONLY);
    for (int pass = 0; pass < 2; pass++)
        for (size_t off = 0; off < len; off += part)
            ck_assert_int_eq(vmio_pread(f, buf + off, part, off), 0);
    ck_assert_int_eq(test_check(buf, len, 0, 6), -1);
    ck_assert_int_eq(vmio_get_stats(f, &st), 0);
    ck_assert_msg(st.regcache_misses >= 16, "misses %llu", (unsigned long long)st.regcache_misses);
    ck_assert_int_eq(vmio_close(f), 0);
    srv_stop(&x);
    free(buf);
}
END_TEST

/* Nobody listens: a clear refusal, fast. */
START_TEST(test_refused)
{
    struct vmio_transport *t;
    int r = vmio_rdma_connect(API, addr, 18799, 3000, NULL, &t);
    ck_assert_int_eq(r, -ECONNREFUSED);
    ck_assert_msg(strstr(vmio_errmsg(), "refused") != NULL, "%s", vmio_errmsg());
}
END_TEST

int main(void)
{
    addr = getenv("VMIO_RDMA_ADDR");
    const char *bp = getenv("VMIO_TEST_BUSY_POLL");
    busy_poll_us = bp ? (unsigned)strtoul(bp, NULL, 10) : 0;
    if (!addr || !vmio_rdma_available()) {
        printf("SKIP: no RDMA device (set VMIO_RDMA_ADDR to an address of one)\n");
        return 77;
    }
    Suite *s = suite_create("rdma-transport");
    TCase *tc = tcase_create("rdma");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_stream_order_and_poll);
    tcase_add_test(tc, test_stream_echo);
    tcase_add_test(tc, test_stream_slow_reader);
    tcase_add_test(tc, test_one_sided_threads);
    tcase_add_test(tc, test_bad_rkey);
    tcase_add_test(tc, test_peer_dies);
    tcase_add_test(tc, test_memlock_limit);
    tcase_add_test(tc, test_storage_qp_error_recovers);
    tcase_add_test(tc, test_storage_regcache);
    suite_add_tcase(s, tc);
    return test_run(s);
}
