/* vmio-bench: benchmarks of libvmio.
 *
 *   vmio-bench storage [OPTIONS] URI
 *   vmio-bench pingpong [OPTIONS]      (vmio-bench-pingpong.c)
 *
 * The storage mode keeps --qd requests of --bs bytes in flight on one image
 * through the asynchronous API (poll on vmio_aio_fd(), then
 * vmio_aio_run_completions()), records the latency of every request and
 * prints throughput, IOPS and latency percentiles. Built with libnbd, the
 * same loop drives nbd:// and nbd+unix:// URIs through libnbd's
 * asynchronous API, so that NBD servers and vmiod are measured by the very
 * same harness: one submit function and one completion hook per target,
 * everything else (offsets, timing, statistics) shared.
 *
 * The first word is the mode so that later benchmarks (migrate) can be
 * added beside storage and pingpong. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <vmio/storage.h>

#include "cli-util.h"
#include "vmio-bench-pingpong.h"

#ifdef VMIO_BENCH_HAVE_LIBNBD
#include <libnbd.h>
#endif

#define PROG "vmio-bench"

enum { EXIT_BENCH_OK = 0, EXIT_BENCH_FAILED = 1, EXIT_USAGE = 2 };

#define MAX_QD 4096u
#define MAX_BS (64u << 20)
#define FILL_BS (1u << 20)

/* ---- helpers ---------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64*: fast, good enough to scatter offsets and fill buffers. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(void *buf, size_t n, uint64_t *rng)
{
    unsigned char *p = buf;
    while (n >= 8) {
        uint64_t v = rng_next(rng) | 1;   /* never an all-zero word */
        memcpy(p, &v, 8);
        p += 8;
        n -= 8;
    }
    while (n--)
        *p++ = (unsigned char)(rng_next(rng) | 1);
}

#define usage_error(...) cli_usage_error(PROG, __VA_ARGS__)

#define fail(...) cli_fail(PROG, EXIT_BENCH_FAILED, __VA_ARGS__)

/* ---- the engine ------------------------------------------------------- */

struct bench;

struct req {
    struct bench *b;
    void *buf;
    uint64_t off;
    uint64_t t_submit;
    int done;
};

/* What differs between libvmio and libnbd: everything else is shared. */
struct target_ops {
    const char *name;
    int (*submit)(struct bench *b, struct req *r);
    /* Fill in the fd and events to poll for. */
    void (*poll_setup)(struct bench *b, struct pollfd *pfd);
    /* Handle the poll result; completions are reported by bench_complete(). */
    int (*poll_handle)(struct bench *b, short revents);
    /* One blocking request on the caller's thread (--sync); 0 or -1 with
     * *msg set. */
    int (*sync_io)(struct bench *b, struct req *r, const char **msg);
};

struct bench {
    const struct target_ops *ops;
    const char *uri;
    void *handle;

    int write;
    int random;
    size_t bs;
    unsigned qd;
    int sync;                  /* dd-like: blocking calls, one at a time */
    uint64_t region;
    uint64_t max_ops;          /* 0 = until the deadline */
    uint64_t deadline_ns;      /* 0 = none */
    int record;                /* keep latencies */

    struct req *reqs;
    unsigned *done_list;
    unsigned ndone;
    unsigned in_flight;
    uint64_t rng;
    uint64_t seq_next;
    uint64_t submitted, completed;
    uint64_t t_start, t_end;

    uint64_t *lat;
    size_t nlat, lat_cap;

    int failed;
    char errmsg[1024];
};

static void bench_fail(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_fail(struct bench *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    b->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->errmsg, sizeof b->errmsg, fmt, ap);
    va_end(ap);
}

/* Called by the targets' completion hooks. Never submits: libnbd forbids
 * calling into the handle from its callbacks, so resubmission happens in
 * the main loop for both targets alike. */
static void bench_complete(struct req *r, int result, const char *msg)
{
    struct bench *b = r->b;
    uint64_t t = now_ns();
    b->in_flight--;
    if (result < 0) {
        bench_fail(b, "%s at offset %" PRIu64 " of '%s' failed: %s",
                   b->write ? "write" : "read", r->off, b->uri, msg);
    } else {
        b->completed++;
        b->t_end = t;
        if (b->record) {
            if (b->nlat == b->lat_cap) {
                size_t cap = b->lat_cap ? b->lat_cap * 2 : 65536;
                uint64_t *n = realloc(b->lat, cap * sizeof *n);
                if (!n) {
                    bench_fail(b, "out of memory for latencies");
                    return;
                }
                b->lat = n;
                b->lat_cap = cap;
            }
            b->lat[b->nlat++] = t - r->t_submit;
        }
    }
    b->done_list[b->ndone++] = (unsigned)(r - b->reqs);
}

static uint64_t next_offset(struct bench *b)
{
    uint64_t blocks = b->region / b->bs;
    if (b->random)
        return (rng_next(&b->rng) % blocks) * b->bs;
    uint64_t off = b->seq_next;
    b->seq_next += b->bs;
    if (b->seq_next + b->bs > blocks * b->bs)
        b->seq_next = 0;
    return off;
}

static int bench_submit(struct bench *b, struct req *r)
{
    r->b = b;
    r->off = next_offset(b);
    if (b->write) {
        /* Keep every written block distinct. */
        uint64_t tag = b->submitted ^ r->off;
        memcpy(r->buf, &tag, sizeof tag);
        ((unsigned char *)r->buf)[0] |= 1;
    }
    r->t_submit = now_ns();
    int ret = b->ops->submit(b, r);
    if (ret < 0)
        return ret;
    b->in_flight++;
    b->submitted++;
    return 0;
}

static int bench_more(struct bench *b)
{
    if (b->failed)
        return 0;
    if (b->max_ops && b->submitted >= b->max_ops)
        return 0;
    if (b->deadline_ns && now_ns() >= b->deadline_ns)
        return 0;
    return 1;
}

static int bench_run(struct bench *b, double runtime_s)
{
    b->ndone = 0;
    b->in_flight = 0;
    b->submitted = b->completed = 0;
    b->seq_next = 0;
    b->t_start = now_ns();
    b->t_end = b->t_start;
    b->deadline_ns = runtime_s > 0 ? b->t_start + (uint64_t)(runtime_s * 1e9) : 0;
    if (b->sync) {
        struct req *r = &b->reqs[0];
        while (bench_more(b)) {
            r->b = b;
            r->off = next_offset(b);
            if (b->write) {
                uint64_t tag = b->submitted ^ r->off;
                memcpy(r->buf, &tag, sizeof tag);
                ((unsigned char *)r->buf)[0] |= 1;
            }
            r->t_submit = now_ns();
            const char *msg = "";
            int ret = b->ops->sync_io(b, r, &msg);
            b->in_flight++;
            b->submitted++;
            bench_complete(r, ret, msg);
            b->ndone = 0;
        }
        return b->failed ? -1 : 0;
    }
    for (unsigned i = 0; i < b->qd && bench_more(b); i++) {
        if (bench_submit(b, &b->reqs[i]) < 0)
            break;
    }
    while (b->in_flight > 0) {
        struct pollfd pfd;
        b->ops->poll_setup(b, &pfd);
        int n = poll(&pfd, 1, 1000);
        if (n < 0 && errno != EINTR) {
            bench_fail(b, "poll: %s", strerror(errno));
            return -1;     /* requests may still reference buffers: caller exits */
        }
        if (b->ops->poll_handle(b, n > 0 ? pfd.revents : 0) < 0)
            return -1;
        unsigned nd = b->ndone;
        b->ndone = 0;
        for (unsigned i = 0; i < nd; i++) {
            if (!bench_more(b))
                break;
            if (bench_submit(b, &b->reqs[b->done_list[i]]) < 0)
                break;
        }
    }
    return b->failed ? -1 : 0;
}

/* ---- libvmio target --------------------------------------------------- */

static void vmio_target_cb(void *opaque, int result)
{
    bench_complete(opaque, result, result < 0 ? vmio_errmsg() : "");
}

static int vmio_target_submit(struct bench *b, struct req *r)
{
    struct iovec v = { r->buf, b->bs };
    int ret = b->write ? vmio_aio_pwritev(b->handle, &v, 1, r->off, 0, vmio_target_cb, r)
                       : vmio_aio_preadv(b->handle, &v, 1, r->off, vmio_target_cb, r);
    if (ret < 0)
        bench_fail(b, "cannot submit to '%s': %s", b->uri, vmio_errmsg());
    return ret;
}

static void vmio_target_poll_setup(struct bench *b, struct pollfd *pfd)
{
    pfd->fd = vmio_aio_fd(b->handle);
    pfd->events = POLLIN;
    pfd->revents = 0;
}

static int vmio_target_poll_handle(struct bench *b, short revents)
{
    /* Cheap when nothing is pending; also covers a poll timeout. */
    vmio_aio_run_completions(b->handle);
    return 0;
}

static int vmio_target_sync(struct bench *b, struct req *r, const char **msg)
{
    int ret = b->write ? vmio_pwrite(b->handle, r->buf, b->bs, r->off, 0)
                       : vmio_pread(b->handle, r->buf, b->bs, r->off);
    if (ret < 0)
        *msg = vmio_errmsg();
    return ret;
}

static const struct target_ops vmio_target = {
    .name = "vmio",
    .sync_io = vmio_target_sync,
    .submit = vmio_target_submit,
    .poll_setup = vmio_target_poll_setup,
    .poll_handle = vmio_target_poll_handle,
};

/* ---- libnbd target ---------------------------------------------------- */

#ifdef VMIO_BENCH_HAVE_LIBNBD
static int nbd_target_cb(void *user_data, int *error)
{
    struct req *r = user_data;
    char msg[64];
    if (*error)
        snprintf(msg, sizeof msg, "NBD error: %s", strerror(*error));
    bench_complete(r, *error ? -*error : 0, *error ? msg : "");
    return 1;   /* retire the command */
}

static int nbd_target_submit(struct bench *b, struct req *r)
{
    nbd_completion_callback cb = { .callback = nbd_target_cb, .user_data = r };
    int64_t c = b->write ? nbd_aio_pwrite(b->handle, r->buf, b->bs, r->off, cb, 0)
                         : nbd_aio_pread(b->handle, r->buf, b->bs, r->off, cb, 0);
    if (c < 0) {
        bench_fail(b, "cannot submit to '%s': %s", b->uri, nbd_get_error());
        return -EIO;
    }
    return 0;
}

static void nbd_target_poll_setup(struct bench *b, struct pollfd *pfd)
{
    unsigned dir = nbd_aio_get_direction(b->handle);
    pfd->fd = nbd_aio_get_fd(b->handle);
    pfd->events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                          ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
    pfd->revents = 0;
}

static int nbd_target_poll_handle(struct bench *b, short revents)
{
    int r = 0;
    if (revents & (POLLIN | POLLHUP | POLLERR))
        r = nbd_aio_notify_read(b->handle);
    else if (revents & POLLOUT)
        r = nbd_aio_notify_write(b->handle);
    if (r < 0) {
        bench_fail(b, "connection to '%s' failed: %s", b->uri, nbd_get_error());
        return -1;
    }
    return 0;
}

static int nbd_target_sync(struct bench *b, struct req *r, const char **msg)
{
    int ret = b->write ? nbd_pwrite(b->handle, r->buf, b->bs, r->off, 0)
                       : nbd_pread(b->handle, r->buf, b->bs, r->off, 0);
    if (ret < 0)
        *msg = nbd_get_error();
    return ret < 0 ? -1 : 0;
}

static const struct target_ops nbd_target = {
    .name = "nbd",
    .sync_io = nbd_target_sync,
    .submit = nbd_target_submit,
    .poll_setup = nbd_target_poll_setup,
    .poll_handle = nbd_target_poll_handle,
};
#endif

static int is_nbd_uri(const char *uri)
{
    return strncmp(uri, "nbd://", 6) == 0 || strncmp(uri, "nbds://", 7) == 0 ||
           strncmp(uri, "nbd+unix://", 11) == 0 || strncmp(uri, "nbds+unix://", 12) == 0 ||
           strncmp(uri, "nbd+vsock://", 12) == 0;
}

/* ---- storage mode ----------------------------------------------------- */

struct storage_opts {
    const char *uri;
    int write, random;
    const char *rw;
    uint64_t bs;
    unsigned qd;
    int sync;
    uint64_t size;
    double runtime;
    int runtime_given;
    uint64_t ops;
    int json;
    int fill;
    int no_fill;
    unsigned workers;
    uint64_t seed;
    int reg;
};

static void storage_usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " storage [OPTIONS] URI\n"
            "Measure I/O on one image: a path, file://, vmio://, gfarm://"
#ifdef VMIO_BENCH_HAVE_LIBNBD
            ", nbd:// or nbd+unix://"
#endif
            ".\n"
            "\n"
            "      --rw MODE        read, write, randread or randwrite (default randread)\n"
            "      --bs SIZE        request size (default 4k)\n"
            "      --qd N           requests in flight (default 32)\n"
            "      --sync           dd-like: blocking calls one at a time on the\n"
            "                       caller's thread (implies --qd 1)\n"
            "      --size SIZE      region of the image to use (default: the whole image);\n"
            "                       a missing image is created with this size and filled\n"
            "      --runtime SECS   measure for SECS seconds (default 10)\n"
            "      --ops N          stop after N requests\n"
            "      --fill           write random data over the region before measuring\n"
            "      --no-fill        do not fill a newly created image\n"
            "      --workers N      file://: threads serving the async API\n"
            "      --seed N         seed of the offset generator\n"
            "      --register       vmio_register_memory() the request buffers (over\n"
            "                       RDMA the server then moves data straight into them)\n"
            "      --json           print the result as JSON on stdout\n"
            "  -h, --help           show this help\n");
}

static void usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " MODE [OPTIONS] ...\n"
            "\n"
            "Modes:\n"
            "  storage URI    I/O benchmark of one image (see '" PROG " storage --help')\n");
    pingpong_usage_summary(fp);
    fprintf(fp,
            "\n"
            "  -h, --help     show this help\n"
            "  -V, --version  show the version\n"
            "libnbd targets: "
#ifdef VMIO_BENCH_HAVE_LIBNBD
            "built in\n"
#else
            "not built in\n"
#endif
            );
}

enum { OPT_RW = 256, OPT_BS, OPT_QD, OPT_SYNC, OPT_SIZE, OPT_RUNTIME, OPT_OPS, OPT_JSON, OPT_FILL,
       OPT_NO_FILL, OPT_WORKERS, OPT_SEED, OPT_REGISTER };

static int storage_parse(int argc, char **argv, struct storage_opts *o)
{
    static const struct option longopts[] = {
        { "rw", required_argument, NULL, OPT_RW },
        { "bs", required_argument, NULL, OPT_BS },
        { "qd", required_argument, NULL, OPT_QD },
        { "sync", no_argument, NULL, OPT_SYNC },
        { "size", required_argument, NULL, OPT_SIZE },
        { "runtime", required_argument, NULL, OPT_RUNTIME },
        { "ops", required_argument, NULL, OPT_OPS },
        { "json", no_argument, NULL, OPT_JSON },
        { "fill", no_argument, NULL, OPT_FILL },
        { "no-fill", no_argument, NULL, OPT_NO_FILL },
        { "workers", required_argument, NULL, OPT_WORKERS },
        { "seed", required_argument, NULL, OPT_SEED },
        { "register", no_argument, NULL, OPT_REGISTER },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->rw = "randread";
    o->random = 1;
    o->bs = 4096;
    o->qd = 32;
    o->runtime = 10;
    o->seed = 0x9E3779B97F4A7C15ULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v;
        char *end;
        switch (c) {
        case OPT_RW:
            if (strcmp(optarg, "read") == 0) {
                o->write = 0, o->random = 0;
            } else if (strcmp(optarg, "write") == 0) {
                o->write = 1, o->random = 0;
            } else if (strcmp(optarg, "randread") == 0) {
                o->write = 0, o->random = 1;
            } else if (strcmp(optarg, "randwrite") == 0) {
                o->write = 1, o->random = 1;
            } else {
                return usage_error("invalid --rw '%s' (read, write, randread, randwrite)",
                                   optarg);
            }
            o->rw = optarg;
            break;
        case OPT_BS:
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > MAX_BS)
                return usage_error("invalid --bs '%s' (1 to 64M)", optarg);
            o->bs = v;
            break;
        case OPT_REGISTER:
            o->reg = 1;
            break;
        case OPT_SYNC:
            o->sync = 1;
            o->qd = 1;
            break;
        case OPT_QD:
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > MAX_QD)
                return usage_error("invalid --qd '%s' (1 to %u)", optarg, MAX_QD);
            o->qd = (unsigned)v;
            break;
        case OPT_SIZE:
            if (cli_parse_size(optarg, &v) < 0 || v == 0)
                return usage_error("invalid --size '%s'", optarg);
            o->size = v;
            break;
        case OPT_RUNTIME:
            errno = 0;
            o->runtime = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->runtime > 0) || o->runtime > 1e6)
                return usage_error("invalid --runtime '%s'", optarg);
            o->runtime_given = 1;
            break;
        case OPT_OPS:
            if (cli_parse_size(optarg, &v) < 0 || v == 0)
                return usage_error("invalid --ops '%s'", optarg);
            o->ops = v;
            break;
        case OPT_JSON: o->json = 1; break;
        case OPT_FILL: o->fill = 1; break;
        case OPT_NO_FILL: o->no_fill = 1; break;
        case OPT_WORKERS:
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > 64)
                return usage_error("invalid --workers '%s' (1 to 64)", optarg);
            o->workers = (unsigned)v;
            break;
        case OPT_SEED:
            if (cli_parse_size(optarg, &v) < 0)
                return usage_error("invalid --seed '%s'", optarg);
            o->seed = v ? v : 1;
            break;
        case 'h':
            storage_usage(stdout);
            exit(EXIT_BENCH_OK);
        case '?':
            if (optopt)
                return usage_error("invalid option '-%c'", optopt);
            return usage_error("invalid option '%s'", argv[optind - 1]);
        default:
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_error("storage: expected one URI, got %d arguments", argc - optind);
    if (o->fill && o->no_fill)
        return usage_error("--fill and --no-fill exclude each other");
    o->uri = argv[optind];
    if (o->ops && !o->runtime_given)
        o->runtime = 0;
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted nanoseconds, in microseconds. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
    return (double)cli_percentile(v, n, p) / 1000.0;
}

/* Open a libvmio image for the benchmark; creates it when missing and a
 * size is known. *created says so. */
static int open_vmio(const struct storage_opts *o, int need_write, vmio_file **f, int *created)
{
    struct vmio_open_options opts;
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.workers = o->workers;
    *created = 0;
    int r = vmio_open_ex(o->uri, need_write ? VMIO_O_RDWR : VMIO_O_RDONLY, &opts, f);
    if (r != -ENOENT || o->size == 0)
        return r;
    opts.create_size = o->size;
    r = vmio_open_ex(o->uri, VMIO_O_CREATE | VMIO_O_EXCL, &opts, f);
    if (r == 0)
        *created = 1;
    return r;
}

static int storage_main(int argc, char **argv)
{
    struct storage_opts o;
    int r = storage_parse(argc, argv, &o);
    if (r >= 0)
        return r;

    struct bench b;
    memset(&b, 0, sizeof b);
    b.uri = o.uri;
    b.write = o.write;
    b.random = o.random;
    b.bs = (size_t)o.bs;
    b.qd = o.sync ? 1 : o.qd;
    b.sync = o.sync;
    b.rng = o.seed;

    uint64_t image_size = 0;
    int created = 0;
    const char *backend;
    vmio_file *vf = NULL;
#ifdef VMIO_BENCH_HAVE_LIBNBD
    struct nbd_handle *nh = NULL;
#endif
    if (is_nbd_uri(o.uri)) {
#ifdef VMIO_BENCH_HAVE_LIBNBD
        nh = nbd_create();
        if (!nh)
            return fail("nbd_create: %s", nbd_get_error());
        if (nbd_connect_uri(nh, o.uri) < 0) {
            fail("cannot connect to '%s': %s", o.uri, nbd_get_error());
            nbd_close(nh);
            return EXIT_BENCH_FAILED;
        }
        int64_t s = nbd_get_size(nh);
        if (s < 0) {
            fail("cannot get the size of '%s': %s", o.uri, nbd_get_error());
            nbd_close(nh);
            return EXIT_BENCH_FAILED;
        }
        if ((o.write || o.fill) && nbd_is_read_only(nh) == 1) {
            fail("'%s' is read-only", o.uri);
            nbd_close(nh);
            return EXIT_BENCH_FAILED;
        }
        image_size = (uint64_t)s;
        b.ops = &nbd_target;
        b.handle = nh;
        backend = "nbd";
#else
        return fail("'%s': this vmio-bench was built without libnbd", o.uri);
#endif
    } else {
        int need_write = o.write || o.fill;
        if (open_vmio(&o, need_write, &vf, &created) < 0)
            return fail("cannot open '%s': %s", o.uri, vmio_errmsg());
        if (vmio_get_size(vf, &image_size) < 0) {
            fail("cannot get the size of '%s': %s", o.uri, vmio_errmsg());
            vmio_close(vf);
            return EXIT_BENCH_FAILED;
        }
        if (o.fill && o.size > image_size && vmio_truncate(vf, o.size) == 0)
            image_size = o.size;
        b.ops = &vmio_target;
        b.handle = vf;
        backend = vmio_backend_name(vf);
    }

    int status = EXIT_BENCH_OK;
    b.region = o.size ? o.size : image_size;
    if (b.region > image_size) {
        status = fail("'%s' is smaller (%" PRIu64 " bytes) than --size (%" PRIu64
                      " bytes); use --fill to grow and fill it", o.uri, image_size, b.region);
        goto out;
    }
    if (b.region < b.bs) {
        status = fail("the region (%" PRIu64 " bytes) is smaller than --bs", b.region);
        goto out;
    }

    size_t bufsize = b.bs > FILL_BS ? b.bs : FILL_BS;
    b.reqs = calloc(b.qd, sizeof *b.reqs);
    b.done_list = calloc(b.qd, sizeof *b.done_list);
    if (!b.reqs || !b.done_list) {
        status = fail("out of memory");
        goto out;
    }
    uint64_t frng = o.seed ^ 0x5DEECE66DULL;
    for (unsigned i = 0; i < b.qd; i++) {
        b.reqs[i].b = &b;
        if (posix_memalign(&b.reqs[i].buf, 4096, bufsize) != 0) {
            b.reqs[i].buf = NULL;
            status = fail("out of memory for %u buffers of %zu bytes", b.qd, bufsize);
            goto out;
        }
        /* Reads overwrite it; writes send non-zero random data. */
        fill_random(b.reqs[i].buf, bufsize, &frng);
        if (o.reg && b.ops == &vmio_target &&
            vmio_register_memory(b.handle, b.reqs[i].buf, bufsize) < 0 && vmio_errno() != ENOTSUP) {
            status = fail("cannot register the buffers: %s", vmio_errmsg());
            goto out;
        }
    }

    if ((created && !o.no_fill) || o.fill) {
        /* Put data under the whole region so reads hit allocated blocks
         * and writes overwrite them. */
        struct bench fb = b;
        fb.write = 1;
        fb.random = 0;
        fb.bs = b.region >= FILL_BS ? FILL_BS : (size_t)b.region;
        fb.max_ops = b.region / fb.bs;
        fb.record = 0;
        int fr = bench_run(&fb, 0);
        uint64_t tail = b.region - fb.max_ops * fb.bs;
        if (fr < 0) {
            status = fail("cannot fill '%s': %s", o.uri, fb.errmsg);
            goto out;
        }
        if (tail) {
            /* Sub-megabyte remainder: write it synchronously. */
            int tr = 0;
            if (vf) {
                tr = vmio_pwrite(vf, b.reqs[0].buf, (size_t)tail, b.region - tail, 0);
                if (tr < 0)
                    status = fail("cannot fill '%s': %s", o.uri, vmio_errmsg());
            }
#ifdef VMIO_BENCH_HAVE_LIBNBD
            else if (nbd_pwrite(nh, b.reqs[0].buf, (size_t)tail, b.region - tail, 0) < 0) {
                tr = -1;
                status = fail("cannot fill '%s': %s", o.uri, nbd_get_error());
            }
#endif
            if (tr < 0)
                goto out;
        }
        /* Data on stable storage before measuring, like a prepared image. */
        if (vf && vmio_flush(vf) < 0) {
            status = fail("cannot flush '%s': %s", o.uri, vmio_errmsg());
            goto out;
        }
#ifdef VMIO_BENCH_HAVE_LIBNBD
        if (nh && nbd_can_flush(nh) == 1 && nbd_flush(nh, 0) < 0) {
            status = fail("cannot flush '%s': %s", o.uri, nbd_get_error());
            goto out;
        }
#endif
    }

    b.record = 1;
    b.max_ops = o.ops;
    double cpu0 = cpu_seconds();
    if (bench_run(&b, o.runtime) < 0) {
        status = fail("%s", b.errmsg);
        goto out;
    }
    double cpu = cpu_seconds() - cpu0;

    qsort(b.lat, b.nlat, sizeof *b.lat, cmp_u64);
    double secs = (double)(b.t_end - b.t_start) / 1e9;
    double bytes = (double)b.completed * (double)b.bs;
    double mbps = secs > 0 ? bytes / secs / 1e6 : 0;
    double iops = secs > 0 ? (double)b.completed / secs : 0;
    double mean = 0;
    for (size_t i = 0; i < b.nlat; i++)
        mean += (double)b.lat[i];
    mean = b.nlat ? mean / (double)b.nlat / 1000.0 : 0;
    double p50 = pct_us(b.lat, b.nlat, 50), p99 = pct_us(b.lat, b.nlat, 99);
    double p999 = pct_us(b.lat, b.nlat, 99.9);
    double lmin = b.nlat ? (double)b.lat[0] / 1000.0 : 0;
    double lmax = b.nlat ? (double)b.lat[b.nlat - 1] / 1000.0 : 0;

    if (o.json) {
        printf("{\"mode\": \"storage\", \"uri\": ");
        cli_json_string(stdout, o.uri);
        printf(", \"backend\": \"%s\", \"harness\": \"%s\", \"rw\": \"%s\", \"bs\": %zu"
               ", \"qd\": %u, \"region\": %" PRIu64 ", \"ops\": %" PRIu64
               ", \"bytes\": %.0f, \"seconds\": %.6f, \"mb_per_s\": %.2f, \"iops\": %.1f"
               ", \"lat_us\": {\"min\": %.1f, \"mean\": %.1f, \"p50\": %.1f, \"p99\": %.1f"
               ", \"p99_9\": %.1f, \"max\": %.1f}, \"client_cpu_s\": %.3f",
               backend, b.ops->name, o.rw, b.bs, b.qd, b.region, b.completed, bytes, secs,
               mbps, iops, lmin, mean, p50, p99, p999, lmax, cpu);
        struct vmio_file_stats st = { .struct_size = sizeof st };
        if (vf && vmio_get_stats(vf, &st) == 0 && st.transport[0]) {
            printf(", \"transport\": ");
            cli_json_string(stdout, st.transport);
        }
        printf("}\n");
    } else {
        printf("storage %s bs=%zu qd=%u region=%" PRIu64 " on %s (%s)\n", o.rw, b.bs, b.qd,
               b.region, o.uri, backend);
        printf("  %" PRIu64 " requests in %.2f s: %.1f MB/s, %.0f IOPS, client CPU %.2f s\n",
               b.completed, secs, mbps, iops, cpu);
        printf("  latency (us): min %.1f  mean %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
               lmin, mean, p50, p99, p999, lmax);
    }

out:
    /* Close first: closing waits for requests that still use the buffers. */
    if (vf && vmio_close(vf) < 0 && status == EXIT_BENCH_OK)
        status = fail("cannot close '%s': %s", o.uri, vmio_errmsg());
#ifdef VMIO_BENCH_HAVE_LIBNBD
    if (nh) {
        nbd_shutdown(nh, 0);
        nbd_close(nh);
    }
#endif
    if (b.reqs)
        for (unsigned i = 0; i < b.qd; i++)
            free(b.reqs[i].buf);
    free(b.reqs);
    free(b.done_list);
    free(b.lat);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("missing MODE (storage, pingpong)");
    const char *mode = argv[1];
    if (strcmp(mode, "-h") == 0 || strcmp(mode, "--help") == 0) {
        usage(stdout);
        return EXIT_BENCH_OK;
    }
    if (strcmp(mode, "-V") == 0 || strcmp(mode, "--version") == 0) {
        printf(PROG " %s\n", vmio_version_string());
        return EXIT_BENCH_OK;
    }
    if (strcmp(mode, "storage") == 0)
        return storage_main(argc - 1, argv + 1);
    if (strcmp(mode, "pingpong") == 0)
        return pingpong_main(argc - 1, argv + 1);
    return usage_error("unknown mode '%s' (storage, pingpong)", mode);
}
