/* The vmio I/O server (docs/protocol.md describes what it speaks).
 *
 * Threads: one accept thread (also reaps finished connections and enforces
 * the handshake deadline), and per connection up to conn_threads request
 * threads in a leader/follower scheme, with no hand-off of a request
 * between threads. The connection's first thread runs the handshake;
 * then each thread in turn takes the reader role, reads exactly one
 * request frame into a buffer of its own, gives the role up, runs the
 * request through the storage API and sends the reply itself (header and
 * data in one sendmsg), so replies may leave out of order.
 *
 * A reader calls a sleeping thread to read next (or starts one more) only
 * when that is needed: more requests are already buffered, other requests
 * are in progress, the request may block (FLUSH, FUA, ...), or it turned
 * out slow while input waits. Otherwise the role stays free until a
 * thread is back from its request, so a client with one request at a time
 * is served by one thread with no thread switch, and a connection starts
 * with its first thread alone.
 *
 * Bounds: each thread has at most one request in progress, so a peer that
 * sends more is simply not read until a thread is free; a thread keeps a
 * buffer of up to KEEP_BYTES, and larger buffers are charged to a
 * per-connection budget (CONN_MAX_BYTES) that is waited for before they
 * are allocated. A peer can never make us allocate more than that (plus
 * the data sitting in the threads' WRITE pipes, at most PIPE_BYTES each).
 *
 * Polling: a reader that finds nothing to read while no request of its
 * connection is in progress spins on the socket for a short, adaptive
 * while before it sleeps (transport/poll.h), so the next
 * request of a one-at-a-time client, which comes a few microseconds after
 * our reply, is picked up without a wake-up across CPUs.
 *
 * Large WRITEs to a local file may be spliced: socket -> the thread's pipe
 * -> file, one copy per byte instead of two, but that copy is then made
 * under the file's inode lock, which concurrent writers spin on. It pays
 * where the server runs on one CPU and loses where writers run in
 * parallel on several (docs/performance.md), so by default
 * (VMIO_SERVER_SPLICE_AUTO) a connection splices only when the server
 * may run on one CPU only when it is accepted.
 *
 * Messages sent to clients never carry our internal API prefix, and the
 * messages the storage layer produces name files "export/path", never the
 * server-side directory. */
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocol/auth.h"
#include "protocol/wire.h"
#include "server/internal.h"
#include "storage/backend.h"
#include "storage/internal.h"
#include "storage/local.h"
#include "transport/poll.h"
#include "transport/transport.h"

#define API VMIO_SERVER_API

/* Request threads per connection. */
#define DEFAULT_WORKERS 8u
#define MAX_WORKERS 1024u
#define MAX_SECRET 65536u
#define HANDSHAKE_TIMEOUT_NS (10ull * 1000000000ull)
/* Stop waits this long for connections to drain before it cuts them. */
#define STOP_GRACE_MS 10000
/* A request thread keeps a buffer this large (a 1 MiB WRITE frame fits);
 * requests that need more allocate it for their own time, within
 * CONN_MAX_BYTES per connection. */
#define KEEP_BYTES ((1u << 20) + 4096u)
#define BUF_MIN (64u << 10)
/* Room for two maximal frames, so one request always fits. */
#define CONN_MAX_BYTES (2u * VMIO_WIRE_MAX_FRAME + (16u << 20))
/* Read-ahead of a connection; request bodies up to RX_SMALL pass through
 * it, larger ones are received straight into the thread's buffer. */
#define RBUF_SIZE (64u << 10)
/* READ replies from this size on leave by sendfile when the export is a
 * local file (not over RDMA): one copy less on the server. */
#define SENDFILE_MIN (64u << 10)
#define RX_SMALL (RBUF_SIZE / 2)
/* WRITE data of frames larger than RX_SMALL to a local file goes from the
 * socket into a pipe of the request thread (splice, no copy), and from
 * there into the file once the request has been checked: one copy less.
 * The pipe is made this large (the most an unprivileged process gets);
 * data that does not fit is received the usual way. */
#define PIPE_BYTES (1u << 20)
/* A request that ran this long while nobody was reading checks whether
 * input is waiting. */
#define SLOW_NS 200000u
/* The polling window grows up to this by default (vmio_server_set_poll);
 * a wake-up across CPUs costs tens of microseconds. */
#define DEFAULT_POLL_US 200u
#define MAX_POLL_US 10000u

struct conn;

struct worker {                     /* one request thread of a connection */
    struct conn *c;
    pthread_t thread;               /* unused for workers[0] (conn->thread) */
    uint8_t *buf;                   /* request body, then READ data */
    size_t cap;
    struct vmio_mr *mr;             /* buf registered for RDMA, or NULL */
    size_t charged;                 /* bytes of buf charged to conn->mem_bytes */
    int running;                    /* counted in conn->busy; rx_lock */
    int sf_fd;                      /* >= 0: the READ reply's data is this
                                       file's from sf_off (sendfile) */
    uint64_t sf_off;
    int pipefd[2];                  /* valid when has_pipe */
    int has_pipe;
    size_t pipe_size;               /* what the kernel gave (F_GETPIPE_SZ) */
    size_t piped;                   /* the WRITE's last piped bytes are in
                                       the pipe, not in buf */
    unsigned spills;                /* pipe found full, data taken back */
    int no_splice;                  /* splicing did not work out: don't */
};

/* At this many spills a thread stops splicing (the peer's segments fill
 * the pipe's slots with too little each, e.g. 1500-byte MTU). */
#define MAX_SPILLS 3

/* Tests: size of the pipes made from now on, and how often data went
 * through a pipe and came back out of a full one. */
static unsigned pipe_bytes = PIPE_BYTES;
static uint64_t n_spliced, n_spilled;

void vmio_server_test_pipe_size(unsigned bytes)
{
    __atomic_store_n(&pipe_bytes, bytes ? bytes : PIPE_BYTES, __ATOMIC_RELAXED);
}

void vmio_server_test_splice_stats(uint64_t *spliced, uint64_t *spilled)
{
    *spliced = __atomic_load_n(&n_spliced, __ATOMIC_RELAXED);
    *spilled = __atomic_load_n(&n_spilled, __ATOMIC_RELAXED);
}

struct conn {
    struct conn *next, *prev;       /* srv->conns (prev unused on zombies) */
    struct vmio_server *srv;
    struct vmio_transport *t;
    pthread_t thread;               /* handshake, then request thread 0 */
    uint64_t deadline_ns;           /* handshake deadline, 0 when done; srv->lock */
    int timed_out;                  /* srv->lock */

    vmio_file *file;
    const struct vmio_export *exp;
    uint32_t features;
    int writable;

    pthread_mutex_t send_lock;
    int send_failed;                /* send_lock */

    /* Receiving: one thread at a time holds the reader role (reading) and
     * owns rbuf; threads that want the role while it is taken sleep on
     * rx_cond (idle) until they are called. */
    pthread_mutex_t rx_lock;
    pthread_cond_t rx_cond;
    int reading;                    /* rx_lock */
    unsigned idle;                  /* rx_lock */
    unsigned called;                /* of them, signalled and not yet up; rx_lock */
    unsigned busy;                  /* threads running a request; rx_lock */
    int rx_done;                    /* nothing more is read; rx_lock */
    uint8_t *rbuf;                  /* read-ahead, RBUF_SIZE; the reader's */
    size_t rpos, rlen;              /* unread: rbuf[rpos..rlen); the reader's */
    struct vmio_poll poll;          /* the reader's */
    int splice;                     /* large WRITEs may be spliced */
    int may_poll;                   /* no request was in progress when the
                                       reader took the role; the reader's */

    pthread_mutex_t spawn_lock;     /* adding request threads */
    unsigned nthreads;              /* started; spawn_lock */
    unsigned maxthreads;            /* spawn_lock */
    int spawn_closed;               /* the connection is ending; spawn_lock */
    struct worker *workers;         /* maxthreads of them */

    pthread_mutex_t mem_lock;
    pthread_cond_t mem_cond;        /* signalled when mem_bytes drops */
    size_t mem_bytes;               /* large buffers held; mem_lock */
    uint64_t served;                /* atomic */
};

struct vmio_server {
    pthread_mutex_t lock;
    pthread_cond_t cond;            /* connection list changes (monotonic clock) */
    uint8_t *secret;
    size_t secret_len;
    unsigned nworkers;              /* as set; 0 = default */
    unsigned conn_threads;          /* request threads per connection while running */
    unsigned poll_us;               /* polling window limit; 0 = no polling */
    int splice;                     /* enum vmio_server_splice */
    struct vmio_export *exports;
    int *lfds;
    struct vmio_rdma_listener **lrdma;  /* parallel to lfds: NULL for TCP */
    size_t nlfds;
    int port;                       /* -1 until listening */
    int wakefd;                     /* eventfd: wakes the accept thread */
    int running;
    int stopping;                   /* atomic reads from request threads */
    pthread_t acceptor;
    struct conn *conns;             /* live connections */
    struct conn *zombies;           /* finished, waiting to be joined */
};

/* ---- small helpers ---------------------------------------------------- */

/* Library threads never take the application's signals. */
static int spawn(pthread_t *th, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(th, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static void wake_acceptor(struct vmio_server *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->wakefd, &one, sizeof one);
    (void)n;
}

/* "api: message" -> "message": the peer does not care which internal
 * function failed. */
static const char *strip_api(const char *m)
{
    const char *p = m;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
        p++;
    if (p != m && p[0] == ':' && p[1] == ' ')
        return p + 2;
    return m;
}

/* Copy in to out as valid, printable UTF-8 (client-supplied names may be
 * anything); returns the length, at most cap. */
static size_t sanitize_utf8(char *out, size_t cap, const char *in)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    while (*p && o < cap) {
        unsigned char ch = *p;
        size_t n = ch < 0x80 ? 1 : (ch >= 0xc2 && ch <= 0xdf) ? 2
                 : (ch & 0xf0) == 0xe0 ? 3 : (ch >= 0xf0 && ch <= 0xf4) ? 4 : 0;
        int ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                ok = 0;
        if (!ok || (n == 1 && (ch < 0x20 || ch == 0x7f))) {
            out[o++] = '?';
            p++;
            continue;
        }
        if (o + n > cap)
            break;
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    return o;
}

/* ---- sending ---------------------------------------------------------- */

static int send_frame(struct conn *c, uint16_t type, uint64_t id, int32_t status,
                      const void *body, size_t len)
{
    uint8_t hdr[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h = { .type = type, .flags = 0, .id = id, .length = (uint32_t)len,
                               .status = status };
    vmio_wire_encode_hdr(hdr, &h);
    struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)body, len } };
    int r, first_failure = 0;
    pthread_mutex_lock(&c->send_lock);
    if (c->send_failed) {
        r = -EPIPE;
    } else {
        r = vmio_transport_sendv(c->t, iov, len ? 2 : 1);
        if (r < 0)
            c->send_failed = first_failure = 1;
    }
    pthread_mutex_unlock(&c->send_lock);
    if (first_failure) {
        vmio_log(VMIO_LOG_INFO, "vmio_server: %s: cannot send: %s; closing", c->t->peer,
                 strerror(-r));
        /* Wake the reader: nothing more can be answered. */
        vmio_transport_shutdown(c->t);
    }
    return r;
}

/* A READ reply whose data comes from the file by sendfile. A file that
 * ends before len (truncated since the range check) leaves the stream
 * broken: the connection is closed and the client resends the request
 * after reconnecting, when it gets the error. */
static int send_file_frame(struct conn *c, uint16_t type, uint64_t id, int fd, uint64_t off,
                           size_t len)
{
    uint8_t hdr[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h = { .type = type, .flags = 0, .id = id, .length = (uint32_t)len,
                               .status = 0 };
    vmio_wire_encode_hdr(hdr, &h);
    struct iovec iov = { hdr, sizeof hdr };
    int r, first_failure = 0;
    pthread_mutex_lock(&c->send_lock);
    if (c->send_failed) {
        r = -EPIPE;
    } else {
        r = c->t->ops->sendfile(c->t, &iov, 1, fd, off, len);
        if (r < 0)
            c->send_failed = first_failure = 1;
    }
    pthread_mutex_unlock(&c->send_lock);
    if (first_failure) {
        vmio_log(VMIO_LOG_INFO, "vmio_server: %s: cannot send: %s; closing", c->t->peer,
                 r == -ENODATA ? "the file ended early" : strerror(-r));
        vmio_transport_shutdown(c->t);
    }
    return r;
}

/* Error reply: status from err (> 0), body = the message. */
static int send_error(struct conn *c, uint16_t type, uint64_t id, int err, const char *msg)
{
    char body[VMIO_WIRE_MAX_ERRMSG];
    size_t n = sanitize_utf8(body, sizeof body, strip_api(msg));
    return send_frame(c, type, id, vmio_wire_status_from_errno(err), body, n);
}

static uint16_t reply_type(uint16_t type)
{
    return (uint16_t)(type | VMIO_WIRE_REPLY);
}

/* ---- handshake -------------------------------------------------------- */

static const char *type_name(uint16_t t)
{
    switch (t) {
    case VMIO_WIRE_HELLO: return "HELLO";
    case VMIO_WIRE_AUTH: return "AUTH";
    case VMIO_WIRE_OPEN: return "OPEN";
    default: return "a request";
    }
}

/* Receive one handshake frame of the expected type. On a frame-level
 * error returns -EPROTO/-EPIPE (nothing sent); on the wrong type replies
 * EPROTO and returns -EPROTO. */
static int recv_handshake(struct conn *c, uint16_t want, struct vmio_wire_hdr *h,
                          uint8_t *body)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    int r = vmio_transport_recv(c->t, hb, sizeof hb);
    if (r < 0)
        return r;
    r = vmio_wire_decode_hdr(API, hb, VMIO_WIRE_MAX_HANDSHAKE, h);
    if (r < 0) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: protocol error in handshake: %s; closing",
                 c->t->peer, strip_api(vmio_errmsg()));
        return r;
    }
    r = vmio_transport_recv(c->t, body, h->length);
    if (r < 0)
        return r;
    if (h->type != want || h->status != 0) {
        char msg[128];
        if (h->type != want)
            snprintf(msg, sizeof msg, "expected %s, got %s (type 0x%02x)", type_name(want),
                     type_name(h->type), h->type);
        else
            snprintf(msg, sizeof msg, "%s carries a status", type_name(want));
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: protocol error in handshake: %s; closing",
                 c->t->peer, msg);
        send_error(c, reply_type(h->type), h->id, EPROTO, msg);
        return -EPROTO;
    }
    return 0;
}

/* Log and reply with the calling thread's last error. */
static int handshake_fail(struct conn *c, const struct vmio_wire_hdr *h, int r)
{
    vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: %s refused: %s", c->t->peer,
             type_name(h->type), strip_api(vmio_errmsg()));
    send_error(c, reply_type(h->type), h->id, -r, vmio_errmsg());
    return r;
}

static const struct vmio_export *find_export(struct vmio_server *s, const char *name,
                                             size_t len)
{
    const struct vmio_export *e;
    pthread_mutex_lock(&s->lock);
    for (e = s->exports; e; e = e->next)
        if (strlen(e->name) == len && memcmp(e->name, name, len) == 0)
            break;
    pthread_mutex_unlock(&s->lock);
    return e;
}

static int handshake(struct conn *c, uint8_t *body)
{
    struct vmio_server *s = c->srv;
    struct vmio_wire_hdr h;
    int r;

    /* HELLO */
    r = recv_handshake(c, VMIO_WIRE_HELLO, &h, body);
    if (r < 0)
        return r;
    struct vmio_wire_hello hello;
    r = vmio_wire_decode_hello(API, body, h.length, &hello);
    if (r < 0)
        return handshake_fail(c, &h, r);
    if (hello.min_version > VMIO_WIRE_VERSION || hello.max_version < VMIO_WIRE_VERSION) {
        r = vmio_set_error(API, EPROTO,
                           "no common protocol version: client speaks %u..%u, server %u",
                           hello.min_version, hello.max_version, VMIO_WIRE_VERSION);
        return handshake_fail(c, &h, r);
    }
    struct vmio_wire_hello_reply hr;
    memset(&hr, 0, sizeof hr);
    hr.version = VMIO_WIRE_VERSION;
    hr.features = hello.features &
                  (VMIO_WIRE_F_ALL | VMIO_WIRE_F_LOCAL |
                   (vmio_transport_is_rdma(c->t) ? VMIO_WIRE_F_RDMA : 0));
    r = vmio_auth_random(API, hr.nonce, sizeof hr.nonce);
    if (r < 0)
        return handshake_fail(c, &h, r);
    /* The server proves itself first: a client never sends its proof to
     * a peer that does not know the secret. */
    vmio_auth_server_proof(s->secret, s->secret_len, hello.nonce, hr.nonce, hr.proof);
    uint8_t out[8 + VMIO_WIRE_NONCE_SIZE + VMIO_WIRE_PROOF_SIZE];
    size_t n = vmio_wire_encode_hello_reply(out, &hr);
    r = send_frame(c, reply_type(VMIO_WIRE_HELLO), h.id, 0, out, n);
    if (r < 0)
        return r;
    c->features = hr.features;

    /* AUTH */
    r = recv_handshake(c, VMIO_WIRE_AUTH, &h, body);
    if (r < 0)
        return r;
    if (h.length != VMIO_WIRE_PROOF_SIZE) {
        r = vmio_set_error(API, EPROTO, "AUTH has %u bytes, expected %u", h.length,
                           VMIO_WIRE_PROOF_SIZE);
        return handshake_fail(c, &h, r);
    }
    uint8_t expect[VMIO_WIRE_PROOF_SIZE];
    vmio_auth_client_proof(s->secret, s->secret_len, hr.nonce, hello.nonce, expect);
    if (!vmio_auth_proof_equal(expect, body)) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: authentication failed", c->t->peer);
        send_error(c, reply_type(VMIO_WIRE_AUTH), h.id, EACCES, "authentication failed");
        return -EACCES;
    }
    r = send_frame(c, reply_type(VMIO_WIRE_AUTH), h.id, 0, NULL, 0);
    if (r < 0)
        return r;

    /* OPEN */
    r = recv_handshake(c, VMIO_WIRE_OPEN, &h, body);
    if (r < 0)
        return r;
    struct vmio_wire_open op;
    r = vmio_wire_decode_open(API, body, h.length, &op);
    if (r < 0)
        return handshake_fail(c, &h, r);
    c->exp = find_export(s, op.export_name, op.export_len);
    if (!c->exp) {
        r = vmio_set_error(API, ENOENT, "unknown export '%.*s'", (int)op.export_len,
                           op.export_name);
        return handshake_fail(c, &h, r);
    }
    r = vmio_export_open(c->exp, op.path, op.path_len, op.flags, op.create_size, &c->file);
    if (r < 0)
        return handshake_fail(c, &h, r);
    struct vmio_wire_open_reply orep = { .max_io = VMIO_WIRE_MAX_IO };
    unsigned caps = 0;
    r = vmio_get_size(c->file, &orep.size);
    if (r == 0)
        r = vmio_get_caps(c->file, &caps);
    if (r < 0)
        return handshake_fail(c, &h, r);
    if (c->exp->flags & VMIO_EXPORT_RDONLY)
        caps &= ~(VMIO_CAP_WRITE | VMIO_CAP_DISCARD | VMIO_CAP_WRITE_ZEROES | VMIO_CAP_FUA);
    if (!(c->features & VMIO_WIRE_F_BLOCK_STATUS))
        caps &= ~VMIO_CAP_BLOCK_STATUS;
    orep.caps = caps;
    c->writable = (caps & VMIO_CAP_WRITE) != 0;
    uint8_t ob[16];
    n = vmio_wire_encode_open_reply(ob, &orep);
    r = send_frame(c, reply_type(VMIO_WIRE_OPEN), h.id, 0, ob, n);
    if (r < 0)
        return r;
    vmio_log(VMIO_LOG_INFO, "vmio_server: %s: opened %s/%.*s (%s, %" PRIu64 " bytes)",
             c->t->peer, c->exp->name, (int)op.path_len, op.path,
             c->writable ? "read-write" : "read-only", orep.size);
    return 0;
}

/* ---- buffers ---------------------------------------------------------- */

/* Wait until n more bytes of large buffers fit in the connection's budget
 * (n <= CONN_MAX_BYTES, so it always fits once nothing else is held). */
static void mem_charge(struct conn *c, size_t n)
{
    pthread_mutex_lock(&c->mem_lock);
    while (c->mem_bytes + n > CONN_MAX_BYTES)
        pthread_cond_wait(&c->mem_cond, &c->mem_lock);
    c->mem_bytes += n;
    pthread_mutex_unlock(&c->mem_lock);
}

static void mem_uncharge(struct conn *c, size_t n)
{
    pthread_mutex_lock(&c->mem_lock);
    c->mem_bytes -= n;
    pthread_cond_broadcast(&c->mem_cond);
    pthread_mutex_unlock(&c->mem_lock);
}

/* Close the thread's pipe, and whatever it still holds with it. */
static void pipe_drop(struct worker *w)
{
    if (w->has_pipe) {
        close(w->pipefd[0]);
        close(w->pipefd[1]);
        w->has_pipe = 0;
    }
    w->piped = 0;
}

static int pipe_get(struct worker *w)
{
    if (w->has_pipe)
        return 0;
    if (pipe2(w->pipefd, O_CLOEXEC) < 0)
        return -errno;
    /* Best effort: past the user's pipe-user-pages-soft the kernel gives
     * small pipes, and frames larger than the pipe take the usual way. */
    (void)fcntl(w->pipefd[1], F_SETPIPE_SZ,
                (int)__atomic_load_n(&pipe_bytes, __ATOMIC_RELAXED));
    int sz = fcntl(w->pipefd[1], F_GETPIPE_SZ);
    w->pipe_size = sz > 0 ? (size_t)sz : 0;
    w->has_pipe = 1;
    return 0;
}

static void buf_drop(struct conn *c, struct worker *w)
{
    vmio_mr_dereg(w->mr);
    w->mr = NULL;
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
    if (w->charged) {
        mem_uncharge(c, w->charged);
        w->charged = 0;
    }
}

/* Make w->buf hold at least need bytes; its contents are not kept. A
 * buffer above KEEP_BYTES is charged to the connection's budget (this may
 * wait for other requests to finish) and dropped after its request. */
static int buf_reserve(struct conn *c, struct worker *w, size_t need)
{
    if (need <= w->cap)
        return 0;
    size_t cap = BUF_MIN;
    while (cap < need && cap < KEEP_BYTES)
        cap *= 2;
    if (cap >= (1u << 20))
        cap = need <= KEEP_BYTES ? KEEP_BYTES : (need + 4095) & ~(size_t)4095;
    buf_drop(c, w);
    if (cap > KEEP_BYTES) {
        mem_charge(c, cap);
        w->charged = cap;
    }
    void *p;
    if (posix_memalign(&p, 4096, cap) != 0) {
        buf_drop(c, w);
        return -ENOMEM;
    }
    w->buf = p;
    w->cap = cap;
    return 0;
}

/* ---- receiving -------------------------------------------------------- */

/* One receive into the free end of the read-ahead buffer. */
static long rx_some(struct conn *c)
{
    return vmio_transport_recv_some(c->t, c->rbuf + c->rlen, RBUF_SIZE - c->rlen);
}

/* Nothing buffered, a new request is awaited: poll for the current
 * window, then sleep; the window adapts to what the wait took. */
static long rx_wait(struct conn *c)
{
    struct vmio_poll *p = &c->poll;
    if (p->max_ns == 0 || !c->may_poll)
        return rx_some(c);
    uint64_t start = vmio_now_ns();
    if (p->ns) {
        long n = vmio_transport_recv_poll(c->t, c->rbuf, RBUF_SIZE, p->ns);
        if (n == -ENOTSUP) {
            p->max_ns = 0;
            return rx_some(c);
        }
        if (n != -EAGAIN) {
            if (n > 0)
                vmio_poll_update(p, 1, 0);
            return n;
        }
    }
    long n = rx_some(c);
    if (n > 0)
        vmio_poll_update(p, 0, vmio_now_ns() - start);
    return n;
}

/* Receive into the connection's read-ahead buffer until at least want
 * bytes (<= RBUF_SIZE) are unread; reader role held. request: a new
 * request is awaited (polling applies). One recv() usually brings a whole
 * request, or several: the transport's own recv reads exact lengths,
 * which would cost a system call for the header and another for the
 * body. */
static int rx_fill(struct conn *c, size_t want, int request)
{
    size_t have = c->rlen - c->rpos;
    if (c->rpos) {
        memmove(c->rbuf, c->rbuf + c->rpos, have);
        c->rpos = 0;
        c->rlen = have;
    }
    while (c->rlen < want) {
        long n = request && c->rlen == 0 ? rx_wait(c) : rx_some(c);
        if (n > 0)
            c->rlen += (size_t)n;
        else
            return (int)n;
    }
    return 0;
}

/* The last rest bytes of a WRITE frame, have bytes of which are in w->buf:
 * into the thread's pipe, or, when they do not all fit or splicing fails,
 * into w->buf after all. Reader role held. */
static int rx_splice(struct conn *c, struct worker *w, size_t have, size_t rest)
{
    size_t moved = 0;
    long n = 0;
    while (moved < rest) {
        n = vmio_transport_splice_in(c->t, w->pipefd[1], rest - moved);
        if (n <= 0)
            break;
        moved += (size_t)n;
    }
    if (moved == rest) {
        w->piped = rest;
        __atomic_add_fetch(&n_spliced, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (n == -EPIPE) {
        pipe_drop(w);
        return (int)n;
    }
    /* Full (the sender's segments filled its slots with less than a page
     * each), or splice refused (then never again): take what the pipe
     * holds back out, receive the rest the usual way. */
    __atomic_add_fetch(&n_spilled, 1, __ATOMIC_RELAXED);
    if (n != -ENOSPC || ++w->spills >= MAX_SPILLS) {
        vmio_log(VMIO_LOG_DEBUG, "vmio_server: %s: no more splicing on this thread (%s)",
                 c->t->peer, n == -ENOSPC ? "the pipe keeps filling up" : strerror((int)-n));
        w->no_splice = 1;
    }
    uint8_t *p = w->buf + have;
    for (size_t got = 0; got < moved;) {
        ssize_t k = read(w->pipefd[0], p + got, moved - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            pipe_drop(w);
            return -e;
        }
        got += (size_t)k;
    }
    return vmio_transport_recv(c->t, p + moved, rest - moved);
}

/* Read one request frame: the header into *h, the body into w->buf.
 * Reader role held. Returns 0, or < 0 (logged) when the stream ended or
 * cannot be followed any more. */
static int rx_frame(struct conn *c, struct worker *w, struct vmio_wire_hdr *h)
{
    int r = 0;
    if (c->rlen - c->rpos < VMIO_WIRE_HDR_SIZE)
        r = rx_fill(c, VMIO_WIRE_HDR_SIZE, 1);
    if (r == -EPIPE)
        return r;
    if (r < 0) {
        vmio_log(VMIO_LOG_INFO, "vmio_server: %s: receive failed: %s", c->t->peer,
                 strerror(-r));
        return r;
    }
    r = vmio_wire_decode_hdr(API, c->rbuf + c->rpos, VMIO_WIRE_MAX_FRAME, h);
    if (r < 0) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: protocol error: %s; closing",
                 c->t->peer, strip_api(vmio_errmsg()));
        return r;
    }
    c->rpos += VMIO_WIRE_HDR_SIZE;
    size_t len = h->length, have = c->rlen - c->rpos;
    if (buf_reserve(c, w, len ? len : 1) < 0) {
        /* Without the body the stream cannot be followed any more. */
        vmio_log(VMIO_LOG_ERROR, "vmio_server: %s: out of memory; closing", c->t->peer);
        return -ENOMEM;
    }
    /* The data of a large WRITE to a local file goes into the pipe; its
     * I/O fields must be here first (they may have come alone). */
    int to_pipe = len > RX_SMALL && h->type == VMIO_WIRE_WRITE && c->splice && !w->no_splice &&
                  vmio_file_local_fd(c->file) >= 0;
    if (to_pipe && have < VMIO_WIRE_IO_BODY) {
        r = rx_fill(c, VMIO_WIRE_IO_BODY, 0);
        have = c->rlen - c->rpos;
    }
    if (r < 0) {
        /* reported below */
    } else if (have >= len) {
        memcpy(w->buf, c->rbuf + c->rpos, len);
        c->rpos += len;
    } else if (len <= RX_SMALL) {
        r = rx_fill(c, len, 0);
        if (r == 0) {
            memcpy(w->buf, c->rbuf, len);
            c->rpos = len;
        }
    } else {
        /* Large: what is buffered, then the rest straight into place
         * (for the data of a WRITE to a local file: into the pipe). */
        memcpy(w->buf, c->rbuf + c->rpos, have);
        c->rpos = c->rlen = 0;
        /* Not with FUA: a spliced write can only be made durable by
         * syncing the whole file, where pwritev2(RWF_DSYNC) syncs its own
         * range. The flags are bytes 12..15 of the I/O body. */
        if (to_pipe && !(vmio_get_le32(w->buf + 12) & VMIO_WIRE_REQ_FUA) && pipe_get(w) == 0 &&
            len - have <= w->pipe_size)
            r = rx_splice(c, w, have, len - have);
        else
            r = vmio_transport_recv(c->t, w->buf + have, len - have);
    }
    if (r < 0) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: truncated frame (%s); closing",
                 c->t->peer, r == -EPIPE ? "end of stream" : strerror(-r));
        return r;
    }
    return 0;
}

static void *request_main(void *arg);

/* Start one more request thread, unless the connection has all it may
 * have or is ending. */
static void add_thread(struct conn *c, const char *why)
{
    pthread_mutex_lock(&c->spawn_lock);
    if (!c->spawn_closed && c->nthreads < c->maxthreads) {
        struct worker *w = &c->workers[c->nthreads];
        w->c = c;
        int e = spawn(&w->thread, request_main, w);
        if (e == 0) {
            c->nthreads++;
            vmio_log(VMIO_LOG_DEBUG, "vmio_server: %s: request thread %u started (%s)",
                     c->t->peer, c->nthreads, why);
        } else {
            vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: cannot start a thread: %s; "
                     "serving with %u", c->t->peer, strerror(e), c->nthreads);
            c->maxthreads = c->nthreads;
        }
    }
    pthread_mutex_unlock(&c->spawn_lock);
}

/* Requests that commonly wait for the disk, or take long anyway. Every
 * read and write of a Gfarm export waits for gfsd. */
static int may_block(const struct conn *c, const struct vmio_wire_request *q)
{
    if (c->exp->gfarm && q->hdr.type != VMIO_WIRE_SIZE)
        return 1;
    switch (q->hdr.type) {
    case VMIO_WIRE_READ:
        return q->u.io.length > (1u << 20);
    case VMIO_WIRE_WRITE:
        return q->u.io.length > (1u << 20) || (q->u.io.flags & VMIO_WIRE_REQ_FUA) != 0;
    case VMIO_WIRE_SIZE:
    case VMIO_WIRE_BLOCK_STATUS:
        return 0;
    default:
        return 1;
    }
}

/* Somebody must read now (the reader role is free, rx_lock held): returns
 * 1 when one of the sleeping threads is to be called (the caller signals
 * rx_cond after unlocking: the woken thread needs the lock), 2 when there
 * is none and a thread is to be added, 0 when one is on its way. */
static int call_reader(struct conn *c)
{
    if (c->called)
        return 0;
    if (c->idle) {
        c->called++;
        return 1;
    }
    return 2;
}

enum { REQ_RUN, REQ_SKIP, REQ_STOP };

/* Take the reader role, read and decode one request, give the role up.
 * REQ_RUN: *q is to be run. REQ_SKIP: it was refused (error reply sent).
 * REQ_STOP: nothing more is read on this connection.
 *
 * Nobody is woken to read next unless it is needed: when more input is
 * already here, the request may block, or other requests are in progress
 * (the client has several in flight, so more are likely to come).
 * Otherwise the role stays free until a thread comes back from its
 * request (at one request at a time, this same thread: no switch at all),
 * and *alone is set so that the caller checks for waiting input if the
 * request turns out slow. Threads are added up to maxthreads when a
 * reader is needed and none sleeps. */
static int next_request(struct conn *c, struct worker *w, struct vmio_wire_request *q,
                        int *alone)
{
    struct vmio_wire_hdr h;
    int ret, r = 0;

    *alone = 0;
    pthread_mutex_lock(&c->rx_lock);
    if (w->running) {
        c->busy--;
        w->running = 0;
    }
    while (c->reading && !c->rx_done) {
        c->idle++;
        pthread_cond_wait(&c->rx_cond, &c->rx_lock);
        c->idle--;
        if (c->called)
            c->called--;
    }
    if (c->rx_done || __atomic_load_n(&c->srv->stopping, __ATOMIC_ACQUIRE)) {
        c->rx_done = 1;
        pthread_cond_broadcast(&c->rx_cond);
        pthread_mutex_unlock(&c->rx_lock);
        return REQ_STOP;
    }
    c->reading = 1;
    /* Polling pays only when the connection is otherwise idle: with
     * requests in progress, their replies are on the way and the CPU is
     * better left to them. */
    c->may_poll = c->busy == 0;
    pthread_mutex_unlock(&c->rx_lock);

    if (rx_frame(c, w, &h) < 0)
        ret = REQ_STOP;
    else if ((r = vmio_wire_decode_request(API, &h, w->buf, VMIO_WIRE_MAX_IO, q)) < 0)
        ret = REQ_SKIP;
    else if (h.type == VMIO_WIRE_DISCONNECT)
        ret = REQ_STOP;
    else
        ret = REQ_RUN;

    const char *why = NULL;
    if (ret == REQ_RUN) {
        if (c->rpos < c->rlen)
            why = "more requests waiting";
        else if (may_block(c, q))
            why = "request may block";
    }
    int call = 0;
    pthread_mutex_lock(&c->rx_lock);
    c->reading = 0;
    if (ret == REQ_STOP) {
        c->rx_done = 1;
    } else if (ret == REQ_RUN) {
        if (!why && c->busy)
            why = "requests in progress";
        if (why)
            call = call_reader(c);
        else
            *alone = 1;
        c->busy++;
        w->running = 1;
    }
    pthread_mutex_unlock(&c->rx_lock);
    if (ret == REQ_STOP)
        pthread_cond_broadcast(&c->rx_cond);
    else if (call == 1)
        pthread_cond_signal(&c->rx_cond);
    else if (call == 2)
        add_thread(c, why);
    if (ret == REQ_SKIP) {
        vmio_log(VMIO_LOG_DEBUG, "vmio_server: %s: bad request: %s", c->t->peer,
                 strip_api(vmio_errmsg()));
        send_error(c, reply_type(h.type), h.id, -r, vmio_errmsg());
    }
    return ret;
}

/* A request that ran alone took long: if input is waiting and nobody
 * reads, call a reader now rather than after the reply. Not on the fast
 * path: peeking at the socket costs a system call. */
static void check_waiting(struct conn *c)
{
    pthread_mutex_lock(&c->rx_lock);
    int vacant = !c->reading && !c->rx_done;
    pthread_mutex_unlock(&c->rx_lock);
    if (!vacant || !vmio_transport_readable(c->t))
        return;
    int call = 0;
    pthread_mutex_lock(&c->rx_lock);
    if (!c->reading && !c->rx_done)
        call = call_reader(c);
    pthread_mutex_unlock(&c->rx_lock);
    if (call == 1)
        pthread_cond_signal(&c->rx_cond);
    else if (call == 2)
        add_thread(c, "requests waiting behind a slow one");
}

/* ---- requests --------------------------------------------------------- */

static int read_only_error(struct conn *c)
{
    if (c->exp->flags & VMIO_EXPORT_RDONLY)
        return vmio_set_error(API, EROFS, "export is read-only");
    return vmio_set_error(API, EROFS, "image was opened read-only");
}

/* 1 when the data of io moves by one-sided RDMA, 0 when inline, or < 0
 * (recorded) when the buffer fields are not allowed. */
static int rdma_slots(const struct conn *c, const struct vmio_wire_io *io)
{
    if (io->rkey != 0 && (c->features & VMIO_WIRE_F_RDMA))
        return 1;
    if (io->addr != 0 || io->rkey != 0)
        return vmio_set_error(API, EINVAL, "RDMA buffer fields must be 0 without RDMA");
    return 0;
}

/* Register w->buf with the connection's RDMA device (once per buffer). */
static int buf_register(struct conn *c, struct worker *w)
{
    if (w->mr && w->mr->addr == w->buf && w->mr->len == w->cap &&
        w->mr->domain == c->t->domain)
        return 0;
    vmio_mr_dereg(w->mr);
    w->mr = NULL;
    int r = c->t->ops->mr_reg(c->t, w->buf, w->cap, &w->mr);
    return r < 0 ? vmio_error_reprefix(API, -r) : 0;
}

/* Move len bytes between w->buf and the client's buffer. A failure
 * breaks the connection (the QP is in error), so it is logged here. */
static int rdma_move(struct conn *c, struct worker *w, const struct vmio_wire_io *io, int to_client)
{
    int r = buf_register(c, w);
    if (r < 0)
        return r;
    r = to_client ? c->t->ops->rdma_write(c->t, w->mr, w->buf, io->length, io->addr, io->rkey)
                  : c->t->ops->rdma_read(c->t, w->mr, w->buf, io->length, io->addr, io->rkey);
    if (r < 0) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: RDMA %s of %u bytes failed (bad client "
                 "buffer or connection lost); closing", c->t->peer,
                 to_client ? "WRITE" : "READ", io->length);
        return vmio_set_error(API, EIO, "RDMA transfer failed");
    }
    return 0;
}

/* LOCAL: where the client, if it runs on this host, finds the open file.
 * Nothing is granted here: the numbers are useless to a process that the
 * kernel would not let read this one's descriptors anyway (the client
 * takes the descriptor with pidfd_getfd or opens /proc/PID/fd/N, both
 * under ptrace access checks). */
static int local_reply(struct conn *c, uint8_t *out)
{
    if (c->exp->flags & VMIO_EXPORT_NOLOCAL)
        return vmio_set_error(API, ENOTSUP, "export '%s' has no local data path",
                              c->exp->name);
    int fd = vmio_file_local_fd(c->file);
    if (fd < 0)
        return vmio_set_error(API, ENOTSUP, "export '%s' is not a local directory",
                              c->exp->name);
    struct vmio_wire_local_reply m = { .pid = (uint32_t)getpid(), .fd = (uint32_t)fd,
                                       .flags = c->writable ? VMIO_WIRE_LOCAL_RDWR : 0 };
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vmio_set_error_errno(API, errno, "stat of the open file");
    m.dev = st.st_dev;
    m.ino = st.st_ino;
    int r = vmio_local_identity(API, m.boot_id, &m.pidns);
    if (r < 0)
        return r;
    vmio_wire_encode_local_reply(out, &m);
    return 0;
}

/* A checked WRITE whose data is in w->buf (data, the first bytes) and in
 * the thread's pipe (the last w->piped bytes): into the file. Where the
 * file cannot take a splice, the pipe's data goes through w->buf. */
static int write_piped(struct conn *c, struct worker *w, const struct vmio_wire_io *io,
                       const void *data)
{
    size_t pre = io->length - w->piped;
    int fd = vmio_file_local_fd(c->file);
    int r = vmio_check_range(API, c->file, io->offset, io->length);
    if (r == 0 && pre)
        r = vmio_pwrite(c->file, data, pre, io->offset, 0);
    loff_t off = (loff_t)(io->offset + pre);
    while (r == 0 && w->piped) {
        ssize_t n = splice(w->pipefd[0], NULL, fd, &off, w->piped, SPLICE_F_MOVE);
        if (n > 0) {
            w->piped -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        int e = n < 0 ? errno : EIO;
        if ((e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) &&
            off == (loff_t)(io->offset + pre)) {
            /* Nothing spliced yet: the file system does not splice. */
            w->no_splice = 1;
            uint8_t *p = w->buf + VMIO_WIRE_IO_BODY + pre;
            size_t left = w->piped;
            for (size_t got = 0; r == 0 && got < left;) {
                ssize_t k = read(w->pipefd[0], p + got, left - got);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    r = vmio_set_error_errno(API, k < 0 ? errno : EIO, "pipe read failed");
                else
                    got += (size_t)k;
            }
            w->piped = 0;
            if (r == 0)
                r = vmio_pwrite(c->file, p, left, (uint64_t)off, 0);
            break;
        }
        r = vmio_set_error_errno(API, e, "write of %u bytes at %" PRIu64 " failed",
                                 io->length, io->offset);
    }
    return r;
}

/* Run one request through the storage API. Returns 0 with the reply body
 * in *body (READ data goes into w->buf, whose request body has been
 * decoded already; small replies into small[VMIO_WIRE_LOCAL_REPLY]), or
 * < 0 with the error recorded. */
static int exec_request(struct conn *c, struct worker *w, const struct vmio_wire_request *q,
                        uint8_t *small, const void **bodyp, size_t *blenp)
{
    const struct vmio_wire_io *io = &q->u.io;
    const struct vmio_wire_range *rg = &q->u.range;
    uint16_t type = q->hdr.type;
    const void *body = NULL;
    size_t blen = 0;
    int r = 0;

    vmio_clear_error();
    switch (type) {
    case VMIO_WIRE_READ:
    {
        int rdma = rdma_slots(c, io);
        r = rdma < 0 ? rdma : 0;
        if (r == 0 && io->flags)
            r = vmio_set_error(API, EINVAL, "READ takes no flags (got 0x%x)", io->flags);
        int fd = -1;
        if (r == 0 && rdma == 0 && io->length >= SENDFILE_MIN && c->t->ops->sendfile)
            fd = vmio_file_local_fd(c->file);
        if (fd >= 0) {
            /* The data goes from the page cache to the socket when the
             * reply is sent, never copied through w->buf. */
            r = vmio_check_range(API, c->file, io->offset, io->length);
            if (r == 0) {
                w->sf_fd = fd;
                w->sf_off = io->offset;
                blen = io->length;
            }
            break;
        }
        if (r == 0 && buf_reserve(c, w, io->length) < 0)
            r = vmio_set_error(API, ENOMEM, "out of memory");
        if (r == 0)
            r = vmio_pread(c->file, w->buf, io->length, io->offset);
        if (r == 0 && rdma == 1) {
            /* Data first, then the reply: on the same RC queue pair the
             * client sees the reply only after the data is in place. */
            r = rdma_move(c, w, io, 1);
        } else if (r == 0) {
            body = w->buf;
            blen = io->length;
        }
        break;
    }
    case VMIO_WIRE_WRITE:
    {
        int rdma = rdma_slots(c, io);
        r = rdma < 0 ? rdma : 0;
        if (r == 0 && (io->flags & ~VMIO_WIRE_REQ_FUA))
            r = vmio_set_error(API, EINVAL, "WRITE takes only the FUA flag (got 0x%x)",
                               io->flags);
        if (r == 0 && !c->writable)
            r = read_only_error(c);
        const void *data = q->data;
        if (r == 0 && rdma == 1) {
            /* The decoded request is a copy: the body buffer is free. */
            if (buf_reserve(c, w, io->length) < 0)
                r = vmio_set_error(API, ENOMEM, "out of memory");
            if (r == 0)
                r = rdma_move(c, w, io, 0);
            data = w->buf;
        }
        if (r == 0 && w->piped)
            r = write_piped(c, w, io, data);
        else if (r == 0)
            r = vmio_pwrite(c->file, data, io->length, io->offset,
                            (io->flags & VMIO_WIRE_REQ_FUA) ? VMIO_REQ_FUA : 0);
        break;
    }
    case VMIO_WIRE_FLUSH:
        r = vmio_flush(c->file);
        break;
    case VMIO_WIRE_TRIM:
        if (rg->flags & ~VMIO_WIRE_REQ_FUA)
            r = vmio_set_error(API, EINVAL, "TRIM takes only the FUA flag (got 0x%x)",
                               rg->flags);
        if (r == 0 && !c->writable)
            r = read_only_error(c);
        if (r == 0)
            r = vmio_discard(c->file, rg->offset, rg->length);
        if (r == 0 && (rg->flags & VMIO_WIRE_REQ_FUA))
            r = vmio_flush(c->file);
        break;
    case VMIO_WIRE_WRITE_ZEROES:
        if (!c->writable)
            r = read_only_error(c);
        if (r == 0)
            r = vmio_write_zeroes(c->file, rg->offset, rg->length,
                                  ((rg->flags & VMIO_WIRE_REQ_FUA) ? VMIO_REQ_FUA : 0) |
                                  ((rg->flags & VMIO_WIRE_REQ_MAY_TRIM) ? VMIO_REQ_MAY_TRIM : 0));
        break;
    case VMIO_WIRE_SIZE: {
        uint64_t size;
        r = vmio_get_size(c->file, &size);
        if (r == 0) {
            vmio_put_le64(small, size);
            body = small;
            blen = 8;
        }
        break;
    }
    case VMIO_WIRE_TRUNCATE:
        if (!(c->features & VMIO_WIRE_F_TRUNCATE))
            r = vmio_set_error(API, ENOTSUP, "TRUNCATE was not negotiated");
        else if (!c->writable)
            r = read_only_error(c);
        else
            r = vmio_truncate(c->file, q->u.size);
        break;
    case VMIO_WIRE_BLOCK_STATUS: {
        uint64_t len = 0;
        int t = 0;
        if (!(c->features & VMIO_WIRE_F_BLOCK_STATUS))
            r = vmio_set_error(API, ENOTSUP, "BLOCK_STATUS was not negotiated");
        else if (rg->flags)
            r = vmio_set_error(API, EINVAL, "BLOCK_STATUS takes no flags (got 0x%x)",
                               rg->flags);
        else
            r = vmio_block_status(c->file, rg->offset, rg->length, &len, &t);
        if (r == 0) {
            vmio_put_le64(small, len);
            vmio_put_le32(small + 8, (uint32_t)t);
            vmio_put_le32(small + 12, 0);
            body = small;
            blen = 16;
        }
        break;
    }
    case VMIO_WIRE_LOCAL:
        if (!(c->features & VMIO_WIRE_F_LOCAL))
            r = vmio_set_error(API, ENOTSUP, "LOCAL was not negotiated");
        else
            r = local_reply(c, small);
        if (r == 0) {
            body = small;
            blen = VMIO_WIRE_LOCAL_REPLY;
        }
        break;
    default:    /* the decoder let through only the types above */
        r = vmio_set_error(API, EPROTO, "unexpected request type 0x%x", type);
        break;
    }
    *bodyp = body;
    *blenp = blen;
    return r;
}

/* A request thread's life: read one request, run it, answer it, again,
 * until the connection stops reading. */
static void serve(struct conn *c, struct worker *w)
{
    w->sf_fd = -1;
    for (;;) {
        struct vmio_wire_request q;
        int alone;
        int r = next_request(c, w, &q, &alone);
        if (r == REQ_STOP)
            break;
        if (r == REQ_RUN) {
            uint8_t small[VMIO_WIRE_LOCAL_REPLY];
            const void *body;
            size_t blen;
            uint64_t t0 = alone ? vmio_now_ns() : 0;
            r = exec_request(c, w, &q, small, &body, &blen);
            /* Before the reply: until then the client cannot have reacted
             * to it, so input now came while we were busy. */
            if (alone && vmio_now_ns() - t0 > SLOW_NS)
                check_waiting(c);
            uint16_t type = reply_type(q.hdr.type);
            if (r < 0)
                send_error(c, type, q.hdr.id, -r, vmio_errmsg());
            else if (w->sf_fd >= 0)
                send_file_frame(c, type, q.hdr.id, w->sf_fd, w->sf_off, blen);
            else
                send_frame(c, type, q.hdr.id, 0, body, blen);
            w->sf_fd = -1;
            __atomic_add_fetch(&c->served, 1, __ATOMIC_RELAXED);
        }
        /* Data of a refused or failed WRITE is dropped with the pipe. */
        if (w->piped)
            pipe_drop(w);
        if (w->cap > KEEP_BYTES)
            buf_drop(c, w);
    }
    buf_drop(c, w);
    pipe_drop(w);
}

static void *request_main(void *arg)
{
    struct worker *w = arg;
    serve(w->c, w);
    return NULL;
}

/* After the handshake: serve with the connection's request threads, and
 * return once all of them are done and every reply went out. */
static void serve_conn(struct conn *c, unsigned nthreads)
{
    c->rbuf = malloc(RBUF_SIZE);
    c->workers = calloc(nthreads, sizeof *c->workers);
    if (!c->rbuf || !c->workers) {
        vmio_log(VMIO_LOG_ERROR, "vmio_server: %s: out of memory; closing", c->t->peer);
        return;
    }
    c->workers[0].c = c;
    c->nthreads = 1;
    c->maxthreads = nthreads;
    serve(c, &c->workers[0]);
    pthread_mutex_lock(&c->spawn_lock);
    c->spawn_closed = 1;
    unsigned n = c->nthreads;
    pthread_mutex_unlock(&c->spawn_lock);
    for (unsigned i = 1; i < n; i++)
        pthread_join(c->workers[i].thread, NULL);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct vmio_server *s = c->srv;

    uint8_t *body = malloc(VMIO_WIRE_MAX_HANDSHAKE);
    int r = body ? handshake(c, body) : -ENOMEM;
    free(body);

    pthread_mutex_lock(&s->lock);
    int timed_out = c->timed_out;
    c->deadline_ns = 0;
    unsigned nthreads = s->conn_threads;
    pthread_mutex_unlock(&s->lock);

    if (r == 0) {
        serve_conn(c, nthreads);
        if (c->poll.hits + c->poll.sleeps)
            vmio_log(VMIO_LOG_INFO, "vmio_server: %s: disconnected after %" PRIu64
                     " requests (polling: next request found %" PRIu64 " times, slept %"
                     PRIu64 " times)", c->t->peer,
                     __atomic_load_n(&c->served, __ATOMIC_RELAXED), c->poll.hits,
                     c->poll.sleeps);
        else
            vmio_log(VMIO_LOG_INFO, "vmio_server: %s: disconnected after %" PRIu64 " requests",
                     c->t->peer, __atomic_load_n(&c->served, __ATOMIC_RELAXED));
    } else if (timed_out) {
        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s: handshake timed out; closing",
                 c->t->peer);
    } else if (r == -EPIPE) {
        vmio_log(VMIO_LOG_INFO, "vmio_server: %s: closed during handshake", c->t->peer);
    }
    vmio_close(c->file);
    c->file = NULL;

    pthread_mutex_lock(&s->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->zombies;
    s->zombies = c;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    wake_acceptor(s);
    return NULL;
}

static void conn_free(struct conn *c)
{
    vmio_transport_close(c->t);
    free(c->rbuf);
    free(c->workers);
    pthread_mutex_destroy(&c->send_lock);
    pthread_mutex_destroy(&c->rx_lock);
    pthread_cond_destroy(&c->rx_cond);
    pthread_mutex_destroy(&c->spawn_lock);
    pthread_mutex_destroy(&c->mem_lock);
    pthread_cond_destroy(&c->mem_cond);
    free(c);
}

/* Join and free finished connections (detached from the list). */
static void reap(struct conn *z)
{
    while (z) {
        struct conn *n = z->next;
        pthread_join(z->thread, NULL);
        conn_free(z);
        z = n;
    }
}

/* ---- accepting -------------------------------------------------------- */

static void keepalive(int fd)
{
    /* A peer that vanished without a FIN must not pin a reader forever. */
    int on = 1, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* Whether a connection accepted now splices large WRITEs (mode: enum
 * vmio_server_splice): by default only when this thread, hence the
 * server, may run on one CPU only. */
static int splice_wanted(int mode)
{
    if (mode != VMIO_SERVER_SPLICE_AUTO)
        return mode == VMIO_SERVER_SPLICE_ON;
    long n = sysconf(_SC_NPROCESSORS_CONF);
    size_t ncpus = n > CPU_SETSIZE ? (size_t)n : CPU_SETSIZE;
    cpu_set_t *set = CPU_ALLOC(ncpus);
    if (!set)
        return 0;
    size_t size = CPU_ALLOC_SIZE(ncpus);
    int one = sched_getaffinity(0, size, set) == 0 && CPU_COUNT_S(size, set) == 1;
    CPU_FREE(set);
    return one;
}

static void new_conn(struct vmio_server *s, struct vmio_transport *t)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        vmio_log(VMIO_LOG_ERROR, "vmio_server: %s: out of memory; dropped", t->peer);
        vmio_transport_close(t);
        return;
    }
    c->srv = s;
    c->t = t;
    pthread_mutex_lock(&s->lock);
    vmio_poll_init(&c->poll, t->ops->recv_poll ? (uint64_t)s->poll_us * 1000u : 0);
    int splice = s->splice;
    pthread_mutex_unlock(&s->lock);
    c->splice = t->ops->splice_in && splice_wanted(splice);
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->rx_lock, NULL);
    pthread_cond_init(&c->rx_cond, NULL);
    pthread_mutex_init(&c->spawn_lock, NULL);
    pthread_mutex_init(&c->mem_lock, NULL);
    pthread_cond_init(&c->mem_cond, NULL);
    vmio_log(VMIO_LOG_INFO, "vmio_server: %s connection from %s", t->ops->name, t->peer);

    pthread_mutex_lock(&s->lock);
    c->deadline_ns = vmio_now_ns() + HANDSHAKE_TIMEOUT_NS;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    int r = spawn(&c->thread, conn_main, c);
    if (r != 0) {
        s->conns = c->next;
        if (c->next)
            c->next->prev = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (r != 0) {
        vmio_log(VMIO_LOG_ERROR, "vmio_server: %s: cannot start a thread: %s; dropped",
                 t->peer, strerror(r));
        conn_free(c);
    }
}

static void *accept_main(void *arg)
{
    struct vmio_server *s = arg;
    struct pollfd *pfds = NULL;
    size_t cap = 0;
    int backoff = 0;

    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->stopping) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        struct conn *z = s->zombies;
        s->zombies = NULL;
        size_t n = s->nlfds;
        if (n + 1 > cap) {
            struct pollfd *np = realloc(pfds, (n + 1) * sizeof *pfds);
            if (np) {
                pfds = np;
                cap = n + 1;
            } else {
                n = cap ? cap - 1 : 0;
            }
        }
        if (!pfds) {
            pthread_mutex_unlock(&s->lock);
            reap(z);
            usleep(100000);
            continue;
        }
        pfds[0] = (struct pollfd){ .fd = s->wakefd, .events = POLLIN };
        for (size_t i = 0; i < n; i++)
            pfds[i + 1] = (struct pollfd){ .fd = s->lfds[i], .events = POLLIN };
        /* Enforce handshake deadlines; sleep until the next one. */
        uint64_t now = vmio_now_ns(), next = 0;
        for (struct conn *c = s->conns; c; c = c->next) {
            if (!c->deadline_ns)
                continue;
            if (c->deadline_ns <= now) {
                c->deadline_ns = 0;
                c->timed_out = 1;
                vmio_transport_shutdown(c->t);
            } else if (!next || c->deadline_ns < next) {
                next = c->deadline_ns;
            }
        }
        pthread_mutex_unlock(&s->lock);
        reap(z);

        int timeout = next ? (int)((next - now) / 1000000u + 1) : -1;
        if (backoff)
            timeout = (timeout < 0 || timeout > backoff) ? backoff : timeout;
        int pr = poll(pfds, n + 1, timeout);
        if (pr < 0)
            continue;
        backoff = 0;
        if (pfds[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rn = read(s->wakefd, &v, sizeof v);
            (void)rn;
        }
        for (size_t i = 0; i < n; i++) {
            if (!(pfds[i + 1].revents & POLLIN))
                continue;
            pthread_mutex_lock(&s->lock);
            struct vmio_rdma_listener *rl = s->lrdma[i];
            pthread_mutex_unlock(&s->lock);
            if (rl) {
                struct vmio_transport *t;
                int r;
                while ((r = vmio_rdma_accept(API, rl, &t)) != -EAGAIN) {
                    if (r == 0)
                        new_conn(s, t);
                    else
                        vmio_log(VMIO_LOG_WARNING, "vmio_server: %s", strip_api(vmio_errmsg()));
                }
                continue;
            }
            int fd = accept4(pfds[i + 1].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    /* Out of descriptors: retry later instead of spinning. */
                    vmio_log(VMIO_LOG_ERROR, "vmio_server: accept: %s", strerror(errno));
                    backoff = 100;
                }
                continue;
            }
            struct vmio_transport *t;
            if (vmio_tcp_wrap(API, fd, &t) < 0) {
                vmio_log(VMIO_LOG_ERROR, "vmio_server: %s", strip_api(vmio_errmsg()));
                close(fd);
                continue;
            }
            keepalive(fd);
            new_conn(s, t);
        }
    }
    free(pfds);
    return NULL;
}

/* ---- public API ------------------------------------------------------- */

static void close_listeners(struct vmio_server *s)
{
    for (size_t i = 0; i < s->nlfds; i++) {
        if (s->lrdma[i])
            vmio_rdma_listener_close(s->lrdma[i]);
        else
            close(s->lfds[i]);
    }
    s->nlfds = 0;
}

/* Add a listening fd (TCP socket, or an RDMA listener's channel). */
static int add_listener(const char *api, struct vmio_server *s, int fd,
                        struct vmio_rdma_listener *rl, int bound)
{
    pthread_mutex_lock(&s->lock);
    int *nl = realloc(s->lfds, (s->nlfds + 1) * sizeof *nl);
    if (nl)
        s->lfds = nl;
    struct vmio_rdma_listener **nr = nl ? realloc(s->lrdma, (s->nlfds + 1) * sizeof *nr) : NULL;
    if (nr)
        s->lrdma = nr;
    if (!nl || !nr) {
        pthread_mutex_unlock(&s->lock);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    s->lfds[s->nlfds] = fd;
    s->lrdma[s->nlfds] = rl;
    s->nlfds++;
    if (!rl)
        s->port = bound;
    int running = s->running;
    pthread_mutex_unlock(&s->lock);
    if (running)
        wake_acceptor(s);
    return 0;
}

VMIO_API int vmio_server_new(vmio_server **server)
{
    static const char api[] = "vmio_server_new";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, server != NULL, EFAULT);
    struct vmio_server *s = calloc(1, sizeof *s);
    if (!s)
        return vmio_set_error(api, ENOMEM, "out of memory");
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wakefd < 0) {
        int e = errno;
        free(s);
        return vmio_set_error_errno(api, e, "eventfd");
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->lock, NULL);
    s->port = -1;
    s->poll_us = DEFAULT_POLL_US;
    s->splice = VMIO_SERVER_SPLICE_AUTO;
    *server = s;
    return 0;
}

VMIO_API void vmio_server_free(vmio_server *s)
{
    if (!s)
        return;
    vmio_server_stop(s);
    close_listeners(s);
    free(s->lfds);
    free(s->lrdma);
    while (s->exports) {
        struct vmio_export *e = s->exports;
        s->exports = e->next;
        vmio_export_free(e);
    }
    if (s->secret) {
        explicit_bzero(s->secret, s->secret_len);
        free(s->secret);
    }
    close(s->wakefd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static int set_secret(const char *api, vmio_server *s, const void *secret, size_t len)
{
    if (len == 0)
        return vmio_set_error(api, EINVAL, "empty secret");
    if (len > MAX_SECRET)
        return vmio_set_error(api, EINVAL, "secret longer than %u bytes", MAX_SECRET);
    uint8_t *copy = malloc(len);
    if (!copy)
        return vmio_set_error(api, ENOMEM, "out of memory");
    memcpy(copy, secret, len);
    pthread_mutex_lock(&s->lock);
    if (s->running) {
        pthread_mutex_unlock(&s->lock);
        explicit_bzero(copy, len);
        free(copy);
        return vmio_set_error(api, EBUSY, "server is running");
    }
    if (s->secret) {
        explicit_bzero(s->secret, s->secret_len);
        free(s->secret);
    }
    s->secret = copy;
    s->secret_len = len;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

VMIO_API int vmio_server_set_secret(vmio_server *s, const void *secret, size_t len)
{
    static const char api[] = "vmio_server_set_secret";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    VMIO_CHECK_ARG(api, secret != NULL, EFAULT);
    return set_secret(api, s, secret, len);
}

VMIO_API int vmio_server_set_secret_file(vmio_server *s, const char *path)
{
    static const char api[] = "vmio_server_set_secret_file";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    VMIO_CHECK_ARG(api, path != NULL, EFAULT);
    uint8_t *secret;
    size_t len;
    int r = vmio_read_secret_file(api, path, &secret, &len);
    if (r < 0)
        return r;
    r = set_secret(api, s, secret, len);
    explicit_bzero(secret, len);
    free(secret);
    return r;
}

VMIO_API int vmio_server_set_workers(vmio_server *s, unsigned workers)
{
    static const char api[] = "vmio_server_set_workers";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    if (workers > MAX_WORKERS)
        return vmio_set_error(api, EINVAL, "%u workers is more than the limit of %u", workers,
                              MAX_WORKERS);
    pthread_mutex_lock(&s->lock);
    int running = s->running;
    if (!running)
        s->nworkers = workers;
    pthread_mutex_unlock(&s->lock);
    if (running)
        return vmio_set_error(api, EBUSY, "server is running");
    return 0;
}

VMIO_API int vmio_server_set_poll(vmio_server *s, unsigned max_us)
{
    static const char api[] = "vmio_server_set_poll";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    if (max_us > MAX_POLL_US)
        return vmio_set_error(api, EINVAL, "a polling window of %u us is more than the "
                              "limit of %u us", max_us, MAX_POLL_US);
    pthread_mutex_lock(&s->lock);
    s->poll_us = max_us;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

VMIO_API int vmio_server_set_splice(vmio_server *s, int mode)
{
    static const char api[] = "vmio_server_set_splice";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    if (mode != VMIO_SERVER_SPLICE_AUTO && mode != VMIO_SERVER_SPLICE_ON &&
        mode != VMIO_SERVER_SPLICE_OFF)
        return vmio_set_error(api, EINVAL, "unknown splice mode %d", mode);
    pthread_mutex_lock(&s->lock);
    s->splice = mode;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

VMIO_API int vmio_server_add_export(vmio_server *s, const char *name, const char *dir,
                                    unsigned flags)
{
    static const char api[] = "vmio_server_add_export";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    VMIO_CHECK_ARG(api, name != NULL, EFAULT);
    VMIO_CHECK_ARG(api, dir != NULL, EFAULT);
    const unsigned known = VMIO_EXPORT_RDONLY | VMIO_EXPORT_NOLOCAL;
    if (flags & ~known)
        return vmio_set_error(api, EINVAL, "unknown export flags 0x%x", flags & ~known);
    struct vmio_export *e;
    int r = vmio_export_new(api, name, dir, flags, &e);
    if (r < 0)
        return r;
    /* Appended under the lock and never removed before free: readers
     * may keep pointers to exports. */
    pthread_mutex_lock(&s->lock);
    struct vmio_export **pp = &s->exports;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0)
            break;
    if (*pp) {
        pthread_mutex_unlock(&s->lock);
        vmio_export_free(e);
        return vmio_set_error(api, EEXIST, "export '%s' already exists", name);
    }
    *pp = e;
    pthread_mutex_unlock(&s->lock);
    vmio_log(VMIO_LOG_DEBUG, "vmio_server: export '%s' = %s%s", name, dir,
             (flags & VMIO_EXPORT_RDONLY) ? " (read-only)" : "");
    return 0;
}

VMIO_API int vmio_server_listen(vmio_server *s, const char *host, uint16_t port)
{
    static const char api[] = "vmio_server_listen";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    int bound = 0;
    int fd = vmio_tcp_listen(api, host, port, &bound);
    if (fd < 0)
        return fd;
    /* Non-blocking, so that a connection reset between poll and accept
     * cannot block the accept thread. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return vmio_set_error_errno(api, e, "fcntl");
    }
    int r = add_listener(api, s, fd, NULL, bound);
    if (r < 0) {
        close(fd);
        return r;
    }
    vmio_log(VMIO_LOG_INFO, "vmio_server: listening on %s%s%s port %d",
             host && strchr(host, ':') ? "[" : "", host ? host : "*",
             host && strchr(host, ':') ? "]" : "", bound);
    return 0;
}

VMIO_API int vmio_server_listen_rdma(vmio_server *s, const char *host, uint16_t port)
{
    static const char api[] = "vmio_server_listen_rdma";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    struct vmio_rdma_listener *rl;
    int fd;
    int r = vmio_rdma_listen(api, host, port, NULL, &rl, &fd);
    if (r < 0)
        return r;
    r = add_listener(api, s, fd, rl, 0);
    if (r < 0) {
        vmio_rdma_listener_close(rl);
        return r;
    }
    vmio_log(VMIO_LOG_INFO, "vmio_server: listening for RDMA on %s port %u", host ? host : "*",
             port);
    return 0;
}

VMIO_API int vmio_server_port(vmio_server *s)
{
    static const char api[] = "vmio_server_port";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    pthread_mutex_lock(&s->lock);
    int port = s->port;
    pthread_mutex_unlock(&s->lock);
    if (port < 0)
        return vmio_set_error(api, EINVAL, "server is not listening");
    return port;
}

VMIO_API int vmio_server_start(vmio_server *s)
{
    static const char api[] = "vmio_server_start";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (s->running)
        r = vmio_set_error(api, EBUSY, "server is already running");
    else if (!s->secret)
        r = vmio_set_error(api, EINVAL, "no secret set (vmio_server_set_secret)");
    else if (s->nlfds == 0)
        r = vmio_set_error(api, EINVAL, "not listening (vmio_server_listen)");
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    unsigned want = s->nworkers ? s->nworkers : DEFAULT_WORKERS;
    s->conn_threads = want;
    s->running = 1;
    __atomic_store_n(&s->stopping, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    int e = spawn(&s->acceptor, accept_main, s);
    if (e != 0) {
        pthread_mutex_lock(&s->lock);
        s->running = 0;
        pthread_mutex_unlock(&s->lock);
        return vmio_set_error_errno(api, e, "cannot start the accept thread");
    }
    vmio_log(VMIO_LOG_INFO, "vmio_server: serving with up to %u request thread%s per connection",
             want, want == 1 ? "" : "s");
    return 0;
}

static void shutdown_conns(struct vmio_server *s, int how)
{
    for (struct conn *c = s->conns; c; c = c->next) {
        if (how == SHUT_RDWR)
            vmio_transport_shutdown(c->t);
        else
            vmio_transport_shutdown_read(c->t);  /* replies still go out */
    }
}

VMIO_API int vmio_server_stop(vmio_server *s)
{
    static const char api[] = "vmio_server_stop";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, s != NULL, EFAULT);
    pthread_mutex_lock(&s->lock);
    if (!s->running || s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    wake_acceptor(s);
    pthread_join(s->acceptor, NULL);

    pthread_mutex_lock(&s->lock);
    close_listeners(s);
    s->port = -1;
    shutdown_conns(s, SHUT_RD);
    /* Connections whose peer does not read its replies would block a stop
     * forever: after the grace period, cut them. */
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += STOP_GRACE_MS / 1000;
    int cut = 0;
    while (s->conns) {
        if (cut) {
            pthread_cond_wait(&s->cond, &s->lock);
        } else if (pthread_cond_timedwait(&s->cond, &s->lock, &dl) == ETIMEDOUT) {
            vmio_log(VMIO_LOG_WARNING, "vmio_server: connections still busy after %d s; "
                     "closing them", STOP_GRACE_MS / 1000);
            shutdown_conns(s, SHUT_RDWR);
            cut = 1;
        }
    }
    struct conn *z = s->zombies;
    s->zombies = NULL;
    pthread_mutex_unlock(&s->lock);
    reap(z);

    pthread_mutex_lock(&s->lock);
    s->running = 0;
    __atomic_store_n(&s->stopping, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    vmio_log(VMIO_LOG_INFO, "vmio_server: stopped");
    return 0;
}
