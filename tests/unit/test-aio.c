/* The asynchronous interface on file:// (shared library): 64 requests in
 * flight, callbacks only from vmio_aio_run_completions() on the caller's
 * thread, the eventfd, data and error delivery, vmio_aio_in_flight() and
 * closing. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>

#include <vmio/storage.h>

#include "test-common.h"

#define NREQ 64
#define BLK (64u * 1024u)

static char dir[256];
static char path[320];

/* Set while this thread is inside vmio_aio_run_completions(). */
static int in_run;
static pthread_t main_thread;

struct done {
    int calls;
    int result;
    int err;
    char msg[256];
    int bad_context;    /* callback outside run_completions or thread */
};

static void cb(void *opaque, int result)
{
    struct done *d = opaque;
    if (!in_run || !pthread_equal(pthread_self(), main_thread))
        d->bad_context++;
    d->calls++;
    d->result = result;
    d->err = vmio_errno();
    snprintf(d->msg, sizeof d->msg, "%s", vmio_errmsg());
}

static int run(vmio_file *f)
{
    in_run = 1;
    int n = vmio_aio_run_completions(f);
    in_run = 0;
    ck_assert_msg(n >= 0, "run_completions: %d %s", n, vmio_errmsg());
    return n;
}

/* Polls the eventfd and runs completions until *count reaches want. */
static void wait_for(vmio_file *f, const int *count, int want)
{
    int fd = vmio_aio_fd(f);
    ck_assert_int_ge(fd, 0);
    double deadline = test_now() + 20;
    while (*count < want) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 1000);
        ck_assert_int_ge(r, 0);
        if (r > 0)
            ck_assert(p.revents & POLLIN);
        run(f);
        ck_assert_msg(test_now() < deadline, "timed out: %d of %d completions", *count, want);
    }
}

static int total_calls(const struct done *d, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += d[i].calls;
    return s;
}

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/aio.img", dir);
    main_thread = pthread_self();
}

static void teardown(void)
{
    test_rmtree(dir);
}

static vmio_file *create(uint64_t size)
{
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = size, .workers = 4 };
    vmio_file *f;
    ck_assert_vmio_ok(vmio_open_ex(path, VMIO_O_CREATE, &o, &f));
    return f;
}

/* Runs completions until every entry of d[0..n) has been called once. */
static void wait_all(vmio_file *f, struct done *d, int n)
{
    int fd = vmio_aio_fd(f);
    double deadline = test_now() + 20;
    while (total_calls(d, n) < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ck_assert_int_ge(poll(&p, 1, 1000), 0);
        run(f);
        ck_assert_msg(test_now() < deadline, "timed out: %d of %d", total_calls(d, n), n);
    }
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert_int_eq(d[i].bad_context, 0);
    }
}

START_TEST(test_64_in_flight)
{
    vmio_file *f = create((uint64_t)NREQ * BLK);
    uint8_t *w = malloc((size_t)NREQ * BLK), *r = malloc((size_t)NREQ * BLK);
    static struct done d[NREQ];
    memset(d, 0, sizeof d);
    test_fill(w, (size_t)NREQ * BLK, 0, 21);

    ck_assert_int_eq(vmio_aio_in_flight(f), 0);
    for (int i = 0; i < NREQ; i++) {
        /* The iovec array lives on the stack of this loop iteration only:
         * the library must copy it. */
        struct iovec iov[5];
        size_t part = BLK / 5;
        for (int k = 0; k < 5; k++) {
            iov[k].iov_base = w + (size_t)i * BLK + (size_t)k * part;
            iov[k].iov_len = k == 4 ? BLK - 4 * part : part;
        }
        ck_assert_vmio_ok(vmio_aio_pwritev(f, iov, 5, (uint64_t)i * BLK,
                                           i % 8 ? 0 : VMIO_REQ_FUA, cb, &d[i]));
        memset(iov, 0, sizeof iov);
    }
    /* No callback ran inside a submit call. */
    ck_assert_int_eq(total_calls(d, NREQ), 0);
    ck_assert_int_eq(vmio_aio_in_flight(f), NREQ);

    /* The eventfd becomes readable. */
    struct pollfd p = { .fd = vmio_aio_fd(f), .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 10000), 1);
    ck_assert(p.revents & POLLIN);

    wait_all(f, d, NREQ);
    for (int i = 0; i < NREQ; i++) {
        ck_assert_msg(d[i].result == 0, "write %d: %d %s", i, d[i].result, d[i].msg);
        ck_assert_str_eq(d[i].msg, "");
    }
    ck_assert_int_eq(vmio_aio_in_flight(f), 0);
    /* Nothing pending: a run does nothing and then the eventfd is quiet
     * (one spurious wake-up is allowed: a completion may signal after the
     * run that collected it read the eventfd). */
    ck_assert_int_eq(run(f), 0);
    ck_assert_int_eq(poll(&p, 1, 0), 0);

    /* The data is in the file. */
    int fd = open(path, O_RDONLY);
    ck_assert_int_eq(pread(fd, r, (size_t)NREQ * BLK, 0), (ssize_t)NREQ * BLK);
    close(fd);
    ck_assert_int_eq(test_check(r, (size_t)NREQ * BLK, 0, 21), -1);

    /* 64 reads in flight, in reverse order, into separate buffers. */
    memset(r, 0, (size_t)NREQ * BLK);
    memset(d, 0, sizeof d);
    for (int i = NREQ - 1; i >= 0; i--) {
        struct iovec iov[2] = { { r + (size_t)i * BLK, 100 },
                                { r + (size_t)i * BLK + 100, BLK - 100 } };
        ck_assert_vmio_ok(vmio_aio_preadv(f, iov, 2, (uint64_t)i * BLK, cb, &d[i]));
    }
    ck_assert_int_eq(total_calls(d, NREQ), 0);
    ck_assert_int_le(vmio_aio_in_flight(f), NREQ);
    ck_assert_int_gt(vmio_aio_in_flight(f), 0);
    wait_all(f, d, NREQ);
    for (int i = 0; i < NREQ; i++)
        ck_assert_msg(d[i].result == 0, "read %d: %d %s", i, d[i].result, d[i].msg);
    ck_assert_int_eq(test_check(r, (size_t)NREQ * BLK, 0, 21), -1);

    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.writes == NREQ && st.reads == NREQ);
    ck_assert(st.bytes_written == (uint64_t)NREQ * BLK);
    ck_assert(st.bytes_read == (uint64_t)NREQ * BLK);
    ck_assert_int_eq(vmio_close(f), 0);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_other_ops)
{
    vmio_file *f = create(4 * BLK);
    uint8_t *w = malloc(4 * BLK), *r = malloc(4 * BLK);
    test_fill(w, 4 * BLK, 0, 22);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 4 * BLK, 0, 0));

    struct done d[4];
    memset(d, 0, sizeof d);
    ck_assert_vmio_ok(vmio_aio_discard(f, BLK, BLK, cb, &d[0]));
    ck_assert_vmio_ok(vmio_aio_write_zeroes(f, 2 * BLK, 1000, 0, cb, &d[1]));
    ck_assert_vmio_ok(vmio_aio_write_zeroes(f, 3 * BLK + 5, 7000, VMIO_REQ_MAY_TRIM, cb,
                                            &d[2]));
    ck_assert_vmio_ok(vmio_aio_flush(f, cb, &d[3]));
    ck_assert_int_eq(total_calls(d, 4), 0);
    wait_all(f, d, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(d[i].result == 0, "op %d: %s", i, d[i].msg);

    ck_assert_vmio_ok(vmio_pread(f, r, 4 * BLK, 0));
    memset(w + BLK, 0, BLK);
    memset(w + 2 * BLK, 0, 1000);
    memset(w + 3 * BLK + 5, 0, 7000);
    ck_assert_mem_eq(r, w, 4 * BLK);

    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.discards == 1 && st.write_zeroes == 2 && st.flushes == 1);
    vmio_close(f);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_submit_errors)
{
    vmio_file *f = create(BLK);
    uint8_t b[16];
    struct iovec iov = { b, sizeof b };
    struct done d;
    memset(&d, 0, sizeof d);

    /* Refused at submission: no callback, nothing in flight. */
    ck_assert_vmio_err_msg(vmio_aio_preadv(f, &iov, 1, BLK - 8, cb, &d), EINVAL,
                           "vmio_aio_preadv", "beyond the end");
    ck_assert_vmio_err_msg(vmio_aio_pwritev(f, &iov, 1, BLK, 0, cb, &d), EINVAL,
                           "vmio_aio_pwritev", "beyond the end");
    ck_assert_vmio_err(vmio_aio_pwritev(f, &iov, 1, 0, 0x100, cb, &d), EINVAL,
                       "vmio_aio_pwritev");
    ck_assert_vmio_err(vmio_aio_preadv(f, &iov, 1, 0, NULL, &d), EFAULT, "vmio_aio_preadv");
    ck_assert_vmio_err(vmio_aio_preadv(f, NULL, 1, 0, cb, &d), EFAULT, "vmio_aio_preadv");
    ck_assert_vmio_err(vmio_aio_preadv(f, &iov, -1, 0, cb, &d), EINVAL, "vmio_aio_preadv");
    ck_assert_vmio_err(vmio_aio_discard(f, 0, 0, cb, &d), EINVAL, "vmio_aio_discard");
    ck_assert_vmio_err(vmio_aio_write_zeroes(f, 0, 0, 0, cb, &d), EINVAL,
                       "vmio_aio_write_zeroes");
    ck_assert_vmio_err_msg(vmio_aio_discard(f, BLK - 1, 2, cb, &d), EINVAL, "vmio_aio_discard",
                           "beyond the end");
    ck_assert_int_eq(vmio_aio_in_flight(f), 0);
    ck_assert_int_eq(run(f), 0);
    ck_assert_int_eq(d.calls, 0);
    vmio_close(f);

    /* A read-only handle refuses writes at submission. */
    ck_assert_vmio_ok(vmio_open(path, VMIO_O_RDONLY, &f));
    ck_assert_vmio_err_msg(vmio_aio_pwritev(f, &iov, 1, 0, 0, cb, &d), EBADF,
                           "vmio_aio_pwritev", "read-only");
    ck_assert_vmio_err(vmio_aio_discard(f, 0, 16, cb, &d), EBADF, "vmio_aio_discard");
    ck_assert_vmio_err(vmio_aio_write_zeroes(f, 0, 16, 0, cb, &d), EBADF,
                       "vmio_aio_write_zeroes");
    /* A read-only handle still serves async reads and flushes. */
    ck_assert_vmio_ok(vmio_aio_preadv(f, &iov, 1, 0, cb, &d));
    wait_all(f, &d, 1);
    ck_assert_int_eq(d.result, 0);
    ck_assert_int_eq(vmio_aio_in_flight(f), 0);
    vmio_close(f);
}
END_TEST

START_TEST(test_error_in_callback)
{
    vmio_file *f = create(BLK);
    uint8_t b[4096];
    struct iovec iov = { b, sizeof b };
    struct done d[2];
    memset(d, 0, sizeof d);

    /* The image shrinks behind the handle: the request passes the cached
     * range check and fails in the backend, on a worker thread. */
    ck_assert_int_eq(truncate(path, 0), 0);
    ck_assert_vmio_ok(vmio_aio_preadv(f, &iov, 1, 8192, cb, &d[0]));
    /* The submitting thread's error state is not the request's. */
    ck_assert_str_eq(vmio_errmsg(), "");
    ck_assert_vmio_ok(vmio_aio_flush(f, cb, &d[1]));
    wait_all(f, d, 2);

    ck_assert_int_eq(d[0].result, -EIO);
    ck_assert_int_eq(d[0].err, EIO);
    ck_assert_msg(strncmp(d[0].msg, "vmio_aio_preadv: ", 17) == 0, "callback message '%s'",
                  d[0].msg);
    ck_assert_ptr_nonnull(strstr(d[0].msg, "end of file"));
    /* The next callback on the same thread sees a clean state. */
    ck_assert_int_eq(d[1].result, 0);
    ck_assert_str_eq(d[1].msg, "");
    ck_assert_int_eq(d[1].err, 0);
    /* Failed requests are not counted. */
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.reads == 0 && st.bytes_read == 0 && st.flushes == 1);
    vmio_close(f);
}
END_TEST

/* Each completion submits the next read, as an event loop would. */
struct chain {
    vmio_file *f;
    uint8_t *buf;
    int next, limit, done, failed, bad_context;
};

static void chain_cb(void *opaque, int result)
{
    struct chain *c = opaque;
    if (!in_run)
        c->bad_context++;
    if (result < 0 || test_check(c->buf, 4096, (uint64_t)(c->next - 1) * 4096, 23) != -1)
        c->failed++;
    c->done++;
    if (c->next < c->limit) {
        struct iovec iov = { c->buf, 4096 };
        uint64_t off = (uint64_t)c->next * 4096;
        c->next++;
        if (vmio_aio_preadv(c->f, &iov, 1, off, chain_cb, c) < 0)
            c->failed++;
    }
}

START_TEST(test_submit_from_callback)
{
    vmio_file *f = create(64 * 4096);
    uint8_t *w = malloc(64 * 4096);
    test_fill(w, 64 * 4096, 0, 23);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 64 * 4096, 0, 0));
    struct chain c = { .f = f, .buf = malloc(4096), .next = 1, .limit = 64 };
    struct iovec iov = { c.buf, 4096 };
    ck_assert_vmio_ok(vmio_aio_preadv(f, &iov, 1, 0, chain_cb, &c));
    wait_for(f, &c.done, 64);
    ck_assert_int_eq(c.failed, 0);
    ck_assert_int_eq(c.bad_context, 0);
    ck_assert_int_eq(vmio_aio_in_flight(f), 0);
    vmio_close(f);
    free(c.buf);
    free(w);
}
END_TEST

START_TEST(test_close)
{
    /* Idle: everything collected. */
    vmio_file *f = create(BLK);
    struct done d[8];
    memset(d, 0, sizeof d);
    ck_assert_vmio_ok(vmio_aio_flush(f, cb, &d[0]));
    wait_all(f, d, 1);
    ck_assert_int_eq(vmio_close(f), 0);

    /* With requests in flight: close waits for them (the data lands) and
     * never runs the uncollected callbacks. */
    ck_assert_int_eq(unlink(path), 0);
    f = create(8 * BLK);
    uint8_t *w = malloc(8 * BLK);
    test_fill(w, 8 * BLK, 0, 24);
    memset(d, 0, sizeof d);
    for (int i = 0; i < 8; i++) {
        struct iovec iov = { w + (size_t)i * BLK, BLK };
        ck_assert_vmio_ok(vmio_aio_pwritev(f, &iov, 1, (uint64_t)i * BLK, 0, cb, &d[i]));
    }
    ck_assert_int_eq(vmio_close(f), 0);
    ck_assert_int_eq(total_calls(d, 8), 0);
    uint8_t *r = malloc(8 * BLK);
    int fd = open(path, O_RDONLY);
    ck_assert_int_eq(pread(fd, r, 8 * BLK, 0), (ssize_t)(8 * BLK));
    close(fd);
    ck_assert_int_eq(test_check(r, 8 * BLK, 0, 24), -1);
    free(w);
    free(r);
}
END_TEST

static Suite *aio_suite(void)
{
    Suite *s = suite_create("aio");
    TCase *tc = tcase_create("aio");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_64_in_flight);
    tcase_add_test(tc, test_other_ops);
    tcase_add_test(tc, test_submit_errors);
    tcase_add_test(tc, test_error_in_callback);
    tcase_add_test(tc, test_submit_from_callback);
    tcase_add_test(tc, test_close);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(aio_suite());
}
