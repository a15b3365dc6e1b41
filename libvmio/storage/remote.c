/* vmio:// backend: the client side of the vmio protocol (docs/protocol.md).
 *
 * One connection per open image. Any thread may submit: a request is put in
 * the in-flight table and sent under the send lock. There is no receiver
 * thread: replies are read by whoever needs them (leader/follower), so a
 * reply costs no thread hand-off. A thread waiting for a synchronous request
 * becomes the receiver if nobody else is, reads replies (READ data straight
 * into the callers' buffers) and completes them in whatever order the server
 * answers, until its own request is done; then it hands the role to the
 * next waiter. Asynchronous users get the socket in the epoll set behind
 * vmio_aio_fd() and read replies in vmio_aio_run_completions() (progress).
 * Requests larger than the server's max I/O are split into parts.
 *
 * When the connection breaks, a reconnect thread (idle otherwise) performs
 * the handshake, authentication and open again (without CREATE/TRUNC) and
 * resends every request that was not answered: writes are positional, so
 * resending is idempotent and nothing acknowledged is lost. If the server
 * does not come back within the reconnect timeout, pending and new requests
 * fail with a clear error while reconnection goes on in the background.
 *
 * Over RDMA (transport=rdma|auto, F_RDMA negotiated) the frames travel as
 * SEND/RECV messages, and READ/WRITE parts above the inline threshold name
 * a registered client buffer (addr, rkey): the server moves the data with
 * RDMA WRITE/READ and replies afterwards, so the client's CPU does nothing
 * for the data. The buffer is the caller's own when it lies inside memory
 * registered with vmio_register_memory(), else a registered bounce slot
 * (one copy), else the data goes inline like over TCP.
 *
 * With local=auto|on, a client on the server's own host asks for the
 * server's open descriptor of the image (LOCAL) once the image is open,
 * takes it over (storage/local.c) and from then on does every operation
 * itself through the file backend: the connection is closed and nothing
 * goes through the server any more. */
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "protocol/auth.h"
#include "protocol/wire.h"
#include "storage/backend.h"
#include "storage/local.h"
#include "transport/transport.h"

#define API "vmio"
#define NBUCKETS 256u

enum conn_state { ST_CONNECTED, ST_RECONNECTING, ST_FAILED, ST_CLOSING };

/* Internal operations beyond struct vmio_req's. */
enum { OP_SIZE = 100, OP_TRUNCATE, OP_BLOCK_STATUS };

struct rop;

/* One frame on the wire: a whole request or one part of a split one. */
struct rpart {
    uint64_t id;
    uint16_t type;
    uint64_t offset;
    uint64_t length;        /* io bytes, or range length */
    uint32_t flags;
    size_t iov_skip;        /* where this part's data starts in the op's iov */
    int slot;               /* bounce slot held, or -1 (s->lock) */
    struct rcache_ent *cent;/* registration cache entry in use (s->lock) */
    int via_rdma;           /* sent with a buffer for one-sided RDMA */
    struct rop *op;
    struct rpart *hnext;    /* in-flight hash chain */
};

/* One operation as the storage layer sees it. */
struct rop {
    int opcode;
    const struct iovec *iov;
    int iovcnt;
    struct vmio_req *areq;  /* async: completed through areq->complete */
    /* sync waiter (uses the state's lock) */
    pthread_cond_t c;
    int done;               /* atomic */
    int waiting;            /* on s->waiters */
    struct rop *wnext;
    int remaining;          /* parts not yet answered (atomic) */
    int result;
    struct vmio_error_copy err;
    uint64_t u64;           /* SIZE result; BLOCK_STATUS length */
    uint32_t u32;           /* BLOCK_STATUS type */
    struct rpart parts_inline[1];
    struct rpart *parts;
    int nparts;
};

struct remote_state {
    char *host;
    uint16_t port;
    char *export_name;
    char *path;
    uint8_t *secret;
    size_t secret_len;
    unsigned open_flags;
    uint64_t create_size;
    int connect_timeout_ms;
    int reconnect_timeout_ms;

    uint32_t max_io;
    unsigned caps;

    pthread_mutex_t lock;       /* state, table, counters */
    enum conn_state state;
    struct vmio_error_copy fail_err;
    struct rpart *table[NBUCKETS];
    int in_flight;

    pthread_mutex_t send_lock;  /* order: send_lock before lock */
    struct vmio_transport *t;   /* NULL while reconnecting */
    uint64_t next_id;

    int rx_busy;                /* somebody is the receiver (lock) */
    struct rop *waiters;        /* sync ops waiting (lock) */
    pthread_t reconn_thread;
    pthread_cond_t reconn_cond;
    int need_reconnect;         /* lock */
    int epfd;                   /* from attach_aio, or -1 */
    uint64_t reconnects, retried;

    /* RDMA data path */
    int tmode;                  /* TM_* */
    struct vmio_rdma_opts ropts;
    uint32_t inline_max;        /* parts up to this size go inline */
    int t_rdma;                 /* s->t moves data by RDMA (send_lock) */
    uint32_t features;          /* granted in the last handshake */

    /* Same-host data path (local=) */
    int local_mode;             /* LOCAL_* */
    void *local;                /* file-backend state once taken over */
    int reconn_started;
    char tnote[160];            /* transport in use and why (lock) */
    struct mreg *regs;          /* vmio_register_memory() regions (lock) */
    char *bounce;               /* BOUNCE_SLOTS x BOUNCE_SIZE, lazily */
    struct vmio_mr *bounce_mr;
    uint32_t bounce_used;       /* bitmap (lock) */
    uint64_t rdma_bytes, bounce_bytes, inline_bytes;
    struct rcache_ent *rcache;  /* registration cache (lock) */
    unsigned rcache_n, rcache_max;
    uint64_t rcache_tick, rcache_hits, rcache_misses;
};

/* The opt-in registration cache (rdma-regcache=N): caller buffers that were
 * not registered are registered on first use (whole pages) and kept, up to
 * N regions, least recently used evicted. Only for callers whose buffers
 * stay mapped while the handle is open: a region unmapped and mapped again
 * would keep the old pages registered. */
struct rcache_ent {
    char *base;
    size_t len;
    struct vmio_mr *mr;
    unsigned refs;          /* parts in flight using it */
    uint64_t used;          /* LRU tick */
    struct rcache_ent *next;
};

enum { TM_TCP, TM_RDMA, TM_AUTO };
enum { LOCAL_OFF, LOCAL_AUTO, LOCAL_ON };
#define BOUNCE_SLOTS 8u
#define BOUNCE_SIZE (1u << 20)
#define INLINE_DEFAULT (64u << 10)   /* measured: bench/rdma.sh, docs/performance.md */

/* A region the caller registered; mr is re-made when the connection's
 * device changes. */
struct mreg {
    char *addr;
    size_t len;
    struct vmio_mr *mr;
    struct mreg *next;
};

/* ---- handshake --------------------------------------------------------- */

static int recv_frame(struct vmio_transport *t, const char *what, uint16_t want_type,
                      struct vmio_wire_hdr *h, uint8_t *body, size_t body_max)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    int r = vmio_transport_recv(t, hb, sizeof hb);
    if (r < 0)
        return vmio_set_error_errno(API, -r == EPIPE ? ECONNRESET : -r,
                                    "connection closed by %s during %s", t->peer, what);
    r = vmio_wire_decode_hdr(API, hb, (uint32_t)body_max, h);
    if (r < 0)
        return r;
    if (h->type != want_type)
        return vmio_set_error(API, EPROTO, "%s: unexpected message 0x%x during %s", t->peer,
                              h->type, what);
    r = vmio_transport_recv(t, body, h->length);
    if (r < 0)
        return vmio_set_error_errno(API, -r == EPIPE ? ECONNRESET : -r,
                                    "%s: connection lost during %s", t->peer, what);
    return 0;
}

static int send_frame(struct vmio_transport *t, uint16_t type, const uint8_t *body, size_t len)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h = { .type = type, .length = (uint32_t)len };
    vmio_wire_encode_hdr(hb, &h);
    struct iovec v[2] = { { hb, sizeof hb }, { (void *)body, len } };
    int r = vmio_transport_sendv(t, v, len ? 2 : 1);
    if (r < 0)
        return vmio_set_error_errno(API, -r, "sending to %s", t->peer);
    return 0;
}

/* Length of the printable prefix of a server's error message: a peer's
 * bytes never reach our messages with control characters in them. */
static int errmsg_len(const uint8_t *body, uint32_t len)
{
    int n = (int)VMIO_MIN(len, VMIO_WIRE_MAX_ERRMSG);
    for (int i = 0; i < n; i++)
        if (body[i] < 0x20 || body[i] == 0x7f)
            return i;
    return n;
}

/* An error reply during the handshake: status + message from the server. */
static int server_error(struct vmio_transport *t, const struct vmio_wire_hdr *h,
                        const uint8_t *body, const char *what)
{
    int err = vmio_wire_errno_from_status(h->status);
    int n = errmsg_len(body, h->length);
    return vmio_set_error(API, err, "%s refused %s: %.*s", t->peer, what, n,
                          n ? (const char *)body : strerror(err));
}

/* Connect, authenticate both ways, open the image. */
static void set_note(struct remote_state *s, const char *fmt, ...) VMIO_PRINTF(2, 3);
static void set_note(struct remote_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->lock);
    vsnprintf(s->tnote, sizeof s->tnote, fmt, ap);
    pthread_mutex_unlock(&s->lock);
    va_end(ap);
}

/* Connect by RDMA or TCP as the transport option says; with auto, a
 * failed RDMA attempt falls back to TCP and the reason is kept. */
static int connect_transport(struct remote_state *s, struct vmio_transport **t)
{
    if (s->tmode != TM_TCP) {
        if (s->tmode == TM_AUTO && !vmio_rdma_available()) {
            set_note(s, "tcp (no RDMA device)");
        } else {
            int r = vmio_rdma_connect(API, s->host, s->port, s->connect_timeout_ms, &s->ropts, t);
            if (r == 0) {
                set_note(s, "rdma");
                return 0;
            }
            if (s->tmode == TM_RDMA)
                return r;
            const char *m = vmio_errmsg();
            set_note(s, "tcp (RDMA failed: %s)", strncmp(m, API ": ", 6) == 0 ? m + 6 : m);
            vmio_log(VMIO_LOG_INFO, "vmio: %s:%u: RDMA failed, using TCP: %s", s->host, s->port,
                     m);
        }
    } else {
        set_note(s, "tcp");
    }
    return vmio_tcp_connect(API, s->host, s->port, s->connect_timeout_ms, t);
}

static int handshake(struct remote_state *s, unsigned open_flags, struct vmio_transport **out,
                     struct vmio_wire_open_reply *orep, int *rdma)
{
    struct vmio_transport *t;
    int r = connect_transport(s, &t);
    if (r < 0)
        return r;
    /* A server that accepts and then says nothing must not hang us. */
    vmio_transport_set_recv_timeout(t, s->connect_timeout_ms);

    uint8_t buf[VMIO_WIRE_MAX_HANDSHAKE];
    struct vmio_wire_hdr h;
    struct vmio_wire_hello hello = { .min_version = 1, .max_version = VMIO_WIRE_VERSION,
                                     .features = VMIO_WIRE_F_ALL };
    if (vmio_transport_is_rdma(t))
        hello.features |= VMIO_WIRE_F_RDMA;
    if (s->local_mode != LOCAL_OFF)
        hello.features |= VMIO_WIRE_F_LOCAL;
    r = vmio_auth_random(API, hello.nonce, sizeof hello.nonce);
    if (r < 0)
        goto fail;
    size_t n = vmio_wire_encode_hello(buf, &hello);
    if ((r = send_frame(t, VMIO_WIRE_HELLO, buf, n)) < 0)
        goto fail;
    if ((r = recv_frame(t, "handshake", VMIO_WIRE_HELLO | VMIO_WIRE_REPLY, &h, buf,
                        sizeof buf)) < 0)
        goto fail;
    if (h.status != 0) {
        r = server_error(t, &h, buf, "the handshake");
        goto fail;
    }
    struct vmio_wire_hello_reply hr;
    if ((r = vmio_wire_decode_hello_reply(API, buf, h.length, &hr)) < 0)
        goto fail;
    if (hr.version != VMIO_WIRE_VERSION) {
        r = vmio_set_error(API, EPROTO, "%s chose unsupported protocol version %u", t->peer,
                           hr.version);
        goto fail;
    }
    uint8_t expect[VMIO_WIRE_PROOF_SIZE];
    vmio_auth_server_proof(s->secret, s->secret_len, hello.nonce, hr.nonce, expect);
    if (!vmio_auth_proof_equal(expect, hr.proof)) {
        r = vmio_set_error(API, EACCES,
                           "authentication failed: %s does not know our secret "
                           "(wrong secret file?)", t->peer);
        goto fail;
    }
    uint8_t proof[VMIO_WIRE_PROOF_SIZE];
    vmio_auth_client_proof(s->secret, s->secret_len, hr.nonce, hello.nonce, proof);
    if ((r = send_frame(t, VMIO_WIRE_AUTH, proof, sizeof proof)) < 0)
        goto fail;
    if ((r = recv_frame(t, "authentication", VMIO_WIRE_AUTH | VMIO_WIRE_REPLY, &h, buf,
                        sizeof buf)) < 0)
        goto fail;
    if (h.status != 0) {
        r = server_error(t, &h, buf, "authentication");
        if (r == -EACCES)
            r = vmio_set_error(API, EACCES, "authentication failed at %s (wrong secret?)",
                               t->peer);
        goto fail;
    }
    struct vmio_wire_open om = {
        .flags = open_flags & VMIO_WIRE_OPEN_ALL,
        .create_size = s->create_size,
        .export_name = s->export_name, .export_len = (uint16_t)strlen(s->export_name),
        .path = s->path, .path_len = (uint16_t)strlen(s->path),
    };
    n = vmio_wire_encode_open(buf, &om);
    if ((r = send_frame(t, VMIO_WIRE_OPEN, buf, n)) < 0)
        goto fail;
    if ((r = recv_frame(t, "open", VMIO_WIRE_OPEN | VMIO_WIRE_REPLY, &h, buf, sizeof buf)) < 0)
        goto fail;
    if (h.status != 0) {
        char what[VMIO_WIRE_MAX_NAME + 32];
        snprintf(what, sizeof what, "to open '%s/%s'", s->export_name, s->path);
        r = server_error(t, &h, buf, what);
        goto fail;
    }
    if ((r = vmio_wire_decode_open_reply(API, buf, h.length, orep)) < 0)
        goto fail;
    *rdma = (hr.features & VMIO_WIRE_F_RDMA) != 0;
    s->features = hr.features;
    if (vmio_transport_is_rdma(t) && !*rdma)
        set_note(s, "rdma (server moves no data by RDMA: inline)");
    vmio_transport_set_recv_timeout(t, 0);
    if (!vmio_transport_is_rdma(t)) {
        int one = 1;
        setsockopt(t->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    *out = t;
    return 0;
fail:
    vmio_transport_close(t);
    return r;
}

/* Flags of a second open of the same image: it exists now, and what
 * CREATE/TRUNC did must not be done again. */
static unsigned reopen_flags(const struct remote_state *s)
{
    return s->open_flags & ~(unsigned)(VMIO_WIRE_OPEN_CREATE | VMIO_WIRE_OPEN_TRUNC |
                                       VMIO_WIRE_OPEN_EXCL);
}

/* ---- in-flight table ------------------------------------------------ */

static void table_add(struct remote_state *s, struct rpart *p)
{
    struct rpart **b = &s->table[p->id % NBUCKETS];
    p->hnext = *b;
    *b = p;
    s->in_flight++;
}

static struct rpart *table_take(struct remote_state *s, uint64_t id)
{
    for (struct rpart **pp = &s->table[id % NBUCKETS]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->id == id) {
            struct rpart *p = *pp;
            *pp = p->hnext;
            s->in_flight--;
            return p;
        }
    return NULL;
}

/* ---- completion --------------------------------------------------------- */

static void op_finish(struct rop *op)
{
    if (op->areq) {
        struct vmio_req *areq = op->areq;
        int result = op->result;
        if (result < 0)
            vmio_error_restore(&op->err);
        if (op->parts != op->parts_inline)
            free(op->parts);
        free(op);
        areq->complete(areq, result);
        return;
    }
    __atomic_store_n(&op->done, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&op->c);
}

/* Give back a part's bounce slot. Caller holds s->lock. */
static void part_release(struct remote_state *s, struct rpart *p)
{
    if (p->cent) {
        p->cent->refs--;
        p->cent = NULL;
    }
    if (p->slot >= 0) {
        s->bounce_used &= ~(1u << p->slot);
        p->slot = -1;
    }
}

/* A part finished with result (error already recorded on this thread).
 * Caller holds s->lock. */
static void part_done(struct rpart *p, int result)
{
    struct rop *op = p->op;
    if (result < 0) {
        /* First error wins. */
        if (op->result == 0) {
            op->result = result;
            vmio_error_save(&op->err);
        }
    }
    if (--op->remaining == 0)
        op_finish(op);
}

/* ---- sending ------------------------------------------------------------ */

/* Slice [skip, skip+len) of iov into out (allocated if large). */
static int iov_slice(const struct iovec *iov, int iovcnt, size_t skip, size_t len,
                     struct iovec *stackv, int stackn, struct iovec **out)
{
    int i = 0;
    while (i < iovcnt && skip >= iov[i].iov_len) {
        skip -= iov[i].iov_len;
        i++;
    }
    int cnt = 0;
    size_t left = len, sk = skip;
    for (int j = i; j < iovcnt && left > 0; j++) {
        size_t take = VMIO_MIN(iov[j].iov_len - sk, left);
        left -= take;
        sk = 0;
        cnt++;
    }
    struct iovec *v = cnt <= stackn ? stackv : malloc(sizeof *v * (size_t)cnt);
    if (!v)
        return -ENOMEM;
    left = len;
    sk = skip;
    int k = 0;
    for (int j = i; j < iovcnt && left > 0; j++) {
        size_t take = VMIO_MIN(iov[j].iov_len - sk, left);
        v[k].iov_base = (char *)iov[j].iov_base + sk;
        v[k].iov_len = take;
        k++;
        left -= take;
        sk = 0;
    }
    *out = v;
    return cnt;
}

/* Registration of [addr, addr+len) valid on t, or NULL. s->lock held. */
static struct vmio_mr *find_reg(struct remote_state *s, struct vmio_transport *t, char *addr,
                                size_t len)
{
    for (struct mreg *m = s->regs; m; m = m->next) {
        if (addr < m->addr || addr + len > m->addr + m->len)
            continue;
        if (!m->mr || m->mr->domain != t->domain) {
            vmio_mr_dereg(m->mr);
            m->mr = NULL;
            if (t->ops->mr_reg(t, m->addr, m->len, &m->mr) < 0)
                return NULL;
        }
        return m->mr;
    }
    return NULL;
}

static void rcache_drop(struct remote_state *s, struct rcache_ent **pp)
{
    struct rcache_ent *e = *pp;
    *pp = e->next;
    vmio_mr_dereg(e->mr);
    free(e);
    s->rcache_n--;
}

/* The cache entry covering [addr, addr+len) on t's device, registering it
 * on a miss; NULL when the cache is off or registration failed. s->lock
 * held. */
static struct rcache_ent *rcache_get(struct remote_state *s, struct vmio_transport *t,
                                     char *addr, size_t len)
{
    if (!s->rcache_max)
        return NULL;
    for (struct rcache_ent *e = s->rcache; e; e = e->next) {
        if (addr >= e->base && addr + len <= e->base + e->len && e->mr->domain == t->domain) {
            e->used = ++s->rcache_tick;
            s->rcache_hits++;
            return e;
        }
    }
    /* Make room: the least recently used idle entry goes. */
    while (s->rcache_n >= s->rcache_max) {
        struct rcache_ent **victim = NULL;
        for (struct rcache_ent **pp = &s->rcache; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (!victim || (*pp)->used < (*victim)->used))
                victim = pp;
        if (!victim)
            return NULL;    /* all in use: bounce this one */
        rcache_drop(s, victim);
    }
    uintptr_t a = (uintptr_t)addr & ~(uintptr_t)4095;
    uintptr_t end = ((uintptr_t)addr + len + 4095) & ~(uintptr_t)4095;
    struct rcache_ent *e = calloc(1, sizeof *e);
    if (!e || t->ops->mr_reg(t, (void *)a, end - a, &e->mr) < 0) {
        free(e);
        return NULL;
    }
    e->base = (char *)a;
    e->len = end - a;
    e->used = ++s->rcache_tick;
    e->next = s->rcache;
    s->rcache = e;
    s->rcache_n++;
    s->rcache_misses++;
    return e;
}

/* Choose the buffer the server moves a READ/WRITE part's data to or from:
 * the caller's registered memory, or a bounce slot. Returns 0 with
 * addr and rkey set, or -1 to send the data inline. Caller holds send_lock. */
static int rdma_target(struct remote_state *s, struct vmio_transport *t, struct rpart *p,
                       uint64_t *addr, uint32_t *rkey)
{
    const struct iovec *iov = p->op->iov;
    int i = 0;
    size_t skip = p->iov_skip;
    while (i < p->op->iovcnt && skip >= iov[i].iov_len) {
        skip -= iov[i].iov_len;
        i++;
    }
    pthread_mutex_lock(&s->lock);
    if (p->cent) {          /* resent after a reconnect: look again */
        p->cent->refs--;
        p->cent = NULL;
    }
    if (i < p->op->iovcnt && iov[i].iov_len - skip >= p->length) {
        char *base = (char *)iov[i].iov_base + skip;
        struct vmio_mr *mr = find_reg(s, t, base, p->length);
        struct rcache_ent *e = mr ? NULL : rcache_get(s, t, base, p->length);
        if (e) {
            e->refs++;
            p->cent = e;
            mr = e->mr;
        }
        if (mr) {
            pthread_mutex_unlock(&s->lock);
            *addr = (uintptr_t)base;
            *rkey = mr->rkey;
            return 0;
        }
    }
    if (p->length > BOUNCE_SIZE) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    if (!s->bounce) {
        if (posix_memalign((void **)&s->bounce, 4096, (size_t)BOUNCE_SLOTS * BOUNCE_SIZE)) {
            s->bounce = NULL;
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
    }
    if (!s->bounce_mr || s->bounce_mr->domain != t->domain) {
        vmio_mr_dereg(s->bounce_mr);
        s->bounce_mr = NULL;
        if (t->ops->mr_reg(t, s->bounce, (size_t)BOUNCE_SLOTS * BOUNCE_SIZE, &s->bounce_mr) < 0) {
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
    }
    if (p->slot < 0) {
        for (unsigned k = 0; k < BOUNCE_SLOTS; k++) {
            if (!(s->bounce_used & (1u << k))) {
                s->bounce_used |= 1u << k;
                p->slot = (int)k;
                break;
            }
        }
    }
    int slot = p->slot;
    uint32_t key = s->bounce_mr->rkey;
    pthread_mutex_unlock(&s->lock);
    if (slot < 0)
        return -1;
    char *b = s->bounce + (size_t)slot * BOUNCE_SIZE;
    if (p->type == VMIO_WIRE_WRITE)
        vmio_iov_to_buf(b, iov, p->op->iovcnt, p->iov_skip, p->length);
    *addr = (uintptr_t)b;
    *rkey = key;
    return 0;
}

/* Error injection for the tests (internal, not exported): the next N
 * one-sided requests name a wrong remote key, so the server's RDMA
 * operation fails and the queue pair goes into the error state. */
unsigned vmio_remote_inject_bad_rkey;

/* Send one part on t. Caller holds send_lock. */
static int send_part(struct remote_state *s, struct vmio_transport *t, struct rpart *p)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE + VMIO_WIRE_IO_BODY];
    struct vmio_wire_hdr h = { .type = p->type, .id = p->id };
    size_t blen = 0;
    struct iovec stackv[18];
    struct iovec *data = NULL;
    int ndata = 0;

    switch (p->type) {
    case VMIO_WIRE_READ:
    case VMIO_WIRE_WRITE: {
        struct vmio_wire_io io = { .offset = p->offset, .length = (uint32_t)p->length,
                                   .flags = p->flags };
        p->via_rdma = s->t_rdma && p->length > s->inline_max &&
                      rdma_target(s, t, p, &io.addr, &io.rkey) == 0;
        unsigned inj = p->via_rdma ? __atomic_load_n(&vmio_remote_inject_bad_rkey,
                                                     __ATOMIC_RELAXED) : 0;
        while (inj && !__atomic_compare_exchange_n(&vmio_remote_inject_bad_rkey, &inj, inj - 1,
                                                   0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
        if (inj)
            io.rkey ^= 0x5a5a00u;
        blen = vmio_wire_encode_io(hb + VMIO_WIRE_HDR_SIZE, &io);
        if (p->type == VMIO_WIRE_WRITE && !p->via_rdma) {
            ndata = iov_slice(p->op->iov, p->op->iovcnt, p->iov_skip, p->length, stackv + 1,
                              16, &data);
            if (ndata < 0)
                return vmio_set_error(API, ENOMEM, "out of memory");
        }
        break;
    }
    case VMIO_WIRE_TRIM:
    case VMIO_WIRE_WRITE_ZEROES:
    case VMIO_WIRE_BLOCK_STATUS: {
        struct vmio_wire_range rg = { .offset = p->offset, .length = p->length,
                                      .flags = p->flags };
        blen = vmio_wire_encode_range(hb + VMIO_WIRE_HDR_SIZE, &rg);
        break;
    }
    case VMIO_WIRE_TRUNCATE:
        vmio_put_le64(hb + VMIO_WIRE_HDR_SIZE, p->offset);
        blen = 8;
        break;
    default:
        break;
    }
    h.length = (uint32_t)(blen + (p->type == VMIO_WIRE_WRITE && !p->via_rdma ? p->length : 0));
    vmio_wire_encode_hdr(hb, &h);

    struct iovec *v = stackv;
    if (ndata > 16) {
        v = malloc(sizeof *v * (size_t)(ndata + 1));
        if (!v) {
            free(data);
            return vmio_set_error(API, ENOMEM, "out of memory");
        }
        memcpy(v + 1, data, sizeof *v * (size_t)ndata);
        free(data);
        data = NULL;
    }
    v[0].iov_base = hb;
    v[0].iov_len = VMIO_WIRE_HDR_SIZE + blen;
    int r = vmio_transport_sendv(t, v, 1 + ndata);
    if (v != stackv)
        free(v);
    else if (data && data != stackv + 1)
        free(data);
    return r;
}

/* Register a whole op's parts and send them if connected. */
static int submit_op(struct remote_state *s, struct rop *op)
{
    pthread_mutex_lock(&s->send_lock);
    pthread_mutex_lock(&s->lock);
    if (s->state == ST_FAILED || s->state == ST_CLOSING) {
        struct vmio_error_copy e = s->fail_err;
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&s->send_lock);
        if (e.err == 0)
            return vmio_set_error(API, ESHUTDOWN, "connection is closed");
        vmio_error_restore(&e);
        return -e.err;
    }
    op->remaining = op->nparts;
    for (int i = 0; i < op->nparts; i++) {
        op->parts[i].id = ++s->next_id;
        table_add(s, &op->parts[i]);
    }
    struct vmio_transport *t = s->t;
    pthread_mutex_unlock(&s->lock);
    /* Replies may arrive (and free op) as soon as a part is sent: keep
     * what we need locally. */
    int n = op->nparts;
    struct rpart *parts = op->parts;
    for (int i = 0; t && i < n; i++) {
        if (send_part(s, t, &parts[i]) < 0) {
            /* The receiver sees the broken stream and resends after
             * reconnecting; the parts stay in the table. */
            vmio_transport_shutdown(t);
            break;
        }
    }
    pthread_mutex_unlock(&s->send_lock);
    return 0;
}

/* ---- receiving ---------------------------------------------------------- */

static void fail_all(struct remote_state *s, const struct vmio_error_copy *e)
{
    pthread_mutex_lock(&s->lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        while (s->table[b]) {
            struct rpart *p = s->table[b];
            s->table[b] = p->hnext;
            s->in_flight--;
            vmio_error_restore(e);
            part_release(s, p);
            part_done(p, -e->err);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* Read and complete one reply. With nowait, returns -EAGAIN (no error
 * recorded) when no reply has started to arrive. */
static int read_reply(struct remote_state *s, struct vmio_transport *t, int nowait)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h;
    int r;
    if (nowait && vmio_transport_is_rdma(t)) {
        if (!vmio_transport_readable(t))
            return -EAGAIN;
        r = vmio_transport_recv(t, hb, sizeof hb);
    } else if (nowait) {
        ssize_t n = recv(t->fd, hb, sizeof hb, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return -EAGAIN;
        if (n < 0)
            r = -errno;
        else if (n == 0)
            r = -EPIPE;
        else
            r = (size_t)n < sizeof hb ? vmio_transport_recv(t, hb + n, sizeof hb - (size_t)n) : 0;
    } else {
        r = vmio_transport_recv(t, hb, sizeof hb);
    }
    if (r < 0)
        return vmio_set_error_errno(API, r == -EPIPE ? ECONNRESET : -r,
                                    "connection to %s lost", t->peer);
    r = vmio_wire_decode_hdr(API, hb, s->max_io, &h);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->lock);
    struct rpart *p = table_take(s, h.id);
    pthread_mutex_unlock(&s->lock);
    if (!p)
        return vmio_set_error(API, EPROTO, "%s answered unknown request id %" PRIu64, t->peer,
                              h.id);
    if (h.type != (p->type | VMIO_WIRE_REPLY)) {
        r = vmio_set_error(API, EPROTO, "%s answered request type 0x%x with 0x%x", t->peer,
                           p->type, h.type);
        goto lost;
    }
    if (h.status != 0) {
        uint8_t msg[VMIO_WIRE_MAX_ERRMSG];
        if (h.length > sizeof msg) {
            r = vmio_set_error(API, EPROTO, "%s sent an oversized error message", t->peer);
            goto lost;
        }
        r = vmio_transport_recv(t, msg, h.length);
        if (r < 0) {
            r = vmio_set_error_errno(API, -r, "connection to %s lost", t->peer);
            goto lost;
        }
        int err = vmio_wire_errno_from_status(h.status);
        int n = errmsg_len(msg, h.length);
        vmio_set_error(API, err, "server: %.*s", n, n ? (const char *)msg : strerror(err));
        pthread_mutex_lock(&s->lock);
        part_release(s, p);
        part_done(p, -err);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    uint32_t want = 0;
    if (p->type == VMIO_WIRE_READ && !p->via_rdma)
        want = (uint32_t)p->length;
    else if (p->type == VMIO_WIRE_SIZE)
        want = 8;
    else if (p->type == VMIO_WIRE_BLOCK_STATUS)
        want = 16;
    if (h.length != want) {
        r = vmio_set_error(API, EPROTO, "%s sent a %u-byte reply, expected %u", t->peer,
                           h.length, want);
        goto lost;
    }
    if (p->type == VMIO_WIRE_READ && p->via_rdma) {
        /* The data is in place: the server wrote it before replying. */
        if (p->slot >= 0)
            vmio_buf_to_iov(p->op->iov, p->op->iovcnt, p->iov_skip,
                            s->bounce + (size_t)p->slot * BOUNCE_SIZE, p->length);
    } else if (p->type == VMIO_WIRE_READ) {
        struct iovec stackv[16], *v;
        int n = iov_slice(p->op->iov, p->op->iovcnt, p->iov_skip, p->length, stackv, 16, &v);
        if (n < 0) {
            r = vmio_set_error(API, ENOMEM, "out of memory");
            goto lost;
        }
        for (int i = 0; i < n && r == 0; i++)
            r = vmio_transport_recv(t, v[i].iov_base, v[i].iov_len);
        if (v != stackv)
            free(v);
        if (r < 0) {
            r = vmio_set_error_errno(API, r == -EPIPE ? ECONNRESET : -r,
                                     "connection to %s lost", t->peer);
            goto lost;
        }
    } else if (want) {
        uint8_t b[16];
        r = vmio_transport_recv(t, b, want);
        if (r < 0) {
            r = vmio_set_error_errno(API, r == -EPIPE ? ECONNRESET : -r,
                                     "connection to %s lost", t->peer);
            goto lost;
        }
        p->op->u64 = vmio_get_le64(b);
        if (p->type == VMIO_WIRE_BLOCK_STATUS) {
            p->op->u32 = vmio_get_le32(b + 8);
            if (p->op->u32 > VMIO_EXTENT_HOLE || p->op->u64 == 0 || p->op->u64 > p->length) {
                r = vmio_set_error(API, EPROTO, "%s sent a bad extent", t->peer);
                goto lost;
            }
        }
    }
    pthread_mutex_lock(&s->lock);
    if (p->type == VMIO_WIRE_READ || p->type == VMIO_WIRE_WRITE) {
        if (!p->via_rdma)
            s->inline_bytes += p->length;
        else if (p->slot >= 0)
            s->bounce_bytes += p->length;
        else
            s->rdma_bytes += p->length;
    }
    part_release(s, p);
    part_done(p, 0);
    pthread_mutex_unlock(&s->lock);
    return 0;
lost:
    /* Put it back: it will be resent on the next connection. */
    pthread_mutex_lock(&s->lock);
    table_add(s, p);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Wake one waiting synchronous caller so that it becomes the receiver.
 * Caller holds s->lock. */
static void hand_over(struct remote_state *s)
{
    for (struct rop *w = s->waiters; w; w = w->wnext)
        if (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
            pthread_cond_signal(&w->c);
            return;
        }
}

/* The receiver found the stream broken: drop the connection (its parts stay
 * in the table) and let the reconnect thread take over. */
static void connection_broken(struct remote_state *s, struct vmio_transport *t)
{
    vmio_log(VMIO_LOG_WARNING, "%s", vmio_errmsg());
    pthread_mutex_lock(&s->send_lock);
    pthread_mutex_lock(&s->lock);
    int mine = s->t == t;
    if (mine) {
        s->t = NULL;
        if (s->epfd >= 0)
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, t->fd, NULL);
        if (s->state == ST_CONNECTED)
            s->state = ST_RECONNECTING;
        s->need_reconnect = 1;
        pthread_cond_signal(&s->reconn_cond);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->send_lock);
    if (mine)
        vmio_transport_close(t);
}

/* Act as the receiver. Caller holds s->lock, nobody else receives and the
 * connection is up. With mine: read until that op is done. Without: read
 * what is ready (after waiting for the first reply if wait). Returns with
 * s->lock held and the role handed over; result is replies handled. */
static int rx_loop(struct remote_state *s, struct rop *mine, int wait)
{
    s->rx_busy = 1;
    struct vmio_transport *t = s->t;
    pthread_mutex_unlock(&s->lock);
    int handled = 0;
    for (;;) {
        if (mine) {
            if (__atomic_load_n(&mine->done, __ATOMIC_ACQUIRE))
                break;
        } else if (handled >= 64) {
            break;
        }
        int nowait = !mine && (!wait || handled > 0);
        int r = read_reply(s, t, nowait);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            connection_broken(s, t);
            break;
        }
        handled++;
    }
    pthread_mutex_lock(&s->lock);
    s->rx_busy = 0;
    hand_over(s);
    return handled;
}

static int is_permanent(int err)
{
    return err == EACCES || err == ENOENT || err == EROFS || err == EPERM || err == EISDIR ||
           err == EPROTO || err == EINVAL;
}

static int is_closing(struct remote_state *s)
{
    pthread_mutex_lock(&s->lock);
    int c = s->state == ST_CLOSING;
    pthread_mutex_unlock(&s->lock);
    return c;
}

/* Re-establish the connection and resend what is in flight. Returns 0 on
 * success, or -ESHUTDOWN when the handle is closing. */
static int reconnect(struct remote_state *s)
{
    uint64_t start = vmio_now_ns();
    int delay = 50;
    int reported = 0;
    for (;;) {
        if (is_closing(s))
            return -ESHUTDOWN;
        struct vmio_transport *t;
        struct vmio_wire_open_reply orep;
        int rdma = 0;
        int r = handshake(s, reopen_flags(s), &t, &orep, &rdma);
        if (r == 0) {
            pthread_mutex_lock(&s->send_lock);
            s->t_rdma = rdma;
            pthread_mutex_lock(&s->lock);
            int n = 0;
            for (unsigned b = 0; b < NBUCKETS; b++)
                for (struct rpart *p = s->table[b]; p; p = p->hnext)
                    n++;
            s->reconnects++;
            s->retried += (uint64_t)n;
            pthread_mutex_unlock(&s->lock);
            /* Nobody receives while s->t is NULL, and submitters wait for
             * send_lock, which we hold: the table cannot change under us. */
            int ok = 1;
            for (unsigned b = 0; b < NBUCKETS && ok; b++)
                for (struct rpart *p = s->table[b]; p && ok; p = p->hnext)
                    if (send_part(s, t, p) < 0)
                        ok = 0;
            if (!ok)
                vmio_transport_shutdown(t);
            pthread_mutex_lock(&s->lock);
            s->t = t;
            s->max_io = VMIO_MIN(s->max_io, orep.max_io);
            if (s->state != ST_CLOSING)
                s->state = ST_CONNECTED;
            if (s->epfd >= 0) {
                struct epoll_event ev = { .events = EPOLLIN, .data.fd = t->fd };
                vmio_transport_set_pollable(t);
                epoll_ctl(s->epfd, EPOLL_CTL_ADD, t->fd, &ev);
            }
            if (!s->rx_busy)
                hand_over(s);
            pthread_mutex_unlock(&s->lock);
            pthread_mutex_unlock(&s->send_lock);
            vmio_log(VMIO_LOG_INFO, "vmio: reconnected to %s:%u, resent %d requests", s->host,
                     s->port, n);
            return 0;
        }
        int err = -r;
        uint64_t waited_ms = (vmio_now_ns() - start) / 1000000u;
        if (is_permanent(err) || waited_ms >= (uint64_t)s->reconnect_timeout_ms) {
            if (!reported) {
                char msg[200];
                snprintf(msg, sizeof msg, "%s", vmio_errmsg());
                const char *rest = strncmp(msg, "vmio: ", 6) == 0 ? msg + 6 : msg;
                vmio_set_error(API, is_permanent(err) ? err : ESHUTDOWN,
                               "connection to %s:%u lost and not re-established within "
                               "%d ms: %s", s->host, s->port, s->reconnect_timeout_ms, rest);
                struct vmio_error_copy e;
                vmio_error_save(&e);
                pthread_mutex_lock(&s->lock);
                if (s->state != ST_CLOSING)
                    s->state = ST_FAILED;
                s->fail_err = e;
                pthread_mutex_unlock(&s->lock);
                fail_all(s, &e);
                reported = 1;
            }
            delay = 1000;   /* keep trying in the background */
        }
        /* Sleep, but wake at once when the handle is closed. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)delay * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&s->lock);
        if (s->state != ST_CLOSING)
            pthread_cond_timedwait(&s->reconn_cond, &s->lock, &ts);
        pthread_mutex_unlock(&s->lock);
        if (delay < 1000)
            delay *= 2;
    }
}

static void *reconn_main(void *arg)
{
    struct remote_state *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->need_reconnect && s->state != ST_CLOSING)
            pthread_cond_wait(&s->reconn_cond, &s->lock);
        if (s->state == ST_CLOSING)
            break;
        pthread_mutex_unlock(&s->lock);
        int r = reconnect(s);
        pthread_mutex_lock(&s->lock);
        s->need_reconnect = 0;
        if (r < 0)
            break;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- operations ------------------------------------------------------- */

static struct rop *op_new(struct remote_state *s, int opcode, uint16_t type,
                          const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t length,
                          unsigned flags, struct vmio_req *areq)
{
    int nparts = 1;
    uint64_t chunk = length;
    if (type == VMIO_WIRE_READ || type == VMIO_WIRE_WRITE) {
        /* Over RDMA, parts fit a bounce slot (one-sided moves pay no
         * per-frame cost, so smaller parts lose nothing). */
        chunk = __atomic_load_n(&s->t_rdma, __ATOMIC_RELAXED) ? VMIO_MIN(s->max_io, BOUNCE_SIZE)
                                                             : s->max_io;
        nparts = (int)((length + chunk - 1) / chunk);
    }
    struct rop *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->parts = op->parts_inline;
    if (nparts > 1) {
        op->parts = calloc((size_t)nparts, sizeof *op->parts);
        if (!op->parts) {
            free(op);
            return NULL;
        }
    }
    op->opcode = opcode;
    op->iov = iov;
    op->iovcnt = iovcnt;
    op->areq = areq;
    op->nparts = nparts;
    for (int i = 0; i < nparts; i++) {
        struct rpart *p = &op->parts[i];
        p->type = type;
        p->op = op;
        p->flags = flags;
        p->offset = offset + (uint64_t)i * chunk;
        p->iov_skip = (size_t)i * (size_t)chunk;
        p->length = VMIO_MIN(chunk, length - (uint64_t)i * chunk);
        p->slot = -1;
    }
    if (!areq)
        pthread_cond_init(&op->c, NULL);
    return op;
}

static void op_free(struct rop *op)
{
    pthread_cond_destroy(&op->c);
    if (op->parts != op->parts_inline)
        free(op->parts);
    free(op);
}

/* Run an op synchronously; on success copies the results out. */
static int run_sync(struct remote_state *s, int opcode, uint16_t type, const struct iovec *iov,
                    int iovcnt, uint64_t offset, uint64_t length, unsigned flags,
                    uint64_t *u64, uint32_t *u32)
{
    struct rop *op = op_new(s, opcode, type, iov, iovcnt, offset, length, flags, NULL);
    if (!op)
        return vmio_set_error(API, ENOMEM, "out of memory");
    int r = submit_op(s, op);
    if (r < 0) {
        op_free(op);
        return r;
    }
    pthread_mutex_lock(&s->lock);
    while (!__atomic_load_n(&op->done, __ATOMIC_ACQUIRE)) {
        if (!s->rx_busy && s->state == ST_CONNECTED && s->t) {
            rx_loop(s, op, 1);
            continue;
        }
        if (!op->waiting) {
            op->wnext = s->waiters;
            s->waiters = op;
            op->waiting = 1;
        }
        pthread_cond_wait(&op->c, &s->lock);
    }
    if (op->waiting)
        for (struct rop **pp = &s->waiters; *pp; pp = &(*pp)->wnext)
            if (*pp == op) {
                *pp = op->wnext;
                break;
            }
    pthread_mutex_unlock(&s->lock);
    r = op->result;
    if (r < 0)
        vmio_error_restore(&op->err);
    else {
        if (u64)
            *u64 = op->u64;
        if (u32)
            *u32 = op->u32;
    }
    op_free(op);
    return r;
}

/* ---- same-host data path ------------------------------------------------ */

/* Ask for the server's descriptor and take it over. Runs in remote_open
 * on the fresh connection, before anything else is in flight. Returns 0
 * with s->local set, or < 0 with the reason recorded; *broken is set when
 * the connection can no longer be used (the exchange did not complete). */
static int local_take(struct remote_state *s, int *broken)
{
    *broken = 0;
    if (!(s->features & VMIO_WIRE_F_LOCAL))
        return vmio_set_error(API, ENOTSUP, "%s offers no local data path", s->t->peer);
    *broken = 1;
    int r = send_frame(s->t, VMIO_WIRE_LOCAL, NULL, 0);
    if (r < 0)
        return r;
    struct vmio_wire_hdr h;
    uint8_t buf[VMIO_WIRE_MAX_ERRMSG];
    vmio_transport_set_recv_timeout(s->t, s->connect_timeout_ms);
    r = recv_frame(s->t, "the local data path request", VMIO_WIRE_LOCAL | VMIO_WIRE_REPLY, &h,
                   buf, sizeof buf);
    vmio_transport_set_recv_timeout(s->t, 0);
    if (r < 0)
        return r;
    *broken = 0;
    if (h.status != 0)
        return server_error(s->t, &h, buf, "the local data path");
    struct vmio_wire_local_reply m;
    if ((r = vmio_wire_decode_local_reply(API, buf, h.length, &m)) < 0)
        return r;
    char how[96];
    int rw = (s->open_flags & (VMIO_WIRE_OPEN_RDWR | VMIO_WIRE_OPEN_CREATE |
                               VMIO_WIRE_OPEN_TRUNC)) != 0;
    int fd = vmio_local_take_fd(API, &m, rw, how, sizeof how);
    if (fd < 0)
        return fd;
    char name[2 * VMIO_WIRE_MAX_NAME + 2];
    snprintf(name, sizeof name, "%s/%s", s->export_name, s->path);
    if ((r = vmio_file_backend_adopt(fd, rw ? VMIO_O_RDWR : VMIO_O_RDONLY, name,
                                     &s->local)) < 0)
        return vmio_error_reprefix(API, -r);
    char via[sizeof s->tnote];
    snprintf(via, sizeof via, "%s", s->tnote);
    set_note(s, "local (%s, found through %s)", how, via);
    return 0;
}

static int remote_preadv(void *st, const struct iovec *iov, int n, uint64_t off)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.preadv(s->local, iov, n, off);
    return run_sync(st, VMIO_OP_READ, VMIO_WIRE_READ, iov, n, off, vmio_iov_size(iov, n), 0,
                    NULL, NULL);
}

static int remote_pwritev(void *st, const struct iovec *iov, int n, uint64_t off, unsigned f)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.pwritev(s->local, iov, n, off, f);
    return run_sync(st, VMIO_OP_WRITE, VMIO_WIRE_WRITE, iov, n, off, vmio_iov_size(iov, n),
                    f & VMIO_WIRE_REQ_FUA, NULL, NULL);
}

static int remote_flush(void *st)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.flush(s->local);
    return run_sync(st, VMIO_OP_FLUSH, VMIO_WIRE_FLUSH, NULL, 0, 0, 0, 0, NULL, NULL);
}

static int remote_discard(void *st, uint64_t off, uint64_t len)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.discard(s->local, off, len);
    return run_sync(st, VMIO_OP_DISCARD, VMIO_WIRE_TRIM, NULL, 0, off, len, 0, NULL, NULL);
}

static int remote_write_zeroes(void *st, uint64_t off, uint64_t len, unsigned f)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.write_zeroes(s->local, off, len, f);
    return run_sync(st, VMIO_OP_WRITE_ZEROES, VMIO_WIRE_WRITE_ZEROES, NULL, 0, off, len,
                    f & VMIO_WIRE_REQ_ALL, NULL, NULL);
}

static int remote_get_size(void *st, uint64_t *size)
{
    struct remote_state *s = st;
    if (s->local)
        return vmio_backend_file.get_size(s->local, size);
    return run_sync(st, OP_SIZE, VMIO_WIRE_SIZE, NULL, 0, 0, 0, 0, size, NULL);
}

static int remote_truncate(void *st, uint64_t size)
{
    struct remote_state *s = st;
    if (!(s->caps & VMIO_CAP_WRITE))
        return vmio_set_error(API, EROFS, "image is read-only on the server");
    if (s->local)
        return vmio_backend_file.truncate(s->local, size);
    /* TRUNCATE carries the new size where the offset would be. */
    return run_sync(st, OP_TRUNCATE, VMIO_WIRE_TRUNCATE, NULL, 0, size, 0, 0, NULL, NULL);
}

static int remote_block_status(void *st, uint64_t off, uint64_t max, uint64_t *len, int *type)
{
    struct remote_state *s = st;
    if (!(s->caps & VMIO_CAP_BLOCK_STATUS)) {
        *len = max;
        *type = VMIO_EXTENT_DATA;
        return 0;
    }
    if (s->local)
        return vmio_backend_file.block_status(s->local, off, max, len, type);
    uint64_t l = 0;
    uint32_t t = 0;
    int r = run_sync(st, OP_BLOCK_STATUS, VMIO_WIRE_BLOCK_STATUS, NULL, 0, off, max, 0, &l, &t);
    if (r < 0)
        return r;
    *len = l;
    *type = (int)t;
    return 0;
}

static int remote_submit(void *st, struct vmio_req *req)
{
    struct remote_state *s = st;
    if (s->local)
        return -ENOTSUP;    /* the storage layer's workers call our sync ops */
    uint16_t type;
    uint64_t length = req->length;
    unsigned flags = 0;
    switch (req->op) {
    case VMIO_OP_READ:
        type = VMIO_WIRE_READ;
        length = req->count;
        break;
    case VMIO_OP_WRITE:
        type = VMIO_WIRE_WRITE;
        length = req->count;
        flags = req->flags & VMIO_WIRE_REQ_FUA;
        break;
    case VMIO_OP_FLUSH:
        type = VMIO_WIRE_FLUSH;
        break;
    case VMIO_OP_DISCARD:
        type = VMIO_WIRE_TRIM;
        break;
    case VMIO_OP_WRITE_ZEROES:
        type = VMIO_WIRE_WRITE_ZEROES;
        flags = req->flags & VMIO_WIRE_REQ_ALL;
        break;
    default:
        return -EINVAL;
    }
    if ((type == VMIO_WIRE_READ || type == VMIO_WIRE_WRITE) && length == 0) {
        req->complete(req, 0);
        return 0;
    }
    struct rop *op = op_new(s, req->op, type, req->iov, req->iovcnt, req->offset, length, flags,
                            req);
    if (!op)
        return vmio_set_error(API, ENOMEM, "out of memory");
    int r = submit_op(s, op);
    if (r < 0) {
        op_free(op);
        return r;
    }
    return 0;
}

static int remote_progress(void *st, int wait)
{
    struct remote_state *s = st;
    int n = 0;
    pthread_mutex_lock(&s->lock);
    if (!s->rx_busy && s->state == ST_CONNECTED && s->t && s->in_flight > 0)
        n = rx_loop(s, NULL, wait);
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void remote_attach_aio(void *st, int epfd, int efd)
{
    struct remote_state *s = st;
    pthread_mutex_lock(&s->send_lock);
    pthread_mutex_lock(&s->lock);
    /* A socket added to the epoll set wakes a waiting event loop by
     * itself, so the eventfd is not needed here. */
    (void)efd;
    s->epfd = epfd;
    if (s->t && !s->local) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->t->fd };
        vmio_transport_set_pollable(s->t);
        epoll_ctl(epfd, EPOLL_CTL_ADD, s->t->fd, &ev);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->send_lock);
}

/* ---- open/close --------------------------------------------------------- */

static void state_free(struct remote_state *s)
{
    if (s->local)
        vmio_backend_file.close(s->local);
    while (s->regs) {
        struct mreg *m = s->regs;
        s->regs = m->next;
        vmio_mr_dereg(m->mr);
        free(m);
    }
    while (s->rcache)
        rcache_drop(s, &s->rcache);
    vmio_mr_dereg(s->bounce_mr);
    free(s->bounce);
    free(s->host);
    free(s->export_name);
    free(s->path);
    if (s->secret) {
        memset(s->secret, 0, s->secret_len);
        free(s->secret);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->send_lock);
    pthread_cond_destroy(&s->reconn_cond);
    free(s);
}

static int parse_ms(const char *v, const char *name, int *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || d <= 0 || d > 86400)
        return vmio_set_error(API, EINVAL, "bad %s '%s' (seconds)", name, v);
    *out = (int)(d * 1000);
    if (*out == 0)
        *out = 1;
    return 0;
}

static int parse_uint(const char *v, const char *name, unsigned long max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || errno || v[0] == '-' || x > max)
        return vmio_set_error(API, EINVAL, "bad %s '%s' (0..%lu)", name, v, max);
    *out = (unsigned)x;
    return 0;
}

/* DISCONNECT and close the connection (nothing in flight). */
static void say_goodbye(struct remote_state *s)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_DISCONNECT, .id = ++s->next_id };
    vmio_wire_encode_hdr(hb, &h);
    struct iovec v = { hb, sizeof hb };
    vmio_transport_sendv(s->t, &v, 1);
    if (s->epfd >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->t->fd, NULL);
    vmio_transport_close(s->t);
    s->t = NULL;
}

static int remote_open(const struct vmio_uri *u, unsigned flags,
                       const struct vmio_open_options *opts, void **state)
{
    static const char *const allowed[] = { "secret-file", "transport", "timeout",
                                           "reconnect-timeout", "rdma-inline",
                                           "rdma-busy-poll", "rdma-regcache", "local", NULL };
    int r = vmio_uri_check_opts(API, u, allowed);
    if (r < 0)
        return r;
    if (!u->host || !u->host[0])
        return vmio_set_error(API, EINVAL, "vmio:// URI needs a host");
    const char *p = u->path;
    while (*p == '/')
        p++;
    const char *slash = strchr(p, '/');
    if (!slash || slash == p || slash[1] == '\0')
        return vmio_set_error(API, EINVAL,
                              "vmio:// URI path must be /EXPORT/PATH (got '%s')", u->path);
    const char *tr = vmio_uri_get(u, "transport");
    int tmode = TM_AUTO;
    if (!tr || strcmp(tr, "auto") == 0)
        tmode = VMIO_BUILT_RDMA ? TM_AUTO : TM_TCP;
    else if (strcmp(tr, "tcp") == 0)
        tmode = TM_TCP;
    else if (strcmp(tr, "rdma") == 0 && VMIO_BUILT_RDMA)
        tmode = TM_RDMA;
    else if (strcmp(tr, "rdma") == 0)
        return vmio_set_error(API, ENOTSUP, "the RDMA transport is not built in");
    else
        return vmio_set_error(API, EINVAL, "unknown transport '%s' (tcp, rdma, auto)", tr);
    const char *lo = vmio_uri_get(u, "local");
    int local_mode = LOCAL_OFF;
    if (lo && strcmp(lo, "auto") == 0)
        local_mode = LOCAL_AUTO;
    else if (lo && strcmp(lo, "on") == 0)
        local_mode = LOCAL_ON;
    else if (lo && strcmp(lo, "off") != 0)
        return vmio_set_error(API, EINVAL, "unknown local '%s' (off, auto, on)", lo);
    struct remote_state *s = calloc(1, sizeof *s);
    if (!s)
        return vmio_set_error(API, ENOMEM, "out of memory");
    s->local_mode = local_mode;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->send_lock, NULL);
    pthread_cond_init(&s->reconn_cond, NULL);
    s->epfd = -1;
    s->tmode = tmode;
    s->inline_max = INLINE_DEFAULT;
    snprintf(s->tnote, sizeof s->tnote, "none");
    s->host = strdup(u->host);
    s->port = u->port ? u->port : VMIO_DEFAULT_PORT;
    s->export_name = strndup(p, (size_t)(slash - p));
    s->path = strdup(slash + 1);
    s->connect_timeout_ms = opts->connect_timeout_ms ? (int)opts->connect_timeout_ms : 10000;
    s->reconnect_timeout_ms =
        opts->reconnect_timeout_ms ? (int)opts->reconnect_timeout_ms : 30000;
    s->max_io = VMIO_WIRE_MAX_IO;
    if (!s->host || !s->export_name || !s->path) {
        state_free(s);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    if (strlen(s->export_name) > VMIO_WIRE_MAX_NAME || strlen(s->path) > VMIO_WIRE_MAX_NAME) {
        state_free(s);
        return vmio_set_error(API, ENAMETOOLONG, "export name or path too long");
    }
    const char *v;
    if ((v = vmio_uri_get(u, "timeout")) && (r = parse_ms(v, "timeout", &s->connect_timeout_ms)) < 0)
        goto fail;
    if ((v = vmio_uri_get(u, "reconnect-timeout")) &&
        (r = parse_ms(v, "reconnect-timeout", &s->reconnect_timeout_ms)) < 0)
        goto fail;
    if ((v = vmio_uri_get(u, "rdma-inline")) &&
        (r = parse_uint(v, "rdma-inline", VMIO_WIRE_MAX_IO, &s->inline_max)) < 0)
        goto fail;
    if ((v = vmio_uri_get(u, "rdma-regcache")) &&
        (r = parse_uint(v, "rdma-regcache", 65536, &s->rcache_max)) < 0)
        goto fail;
    if ((v = vmio_uri_get(u, "rdma-busy-poll")) &&
        (r = parse_uint(v, "rdma-busy-poll", 1000000, &s->ropts.busy_poll_us)) < 0)
        goto fail;
    const char *sf = opts->secret_file;
    if (!sf)
        sf = vmio_uri_get(u, "secret-file");
    if (!sf)
        sf = getenv("VMIO_SECRET_FILE");
    if (!sf || !*sf) {
        r = vmio_set_error(API, EINVAL,
                           "no shared secret: set VMIO_SECRET_FILE, the secret-file= URI "
                           "option or the secret_file open option");
        goto fail;
    }
    if ((r = vmio_read_secret_file(API, sf, &s->secret, &s->secret_len)) < 0)
        goto fail;
    s->open_flags = flags & VMIO_WIRE_OPEN_ALL;
    s->create_size = opts->create_size;

    struct vmio_wire_open_reply orep;
    if ((r = handshake(s, s->open_flags, &s->t, &orep, &s->t_rdma)) < 0)
        goto fail;
    s->max_io = orep.max_io;
    s->caps = orep.caps;
    s->state = ST_CONNECTED;
    if (s->local_mode != LOCAL_OFF) {
        int broken;
        r = local_take(s, &broken);
        if (r < 0 && s->local_mode == LOCAL_AUTO && broken) {
            /* The exchange broke off: a fresh connection, without it. */
            struct vmio_error_copy ec;
            vmio_error_save(&ec);
            vmio_transport_close(s->t);
            s->t = NULL;
            s->local_mode = LOCAL_OFF;
            int hr = handshake(s, reopen_flags(s), &s->t, &orep, &s->t_rdma);
            if (hr < 0) {
                r = hr;
                goto fail;
            }
            s->max_io = orep.max_io;
            s->caps = orep.caps;
            vmio_error_restore(&ec);
        }
        if (r < 0 && s->local_mode == LOCAL_ON) {
            vmio_transport_close(s->t);
            s->t = NULL;
            r = vmio_error_reprefix(API, -r);
            goto fail;
        }
        if (r < 0) {
            const char *m = vmio_errmsg();
            m = strncmp(m, API ": ", 6) == 0 ? m + 6 : m;
            vmio_log(VMIO_LOG_INFO, "vmio: %s:%u: no local data path: %s", s->host, s->port, m);
            char note[sizeof s->tnote];
            snprintf(note, sizeof note, "%s (no local path: %s)", s->tnote, m);
            set_note(s, "%s", note);
            vmio_clear_error();
        } else {
            /* Nothing goes through the server any more. */
            say_goodbye(s);
            *state = s;
            return 0;
        }
    }
    s->reconn_started = 1;
    if ((r = pthread_create(&s->reconn_thread, NULL, reconn_main, s)) != 0) {
        vmio_transport_close(s->t);
        r = vmio_set_error_errno(API, r, "cannot start reconnect thread");
        goto fail;
    }
    *state = s;
    return 0;
fail:
    state_free(s);
    return r;
}

static void remote_close(void *st)
{
    struct remote_state *s = st;
    pthread_mutex_lock(&s->lock);
    s->state = ST_CLOSING;
    pthread_cond_broadcast(&s->reconn_cond);
    pthread_mutex_unlock(&s->lock);
    if (s->reconn_started)
        pthread_join(s->reconn_thread, NULL);
    /* Nothing is in flight any more (the storage layer drained it). */
    if (s->t)
        say_goodbye(s);
    state_free(s);
}

static unsigned remote_caps(void *st)
{
    struct remote_state *s = st;
    return s->caps;
}

static void remote_stats(void *st, struct vmio_file_stats *out)
{
    struct remote_state *s = st;
    pthread_mutex_lock(&s->lock);
    out->reconnects = s->reconnects;
    out->retried = s->retried;
    out->rdma_bytes = s->rdma_bytes;
    out->bounce_bytes = s->bounce_bytes;
    out->inline_bytes = s->inline_bytes;
    out->regcache_hits = s->rcache_hits;
    out->regcache_misses = s->rcache_misses;
    snprintf(out->transport, sizeof out->transport, "%s", s->tnote);
    pthread_mutex_unlock(&s->lock);
}

static int remote_register_memory(void *st, void *addr, size_t len)
{
    struct remote_state *s = st;
    struct mreg *m = calloc(1, sizeof *m);
    if (!m)
        return vmio_set_error(API, ENOMEM, "out of memory");
    m->addr = addr;
    m->len = len;
    /* Register now when connected by RDMA, so that a failure (locked
     * memory limit) shows here rather than as slower I/O later. */
    pthread_mutex_lock(&s->send_lock);
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (s->t && vmio_transport_is_rdma(s->t))
        r = s->t->ops->mr_reg(s->t, addr, len, &m->mr);
    if (r == 0) {
        m->next = s->regs;
        s->regs = m;
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->send_lock);
    if (r < 0) {
        free(m);
        return vmio_error_reprefix(API, -r);
    }
    return 0;
}

static int remote_unregister_memory(void *st, void *addr)
{
    struct remote_state *s = st;
    pthread_mutex_lock(&s->lock);
    struct mreg **pp = &s->regs;
    while (*pp && (*pp)->addr != addr)
        pp = &(*pp)->next;
    struct mreg *m = *pp;
    if (m)
        *pp = m->next;
    /* Also forget cached registrations of that memory (the caller is about
     * to free it). */
    int cached = 0, busy = 0;
    for (struct rcache_ent **cp = &s->rcache; *cp;) {
        if ((char *)addr >= (*cp)->base && (char *)addr < (*cp)->base + (*cp)->len) {
            if ((*cp)->refs) {
                busy = 1;
                cp = &(*cp)->next;
            } else {
                rcache_drop(s, cp);
                cached = 1;
            }
        } else {
            cp = &(*cp)->next;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (busy)
        return vmio_set_error(API, EBUSY, "memory at %p is in use by requests in flight", addr);
    if (!m && cached)
        return 0;
    if (!m)
        return vmio_set_error(API, ENOENT, "no memory registered at %p", addr);
    vmio_mr_dereg(m->mr);
    free(m);
    return 0;
}

const struct vmio_backend_ops vmio_backend_remote = {
    .struct_size = sizeof(struct vmio_backend_ops),
    .name = "vmio",
    .scheme = "vmio",
    .open = remote_open,
    .close = remote_close,
    .caps = remote_caps,
    .preadv = remote_preadv,
    .pwritev = remote_pwritev,
    .flush = remote_flush,
    .discard = remote_discard,
    .write_zeroes = remote_write_zeroes,
    .get_size = remote_get_size,
    .truncate = remote_truncate,
    .block_status = remote_block_status,
    .submit = remote_submit,
    .stats = remote_stats,
    .register_memory = remote_register_memory,
    .unregister_memory = remote_unregister_memory,
    .attach_aio = remote_attach_aio,
    .progress = remote_progress,
};
