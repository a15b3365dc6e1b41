/* The vmio:// client against a real in-process server, both through the
 * public API (shared library): handshake and authentication, every
 * operation with the data checked in the exported file itself, the async
 * interface, many threads, export confinement, read-only exports, and
 * what happens when the server stops or restarts under a client. The I/O
 * tests run twice: through the server, and with the same-host data path
 * (local=on), where the client takes over the server's descriptor. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>

#include <vmio/vmio.h>

#include "test-common.h"

#define MiB (1024u * 1024u)
#define SECRET "test-secret-5f0c1e9a7b3d2846-not-for-production"

static char dir[256];          /* scratch: export dirs, secret files */
static char expdir[300];       /* export "exp", writable */
static char rodir[300];        /* export "ro", read-only */
static char secret_path[300];
static vmio_server *srv;
static int port;
static const char *uri_opts = "";   /* "?local=on" for the local-path runs */
static int server_poll_us = -1;     /* vmio_server_set_poll; -1: the default */

static void write_file(const char *p, const void *data, size_t len, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_msg(fd >= 0, "open %s: %s", p, strerror(errno));
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Starts a server on 127.0.0.1:want (0: any port) and returns it. */
static vmio_server *start_server(int want)
{
    vmio_server *s = NULL;
    ck_assert_vmio_ok(vmio_server_new(&s));
    ck_assert_ptr_nonnull(s);
    ck_assert_vmio_ok(vmio_server_set_secret(s, SECRET, strlen(SECRET)));
    ck_assert_vmio_ok(vmio_server_add_export(s, "exp", expdir, 0));
    ck_assert_vmio_ok(vmio_server_add_export(s, "ro", rodir, VMIO_EXPORT_RDONLY));
    ck_assert_vmio_ok(vmio_server_add_export(s, "nl", expdir, VMIO_EXPORT_NOLOCAL));
    if (server_poll_us >= 0)
        ck_assert_vmio_ok(vmio_server_set_poll(s, (unsigned)server_poll_us));
    /* The previous server's port can linger briefly after a restart. */
    int r = -EADDRINUSE;
    for (int i = 0; i < 100 && r == -EADDRINUSE; i++) {
        r = vmio_server_listen(s, "127.0.0.1", (uint16_t)want);
        if (r == -EADDRINUSE)
            usleep(50 * 1000);
    }
    ck_assert_vmio_ok(r);
    ck_assert_vmio_ok(vmio_server_start(s));
    int p = vmio_server_port(s);
    ck_assert_int_gt(p, 0);
    if (want)
        ck_assert_int_eq(p, want);
    return s;
}

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
    snprintf(expdir, sizeof expdir, "%s/exp", dir);
    snprintf(rodir, sizeof rodir, "%s/ro", dir);
    snprintf(secret_path, sizeof secret_path, "%s/secret", dir);
    ck_assert_int_eq(mkdir(expdir, 0755), 0);
    ck_assert_int_eq(mkdir(rodir, 0755), 0);
    /* The client strips the trailing newline. */
    write_file(secret_path, SECRET "\n", strlen(SECRET) + 1, 0600);
    srv = start_server(0);
    port = vmio_server_port(srv);
}

static void setup_local(void)
{
    uri_opts = "?local=on";
    setup();
}

/* The server without polling, and with the longest window. */
static void setup_nopoll(void)
{
    server_poll_us = 0;
    setup();
}

static void setup_longpoll(void)
{
    server_poll_us = 10000;
    setup();
}

static void teardown(void)
{
    uri_opts = "";
    server_poll_us = -1;
    if (srv) {
        vmio_server_stop(srv);
        vmio_server_free(srv);
        srv = NULL;
    }
    test_rmtree(dir);
}

static int open_opts(const char *rel, unsigned flags, uint64_t create_size,
                     uint32_t reconnect_ms, const char *secret, vmio_file **f)
{
    char uri[512];
    snprintf(uri, sizeof uri, "vmio://127.0.0.1:%d/%s%s", port, rel,
             strchr(rel, '?') ? "" : uri_opts);
    struct vmio_open_options o = {
        .struct_size = sizeof o, .secret_file = secret ? secret : secret_path,
        .connect_timeout_ms = 5000, .reconnect_timeout_ms = reconnect_ms,
        .create_size = create_size,
    };
    return vmio_open_ex(uri, flags, &o, f);
}

static vmio_file *open_ok(const char *rel, unsigned flags, uint64_t create_size)
{
    vmio_file *f = NULL;
    ck_assert_vmio_ok(open_opts(rel, flags, create_size, 0, NULL, &f));
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Reads the exported file directly, as the server's disk has it. */
static void disk_read(const char *rel, void *buf, size_t len, off_t off)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    int fd = open(p, O_RDONLY);
    ck_assert_msg(fd >= 0, "open %s: %s", p, strerror(errno));
    ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

static off_t disk_size(const char *rel)
{
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    ck_assert_int_eq(stat(p, &st), 0);
    return st.st_size;
}

static uint64_t size_of(vmio_file *f)
{
    uint64_t s = 0;
    ck_assert_vmio_ok(vmio_get_size(f, &s));
    return s;
}

/* ---- basics ----------------------------------------------------------- */

START_TEST(test_roundtrip)
{
    vmio_file *f = open_ok("exp/disk.img", VMIO_O_CREATE, 8 * MiB);
    ck_assert_str_eq(vmio_backend_name(f), "vmio");
    ck_assert(size_of(f) == 8 * MiB);
    ck_assert_int_eq(disk_size("exp/disk.img"), 8 * MiB);

    size_t len = MiB + 333;
    uint8_t *w = malloc(len), *r = malloc(len);
    test_fill(w, len, 4097, 31);
    ck_assert_vmio_ok(vmio_pwrite(f, w, len, 4097, 0));
    ck_assert_vmio_ok(vmio_pread(f, r, len, 4097));
    ck_assert_int_eq(test_check(r, len, 4097, 31), -1);
    /* The server wrote it where it belongs. */
    memset(r, 0, len);
    disk_read("exp/disk.img", r, len, 4097);
    ck_assert_int_eq(test_check(r, len, 4097, 31), -1);
    ck_assert_int_eq(vmio_close(f), 0);

    /* Reopen read-only: same data; create_size does not resize. */
    f = open_ok("exp/disk.img", VMIO_O_RDONLY, 0);
    memset(r, 0, len);
    ck_assert_vmio_ok(vmio_pread(f, r, len, 4097));
    ck_assert_int_eq(test_check(r, len, 4097, 31), -1);
    ck_assert_vmio_err_msg(vmio_pwrite(f, w, 1, 0, 0), EBADF, "vmio_pwrite", "read-only");
    vmio_close(f);
    f = open_ok("exp/disk.img", VMIO_O_CREATE, 1 * MiB);
    ck_assert(size_of(f) == 8 * MiB);
    vmio_close(f);
    /* EXCL on an existing file, then TRUNC. */
    ck_assert_vmio_err(open_opts("exp/disk.img", VMIO_O_CREATE | VMIO_O_EXCL, 0, 0, NULL, &f),
                       EEXIST, "vmio_open");
    f = open_ok("exp/disk.img", VMIO_O_TRUNC, 0);
    ck_assert(size_of(f) == 0);
    vmio_close(f);
    ck_assert_int_eq(disk_size("exp/disk.img"), 0);

    /* A file in a subdirectory, and a missing one. */
    char sub[400];
    snprintf(sub, sizeof sub, "%s/vm1", expdir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    f = open_ok("exp/vm1/root.img", VMIO_O_CREATE, 65536);
    vmio_close(f);
    ck_assert_int_eq(disk_size("exp/vm1/root.img"), 65536);
    ck_assert_vmio_err(open_opts("exp/vm1/missing.img", 0, 0, 0, NULL, &f), ENOENT,
                       "vmio_open");
    free(w);
    free(r);
}
END_TEST

START_TEST(test_large_io)
{
    /* Larger than the protocol's biggest frame: the client must split. */
    const size_t len = 34 * MiB;
    vmio_file *f = open_ok("exp/big.img", VMIO_O_CREATE, len + 4096);
    uint8_t *w = malloc(len), *r = malloc(len);
    test_fill(w, len, 4096, 32);
    ck_assert_vmio_ok(vmio_pwrite(f, w, len, 4096, 0));
    ck_assert_vmio_ok(vmio_pread(f, r, len, 4096));
    ck_assert_int_eq(test_check(r, len, 4096, 32), -1);
    /* Stats count requests as the caller made them. */
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.writes == 1 && st.reads == 1);
    ck_assert(st.bytes_written == len && st.bytes_read == len);
    vmio_close(f);
    memset(r, 0, len);
    disk_read("exp/big.img", r, len, 4096);
    ck_assert_int_eq(test_check(r, len, 4096, 32), -1);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_all_ops)
{
    vmio_file *f = open_ok("exp/ops.img", VMIO_O_CREATE, 4 * MiB);
    unsigned caps = 0;
    ck_assert_vmio_ok(vmio_get_caps(f, &caps));
    unsigned want = VMIO_CAP_WRITE | VMIO_CAP_FLUSH | VMIO_CAP_DISCARD |
                    VMIO_CAP_WRITE_ZEROES | VMIO_CAP_BLOCK_STATUS | VMIO_CAP_FUA;
    ck_assert_msg((caps & want) == want, "caps 0x%x", caps);

    uint8_t *w = malloc(4 * MiB), *r = malloc(4 * MiB);
    /* Vectors with odd and empty segments, with FUA. */
    size_t lens[] = { 7, 0, 65536, 1, 4093, 200000 };
    struct iovec iov[6];
    size_t total = 0;
    for (int i = 0; i < 6; i++) {
        iov[i].iov_base = w + total;
        iov[i].iov_len = lens[i];
        total += lens[i];
    }
    test_fill(w, total, 12345, 33);
    ck_assert_vmio_ok(vmio_pwritev(f, iov, 6, 12345, VMIO_REQ_FUA));
    for (int i = 0, o = 0; i < 6; o += (int)lens[i], i++)
        iov[i].iov_base = r + o;
    memset(r, 0, total);
    ck_assert_vmio_ok(vmio_preadv(f, iov, 6, 12345));
    ck_assert_int_eq(test_check(r, total, 12345, 33), -1);
    ck_assert_vmio_ok(vmio_flush(f));

    /* Fill everything, then discard, zero and look at the extents. */
    test_fill(w, 4 * MiB, 0, 34);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 4 * MiB, 0, 0));
    ck_assert_vmio_ok(vmio_discard(f, MiB, MiB));
    ck_assert_vmio_ok(vmio_write_zeroes(f, 2 * MiB + 10, 5000, 0));
    ck_assert_vmio_ok(vmio_write_zeroes(f, 3 * MiB, MiB, VMIO_REQ_MAY_TRIM | VMIO_REQ_FUA));
    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_vmio_ok(vmio_pread(f, r, 4 * MiB, 0));
    memset(w + 2 * MiB + 10, 0, 5000);
    memset(w + 3 * MiB, 0, MiB);
    ck_assert_mem_eq(r, w, MiB);
    ck_assert(test_is_zero(r + MiB, MiB));
    ck_assert_mem_eq(r + 2 * MiB, w + 2 * MiB, 2 * MiB);
    uint8_t *d = malloc(4 * MiB);
    disk_read("exp/ops.img", d, 4 * MiB, 0);
    ck_assert_mem_eq(d, r, 4 * MiB);
    free(d);

    uint64_t len;
    int type;
    ck_assert_vmio_ok(vmio_block_status(f, 0, 4 * MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == MiB);
    ck_assert_vmio_ok(vmio_block_status(f, MiB, 4 * MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == MiB);
    ck_assert_vmio_ok(vmio_block_status(f, MiB + 512, 4096, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == 4096);

    /* Truncate both ways; the server's file follows. */
    ck_assert_vmio_ok(vmio_truncate(f, 6 * MiB));
    ck_assert(size_of(f) == 6 * MiB);
    ck_assert_int_eq(disk_size("exp/ops.img"), 6 * MiB);
    ck_assert_vmio_ok(vmio_pread(f, r, MiB, 5 * MiB));
    ck_assert(test_is_zero(r, MiB));
    ck_assert_vmio_ok(vmio_truncate(f, MiB / 2));
    ck_assert(size_of(f) == MiB / 2);
    ck_assert_int_eq(disk_size("exp/ops.img"), MiB / 2);
    ck_assert_vmio_err_msg(vmio_pread(f, r, 2, MiB / 2 - 1), EINVAL, "vmio_pread",
                           "beyond the end");
    ck_assert_vmio_ok(vmio_pread(f, r, MiB / 2, 0));
    ck_assert_mem_eq(r, w, MiB / 2);

    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.writes == 2 && st.discards == 1 && st.write_zeroes == 2 && st.flushes == 2);
    ck_assert(st.reconnects == 0);
    vmio_close(f);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_read_past_end)
{
    vmio_file *f = open_ok("exp/small.img", VMIO_O_CREATE, 65536);
    uint8_t b[8192];
    ck_assert_vmio_err_msg(vmio_pread(f, b, 2, 65535), EINVAL, "vmio_pread", "beyond the end");
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 8192, 65536 - 4096, 0), EINVAL, "vmio_pwrite",
                           "beyond the end");
    ck_assert_vmio_err(vmio_discard(f, 65536, 1), EINVAL, "vmio_discard");
    uint64_t l;
    int t;
    ck_assert_vmio_err(vmio_block_status(f, 65536, 1, &l, &t), EINVAL, "vmio_block_status");

    /* The image grown by another client is seen (size refreshed). */
    vmio_file *g = open_ok("exp/small.img", VMIO_O_RDWR, 0);
    ck_assert_vmio_ok(vmio_truncate(g, 131072));
    ck_assert_vmio_ok(vmio_pread(f, b, 2, 65535));
    vmio_close(g);
    vmio_close(f);
}
END_TEST

/* ---- async and threads ------------------------------------------------ */

struct done {
    int calls, result;
    char msg[200];
};

static void cb(void *opaque, int result)
{
    struct done *d = opaque;
    d->calls++;
    d->result = result;
    snprintf(d->msg, sizeof d->msg, "%s", vmio_errmsg());
}

static void wait_all(vmio_file *f, struct done *d, int n)
{
    double deadline = test_now() + 30;
    for (;;) {
        int got = 0;
        for (int i = 0; i < n; i++)
            got += d[i].calls;
        if (got == n)
            break;
        struct pollfd p = { .fd = vmio_aio_fd(f), .events = POLLIN };
        ck_assert_int_ge(poll(&p, 1, 1000), 0);
        ck_assert_int_ge(vmio_aio_run_completions(f), 0);
        ck_assert_msg(test_now() < deadline, "timed out: %d of %d", got, n);
    }
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(d[i].calls, 1);
        ck_assert_msg(d[i].result == 0, "request %d: %d %s", i, d[i].result, d[i].msg);
    }
}

START_TEST(test_aio_64)
{
    enum { N = 64, B = 64 * 1024 };
    vmio_file *f = open_ok("exp/aio.img", VMIO_O_CREATE, (uint64_t)N * B);
    uint8_t *w = malloc((size_t)N * B), *r = malloc((size_t)N * B);
    static struct done d[N];
    memset(d, 0, sizeof d);
    test_fill(w, (size_t)N * B, 0, 35);
    for (int i = 0; i < N; i++) {
        struct iovec iov[2] = { { w + (size_t)i * B, 1000 },
                                { w + (size_t)i * B + 1000, B - 1000 } };
        ck_assert_vmio_ok(vmio_aio_pwritev(f, iov, 2, (uint64_t)i * B, 0, cb, &d[i]));
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(d[i].calls, 0);
    ck_assert_int_eq(vmio_aio_in_flight(f), N);
    wait_all(f, d, N);
    ck_assert_int_eq(vmio_aio_in_flight(f), 0);

    memset(d, 0, sizeof d);
    for (int i = 0; i < N; i++) {
        struct iovec iov = { r + (size_t)i * B, B };
        ck_assert_vmio_ok(vmio_aio_preadv(f, &iov, 1, (uint64_t)i * B, cb, &d[i]));
    }
    wait_all(f, d, N);
    ck_assert_int_eq(test_check(r, (size_t)N * B, 0, 35), -1);

    memset(d, 0, 3 * sizeof d[0]);
    ck_assert_vmio_ok(vmio_aio_flush(f, cb, &d[0]));
    ck_assert_vmio_ok(vmio_aio_discard(f, 0, B, cb, &d[1]));
    ck_assert_vmio_ok(vmio_aio_write_zeroes(f, B, B, 0, cb, &d[2]));
    wait_all(f, d, 3);
    ck_assert_vmio_ok(vmio_pread(f, r, 2 * B, 0));
    ck_assert(test_is_zero(r, 2 * B));
    vmio_close(f);
    disk_read("exp/aio.img", r, (size_t)(N - 2) * B, 2 * B);
    ck_assert_int_eq(test_check(r, (size_t)(N - 2) * B, 2 * B, 35), -1);
    free(w);
    free(r);
}
END_TEST

#define NTHREADS 8
#define REGION (256u * 1024u)
#define CHUNK (32u * 1024u)

struct worker {
    vmio_file *f;
    int id, failures;
    char msg[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = malloc(CHUNK), *rd = malloc(CHUNK);
    uint64_t base = (uint64_t)w->id * REGION;
    for (int round = 0; round < 3 && !w->failures; round++) {
        uint32_t seed = (uint32_t)(w->id * 10 + round);
        for (uint64_t off = base; off < base + REGION && !w->failures; off += CHUNK) {
            test_fill(buf, CHUNK, off, seed);
            int r = vmio_pwrite(w->f, buf, CHUNK, off, 0);
            if (r == 0)
                r = vmio_pread(w->f, rd, CHUNK, off);
            if (r < 0 || test_check(rd, CHUNK, off, seed) != -1) {
                w->failures++;
                snprintf(w->msg, sizeof w->msg, "at %llu: %d %s", (unsigned long long)off, r,
                         vmio_errmsg());
            }
        }
    }
    free(buf);
    free(rd);
    return NULL;
}

START_TEST(test_threads)
{
    vmio_file *f = open_ok("exp/threads.img", VMIO_O_CREATE, (uint64_t)NTHREADS * REGION);
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .f = f, .id = i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d: %s", i, w[i].msg);
    vmio_close(f);
    uint8_t *r = malloc(REGION);
    for (int i = 0; i < NTHREADS; i++) {
        disk_read("exp/threads.img", r, REGION, (off_t)i * REGION);
        ck_assert_int_eq(test_check(r, REGION, (uint64_t)i * REGION, (uint32_t)(i * 10 + 2)),
                         -1);
    }
    free(r);
}
END_TEST

/* ---- refusals ----------------------------------------------------------- */

START_TEST(test_wrong_secret)
{
    char other[400];
    vmio_file *f = NULL;
    snprintf(other, sizeof other, "%s/other-secret", dir);
    write_file(other, "not-the-secret", 14, 0600);
    ck_assert_vmio_err_msg(open_opts("exp/x.img", VMIO_O_CREATE, 4096, 0, other, &f), EACCES,
                           "vmio_open", "authentication");
    ck_assert_ptr_null(f);
    /* Nothing was created by the refused client. */
    char p[400];
    snprintf(p, sizeof p, "%s/x.img", expdir);
    ck_assert_int_eq(access(p, F_OK), -1);

    /* A secret file others can read is refused before connecting. */
    write_file(other, SECRET, strlen(SECRET), 0644);
    ck_assert_vmio_err_msg(open_opts("exp/x.img", 0, 0, 0, other, &f), EPERM, "vmio_open",
                           "secret");
    snprintf(p, sizeof p, "%s/no-such-secret", dir);
    ck_assert_vmio_err(open_opts("exp/x.img", 0, 0, 0, p, &f), ENOENT, "vmio_open");
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_unknown_export)
{
    vmio_file *f = NULL;
    ck_assert_vmio_err_msg(open_opts("nosuch/x.img", VMIO_O_CREATE, 4096, 0, NULL, &f), ENOENT,
                           "vmio_open", "unknown export");
    ck_assert_ptr_null(f);
    /* An export name is matched whole. */
    ck_assert_vmio_err(open_opts("ex/x.img", 0, 0, 0, NULL, &f), ENOENT, "vmio_open");
    ck_assert_vmio_err(open_opts("expx/x.img", 0, 0, 0, NULL, &f), ENOENT, "vmio_open");
}
END_TEST

START_TEST(test_escape)
{
    char outside[400], p[400];
    vmio_file *f = NULL;
    snprintf(outside, sizeof outside, "%s/outside.img", dir);
    write_file(outside, "precious", 8, 0644);

    ck_assert_vmio_err_msg(open_opts("exp/../outside.img", VMIO_O_RDWR, 0, 0, NULL, &f),
                           EACCES, "vmio_open", "escape");
    ck_assert_vmio_err_msg(open_opts("exp/sub/../../outside.img", 0, 0, 0, NULL, &f), EACCES,
                           "vmio_open", "escape");
    ck_assert_vmio_err_msg(open_opts("exp/../created.img", VMIO_O_CREATE, 4096, 0, NULL, &f),
                           EACCES, "vmio_open", "escape");
    snprintf(p, sizeof p, "%s/created.img", dir);
    ck_assert_int_eq(access(p, F_OK), -1);

    /* Absolute symlink to a file outside. */
    snprintf(p, sizeof p, "%s/abs-link", expdir);
    ck_assert_int_eq(symlink(outside, p), 0);
    ck_assert_vmio_err_msg(open_opts("exp/abs-link", VMIO_O_RDWR, 0, 0, NULL, &f), EACCES,
                           "vmio_open", "escape");
    ck_assert_vmio_err_msg(open_opts("exp/abs-link", 0, 0, 0, NULL, &f), EACCES, "vmio_open",
                           "escape");
    /* A relative one that climbs out, and a directory link that does. */
    snprintf(p, sizeof p, "%s/rel-link", expdir);
    ck_assert_int_eq(symlink("../outside.img", p), 0);
    ck_assert_vmio_err_msg(open_opts("exp/rel-link", 0, 0, 0, NULL, &f), EACCES, "vmio_open",
                           "escape");
    snprintf(p, sizeof p, "%s/dir-link", expdir);
    ck_assert_int_eq(symlink(dir, p), 0);
    ck_assert_vmio_err_msg(open_opts("exp/dir-link/outside.img", 0, 0, 0, NULL, &f), EACCES,
                           "vmio_open", "escape");
    /* CREATE through a link that points outside creates nothing there. */
    snprintf(p, sizeof p, "%s/dangling", expdir);
    char target[400];
    snprintf(target, sizeof target, "%s/made-through-link.img", dir);
    ck_assert_int_eq(symlink(target, p), 0);
    ck_assert_int_lt(open_opts("exp/dangling", VMIO_O_CREATE, 4096, 0, NULL, &f), 0);
    ck_assert_int_eq(access(target, F_OK), -1);
    ck_assert_ptr_null(f);

    /* The file outside is untouched. */
    char buf[8];
    disk_read("outside.img", buf, 8, 0);
    ck_assert_mem_eq(buf, "precious", 8);

    /* A symlink that stays inside the export is fine. */
    f = open_ok("exp/inside.img", VMIO_O_CREATE, 4096);
    vmio_close(f);
    snprintf(p, sizeof p, "%s/in-link", expdir);
    ck_assert_int_eq(symlink("inside.img", p), 0);
    f = open_ok("exp/in-link", 0, 0);
    ck_assert(size_of(f) == 4096);
    vmio_close(f);
}
END_TEST

START_TEST(test_readonly_export)
{
    char p[400];
    snprintf(p, sizeof p, "%s/base.img", rodir);
    uint8_t data[8192];
    test_fill(data, sizeof data, 0, 36);
    write_file(p, data, sizeof data, 0644);
    vmio_file *f = NULL;

    ck_assert_vmio_err_msg(open_opts("ro/base.img", VMIO_O_RDWR, 0, 0, NULL, &f), EROFS,
                           "vmio_open", "read-only");
    ck_assert_vmio_err(open_opts("ro/new.img", VMIO_O_CREATE, 4096, 0, NULL, &f), EROFS,
                       "vmio_open");
    ck_assert_vmio_err(open_opts("ro/base.img", VMIO_O_TRUNC, 0, 0, NULL, &f), EROFS,
                       "vmio_open");
    ck_assert_ptr_null(f);
    snprintf(p, sizeof p, "%s/new.img", rodir);
    ck_assert_int_eq(access(p, F_OK), -1);

    f = open_ok("ro/base.img", VMIO_O_RDONLY, 0);
    unsigned caps = 0;
    ck_assert_vmio_ok(vmio_get_caps(f, &caps));
    ck_assert_uint_eq(caps & (VMIO_CAP_WRITE | VMIO_CAP_DISCARD | VMIO_CAP_WRITE_ZEROES), 0);
    uint8_t r[8192];
    ck_assert_vmio_ok(vmio_pread(f, r, sizeof r, 0));
    ck_assert_mem_eq(r, data, sizeof r);
    ck_assert_vmio_err(vmio_pwrite(f, r, 1, 0, 0), EBADF, "vmio_pwrite");
    ck_assert_vmio_err(vmio_truncate(f, 0), EBADF, "vmio_truncate");
    ck_assert_vmio_ok(vmio_flush(f));
    vmio_close(f);
}
END_TEST

START_TEST(test_server_api_errors)
{
    vmio_server *s = NULL;
    ck_assert_vmio_err(vmio_server_new(NULL), EFAULT, "vmio_server_new");
    ck_assert_vmio_ok(vmio_server_new(&s));
    ck_assert_vmio_err(vmio_server_set_secret(NULL, "x", 1), EFAULT, "vmio_server_set_secret");
    ck_assert_vmio_err(vmio_server_set_secret(s, "", 0), EINVAL, "vmio_server_set_secret");
    ck_assert_vmio_err(vmio_server_add_export(s, NULL, expdir, 0), EFAULT,
                       "vmio_server_add_export");
    char p[400];
    snprintf(p, sizeof p, "%s/missing-dir", dir);
    ck_assert_vmio_err(vmio_server_add_export(s, "m", p, 0), ENOENT, "vmio_server_add_export");
    ck_assert_vmio_err(vmio_server_add_export(s, "f", secret_path, 0), ENOTDIR,
                       "vmio_server_add_export");
    ck_assert_vmio_err(vmio_server_add_export(s, "e", expdir, 0x100), EINVAL,
                       "vmio_server_add_export");
    ck_assert_vmio_ok(vmio_server_add_export(s, "e", expdir, 0));
    ck_assert_vmio_err(vmio_server_add_export(s, "e", rodir, 0), EEXIST,
                       "vmio_server_add_export");
    ck_assert_vmio_err(vmio_server_add_export(s, "a/b", expdir, 0), EINVAL,
                       "vmio_server_add_export");
    /* The running server's port is taken. */
    ck_assert_vmio_err(vmio_server_listen(s, "127.0.0.1", (uint16_t)port), EADDRINUSE,
                       "vmio_server_listen");
    /* A secret file readable by others is refused. */
    char sp[400];
    snprintf(sp, sizeof sp, "%s/open-secret", dir);
    write_file(sp, "abc", 3, 0644);
    ck_assert_vmio_err(vmio_server_set_secret_file(s, sp), EPERM,
                       "vmio_server_set_secret_file");
    ck_assert_vmio_ok(vmio_server_set_secret_file(s, secret_path));
    ck_assert_vmio_err(vmio_server_set_poll(NULL, 10), EFAULT, "vmio_server_set_poll");
    ck_assert_vmio_err(vmio_server_set_poll(s, 10001), EINVAL, "vmio_server_set_poll");
    ck_assert_vmio_ok(vmio_server_set_poll(s, 10000));
    ck_assert_vmio_ok(vmio_server_set_poll(s, 0));
    vmio_server_free(s);
    vmio_server_free(NULL);
}
END_TEST

/* ---- server going away ----------------------------------------------------- */

/* What the server logs about polling when a connection ends. */
static pthread_mutex_t poll_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char poll_log[512];

static void poll_log_cb(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    if (strstr(msg, "disconnected after")) {
        pthread_mutex_lock(&poll_log_lock);
        snprintf(poll_log, sizeof poll_log, "%s", msg);
        pthread_mutex_unlock(&poll_log_lock);
    }
}

/* One request at a time: with polling the server finds most of them by
 * polling (the window is 10 ms, far longer than a round trip even under
 * valgrind); without, it never polls. */
START_TEST(test_poll_counts)
{
    poll_log[0] = '\0';
    vmio_set_log(poll_log_cb, NULL, VMIO_LOG_INFO);
    vmio_file *f = open_ok("exp/poll.img", VMIO_O_CREATE, MiB);
    uint8_t b[4096];
    for (int i = 0; i < 200; i++)
        ck_assert_vmio_ok(vmio_pread(f, b, sizeof b, (uint64_t)(i % 256) * 4096));
    vmio_close(f);
    /* Stopping joins the connection's threads: the line is logged. */
    ck_assert_vmio_ok(vmio_server_stop(srv));
    vmio_server_free(srv);
    srv = NULL;
    vmio_set_log(NULL, NULL, 0);
    pthread_mutex_lock(&poll_log_lock);
    char line[512];
    snprintf(line, sizeof line, "%s", poll_log);
    pthread_mutex_unlock(&poll_log_lock);
    ck_assert_msg(strstr(line, "disconnected after") != NULL, "no disconnect line");
    const char *q = strstr(line, "next request found ");
    if (server_poll_us == 0) {
        ck_assert_msg(q == NULL, "polled although polling is off: %s", line);
    } else {
        ck_assert_msg(q != NULL, "no polling figures: %s", line);
        unsigned long hits = strtoul(q + strlen("next request found "), NULL, 10);
        ck_assert_msg(hits > 0, "never found a request by polling: %s", line);
    }
}
END_TEST

START_TEST(test_server_stopped)
{
    vmio_file *f = NULL;
    ck_assert_vmio_ok(open_opts("exp/stop.img", VMIO_O_CREATE, MiB, 700, NULL, &f));
    uint8_t b[4096];
    test_fill(b, sizeof b, 0, 37);
    ck_assert_vmio_ok(vmio_pwrite(f, b, sizeof b, 0, 0));

    ck_assert_vmio_ok(vmio_server_stop(srv));
    vmio_server_free(srv);
    srv = NULL;

    double t0 = test_now();
    int r = vmio_pread(f, b, sizeof b, 0);
    double took = test_now() - t0;
    ck_assert_msg(r < 0, "read succeeded with the server gone");
    ck_assert_int_eq(vmio_errno(), -r);
    ck_assert_msg(strncmp(vmio_errmsg(), "vmio_pread: ", 12) == 0, "message '%s'",
                  vmio_errmsg());
    ck_assert_msg(strstr(vmio_errmsg(), "connect") != NULL, "unclear message '%s'",
                  vmio_errmsg());
    /* Not before the reconnect timeout has had a chance, not much after. */
    ck_assert_msg(took < 10, "took %.1f s", took);

    /* Later requests fail too, promptly, async ones through the callback. */
    t0 = test_now();
    r = vmio_pwrite(f, b, sizeof b, 0, 0);
    ck_assert_int_lt(r, 0);
    ck_assert_int_eq(vmio_errno(), -r);
    ck_assert(strncmp(vmio_errmsg(), "vmio_pwrite: ", 13) == 0);
    struct done d = { 0 };
    r = vmio_aio_flush(f, cb, &d);
    if (r == 0) {
        double deadline = test_now() + 10;
        while (!d.calls && test_now() < deadline) {
            struct pollfd p = { .fd = vmio_aio_fd(f), .events = POLLIN };
            poll(&p, 1, 200);
            vmio_aio_run_completions(f);
        }
        ck_assert_int_eq(d.calls, 1);
        ck_assert_int_lt(d.result, 0);
        ck_assert_msg(strncmp(d.msg, "vmio_aio_flush: ", 16) == 0, "message '%s'", d.msg);
    } else {
        ck_assert_vmio_err(r, -r, "vmio_aio_flush");
    }
    ck_assert_msg(test_now() - t0 < 10, "later requests hang");
    /* Closing a handle whose server is gone does not hang. */
    t0 = test_now();
    vmio_close(f);
    ck_assert_msg(test_now() - t0 < 10, "close hangs");
}
END_TEST

START_TEST(test_server_stopped_timing)
{
    vmio_file *f = NULL;
    ck_assert_vmio_ok(open_opts("exp/stop2.img", VMIO_O_CREATE, MiB, 1500, NULL, &f));
    uint8_t b[512];
    ck_assert_vmio_ok(vmio_pread(f, b, sizeof b, 0));
    ck_assert_vmio_ok(vmio_server_stop(srv));
    vmio_server_free(srv);
    srv = NULL;
    /* A request right after the loss waits for the reconnect timeout. */
    double t0 = test_now();
    int r = vmio_pread(f, b, sizeof b, 0);
    double took = test_now() - t0;
    ck_assert_int_lt(r, 0);
    ck_assert_msg(took >= 1.0 && took < 10, "failed after %.2f s (timeout 1.5 s): %s", took,
                  vmio_errmsg());
    vmio_close(f);
}
END_TEST

/* Writes numbered blocks until told to stop; remembers what was
 * acknowledged. */
struct writer {
    vmio_file *f;
    int acked;
    int failed;
    int stop;
    char msg[256];
};

#define WBLK 4096u
#define WMAX 2048

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t b[WBLK];
    for (int i = 0; i < WMAX && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
        test_fill(b, WBLK, (uint64_t)i * WBLK, 38);
        int r = vmio_pwrite(w->f, b, WBLK, (uint64_t)i * WBLK, 0);
        if (r < 0) {
            w->failed = 1;
            snprintf(w->msg, sizeof w->msg, "block %d: %s", i, vmio_errmsg());
            break;
        }
        __atomic_store_n(&w->acked, i + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

START_TEST(test_server_restart)
{
    vmio_file *f = NULL;
    ck_assert_vmio_ok(open_opts("exp/restart.img", VMIO_O_CREATE, (uint64_t)WMAX * WBLK, 15000,
                                NULL, &f));
    struct writer w = { .f = f };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    /* Let some writes through, then restart the server under the writer. */
    double deadline = test_now() + 10;
    while (__atomic_load_n(&w.acked, __ATOMIC_ACQUIRE) < 50 && !w.failed &&
           test_now() < deadline)
        usleep(1000);
    int p = port;
    ck_assert_vmio_ok(vmio_server_stop(srv));
    vmio_server_free(srv);
    srv = NULL;
    int acked_at_stop = __atomic_load_n(&w.acked, __ATOMIC_ACQUIRE);
    usleep(300 * 1000);
    srv = start_server(p);
    /* Let the writer go on for a while against the new server. */
    deadline = test_now() + 15;
    while (__atomic_load_n(&w.acked, __ATOMIC_ACQUIRE) < acked_at_stop + 100 && !w.failed &&
           test_now() < deadline)
        usleep(1000);
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    ck_assert_msg(!w.failed, "writer failed across the restart: %s", w.msg);
    ck_assert_int_gt(w.acked, acked_at_stop);

    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert_msg(st.reconnects >= 1, "reconnects %llu", (unsigned long long)st.reconnects);
    ck_assert(st.writes == (uint64_t)w.acked);

    /* Every acknowledged block is on the server's disk and reads back. */
    size_t len = (size_t)w.acked * WBLK;
    uint8_t *r = malloc(len);
    ck_assert_vmio_ok(vmio_pread(f, r, len, 0));
    ck_assert_int_eq(test_check(r, len, 0, 38), -1);
    vmio_close(f);
    memset(r, 0, len);
    disk_read("exp/restart.img", r, len, 0);
    ck_assert_int_eq(test_check(r, len, 0, 38), -1);
    free(r);
}
END_TEST

/* The image shrinks behind the server's back between its range check and
 * a large READ's reply (sent by sendfile from the file): the server cannot
 * finish the reply, closes the connection, and the client's resend gets
 * the error; no byte of a short reply is taken for data. */
START_TEST(test_shrunk_under_read)
{
    vmio_file *f = open_ok("exp/shrink.img", VMIO_O_CREATE, 8 * MiB);
    uint8_t *b = malloc(MiB);
    test_fill(b, MiB, 0, 45);
    ck_assert_vmio_ok(vmio_pwrite(f, b, MiB, 4 * MiB, 0));
    char p[400];
    snprintf(p, sizeof p, "%s/shrink.img", expdir);
    ck_assert_int_eq(truncate(p, 4 * MiB + 4096), 0);
    memset(b, 0xee, MiB);
    int r = vmio_pread(f, b, MiB, 4 * MiB);
    ck_assert_msg(r == -EINVAL, "read over the shrunk end: %d (%s)", r, vmio_errmsg());
    ck_assert_msg(strstr(vmio_errmsg(), "past the end") || strstr(vmio_errmsg(), "beyond"),
                  "message '%s'", vmio_errmsg());
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert_uint_eq(st.reconnects, 1);
    /* What is still there reads fine. */
    ck_assert_vmio_ok(vmio_pread(f, b, 4096, 4 * MiB));
    ck_assert_int_eq(test_check(b, 4096, 0, 45), -1);
    vmio_close(f);
    free(b);
}
END_TEST

/* ---- the same-host data path ------------------------------------------ */

static void transport_of(vmio_file *f, char *out, size_t len)
{
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    snprintf(out, len, "%s", st.transport);
}

START_TEST(test_local_taken)
{
    vmio_file *f = open_ok("exp/local.img", VMIO_O_CREATE, 2 * MiB);
    char tr[200];
    transport_of(f, tr, sizeof tr);
    /* pidfd_getfd, or the /proc reopen where it is missing (valgrind
     * does not know the system call). */
    ck_assert_msg(strncmp(tr, "local (pidfd_getfd of pid ", 26) == 0 ||
                  strncmp(tr, "local (reopened through /proc/", 30) == 0, "transport '%s'", tr);
    uint8_t *w = malloc(MiB), *r = malloc(MiB);
    test_fill(w, MiB, 0, 41);
    ck_assert_vmio_ok(vmio_pwrite(f, w, MiB, 4096, 0));
    /* Nothing goes through the server any more: stopping it changes
     * nothing for this handle. */
    ck_assert_vmio_ok(vmio_server_stop(srv));
    vmio_server_free(srv);
    srv = NULL;
    ck_assert_vmio_ok(vmio_pread(f, r, MiB, 4096));
    ck_assert_int_eq(test_check(r, MiB, 0, 41), -1);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 8192, MiB + 4096, VMIO_REQ_FUA));
    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_vmio_ok(vmio_truncate(f, 3 * MiB));
    ck_assert(size_of(f) == 3 * MiB);
    ck_assert_int_eq(vmio_close(f), 0);
    ck_assert_int_eq(disk_size("exp/local.img"), 3 * MiB);
    memset(r, 0, MiB);
    disk_read("exp/local.img", r, MiB, 4096);
    ck_assert_int_eq(test_check(r, MiB, 0, 41), -1);
    disk_read("exp/local.img", r, 8192, MiB + 4096);
    ck_assert_int_eq(test_check(r, 8192, 0, 41), -1);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_local_coherent)
{
    /* One handle through the server, one local, on the same image: each
     * sees what the other wrote (one page cache). */
    vmio_file *net = open_ok("exp/coh.img?local=off", VMIO_O_CREATE, MiB);
    vmio_file *loc = open_ok("exp/coh.img?local=on", VMIO_O_RDWR, 0);
    uint8_t w[65536], r[65536];
    test_fill(w, sizeof w, 0, 42);
    ck_assert_vmio_ok(vmio_pwrite(net, w, sizeof w, 0, 0));
    ck_assert_vmio_ok(vmio_pread(loc, r, sizeof r, 0));
    ck_assert_mem_eq(r, w, sizeof r);
    test_fill(w, sizeof w, 0, 43);
    ck_assert_vmio_ok(vmio_pwrite(loc, w, sizeof w, 65536, 0));
    ck_assert_vmio_ok(vmio_pread(net, r, sizeof r, 65536));
    ck_assert_mem_eq(r, w, sizeof r);
    vmio_close(net);
    vmio_close(loc);
}
END_TEST

START_TEST(test_local_refused)
{
    char p[400];
    snprintf(p, sizeof p, "%s/nl.img", expdir);
    uint8_t data[4096];
    test_fill(data, sizeof data, 0, 44);
    write_file(p, data, sizeof data, 0644);
    vmio_file *f = NULL;
    /* The export refuses it: on fails, auto goes through the server. */
    ck_assert_vmio_err_msg(open_opts("nl/nl.img?local=on", 0, 0, 0, NULL, &f), ENOTSUP,
                           "vmio_open", "export 'nl' has no local data path");
    ck_assert_ptr_null(f);
    f = open_ok("nl/nl.img?local=auto", 0, 0);
    char tr[200];
    transport_of(f, tr, sizeof tr);
    ck_assert_msg(strncmp(tr, "tcp", 3) == 0 && strstr(tr, "no local path") &&
                  strstr(tr, "no local data path"), "transport '%s'", tr);
    uint8_t r[4096];
    ck_assert_vmio_ok(vmio_pread(f, r, sizeof r, 0));
    ck_assert_mem_eq(r, data, sizeof r);
    vmio_close(f);
    /* Off: no attempt, no note. */
    f = open_ok("nl/nl.img?local=off", 0, 0);
    transport_of(f, tr, sizeof tr);
    ck_assert_msg(!strstr(tr, "local"), "transport '%s'", tr);
    vmio_close(f);
    ck_assert_vmio_err_msg(open_opts("exp/nl.img?local=maybe", 0, 0, 0, NULL, &f), EINVAL,
                           "vmio_open", "unknown local 'maybe'");
}
END_TEST

/* The server without polling or with the longest window: the polling
 * figures, and I/O and stop with that setting. */
static TCase *add_poll_case(Suite *s, const char *name, void (*setup_fn)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup_fn, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_poll_counts);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_aio_64);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_server_stopped);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *remote_suite(void)
{
    Suite *s = suite_create("remote");
    TCase *tc = tcase_create("io");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_large_io);
    tcase_add_test(tc, test_all_ops);
    tcase_add_test(tc, test_read_past_end);
    tcase_add_test(tc, test_aio_64);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wrong_secret);
    tcase_add_test(tc, test_unknown_export);
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_readonly_export);
    tcase_add_test(tc, test_server_api_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_server_stopped);
    tcase_add_test(tc, test_server_stopped_timing);
    tcase_add_test(tc, test_server_restart);
    tcase_add_test(tc, test_shrunk_under_read);
    suite_add_tcase(s, tc);
    add_poll_case(s, "nopoll", setup_nopoll);
    tc = add_poll_case(s, "longpoll", setup_longpoll);
    tcase_add_test(tc, test_server_restart);

    /* The same I/O, with the data path taken over by the client. */
    tc = tcase_create("local");
    tcase_add_checked_fixture(tc, setup_local, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_large_io);
    tcase_add_test(tc, test_all_ops);
    tcase_add_test(tc, test_read_past_end);
    tcase_add_test(tc, test_aio_64);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_readonly_export);
    tcase_add_test(tc, test_local_taken);
    tcase_add_test(tc, test_local_coherent);
    tcase_add_test(tc, test_local_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(remote_suite());
}
