/* vmio-cp: copy an image between two storage URIs (local paths, file://,
 * vmio://) through the public asynchronous API of libvmio.
 *
 * The copy keeps --queue-depth requests in flight on both files, polls the
 * two completion eventfds and runs the completions on this thread. It is
 * sparse aware: holes reported by vmio_block_status() are never read, and
 * chunks that read back as zeroes are not written as data (skipped when the
 * destination is known to read as zeroes, else zeroed with write_zeroes).
 * --verify reads both images again, one thread per image, and compares
 * their SHA-256 digests.
 *
 * Only the public headers are used: this is a client like any other. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include <vmio/storage.h>

#include "cli-util.h"

#define PROG "vmio-cp"

enum {
    EXIT_COPY_OK = 0,
    EXIT_COPY_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_VERIFY_MISMATCH = 3
};

#define MIN_REQUEST (4u << 10)
#define MAX_REQUEST (64u << 20)
#define MAX_QUEUE_DEPTH 1024u
/* Data written between two background flushes of the destination. */
#define FLUSH_EVERY (64ull << 20)
/* Largest single write_zeroes request for a hole. */
#define MAX_ZERO_REQUEST (1ull << 30)
/* Bytes per vmio_copy_range() call (progress and background flushes run
 * between calls). */
#define OFFLOAD_CHUNK (64ull << 20)
#define VMIO_CP_MIN(a, b) ((a) < (b) ? (a) : (b))

struct options {
    const char *src;
    const char *dst;
    unsigned queue_depth;
    size_t request_size;
    int target_is_zero;
    int no_resize;
    int offload;                /* 1 --offload, -1 --no-offload, 0 auto */
    int progress;          /* -1: when stderr is a terminal */
    int json;
    int verify;
    int quiet;
};

/* ---- small helpers ---------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human_size(char *buf, size_t n, double bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    while (bytes >= 1024.0 && u + 1 < sizeof unit / sizeof unit[0]) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

/* True if the n bytes at p are all zero. The overlapping memcmp lets libc
 * compare at full speed once the first 16 bytes are known to be zero. */
static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t head = n < 16 ? n : 16;
    for (size_t i = 0; i < head; i++)
        if (b[i])
            return 0;
    return n <= 16 || memcmp(b, b + 16, n - 16) == 0;
}

static void *alloc_buffer(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n) != 0)
        return NULL;
    return p;
}

/* A local path (or file://localhost/...) for the same-file check; NULL for
 * remote URIs. */
static const char *local_path(const char *uri)
{
    if (!strstr(uri, "://"))
        return uri;
    if (strncmp(uri, "file:///", 8) == 0 && !strchr(uri, '?') && !strchr(uri, '%'))
        return uri + 7;
    return NULL;
}

/* ---- progress bar ----------------------------------------------------- */

struct progress {
    int enabled;
    double start;
    double last;
    int drawn;
};

static void progress_draw(struct progress *p, uint64_t done, uint64_t total, int final)
{
    if (!p->enabled)
        return;
    double t = now_s();
    if (!final && t - p->last < 0.1)
        return;
    p->last = t;
    double frac = total ? (double)done / (double)total : 1.0;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int fill = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    char a[32], b[32];
    human_size(a, sizeof a, (double)done);
    human_size(b, sizeof b, (double)total);
    double el = t - p->start;
    double rate = el > 0 ? (double)done / el / 1e6 : 0.0;
    fprintf(stderr, "\r%5.1f%% [%s] %s / %s  %.1f MB/s ", frac * 100.0, bar, a, b, rate);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
    p->drawn = 1;
}

/* ---- the copy --------------------------------------------------------- */

struct copier;

enum slot_state { SLOT_FREE, SLOT_READ, SLOT_WRITE, SLOT_ZERO };

struct slot {
    struct copier *c;
    void *buf;
    uint64_t off;
    size_t len;
    enum slot_state state;
};

struct copier {
    const struct options *o;
    vmio_file *src, *dst;
    uint64_t size;
    int dst_zero;               /* destination reads as zeroes */
    int can_zero;               /* destination has write_zeroes */
    int can_flush;              /* destination has flush */
    void *zero_buf;             /* request_size of zeroes, when !can_zero */

    uint64_t pos;               /* next byte to schedule */
    uint64_t ext_end;           /* the source extent known at pos */
    int ext_type;

    struct slot *slots;
    unsigned nslots, busy;
    unsigned *free_list;
    unsigned nfree;

    uint64_t bytes_read, bytes_copied, bytes_skipped, bytes_zeroed, bytes_done;
    uint64_t requests;

    /* Background flushes: start writeback of what was written while the
     * copy goes on, so the final flush has little left to do. */
    uint64_t unflushed;
    int flush_in_flight;
    uint64_t flush_mark;        /* c->pos when the running flush was sent */

    /* A local destination's written pages are dropped from the page cache
     * once flushed (as nbdcopy does), so that copying a big image neither
     * evicts everything else nor makes the kernel find fresh memory for
     * every page. -1 for remote destinations. */
    int cache_fd;
    uint64_t dropped_upto;

    /* Both ends local: data extents go through vmio_copy_range()
     * (copy_file_range), not through our buffers. */
    int offload;

    int failed;
    char errmsg[1024];
    struct progress prog;
};

static void copy_fail(struct copier *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void copy_fail(struct copier *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}

static void slot_release(struct slot *s)
{
    struct copier *c = s->c;
    s->state = SLOT_FREE;
    c->free_list[c->nfree++] = (unsigned)(s - c->slots);
    c->busy--;
}

static void write_done(void *opaque, int result);

static void flush_done(void *opaque, int result)
{
    struct copier *c = opaque;
    c->flush_in_flight = 0;
    if (result < 0) {
        copy_fail(c, "cannot flush destination '%s': %s", c->o->dst, vmio_errmsg());
        return;
    }
    if (c->cache_fd >= 0) {
        /* Writes that were still in flight when the flush was sent may be
         * dirty yet: DONTNEED skips those pages, the next round retries
         * them (the window below). */
        uint64_t window = (uint64_t)c->nslots * c->o->request_size;
        uint64_t from = c->dropped_upto > window ? c->dropped_upto - window : 0;
        if (c->flush_mark > from)
            posix_fadvise(c->cache_fd, (off_t)from, (off_t)(c->flush_mark - from),
                          POSIX_FADV_DONTNEED);
        c->dropped_upto = c->flush_mark;
    }
}

static void maybe_flush(struct copier *c)
{
    if (!c->can_flush || c->flush_in_flight || c->failed || c->unflushed < FLUSH_EVERY)
        return;
    c->unflushed = 0;
    c->flush_mark = c->pos;
    if (vmio_aio_flush(c->dst, flush_done, c) < 0) {
        copy_fail(c, "cannot flush destination '%s': %s", c->o->dst, vmio_errmsg());
        return;
    }
    c->flush_in_flight = 1;
}

/* Zero [s->off, s->off + s->len) in the destination. */
static void submit_zero(struct slot *s)
{
    struct copier *c = s->c;
    int r;
    s->state = SLOT_ZERO;
    if (c->can_zero) {
        r = vmio_aio_write_zeroes(c->dst, s->off, s->len, VMIO_REQ_MAY_TRIM, write_done, s);
    } else {
        struct iovec v = { c->zero_buf, s->len };
        r = vmio_aio_pwritev(c->dst, &v, 1, s->off, 0, write_done, s);
    }
    c->requests++;
    if (r < 0) {
        copy_fail(c, "cannot write to destination '%s' at offset %" PRIu64 ": %s", c->o->dst,
                  s->off, vmio_errmsg());
        slot_release(s);
    }
}

static void write_done(void *opaque, int result)
{
    struct slot *s = opaque;
    struct copier *c = s->c;
    if (result < 0) {
        copy_fail(c, "cannot write to destination '%s' at offset %" PRIu64 ": %s", c->o->dst,
                  s->off, vmio_errmsg());
    } else {
        if (s->state == SLOT_ZERO) {
            c->bytes_zeroed += s->len;
        } else {
            c->bytes_copied += s->len;
            c->unflushed += s->len;
        }
        c->bytes_done += s->len;
    }
    slot_release(s);
    maybe_flush(c);
}

static void read_done(void *opaque, int result)
{
    struct slot *s = opaque;
    struct copier *c = s->c;
    if (result < 0) {
        copy_fail(c, "cannot read source '%s' at offset %" PRIu64 ": %s", c->o->src, s->off,
                  vmio_errmsg());
        slot_release(s);
        return;
    }
    c->bytes_read += s->len;
    if (c->failed) {
        slot_release(s);
        return;
    }
    if (is_zero(s->buf, s->len)) {
        if (c->dst_zero) {
            c->bytes_skipped += s->len;
            c->bytes_done += s->len;
            slot_release(s);
        } else {
            submit_zero(s);
        }
        return;
    }
    s->state = SLOT_WRITE;
    struct iovec v = { s->buf, s->len };
    int r = vmio_aio_pwritev(c->dst, &v, 1, s->off, 0, write_done, s);
    c->requests++;
    if (r < 0) {
        copy_fail(c, "cannot write to destination '%s' at offset %" PRIu64 ": %s", c->o->dst,
                  s->off, vmio_errmsg());
        slot_release(s);
    }
}

/* Schedule work until the queue is full or the source is exhausted. */
/* copy_file_range only beats our own pipeline where the file system
 * shares extents (reflinks) or the copy happens on a server; on ext4 and
 * tmpfs it moves data through the page cache one call at a time, slower
 * than reads and writes in flight in parallel (measured: bench/copy.sh). */
static int offload_pays(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case 0x58465342UL:   /* XFS */
    case 0x9123683EUL:   /* Btrfs */
    case 0x6969UL:       /* NFS: server-side copy */
        return 1;
    default:
        return 0;
    }
}

static void copy_fill(struct copier *c)
{
    uint64_t rs = c->o->request_size;
    while (!c->failed && c->pos < c->size) {
        if (c->pos >= c->ext_end) {
            uint64_t len;
            int type;
            int r = vmio_block_status(c->src, c->pos, c->size - c->pos, &len, &type);
            if (r < 0) {
                copy_fail(c, "cannot query extents of source '%s' at offset %" PRIu64 ": %s",
                          c->o->src, c->pos, vmio_errmsg());
                return;
            }
            c->ext_end = c->pos + len;
            c->ext_type = type;
        }
        if (c->ext_type == VMIO_EXTENT_HOLE && c->dst_zero) {
            uint64_t n = c->ext_end - c->pos;
            c->bytes_skipped += n;
            c->bytes_done += n;
            c->pos = c->ext_end;
            continue;
        }
        if (c->offload && c->ext_type == VMIO_EXTENT_DATA) {
            uint64_t n = VMIO_CP_MIN(c->ext_end - c->pos, OFFLOAD_CHUNK);
            int r = vmio_copy_range(c->src, c->pos, c->dst, c->pos, n, 0);
            if (r == -ENOTSUP) {
                c->offload = 0;          /* copy through our buffers instead */
                continue;
            }
            if (r < 0) {
                copy_fail(c, "cannot copy '%s' to '%s' at offset %" PRIu64 ": %s", c->o->src,
                          c->o->dst, c->pos, vmio_errmsg());
                return;
            }
            c->requests++;
            c->bytes_read += n;
            c->bytes_copied += n;
            c->bytes_done += n;
            c->unflushed += n;
            c->pos += n;
            maybe_flush(c);
            vmio_aio_run_completions(c->dst);       /* background flushes */
            progress_draw(&c->prog, c->bytes_done, c->size, 0);
            continue;
        }
        if (c->nfree == 0)
            return;
        uint64_t len;
        if (c->ext_type == VMIO_EXTENT_HOLE) {
            uint64_t max = c->can_zero ? MAX_ZERO_REQUEST : rs;
            len = c->ext_end - c->pos;
            if (len > max)
                len = max;
        } else {
            /* Keep data requests aligned to the request size so that a
             * hole boundary does not shift every later request. */
            uint64_t next = (c->pos / rs + 1) * rs;
            len = (next < c->ext_end ? next : c->ext_end) - c->pos;
        }
        struct slot *s = &c->slots[c->free_list[--c->nfree]];
        c->busy++;
        s->off = c->pos;
        s->len = (size_t)len;
        c->pos += len;
        if (c->ext_type == VMIO_EXTENT_HOLE) {
            submit_zero(s);
            continue;
        }
        s->state = SLOT_READ;
        struct iovec v = { s->buf, s->len };
        int r = vmio_aio_preadv(c->src, &v, 1, s->off, read_done, s);
        c->requests++;
        if (r < 0) {
            copy_fail(c, "cannot read source '%s' at offset %" PRIu64 ": %s", c->o->src,
                      s->off, vmio_errmsg());
            slot_release(s);
            return;
        }
    }
}

static int copy_run(struct copier *c)
{
    const struct options *o = c->o;
    c->nslots = o->queue_depth;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    c->free_list = calloc(c->nslots, sizeof *c->free_list);
    if (!c->slots || !c->free_list) {
        copy_fail(c, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < c->nslots; i++) {
        c->slots[i].c = c;
        c->slots[i].buf = alloc_buffer(o->request_size);
        if (!c->slots[i].buf) {
            copy_fail(c, "out of memory");
            return -ENOMEM;
        }
        c->free_list[c->nfree++] = c->nslots - 1 - i;
    }
    if (!c->can_zero && !c->dst_zero) {
        c->zero_buf = alloc_buffer(o->request_size);
        if (!c->zero_buf) {
            copy_fail(c, "out of memory");
            return -ENOMEM;
        }
        memset(c->zero_buf, 0, o->request_size);
    }

    struct pollfd pfd[2] = {
        { .fd = vmio_aio_fd(c->src), .events = POLLIN },
        { .fd = vmio_aio_fd(c->dst), .events = POLLIN },
    };
    for (;;) {
        copy_fill(c);
        if (c->busy == 0 && !c->flush_in_flight)
            break;
        int n = poll(pfd, 2, c->prog.enabled ? 100 : -1);
        if (n < 0 && errno != EINTR) {
            copy_fail(c, "poll: %s", strerror(errno));
            /* Keep draining: buffers must outlive their requests. */
        }
        vmio_aio_run_completions(c->src);
        vmio_aio_run_completions(c->dst);
        progress_draw(&c->prog, c->bytes_done, c->size, 0);
    }
    return c->failed ? -EIO : 0;
}

static void copier_free(struct copier *c)
{
    if (c->slots)
        for (unsigned i = 0; i < c->nslots; i++)
            free(c->slots[i].buf);
    free(c->slots);
    free(c->free_list);
    free(c->zero_buf);
}

/* ---- verification: SHA-256 of both sides, one thread per side --------- */

struct hasher {
    vmio_file *file;
    const char *uri;
    const char *role;           /* "source" / "destination" */
    uint64_t size;
    size_t rs;
    unsigned nslots;

    struct hslot {
        struct hasher *h;
        void *buf;
        uint64_t chunk;         /* chunk number held */
        int state;              /* 0 free, 1 reading, 2 ready */
        int zero;               /* chunk lies in a hole: not read */
    } *slots;
    void *zeroes;
    uint64_t nchunks, next_submit, next_hash;
    uint64_t ext_end;
    int ext_type;
    unsigned busy;

    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    int failed;
    char errmsg[1024];
};

static void hash_read_done(void *opaque, int result)
{
    struct hslot *s = opaque;
    struct hasher *h = s->h;
    h->busy--;
    if (result < 0 && !h->failed) {
        h->failed = 1;
        snprintf(h->errmsg, sizeof h->errmsg, "cannot read %s '%s' at offset %" PRIu64 ": %s",
                 h->role, h->uri, s->chunk * h->rs, vmio_errmsg());
    }
    s->state = 2;
}

static int hash_submit(struct hasher *h)
{
    while (!h->failed && h->next_submit < h->nchunks) {
        struct hslot *s = &h->slots[h->next_submit % h->nslots];
        if (s->state != 0)
            return 0;
        uint64_t off = h->next_submit * h->rs;
        uint64_t len = h->size - off < h->rs ? h->size - off : h->rs;
        if (off >= h->ext_end) {
            uint64_t l;
            int t;
            if (vmio_block_status(h->file, off, h->size - off, &l, &t) < 0) {
                h->failed = 1;
                snprintf(h->errmsg, sizeof h->errmsg,
                         "cannot query extents of %s '%s' at offset %" PRIu64 ": %s", h->role,
                         h->uri, off, vmio_errmsg());
                return -EIO;
            }
            h->ext_end = off + l;
            h->ext_type = t;
        }
        s->chunk = h->next_submit++;
        if (h->ext_type == VMIO_EXTENT_HOLE && off + len <= h->ext_end) {
            s->zero = 1;
            s->state = 2;
            continue;
        }
        s->zero = 0;
        s->state = 1;
        struct iovec v = { s->buf, (size_t)len };
        if (vmio_aio_preadv(h->file, &v, 1, off, hash_read_done, s) < 0) {
            h->failed = 1;
            snprintf(h->errmsg, sizeof h->errmsg, "cannot read %s '%s' at offset %" PRIu64 ": %s",
                     h->role, h->uri, off, vmio_errmsg());
            s->state = 0;
            return -EIO;
        }
        h->busy++;
    }
    return 0;
}

static void hash_consume(struct hasher *h)
{
    for (;;) {
        struct hslot *s = &h->slots[h->next_hash % h->nslots];
        if (h->next_hash >= h->next_submit || s->state != 2)
            return;
        uint64_t off = h->next_hash * h->rs;
        size_t len = (size_t)(h->size - off < h->rs ? h->size - off : h->rs);
        sha256_update(&h->ctx, len, s->zero ? h->zeroes : s->buf);
        s->state = 0;
        h->next_hash++;
    }
}

static void *hash_thread(void *arg)
{
    struct hasher *h = arg;
    sha256_init(&h->ctx);
    h->nchunks = (h->size + h->rs - 1) / h->rs;
    h->slots = calloc(h->nslots, sizeof *h->slots);
    h->zeroes = calloc(1, h->rs);
    if (!h->slots || !h->zeroes) {
        h->failed = 1;
        snprintf(h->errmsg, sizeof h->errmsg, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < h->nslots; i++) {
        h->slots[i].h = h;
        h->slots[i].buf = alloc_buffer(h->rs);
        if (!h->slots[i].buf) {
            h->failed = 1;
            snprintf(h->errmsg, sizeof h->errmsg, "out of memory");
            goto out;
        }
    }
    struct pollfd pfd = { .fd = vmio_aio_fd(h->file), .events = POLLIN };
    for (;;) {
        hash_submit(h);
        if (!h->failed)
            hash_consume(h);
        if (h->busy == 0 && (h->failed || h->next_hash >= h->nchunks))
            break;
        if (h->busy == 0)
            continue;
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            continue;
        vmio_aio_run_completions(h->file);
    }
    sha256_digest(&h->ctx, SHA256_DIGEST_SIZE, h->digest);
out:
    if (h->slots)
        for (unsigned i = 0; i < h->nslots; i++)
            free(h->slots[i].buf);
    free(h->slots);
    free(h->zeroes);
    return NULL;
}

static void hex(char *out, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

/* ---- command line ----------------------------------------------------- */

static void usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " [OPTIONS] SRC DST\n"
            "Copy an image between two storage URIs (paths, file://, vmio://).\n"
            "\n"
            "  -Q, --queue-depth N      requests in flight (default 16)\n"
            "  -r, --request-size SIZE  bytes per request, >= 4k (default 1M)\n"
            "      --target-is-zero     the destination already reads as zeroes\n"
            "      --no-resize          do not resize an existing destination\n"
            "      --progress           show a progress bar on stderr\n"
            "      --no-progress        never show a progress bar\n"
            "      --json               print a JSON summary on stdout\n"
            "      --verify             compare SHA-256 digests of both sides afterwards\n"
            "      --offload            between two local files, let the kernel copy\n"
            "                           (copy_file_range; default where it shares\n"
            "                           extents: XFS, Btrfs, NFS)\n"
            "      --no-offload         always copy through vmio-cp's buffers\n"
            "  -q, --quiet              no progress bar, no messages but errors\n"
            "  -h, --help               show this help\n"
            "  -V, --version            show the version\n"
            "\n"
            "Exit status: 0 success, 1 copy failed, 2 usage error, 3 verify mismatch.\n"
            "vmio:// URIs read their secret from ?secret-file=PATH or $VMIO_SECRET_FILE.\n");
}

#define usage_error(...) cli_usage_error(PROG, __VA_ARGS__)

enum {
    OPT_TARGET_IS_ZERO = 256,
    OPT_NO_RESIZE,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_JSON,
    OPT_VERIFY,
    OPT_NO_OFFLOAD,
    OPT_OFFLOAD
};

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "queue-depth", required_argument, NULL, 'Q' },
        { "request-size", required_argument, NULL, 'r' },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "no-resize", no_argument, NULL, OPT_NO_RESIZE },
        { "progress", no_argument, NULL, OPT_PROGRESS },
        { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
        { "json", no_argument, NULL, OPT_JSON },
        { "verify", no_argument, NULL, OPT_VERIFY },
        { "no-offload", no_argument, NULL, OPT_NO_OFFLOAD },
        { "offload", no_argument, NULL, OPT_OFFLOAD },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->queue_depth = 16;
    o->request_size = 1u << 20;
    o->progress = -1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+Q:r:qhV", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'Q':
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > MAX_QUEUE_DEPTH)
                return usage_error("invalid --queue-depth '%s' (1 to %u)", optarg,
                                   MAX_QUEUE_DEPTH);
            o->queue_depth = (unsigned)v;
            break;
        case 'r':
            if (cli_parse_size(optarg, &v) < 0 || v < MIN_REQUEST || v > MAX_REQUEST)
                return usage_error("invalid --request-size '%s' (4k to 64M)", optarg);
            o->request_size = (size_t)v;
            break;
        case OPT_TARGET_IS_ZERO: o->target_is_zero = 1; break;
        case OPT_NO_RESIZE: o->no_resize = 1; break;
        case OPT_PROGRESS: o->progress = 1; break;
        case OPT_NO_PROGRESS: o->progress = 0; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_VERIFY: o->verify = 1; break;
        case OPT_NO_OFFLOAD: o->offload = -1; break;
        case OPT_OFFLOAD: o->offload = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h':
            usage(stdout);
            exit(EXIT_COPY_OK);
        case 'V':
            printf(PROG " %s\n", vmio_version_string());
            exit(EXIT_COPY_OK);
        case '?':
            if (optopt)
                return usage_error("invalid option '-%c'", optopt);
            return usage_error("invalid option '%s'", argv[optind - 1]);
        case ':':
        default:
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return usage_error("expected SRC and DST, got %d argument%s", argc - optind,
                           argc - optind == 1 ? "" : "s");
    o->src = argv[optind];
    o->dst = argv[optind + 1];
    if (o->progress < 0)
        o->progress = !o->quiet && isatty(STDERR_FILENO);
    return -1;
}

/* ---- main ------------------------------------------------------------- */

#define fail(...) cli_fail(PROG, EXIT_COPY_FAILED, __VA_ARGS__)

/* Open the destination: an existing image is opened read-write, a missing
 * one created with the source's size. *created tells which. */
static int open_destination(const struct options *o, uint64_t size, vmio_file **dst,
                            int *created)
{
    int r = vmio_open(o->dst, VMIO_O_RDWR, dst);
    if (r == 0) {
        *created = 0;
        return 0;
    }
    if (r != -ENOENT)
        return r;
    struct vmio_open_options opts;
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.create_size = size;
    r = vmio_open_ex(o->dst, VMIO_O_CREATE | VMIO_O_EXCL, &opts, dst);
    if (r == -EEXIST)      /* created by someone else meanwhile */
        r = vmio_open(o->dst, VMIO_O_RDWR, dst);
    else if (r == 0)
        *created = 1;
    return r;
}

/* Give the destination the source's size. Sets *known_zero when the whole
 * destination now reads as zeroes. */
static int prepare_destination(const struct options *o, vmio_file *dst, int created,
                               uint64_t size, int *known_zero)
{
    uint64_t dsize;
    if (vmio_get_size(dst, &dsize) < 0)
        return fail("cannot get the size of destination '%s': %s", o->dst, vmio_errmsg());
    *known_zero = o->target_is_zero;
    if (created) {
        if (dsize != size && vmio_truncate(dst, size) < 0)
            return fail("cannot resize destination '%s': %s", o->dst, vmio_errmsg());
        *known_zero = 1;
        return 0;
    }
    if (!o->no_resize) {
        /* Emptying the image first makes all of it read as zeroes, so holes
         * and zero blocks of the source need no request at all. */
        int r = vmio_truncate(dst, 0);
        if (r == 0) {
            if (vmio_truncate(dst, size) < 0)
                return fail("cannot resize destination '%s': %s", o->dst, vmio_errmsg());
            *known_zero = 1;
            return 0;
        }
        if (r != -ENOTSUP)
            return fail("cannot resize destination '%s': %s", o->dst, vmio_errmsg());
        /* Not resizable (a block device): copy into it if it is big enough. */
    }
    if (dsize < size)
        return fail("destination '%s' is smaller than the source (%" PRIu64 " < %" PRIu64
                    " bytes)%s", o->dst, dsize, size,
                    o->no_resize ? " and --no-resize was given" : " and cannot be resized");
    return 0;
}

static int same_local_file(const char *a, const char *b)
{
    const char *pa = local_path(a), *pb = local_path(b);
    struct stat sa, sb;
    if (!pa || !pb || stat(pa, &sa) < 0 || stat(pb, &sb) < 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int main(int argc, char **argv)
{
    struct options o;
    int r = parse_args(argc, argv, &o);
    if (r >= 0)
        return r;

    if (same_local_file(o.src, o.dst))
        return fail("'%s' and '%s' are the same file", o.src, o.dst);

    vmio_file *src = NULL, *dst = NULL;
    if (vmio_open(o.src, VMIO_O_RDONLY, &src) < 0)
        return fail("cannot open source '%s': %s", o.src, vmio_errmsg());
    uint64_t size;
    if (vmio_get_size(src, &size) < 0) {
        fail("cannot get the size of source '%s': %s", o.src, vmio_errmsg());
        vmio_close(src);
        return EXIT_COPY_FAILED;
    }

    double t0 = now_s();
    int created = 0;
    if (open_destination(&o, size, &dst, &created) < 0) {
        fail("cannot open destination '%s': %s", o.dst, vmio_errmsg());
        vmio_close(src);
        return EXIT_COPY_FAILED;
    }
    int known_zero = 0;
    if (prepare_destination(&o, dst, created, size, &known_zero) != 0) {
        vmio_close(src);
        vmio_close(dst);
        return EXIT_COPY_FAILED;
    }
    unsigned caps = 0;
    vmio_get_caps(dst, &caps);

    struct copier c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.src = src;
    c.dst = dst;
    c.size = size;
    c.dst_zero = known_zero;
    c.can_zero = (caps & VMIO_CAP_WRITE_ZEROES) != 0;
    c.can_flush = (caps & VMIO_CAP_FLUSH) != 0;
    c.cache_fd = -1;
    const char *dst_path = local_path(o.dst);
    c.offload = o.offload > 0 || (o.offload == 0 && dst_path && offload_pays(dst_path));
    c.offload = c.offload && strcmp(vmio_backend_name(src), "file") == 0 &&
                strcmp(vmio_backend_name(dst), "file") == 0;
    if (dst_path)
        c.cache_fd = open(dst_path, O_RDONLY | O_CLOEXEC);
    c.prog.enabled = o.progress;
    c.prog.start = t0;
    c.prog.last = t0;
    int status = EXIT_COPY_OK;
    if (copy_run(&c) < 0) {
        if (c.prog.drawn)
            fputc('\n', stderr);
        fail("%s", c.errmsg);
        status = EXIT_COPY_FAILED;
    } else if (vmio_flush(dst) < 0) {
        if (c.prog.drawn)
            fputc('\n', stderr);
        fail("cannot flush destination '%s': %s", o.dst, vmio_errmsg());
        status = EXIT_COPY_FAILED;
    } else {
        progress_draw(&c.prog, c.bytes_done, c.size, 1);
        if (c.cache_fd >= 0)
            posix_fadvise(c.cache_fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    if (c.cache_fd >= 0)
        close(c.cache_fd);
    double seconds = now_s() - t0;
    copier_free(&c);

    const char *verify_result = "not-run";
    double verify_seconds = 0;
    char src_hex[2 * SHA256_DIGEST_SIZE + 1] = "", dst_hex[2 * SHA256_DIGEST_SIZE + 1] = "";
    if (status == EXIT_COPY_OK && o.verify) {
        double v0 = now_s();
        struct hasher hs, hd;
        memset(&hs, 0, sizeof hs);
        memset(&hd, 0, sizeof hd);
        hs.file = src;
        hs.uri = o.src;
        hs.role = "source";
        hd.file = dst;
        hd.uri = o.dst;
        hd.role = "destination";
        hs.size = hd.size = size;
        hs.rs = hd.rs = o.request_size;
        hs.nslots = hd.nslots = o.queue_depth;
        pthread_t th;
        int tr = pthread_create(&th, NULL, hash_thread, &hs);
        hash_thread(&hd);
        if (tr == 0)
            pthread_join(th, NULL);
        else
            hash_thread(&hs);
        verify_seconds = now_s() - v0;
        if (hs.failed || hd.failed) {
            fail("verify: %s", hs.failed ? hs.errmsg : hd.errmsg);
            status = EXIT_COPY_FAILED;
            verify_result = "error";
        } else {
            hex(src_hex, hs.digest, SHA256_DIGEST_SIZE);
            hex(dst_hex, hd.digest, SHA256_DIGEST_SIZE);
            if (memcmp(hs.digest, hd.digest, SHA256_DIGEST_SIZE) == 0) {
                verify_result = "match";
                if (!o.quiet && !o.json)
                    fprintf(stderr, PROG ": verify: match (sha256 %s)\n", src_hex);
            } else {
                verify_result = "mismatch";
                fprintf(stderr,
                        PROG ": verify: MISMATCH: source sha256 %s, destination sha256 %s\n",
                        src_hex, dst_hex);
                status = EXIT_VERIFY_MISMATCH;
            }
        }
    }

    if (vmio_close(dst) < 0 && status == EXIT_COPY_OK)
        status = fail("cannot close destination '%s': %s", o.dst, vmio_errmsg());
    vmio_close(src);

    if (o.json) {
        FILE *fp = stdout;
        fputs("{\"source\": ", fp);
        cli_json_string(fp, o.src);
        fputs(", \"destination\": ", fp);
        cli_json_string(fp, o.dst);
        fprintf(fp,
                ", \"status\": %d, \"bytes_total\": %" PRIu64 ", \"bytes_copied\": %" PRIu64
                ", \"bytes_skipped\": %" PRIu64 ", \"bytes_zeroed\": %" PRIu64
                ", \"bytes_read\": %" PRIu64 ", \"seconds\": %.6f, \"mb_per_s\": %.1f"
                ", \"requests\": %" PRIu64 ", \"queue_depth\": %u, \"request_size\": %zu"
                ", \"destination_created\": %s, \"verify\": \"%s\", \"verify_seconds\": %.6f",
                status, size, c.bytes_copied, c.bytes_skipped, c.bytes_zeroed, c.bytes_read,
                seconds, seconds > 0 ? (double)size / seconds / 1e6 : 0.0, c.requests,
                o.queue_depth, o.request_size, created ? "true" : "false", verify_result,
                verify_seconds);
        if (src_hex[0])
            fprintf(fp, ", \"source_sha256\": \"%s\", \"destination_sha256\": \"%s\"", src_hex,
                    dst_hex);
        fputs("}\n", fp);
        fflush(fp);
    }
    return status;
}
