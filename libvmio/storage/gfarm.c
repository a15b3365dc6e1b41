/* gfarm:// backend: VM images in the Gfarm file system through libgfarm,
 * without the gfarm2fs FUSE mount.
 *
 * libgfarm (2.7.20) keeps process-wide state and is documented as not
 * thread-safe, while a vmio_file promises many threads and deep async
 * queues. Three ways to serve a file, chosen at open:
 *
 *  - helpers (default): N vmio-gfarm-helper processes, each with its own
 *    libgfarm, gfmd and gfsd connections and the file open. A request
 *    takes a free helper, passes its payload through a shared memory
 *    window and waits for the reply, so N requests run truly in
 *    parallel. The storage layer's worker threads drive them for the
 *    async API.
 *  - in-process (helpers=0): libgfarm in this process, every call under
 *    one lock (gfarm-io.c): correct, serial.
 *  - routed: when a routes table names a vmiod for a host that holds a
 *    complete replica (asked of gfmd with gfs_replica_info_by_name), the
 *    file is opened through that vmiod with the vmio:// client, and the
 *    server reads its local replica. Without a matching vmiod, or when it
 *    cannot be reached and route=auto, libgfarm is used directly.
 *
 * URI: gfarm:///path or gfarm://mds:port/path, options
 *   helpers=N (0..64, default 4), route=auto|direct|vmiod,
 *   routes=FILE (else $VMIO_GFARM_ROUTES), secret-file=FILE (for vmiod),
 *   beneath=DIR (refuse a file whose real path is not under Gfarm DIR),
 *   cache=stream|none (read-ahead and write-behind of sequential streams,
 *   gfarm-stream.h; default stream, also in front of a vmiod). */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "storage/backend.h"
#include "storage/gfarm-helper-proto.h"
#include "storage/gfarm-io.h"
#include "storage/gfarm-route.h"
#include "storage/gfarm-stream.h"

#define API "gfarm"
#define GF_WINDOW (4u << 20)
#define GF_MAX_HELPERS 64
#define GF_DEFAULT_HELPERS 4

extern char **environ;

struct helper {
    pid_t pid;
    int sock;
    uint8_t *win;
    int busy;
    int dead;
    int dirty;          /* wrote since its last SYNC */
};

enum gf_mode { GF_HELPERS, GF_INPROC, GF_ROUTED };

struct gf_state {
    enum gf_mode mode;
    char *gpath;            /* what libgfarm is given */
    char *beneath;
    unsigned gflags;        /* GFIO_* for reopening (no CREATE/TRUNC/EXCL) */
    int rw;

    /* GF_HELPERS */
    struct helper *h;
    int nh;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t respawns;

    /* GF_INPROC */
    struct gfio *g;

    /* cache=stream (GF_HELPERS and GF_INPROC) */
    int stream_on;
    struct gfstream st;

    /* GF_ROUTED */
    const struct vmio_backend_ops *inner;
    void *inner_state;
    char name[32];
};

/* ---- helper processes ------------------------------------------------ */

static const char *helper_path(void)
{
    const char *p = getenv("VMIO_GFARM_HELPER");
    return (p && *p) ? p : VMIO_LIBEXECDIR "/vmio-gfarm-helper";
}

/* One request/reply exchange. Returns 0 or -errno with the message set;
 * a helper that vanished is marked dead. */
static int helper_call(struct helper *h, const struct gfh_req *q, uint64_t *value)
{
    uint8_t buf[GFH_REQ_HEAD + 2 * GFH_MAX_PATH + 2];
    int n = gfh_encode_req(buf, sizeof buf, q);
    if (n < 0)
        return vmio_set_error(API, -n, "path too long for Gfarm");
    if (send(h->sock, buf, (size_t)n, MSG_NOSIGNAL) != n) {
        h->dead = 1;
        return vmio_set_error_errno(API, errno == EPIPE ? EIO : errno,
                                    "gfarm helper %d is gone", (int)h->pid);
    }
    uint8_t rb[GFH_REP_HEAD + GFH_MAX_MSG];
    ssize_t m;
    do
        m = recv(h->sock, rb, sizeof rb, 0);
    while (m < 0 && errno == EINTR);
    if (m <= 0) {
        h->dead = 1;
        return vmio_set_error(API, EIO, "gfarm helper %d exited during a request",
                              (int)h->pid);
    }
    struct gfh_rep p;
    if (gfh_decode_rep(rb, (size_t)m, &p) < 0 || p.op != q->op) {
        h->dead = 1;
        return vmio_set_error(API, EPROTO, "gfarm helper %d sent a malformed reply",
                              (int)h->pid);
    }
    if (p.err) {
        /* The helper's message already carries our prefix. */
        const char *msg = p.msg;
        if (strncmp(msg, API ": ", sizeof API + 1) == 0)
            msg += sizeof API + 1;
        return vmio_set_error(API, p.err, "%s", msg[0] ? msg : "request failed");
    }
    if (value)
        *value = p.value;
    return 0;
}

static void helper_stop(struct helper *h)
{
    if (h->sock >= 0) {
        if (!h->dead) {
            struct gfh_req q = { .op = GFH_CLOSE };
            helper_call(h, &q, NULL);
        }
        close(h->sock);
        h->sock = -1;
    }
    if (h->win) {
        munmap(h->win, GF_WINDOW);
        h->win = NULL;
    }
    if (h->pid > 0) {
        /* After CLOSE the helper exits by itself; a stuck one is killed. */
        for (int i = 0; i < 200; i++) {
            pid_t w = waitpid(h->pid, NULL, WNOHANG);
            if (w == h->pid || (w < 0 && errno == ECHILD))
                goto reaped;
            usleep(10000);
        }
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
    reaped:
        h->pid = 0;
    }
}

static int helper_start(struct gf_state *s, struct helper *h, unsigned flags,
                        uint64_t create_size)
{
    int sv[2] = { -1, -1 }, mfd = -1, r;
    h->sock = -1;
    h->win = NULL;
    h->pid = 0;
    h->dead = 0;
    h->dirty = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return vmio_set_error_errno(API, errno, "socketpair");
    mfd = memfd_create("vmio-gfarm-window", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, GF_WINDOW) < 0) {
        r = vmio_set_error_errno(API, errno, "shared window for the gfarm helper");
        goto fail;
    }
    h->win = mmap(NULL, GF_WINDOW, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (h->win == MAP_FAILED) {
        h->win = NULL;
        r = vmio_set_error_errno(API, errno, "mmap of the gfarm helper window");
        goto fail;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, sv[1], GFH_SOCK_FD);
    posix_spawn_file_actions_adddup2(&fa, mfd, GFH_WINDOW_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, GFH_WINDOW_FD + 1);
    /* Default signal handling and mask in the child, whatever the VMM set. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const char *path = helper_path();
    char *argv[] = { (char *)"vmio-gfarm-helper", NULL };
    int e = posix_spawn(&h->pid, path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e != 0) {
        h->pid = 0;
        r = vmio_set_error_errno(API, e, "cannot start %s (set VMIO_GFARM_HELPER, or "
                                         "helpers=0 for in-process libgfarm)", path);
        goto fail;
    }
    close(sv[1]);
    sv[1] = -1;
    close(mfd);
    mfd = -1;
    h->sock = sv[0];

    struct gfh_req q = {
        .op = GFH_OPEN, .window = GF_WINDOW, .arg0 = flags, .arg1 = create_size,
        .path = s->gpath, .path_len = strlen(s->gpath),
        .beneath = s->beneath ? s->beneath : "", .beneath_len = s->beneath ? strlen(s->beneath) : 0,
    };
    r = helper_call(h, &q, NULL);
    if (r < 0) {
        struct vmio_error_copy ec;
        vmio_error_save(&ec);
        h->dead = 1;
        helper_stop(h);
        vmio_error_restore(&ec);
        return r;
    }
    return 0;

fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (mfd >= 0)
        close(mfd);
    if (h->win) {
        munmap(h->win, GF_WINDOW);
        h->win = NULL;
    }
    return r;
}

/* Take a free helper (index), waiting if all are busy. want = -1 for any. */
static int helper_get(struct gf_state *s, int want)
{
    pthread_mutex_lock(&s->lock);
    int i;
    for (;;) {
        if (want >= 0) {
            if (!s->h[want].busy) {
                i = want;
                break;
            }
        } else {
            for (i = 0; i < s->nh; i++)
                if (!s->h[i].busy)
                    break;
            if (i < s->nh)
                break;
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
    s->h[i].busy = 1;
    pthread_mutex_unlock(&s->lock);

    struct helper *h = &s->h[i];
    if (h->dead) {
        /* Replace a helper that died (killed, crashed): the file is
         * reopened without CREATE/TRUNC. */
        helper_stop(h);
        int r = helper_start(s, h, s->gflags, 0);
        if (r < 0) {
            h->dead = 1;
            pthread_mutex_lock(&s->lock);
            h->busy = 0;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            return r;
        }
        __atomic_add_fetch(&s->respawns, 1, __ATOMIC_RELAXED);
    }
    return i;
}

static void helper_put(struct gf_state *s, int i)
{
    pthread_mutex_lock(&s->lock);
    s->h[i].busy = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ---- iovec <-> window ------------------------------------------------ */

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
    size_t t = 0;
    for (int i = 0; i < iovcnt; i++)
        t += iov[i].iov_len;
    return t;
}

/* ---- backend operations ---------------------------------------------- */

static void gf_close(void *state)
{
    struct gf_state *s = state;
    if (!s)
        return;
    if (s->stream_on) {
        int r = gfstream_destroy(&s->st);
        if (r < 0)
            vmio_log(VMIO_LOG_ERROR, "%s", vmio_errmsg());
        s->stream_on = 0;
    }
    if (s->mode == GF_ROUTED && s->inner_state)
        s->inner->close(s->inner_state);
    if (s->mode == GF_INPROC) {
        gfio_close(s->g);
        gfio_fini();
    }
    for (int i = 0; s->h && i < s->nh; i++)
        helper_stop(&s->h[i]);
    free(s->h);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->gpath);
    free(s->beneath);
    free(s);
}

static int parse_helpers(const struct vmio_uri *u, int *n)
{
    const char *v = vmio_uri_get(u, "helpers");
    *n = GF_DEFAULT_HELPERS;
    if (!v)
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || x < 0 || x > GF_MAX_HELPERS)
        return vmio_set_error(API, EINVAL, "helpers=%s: expected 0..%d", v, GF_MAX_HELPERS);
    *n = (int)x;
    return 0;
}

static int open_routed(struct gf_state *s, const struct vmio_uri *u, unsigned flags,
                       const struct vmio_open_options *opts, int required)
{
    const char *rfile = vmio_uri_get(u, "routes");
    if (!rfile)
        rfile = getenv("VMIO_GFARM_ROUTES");
    if (!rfile || !*rfile) {
        if (required)
            return vmio_set_error(API, EINVAL, "route=vmiod needs a routes table (routes= "
                                               "or VMIO_GFARM_ROUTES)");
        return 1;
    }
    struct gfroute_table *t = NULL;
    int r = gfroute_load(rfile, &t);
    if (r < 0)
        return r;
    /* Replica hosts come from gfmd, asked by this process under the lock. */
    char **hosts = NULL;
    int nhosts = 0;
    r = gfio_init();
    if (r == 0) {
        r = gfio_replica_hosts(s->gpath, &hosts, &nhosts);
        gfio_fini();
    }
    if (r < 0) {
        gfroute_free(t);
        /* A file being created has no replica yet: libgfarm decides. */
        if (r == -ENOENT && (flags & VMIO_O_CREATE) && !required)
            return 1;
        return r;
    }
    char *vuri = NULL, *host = NULL;
    r = gfroute_pick(t, u->path, (const char *const *)hosts, nhosts, &vuri, &host);
    gfio_free_hosts(hosts, nhosts);
    gfroute_free(t);
    if (r < 0)
        return r;
    if (r == 1) {
        if (required)
            return vmio_set_error(API, ENOENT, "no vmiod is known for any host holding a "
                                               "replica of %s", u->path);
        return 1;
    }

    struct vmio_uri ru;
    r = vmio_uri_parse(API, vuri, &ru);
    if (r == 0) {
        /* The vmiod's secret: URI option, then the open option, then the
         * environment (the remote backend's own order). */
        const char *sf = vmio_uri_get(u, "secret-file");
        struct vmio_open_options o = *opts;
        if (sf)
            o.secret_file = sf;
        s->inner = &vmio_backend_remote;
        /* No CREATE/TRUNC through a vmiod: the file exists (it has a
         * replica) and truncating is done after open. */
        r = s->inner->open(&ru, flags & ~(VMIO_O_CREATE | VMIO_O_EXCL), &o, &s->inner_state);
        vmio_uri_clear(&ru);
        if (r == 0 && (flags & VMIO_O_TRUNC))
            r = s->inner->truncate(s->inner_state, 0);
        if (r < 0 && s->inner_state) {
            struct vmio_error_copy ec;
            vmio_error_save(&ec);
            s->inner->close(s->inner_state);
            s->inner_state = NULL;
            vmio_error_restore(&ec);
        }
    }
    if (r < 0) {
        if (required) {
            free(vuri);
            free(host);
            return r;
        }
        vmio_log(VMIO_LOG_INFO, "gfarm: vmiod for %s (%s) unusable, using libgfarm: %s",
                 host, vuri, vmio_errmsg());
        free(vuri);
        free(host);
        s->inner = NULL;
        return 1;
    }
    vmio_log(VMIO_LOG_INFO, "gfarm: %s served by the vmiod beside %s (%s)", u->path, host,
             vuri);
    free(vuri);
    free(host);
    s->mode = GF_ROUTED;
    snprintf(s->name, sizeof s->name, "gfarm+vmio");
    return 0;
}

static int stream_start(struct gf_state *s);

static int gf_open(const struct vmio_uri *u, unsigned flags, const struct vmio_open_options *opts,
                   void **state)
{
    static const char *const allowed[] = { "helpers", "route", "routes", "secret-file",
                                           "beneath", "cache", NULL };
    int r = vmio_uri_check_opts(API, u, allowed);
    if (r < 0)
        return r;
    if (u->path[0] != '/' || u->path[1] == 0)
        return vmio_set_error(API, EINVAL, "gfarm URI needs an absolute file path");
    int nh;
    if ((r = parse_helpers(u, &nh)) < 0)
        return r;
    const char *route = vmio_uri_get(u, "route");
    if (route && strcmp(route, "auto") && strcmp(route, "direct") && strcmp(route, "vmiod"))
        return vmio_set_error(API, EINVAL, "route=%s: expected auto, direct or vmiod", route);
    const char *cache = vmio_uri_get(u, "cache");
    if (cache && strcmp(cache, "stream") && strcmp(cache, "none"))
        return vmio_set_error(API, EINVAL, "cache=%s: expected stream or none", cache);
    int want_stream = !cache || strcmp(cache, "stream") == 0;

    struct gf_state *s = calloc(1, sizeof *s);
    if (!s)
        return vmio_set_error(API, ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    snprintf(s->name, sizeof s->name, "gfarm");
    size_t n = strlen(u->path) + (u->host ? strlen(u->host) + 24 : 0) + 1;
    s->gpath = malloc(n);
    const char *ben = vmio_uri_get(u, "beneath");
    if (ben && !(s->beneath = strdup(ben)))
        goto nomem;
    if (!s->gpath)
        goto nomem;
    if (u->host && u->port)
        snprintf(s->gpath, n, "gfarm://%s:%u%s", u->host, (unsigned)u->port, u->path);
    else if (u->host)
        snprintf(s->gpath, n, "gfarm://%s%s", u->host, u->path);
    else
        snprintf(s->gpath, n, "%s", u->path);
    s->rw = (flags & (VMIO_O_RDWR | VMIO_O_CREATE | VMIO_O_TRUNC)) != 0;
    s->gflags = s->rw ? GFIO_RDWR : 0;
    unsigned first = s->gflags | ((flags & VMIO_O_CREATE) ? GFIO_CREATE : 0) |
                     ((flags & VMIO_O_TRUNC) ? GFIO_TRUNC : 0) |
                     ((flags & VMIO_O_EXCL) ? GFIO_EXCL : 0);

    if (!route || strcmp(route, "direct") != 0) {
        r = open_routed(s, u, flags, opts, route && strcmp(route, "vmiod") == 0);
        if (r < 0)
            goto fail;
        if (r == 0) {
            if (want_stream && (r = stream_start(s)) < 0)
                goto fail;
            *state = s;
            return 0;
        }
    }

    if (nh == 0) {
        s->mode = GF_INPROC;
        if ((r = gfio_init()) < 0)
            goto fail;
        r = gfio_open(s->gpath, first, opts->create_size, s->beneath, &s->g);
        if (r < 0) {
            gfio_fini();
            goto fail;
        }
        if (want_stream && (r = stream_start(s)) < 0)
            goto fail;
        *state = s;
        return 0;
    }

    s->mode = GF_HELPERS;
    s->h = calloc((size_t)nh, sizeof *s->h);
    if (!s->h)
        goto nomem;
    for (int i = 0; i < nh; i++)
        s->h[i].sock = -1;
    /* The first helper creates or truncates; the others open what it left. */
    r = helper_start(s, &s->h[0], first, opts->create_size);
    if (r < 0)
        goto fail;
    s->nh = 1;
    for (int i = 1; i < nh; i++) {
        r = helper_start(s, &s->h[i], s->gflags, 0);
        if (r < 0)
            goto fail;
        s->nh++;
    }
    if (want_stream && (r = stream_start(s)) < 0)
        goto fail;
    *state = s;
    return 0;

nomem:
    r = vmio_set_error(API, ENOMEM, "out of memory");
fail : {
    struct vmio_error_copy ec;
    vmio_error_save(&ec);
    gf_close(s);
    vmio_error_restore(&ec);
    return r;
}
}

static unsigned gf_caps(void *state)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        return s->inner->caps(s->inner_state);
    unsigned c = VMIO_CAP_FLUSH;
    if (s->rw)
        c |= VMIO_CAP_WRITE | VMIO_CAP_WRITE_ZEROES | VMIO_CAP_FUA;
    return c;
}

/* Move one chunk (<= window) through helper i. */
static int chunk_io(struct gf_state *s, int i, int write, const struct iovec *iov, int iovcnt,
                    size_t skip, size_t len, uint64_t off, const uint8_t *zero)
{
    struct helper *h = &s->h[i];
    if (write) {
        if (zero)
            memset(h->win, 0, len);
        else
            vmio_iov_to_buf(h->win, iov, iovcnt, skip, len);
    }
    struct gfh_req q = { .op = write ? GFH_WRITE : GFH_READ, .arg0 = off, .arg1 = len };
    int r = helper_call(h, &q, NULL);
    if (r == 0 && write)
        h->dirty = 1;
    if (r == 0 && !write)
        vmio_buf_to_iov(iov, iovcnt, skip, h->win, len);
    return r;
}

static int helper_sync(struct gf_state *s, int i)
{
    struct gfh_req q = { .op = GFH_SYNC };
    int r = helper_call(&s->h[i], &q, NULL);
    if (r == 0)
        s->h[i].dirty = 0;
    return r;
}

static int helpers_io_once(struct gf_state *s, int write, const struct iovec *iov, int iovcnt,
                           size_t total, uint64_t off, unsigned flags, int zero, int *died)
{
    int i = helper_get(s, -1);
    if (i < 0)
        return i;
    int r = 0;
    for (size_t done = 0; done < total && r == 0;) {
        size_t len = VMIO_MIN(total - done, (size_t)GF_WINDOW);
        r = chunk_io(s, i, write, iov, iovcnt, done, len, off + done,
                     zero ? (const uint8_t *)"" : NULL);
        done += len;
    }
    if (r == 0 && write && (flags & VMIO_REQ_FUA))
        r = helper_sync(s, i);
    *died = r < 0 && s->h[i].dead;
    helper_put(s, i);
    return r;
}

/* Reads and writes are idempotent: one that a dying helper left undone is
 * redone once by a fresh helper. Errors reported by libgfarm are not
 * retried here (libgfarm retries what it can itself). */
static int helpers_io(struct gf_state *s, int write, const struct iovec *iov, int iovcnt,
                      size_t total, uint64_t off, unsigned flags, int zero)
{
    int died = 0;
    int r = helpers_io_once(s, write, iov, iovcnt, total, off, flags, zero, &died);
    if (r < 0 && died) {
        vmio_log(VMIO_LOG_WARNING, "gfarm: %s; retrying with a new helper", vmio_errmsg());
        r = helpers_io_once(s, write, iov, iovcnt, total, off, flags, zero, &died);
    }
    return r;
}

static int inproc_io(struct gf_state *s, int write, const struct iovec *iov, int iovcnt,
                     uint64_t off)
{
    for (int k = 0; k < iovcnt; k++) {
        int r = write ? gfio_pwrite(s->g, iov[k].iov_base, iov[k].iov_len, off)
                      : gfio_pread(s->g, iov[k].iov_base, iov[k].iov_len, off);
        if (r < 0)
            return r;
        off += iov[k].iov_len;
    }
    return 0;
}

/* Reads and writes below the stream layer (direct modes). */
static int raw_read(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off)
{
    struct gf_state *s = ctx;
    if (s->mode == GF_ROUTED)
        return s->inner->preadv(s->inner_state, iov, iovcnt, off);
    if (s->mode == GF_INPROC)
        return inproc_io(s, 0, iov, iovcnt, off);
    return helpers_io(s, 0, iov, iovcnt, total, off, 0, 0);
}

static int raw_write(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off,
                     unsigned flags)
{
    struct gf_state *s = ctx;
    if (s->mode == GF_ROUTED)
        return s->inner->pwritev(s->inner_state, iov, iovcnt, off, flags);
    if (s->mode == GF_INPROC) {
        int r = inproc_io(s, 1, iov, iovcnt, off);
        if (r == 0 && (flags & VMIO_REQ_FUA))
            r = gfio_datasync(s->g);
        return r;
    }
    return helpers_io(s, 1, iov, iovcnt, total, off, flags, 0);
}

static int gf_get_size(void *state, uint64_t *size);

static int stream_start(struct gf_state *s)
{
    uint64_t size;
    int r = gf_get_size(s, &size);
    if (r < 0)
        return r;
    struct gfstream_io io = { .ctx = s, .read = raw_read, .write = raw_write };
    if ((r = gfstream_init(&s->st, &io, size)) < 0)
        return r;
    s->stream_on = 1;
    return 0;
}

static int gf_preadv(void *state, const struct iovec *iov, int iovcnt, uint64_t off)
{
    struct gf_state *s = state;
    size_t total = iov_total(iov, iovcnt);
    if (s->stream_on)
        return gfstream_read(&s->st, iov, iovcnt, total, off);
    return raw_read(s, iov, iovcnt, total, off);
}

static int gf_pwritev(void *state, const struct iovec *iov, int iovcnt, uint64_t off,
                      unsigned flags)
{
    struct gf_state *s = state;
    size_t total = iov_total(iov, iovcnt);
    if (s->stream_on)
        return gfstream_write(&s->st, iov, iovcnt, total, off, (flags & VMIO_REQ_FUA) != 0);
    return raw_write(s, iov, iovcnt, total, off, flags);
}

static int zeroes(struct gf_state *s, uint64_t off, uint64_t len, unsigned flags);

static int gf_write_zeroes(void *state, uint64_t off, uint64_t len, unsigned flags)
{
    struct gf_state *s = state;
    if (s->stream_on) {
        int r = gfstream_resize_begin(&s->st);    /* drain, drop read-ahead */
        if (r < 0)
            return r;
    }
    int r = s->mode == GF_ROUTED ? s->inner->write_zeroes(s->inner_state, off, len, flags)
                                 : zeroes(s, off, len, flags);
    if (s->stream_on)
        gfstream_resize_begin(&s->st);    /* a read-ahead that raced with us */
    return r;
}

static int zeroes(struct gf_state *s, uint64_t off, uint64_t len, unsigned flags)
{
    if (s->mode == GF_HELPERS)
        return helpers_io(s, 1, NULL, 0, (size_t)len, off, flags, 1);
    /* In-process: Gfarm has no hole punching; write zeroes. */
    static const uint8_t zeros[65536];
    while (len > 0) {
        size_t k = (size_t)VMIO_MIN(len, sizeof zeros);
        int r = gfio_pwrite(s->g, zeros, k, off);
        if (r < 0)
            return r;
        off += k;
        len -= k;
    }
    return (flags & VMIO_REQ_FUA) ? gfio_datasync(s->g) : 0;
}

/* One metadata request (SYNC, SIZE, TRUNCATE) on helper want (-1: any),
 * redone once on a fresh helper if the one it ran on died. */
static int helper_op(struct gf_state *s, int want, const struct gfh_req *q, uint64_t *value)
{
    int r = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int i = helper_get(s, want);
        if (i < 0)
            return i;
        r = helper_call(&s->h[i], q, value);
        int died = r < 0 && s->h[i].dead;
        if (r == 0 && q->op == GFH_SYNC)
            s->h[i].dirty = 0;
        helper_put(s, i);
        if (!died)
            break;
        vmio_log(VMIO_LOG_WARNING, "gfarm: %s; retrying with a new helper", vmio_errmsg());
    }
    return r;
}

static int gf_flush(void *state)
{
    struct gf_state *s = state;
    if (s->stream_on) {
        int r = gfstream_drain(&s->st);
        if (r < 0)
            return r;
    }
    if (s->mode == GF_ROUTED)
        return s->inner->flush(s->inner_state);
    if (s->mode == GF_INPROC)
        return gfio_datasync(s->g);
    /* Every helper syncs its own gfsd file descriptor: also the clean
     * ones, because a helper that died after acknowledging writes left
     * them in the same gfsd file, and a sync through any descriptor of it
     * makes them durable. */
    int first = 0;
    struct gfh_req q = { .op = GFH_SYNC };
    for (int i = 0; i < s->nh; i++) {
        int r = helper_op(s, i, &q, NULL);
        if (r < 0 && !first)
            first = r;
    }
    return first;
}

static int gf_get_size(void *state, uint64_t *size)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        return s->inner->get_size(s->inner_state, size);
    if (s->mode == GF_INPROC)
        return gfio_size(s->g, size);
    struct gfh_req q = { .op = GFH_SIZE };
    return helper_op(s, -1, &q, size);
}

static int gf_truncate(void *state, uint64_t size)
{
    struct gf_state *s = state;
    if (s->stream_on) {
        int r = gfstream_resize_begin(&s->st);
        if (r < 0)
            return r;
    }
    int r;
    if (s->mode == GF_ROUTED) {
        r = s->inner->truncate(s->inner_state, size);
    } else if (s->mode == GF_INPROC) {
        r = gfio_truncate(s->g, size);
    } else {
        struct gfh_req q = { .op = GFH_TRUNCATE, .arg0 = size };
        r = helper_op(s, -1, &q, NULL);
    }
    if (s->stream_on)
        gfstream_resize_end(&s->st, r == 0 ? size : 0);
    return r;
}

static int gf_block_status(void *state, uint64_t off, uint64_t max, uint64_t *len, int *type)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        return s->inner->block_status(s->inner_state, off, max, len, type);
    *len = max;      /* libgfarm has no SEEK_DATA: everything is data */
    *type = VMIO_EXTENT_DATA;
    return 0;
}

static int gf_discard(void *state, uint64_t off, uint64_t len)
{
    struct gf_state *s = state;
    if (s->mode != GF_ROUTED)
        return vmio_set_error(API, ENOTSUP, "Gfarm cannot deallocate ranges");
    if (s->stream_on) {
        int r = gfstream_resize_begin(&s->st);    /* drain, drop read-ahead */
        if (r < 0)
            return r;
    }
    int r = s->inner->discard(s->inner_state, off, len);
    if (s->stream_on)
        gfstream_resize_begin(&s->st);
    return r;
}

/* A write that went around the stream layer: once it completed, the
 * read-ahead windows over it are dropped again. */
struct bypass_write {
    struct vmio_req req;
    struct vmio_req *orig;
    struct gf_state *s;
};

static void bypass_write_done(struct vmio_req *req, int result)
{
    struct bypass_write *b = (struct bypass_write *)req;
    struct vmio_req *orig = b->orig;
    gfstream_write_bypassed(&b->s->st, orig->count, orig->offset);
    free(b);
    orig->complete(orig, result);
}

static int submit_write(struct gf_state *s, struct vmio_req *orig)
{
    struct bypass_write *b = malloc(sizeof *b);
    if (!b)
        return vmio_set_error(API, ENOMEM, "out of memory");
    b->req = *orig;
    b->req.complete = bypass_write_done;
    b->req.owner = b;
    b->orig = orig;
    b->s = s;
    int r = s->inner->submit(s->inner_state, &b->req);
    if (r < 0) {
        free(b);
        gfstream_write_bypassed(&s->st, orig->count, orig->offset);
    }
    return r;
}

static int gf_submit(void *state, struct vmio_req *req)
{
    struct gf_state *s = state;
    if (s->mode != GF_ROUTED)
        return -ENOTSUP;     /* the storage layer's workers drive the helpers */
    /* In front of a vmiod: random reads go out at once, many in flight;
     * whatever the stream layer must see goes through the storage
     * layer's workers and the synchronous calls. */
    if (!s->stream_on ||
        (req->op == VMIO_OP_READ && gfstream_read_bypass(&s->st, req->count, req->offset)))
        return s->inner->submit(s->inner_state, req);
    if (req->op == VMIO_OP_WRITE &&
        gfstream_write_bypass(&s->st, req->count, req->offset, (req->flags & VMIO_REQ_FUA) != 0))
        return submit_write(s, req);
    return -ENOTSUP;
}

static void gf_stats(void *state, struct vmio_file_stats *st)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        s->inner->stats(s->inner_state, st);
    else
        st->reconnects += __atomic_load_n(&s->respawns, __ATOMIC_RELAXED);
}

static void gf_attach_aio(void *state, int epfd, int efd)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        s->inner->attach_aio(s->inner_state, epfd, efd);
}

static int gf_progress(void *state, int wait)
{
    struct gf_state *s = state;
    if (s->mode == GF_ROUTED)
        return s->inner->progress(s->inner_state, wait);
    return 0;
}

static int gf_finish(void *state)
{
    struct gf_state *s = state;
    if (!s->stream_on)
        return 0;
    s->stream_on = 0;
    return gfstream_destroy(&s->st);
}

static const char *gf_describe(void *state)
{
    struct gf_state *s = state;
    return s->name;
}

const struct vmio_backend_ops vmio_backend_gfarm = {
    .struct_size = sizeof(struct vmio_backend_ops),
    .name = "gfarm",
    .scheme = "gfarm",
    .open = gf_open,
    .close = gf_close,
    .caps = gf_caps,
    .preadv = gf_preadv,
    .pwritev = gf_pwritev,
    .flush = gf_flush,
    .discard = gf_discard,
    .write_zeroes = gf_write_zeroes,
    .get_size = gf_get_size,
    .truncate = gf_truncate,
    .block_status = gf_block_status,
    .submit = gf_submit,
    .stats = gf_stats,
    .attach_aio = gf_attach_aio,
    .progress = gf_progress,
    .describe = gf_describe,
    .finish = gf_finish,
};
