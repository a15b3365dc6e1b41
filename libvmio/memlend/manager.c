/* The memory-lending manager (include/vmio/memlend.h, "manager"): one
 * thread, one poll() loop over the listening socket, every client
 * connection and a stop eventfd. The database (db.c) is the source of
 * truth for lenders and leases; in memory there are only the connections
 * and the borrowers' requests waiting for a lender's PROVIDED. Protocol:
 * docs/memlend-protocol.md. Library code: events go to vmio_log only. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "memlend/db.h"
#include "memlend/proto.h"
#include "protocol/auth.h"
#include "transport/transport.h"

#define MAX_CONNS 1024
#define MAX_PREAUTH 64            /* unauthenticated: the oldest is evicted */
#define MAX_ACCEPT_ROUND 64       /* connections accepted per loop round */
#define FRAMES_PER_ROUND 16       /* requests handled per connection per round */
#define AUTH_TIMEOUT_MS 10000
#define ATTACH_TIMEOUT_MS 300000u /* READY without ATTACHED after a restart */
#define KEEPALIVE_IDLE_S 60       /* a silently dead peer is closed after */
#define KEEPALIVE_INTVL_S 10      /* about 60 + 6 * 10 s */
#define KEEPALIVE_CNT 6
#define HEARTBEAT_WRITE_NS 1000000000ull /* a lender's row is written at most
                                            once a second for heartbeats */
#define MAX_REQUEST_BODY 65536u   /* clients never send more */
#define MAX_OUTPUT (32u << 20)    /* a client that does not read is dropped */

enum conn_state { WANT_HELLO, WANT_AUTH, READY };

struct conn {
    struct conn *next;
    int fd;
    enum conn_state state;
    uint32_t role;
    char name[VMIO_ML_MAX_NAME + 1];
    char peer[80];
    uint8_t cnonce[VMIO_ML_NONCE_SIZE];
    uint8_t snonce[VMIO_ML_NONCE_SIZE];
    int registered;           /* lender: REGISTER accepted on this connection */
    uint64_t auth_deadline_ns;
    uint8_t *in;
    size_t in_len, in_cap;
    struct vmio_ml_buf out;
    size_t out_off;
    int closing;              /* close once the output is flushed */
    int dead;
    int backlog;              /* complete frames left over for the next round */
};

/* A lender's lease in memory: expiry is a monotonic deadline (a clock step
 * does not expire anyone); heartbeats update the database row at most
 * once a second (it only matters for restarts and STATUS). */
struct lender_mem {
    struct lender_mem *next;
    char name[VMIO_ML_MAX_NAME + 1];
    uint64_t deadline_ns;     /* vmio_now_ns() clock */
    uint64_t written_ns;      /* last heartbeat write to the database */
    uint64_t exportable;      /* last heartbeat's value */
    int dirty;                /* heartbeat not written yet */
};

/* A READY lease whose borrower has not reported ATTACHED yet: given back
 * (RELEASED) when the connection that received it closes, or, when there
 * is no such connection (READY before a manager restart), at the
 * deadline. */
struct attach_wait {
    struct attach_wait *next;
    uint64_t lease_id;
    struct conn *borrower;    /* NULL after a restart */
    uint64_t deadline_ns;
};

/* A borrower's REQUEST waiting for the lender's PROVIDED. */
struct waiter {
    struct waiter *next;
    uint64_t lease_id;
    struct conn *borrower;
    uint32_t req_id;
    uint32_t wait_ms;
    uint64_t deadline_ns;
};

struct vmio_memlend_manager {
    struct vmio_ml_db *db;
    int listen_fd;
    int stop_fd;
    int port;
    uint8_t *secret;
    size_t secret_len;
    uint32_t lease_seconds;
    uint32_t provision_timeout_ms;
    struct conn *conns;
    int nconns;
    struct waiter *waiters;
    struct lender_mem *lmems;
    struct attach_wait *attach_waits;
    uint32_t attach_timeout_ms;
    uint64_t next_scan_ns;
};

#define API_NEW "vmio_memlend_manager_new"
#define API_RUN "vmio_memlend_manager_run"

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- output ---- */

static void conn_kill(struct conn *c)
{
    c->dead = 1;
}

static void conn_flush(struct conn *c)
{
    while (!c->dead && c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                vmio_log(VMIO_LOG_DEBUG, "memlend manager: %s: send: %s", c->peer,
                         strerror(errno));
                conn_kill(c);
            }
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out.len) {
        c->out.len = 0;
        c->out_off = 0;
        if (c->closing)
            conn_kill(c);
    }
}

static void conn_send(struct conn *c, uint16_t type, uint32_t id, int32_t status,
                      const struct vmio_ml_buf *body)
{
    if (c->dead)
        return;
    if (body && body->oom) {
        conn_kill(c);
        return;
    }
    vmio_ml_put_frame(&c->out, type, id, status, body ? body->data : NULL, body ? body->len : 0);
    if (c->out.oom || c->out.len - c->out_off > MAX_OUTPUT) {
        vmio_log(VMIO_LOG_WARNING, "memlend manager: %s (%s): output backlog, dropped", c->peer,
                 c->name);
        conn_kill(c);
        return;
    }
    conn_flush(c);
}

static void reply_ok(struct conn *c, uint16_t type, uint32_t id, const struct vmio_ml_buf *body)
{
    conn_send(c, (uint16_t)(type | VMIO_ML_REPLY), id, 0, body);
}

static void VMIO_PRINTF(5, 6)
    reply_err(struct conn *c, uint16_t type, uint32_t id, int err, const char *fmt, ...)
{
    char msg[VMIO_ML_MAX_ERRMSG + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!vmio_ml_errno_valid(err))
        err = EIO;
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_error(&b, msg);
    conn_send(c, (uint16_t)(type | VMIO_ML_REPLY), id, err, &b);
    vmio_ml_buf_free(&b);
}

/* Tell the peer why, then close. */
static void VMIO_PRINTF(3, 4) fatal(struct conn *c, int err, const char *fmt, ...)
{
    char msg[VMIO_ML_MAX_ERRMSG + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vmio_log(VMIO_LOG_INFO, "memlend manager: %s%s%s: %s", c->peer, c->name[0] ? " " : "",
             c->name, msg);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_error(&b, msg);
    conn_send(c, VMIO_ML_FATAL, 0, err, &b);
    vmio_ml_buf_free(&b);
    c->closing = 1;
    conn_flush(c);
}

/* A request failed inside the library (database): the recorded error goes
 * to the peer. */
static void reply_lib_err(struct conn *c, uint16_t type, uint32_t id, int r)
{
    reply_err(c, type, id, -r, "manager error: %s", vmio_errmsg());
}

static void notice(struct conn *c, uint32_t type, const struct vmio_memlend_lease *l)
{
    struct vmio_memlend_notice n = { .type = type, .lease = *l };
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_notice(&b, &n);
    conn_send(c, VMIO_ML_NOTICE, 0, 0, &b);
    vmio_ml_buf_free(&b);
}

static struct conn *lender_conn(vmio_memlend_manager *m, const char *name)
{
    for (struct conn *c = m->conns; c; c = c->next)
        if (!c->dead && c->state == READY && c->role == VMIO_MEMLEND_ROLE_LENDER &&
            c->registered && strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static void notify_lender(vmio_memlend_manager *m, uint32_t type,
                          const struct vmio_memlend_lease *l)
{
    struct conn *c = lender_conn(m, l->lender);
    if (c)
        notice(c, type, l);
}

static void notify_borrower(vmio_memlend_manager *m, uint32_t type,
                            const struct vmio_memlend_lease *l)
{
    for (struct conn *c = m->conns; c; c = c->next)
        if (!c->dead && c->state == READY && c->role == VMIO_MEMLEND_ROLE_BORROWER &&
            strcmp(c->name, l->borrower) == 0)
            notice(c, type, l);
}

/* ---- waiting requests ---- */

static struct waiter *waiter_take(vmio_memlend_manager *m, uint64_t lease_id)
{
    for (struct waiter **pw = &m->waiters; *pw; pw = &(*pw)->next) {
        if ((*pw)->lease_id == lease_id) {
            struct waiter *w = *pw;
            *pw = w->next;
            return w;
        }
    }
    return NULL;
}

static int conn_has_waiter(vmio_memlend_manager *m, struct conn *c)
{
    for (struct waiter *w = m->waiters; w; w = w->next)
        if (w->borrower == c)
            return 1;
    return 0;
}

/* ---- the database in one transaction per change ---- */

static int tx_begin(vmio_memlend_manager *m)
{
    return vmio_ml_db_begin(API_RUN, m->db);
}

static int tx_end(vmio_memlend_manager *m, int r)
{
    if (r < 0) {
        vmio_ml_db_rollback(m->db);
        return r;
    }
    r = vmio_ml_db_commit(API_RUN, m->db);
    if (r < 0)
        vmio_ml_db_rollback(m->db);
    return r;
}

static int lease_delete(vmio_memlend_manager *m, uint64_t id)
{
    int r = tx_begin(m);
    if (r == 0)
        r = tx_end(m, vmio_ml_db_lease_delete(API_RUN, m->db, id));
    return r;
}

static int lease_set_state(vmio_memlend_manager *m, uint64_t id, uint32_t state)
{
    int r = tx_begin(m);
    if (r == 0)
        r = tx_end(m, vmio_ml_db_lease_set_state(API_RUN, m->db, id, state));
    return r;
}

/* ---- lender leases in memory ---- */

static struct lender_mem *lmem_get(vmio_memlend_manager *m, const char *name)
{
    for (struct lender_mem *l = m->lmems; l; l = l->next)
        if (strcmp(l->name, name) == 0)
            return l;
    struct lender_mem *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    snprintf(l->name, sizeof l->name, "%s", name);
    /* First seen (manager start): a full lease to come back. */
    l->deadline_ns = vmio_now_ns() + (uint64_t)m->lease_seconds * 1000000000ull;
    l->next = m->lmems;
    m->lmems = l;
    return l;
}

static struct lender_mem *lmem_find(vmio_memlend_manager *m, const char *name)
{
    for (struct lender_mem *l = m->lmems; l; l = l->next)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

/* The wall-clock expiry stored in the database and shown by STATUS. */
static int64_t lmem_wall_expiry(const struct lender_mem *l, uint64_t now)
{
    uint64_t left = l->deadline_ns > now ? (l->deadline_ns - now + 999999999ull) / 1000000000ull
                                         : 0;
    return wall_now() + (int64_t)left;
}

/* Write a heartbeat that was held back. */
static void lmem_flush(vmio_memlend_manager *m, struct lender_mem *l, uint64_t now)
{
    struct vmio_ml_lender_row row;
    l->dirty = 0;
    l->written_ns = now;
    int r = vmio_ml_db_lender_get(API_RUN, m->db, l->name, &row);
    if (r <= 0 || !row.available || row.withdrawn) {
        if (r < 0)
            vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
        return;
    }
    row.exportable = l->exportable;
    row.expiry = lmem_wall_expiry(l, now);
    if ((r = tx_begin(m)) == 0)
        r = tx_end(m, vmio_ml_db_lender_put(API_RUN, m->db, &row));
    if (r < 0)
        vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
}

/* ---- READY leases waiting for ATTACHED ---- */

static void attach_wait_add(vmio_memlend_manager *m, uint64_t lease_id, struct conn *borrower)
{
    struct attach_wait *a = calloc(1, sizeof *a);
    if (!a) {
        vmio_log(VMIO_LOG_ERROR, "memlend manager: lease %llu: out of memory: it is not "
                 "given back if its borrower never attaches it", (unsigned long long)lease_id);
        return;
    }
    a->lease_id = lease_id;
    a->borrower = borrower;
    a->deadline_ns = vmio_now_ns() + (uint64_t)m->attach_timeout_ms * 1000000ull;
    a->next = m->attach_waits;
    m->attach_waits = a;
}

static void attach_wait_drop(vmio_memlend_manager *m, uint64_t lease_id)
{
    for (struct attach_wait **pa = &m->attach_waits; *pa;) {
        struct attach_wait *a = *pa;
        if (a->lease_id == lease_id) {
            *pa = a->next;
            free(a);
            continue;
        }
        pa = &a->next;
    }
}

/* The borrower never attached a READY lease: give it back to its lender
 * (RELEASED, and the lender removes the LUN). Other states: nothing. */
static void attach_give_back(vmio_memlend_manager *m, uint64_t lease_id, const char *why)
{
    struct vmio_memlend_lease l;
    int r = vmio_ml_db_lease_get(API_RUN, m->db, lease_id, &l);
    if (r <= 0 || l.state != VMIO_MEMLEND_READY) {
        if (r < 0)
            vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
        return;
    }
    if (lease_set_state(m, lease_id, VMIO_MEMLEND_RELEASED) < 0) {
        vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
        return;
    }
    vmio_log(VMIO_LOG_INFO, "memlend manager: lease %llu of %s given back to %s: %s",
             (unsigned long long)lease_id, l.borrower, l.lender, why);
    l.state = VMIO_MEMLEND_RELEASED;
    notify_lender(m, VMIO_MEMLEND_NOTICE_RELEASED, &l);
}

/* Fail a waiting borrower's request and forget the PENDING lease. */
static void VMIO_PRINTF(4, 5)
    fail_waiter(vmio_memlend_manager *m, struct waiter *w, int err, const char *fmt, ...)
{
    char msg[VMIO_ML_MAX_ERRMSG + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vmio_log(VMIO_LOG_INFO, "memlend manager: lease %llu: %s", (unsigned long long)w->lease_id,
             msg);
    if (lease_delete(m, w->lease_id) < 0)
        vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
    if (w->borrower)
        reply_err(w->borrower, VMIO_ML_REQUEST, w->req_id, err, "%s", msg);
    free(w);
}

/* ---- handshake ---- */

static void on_hello(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                     const uint8_t *body)
{
    struct vmio_ml_hello hello;
    if (vmio_ml_decode_hello("manager", body, h->length, &hello) < 0) {
        reply_err(c, VMIO_ML_HELLO, h->id, EPROTO, "%s", vmio_errmsg());
        c->closing = 1;
        conn_flush(c);
        return;
    }
    if (hello.min_version > VMIO_ML_VERSION || hello.max_version < VMIO_ML_VERSION) {
        reply_err(c, VMIO_ML_HELLO, h->id, ENOTSUP,
                  "protocol versions %u..%u are not supported (this manager speaks %u)",
                  hello.min_version, hello.max_version, VMIO_ML_VERSION);
        c->closing = 1;
        conn_flush(c);
        return;
    }
    c->role = hello.role;
    snprintf(c->name, sizeof c->name, "%s", hello.name);
    memcpy(c->cnonce, hello.nonce, sizeof c->cnonce);
    if (vmio_auth_random("manager", c->snonce, sizeof c->snonce) < 0) {
        fatal(c, EIO, "%s", vmio_errmsg());
        return;
    }
    struct vmio_ml_hello_reply rep = { .version = VMIO_ML_VERSION };
    memcpy(rep.nonce, c->snonce, sizeof rep.nonce);
    vmio_ml_proof(m->secret, m->secret_len, 1, c->cnonce, c->snonce, c->role, c->name,
                  rep.proof);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello_reply(&b, &rep);
    reply_ok(c, VMIO_ML_HELLO, h->id, &b);
    vmio_ml_buf_free(&b);
    c->state = WANT_AUTH;
}

/* What a client that comes back may have missed: for a lender, leases
 * to provision and leases given back; for a borrower, revokes and lost
 * lenders. */
static void resend_notices(vmio_memlend_manager *m, struct conn *c, int lender)
{
    struct vmio_memlend_lease *ls;
    size_t n;
    if (vmio_ml_db_leases(API_RUN, m->db, lender ? c->name : NULL, lender ? NULL : c->name, 0,
                          &ls, &n) < 0) {
        vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t st = ls[i].state, type = 0;
        if (lender)
            type = st == VMIO_MEMLEND_PENDING    ? VMIO_MEMLEND_NOTICE_PROVISION
                   : st == VMIO_MEMLEND_RELEASED ? VMIO_MEMLEND_NOTICE_RELEASED
                                                 : 0;
        else
            type = st == VMIO_MEMLEND_REVOKING ? VMIO_MEMLEND_NOTICE_REVOKE
                   : st == VMIO_MEMLEND_LOST   ? VMIO_MEMLEND_NOTICE_LENDER_LOST
                                               : 0;
        if (type)
            notice(c, type, &ls[i]);
    }
    free(ls);
}

static void on_auth(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                    const uint8_t *body)
{
    uint8_t got[VMIO_ML_PROOF_SIZE], want[VMIO_ML_PROOF_SIZE];
    if (vmio_ml_decode_auth("manager", body, h->length, got) < 0) {
        reply_err(c, VMIO_ML_AUTH, h->id, EPROTO, "%s", vmio_errmsg());
        c->closing = 1;
        conn_flush(c);
        return;
    }
    vmio_ml_proof(m->secret, m->secret_len, 0, c->cnonce, c->snonce, c->role, c->name, want);
    if (!vmio_auth_proof_equal(got, want)) {
        vmio_log(VMIO_LOG_WARNING, "memlend manager: %s (%s): authentication failed", c->peer,
                 c->name);
        reply_err(c, VMIO_ML_AUTH, h->id, EACCES,
                  "authentication failed: the client's proof does not match this manager's "
                  "shared secret");
        c->closing = 1;
        conn_flush(c);
        return;
    }
    c->state = READY;
    /* One connection per lender: a newer one replaces a half-dead older. */
    if (c->role == VMIO_MEMLEND_ROLE_LENDER) {
        for (struct conn *o = m->conns; o; o = o->next)
            if (o != c && !o->dead && o->state == READY && o->role == VMIO_MEMLEND_ROLE_LENDER &&
                strcmp(o->name, c->name) == 0)
                fatal(o, ESTALE, "replaced by a newer connection of lender %s", c->name);
    }
    reply_ok(c, VMIO_ML_AUTH, h->id, NULL);
    vmio_log(VMIO_LOG_DEBUG, "memlend manager: %s authenticated as %s %s", c->peer,
             c->role == VMIO_MEMLEND_ROLE_LENDER     ? "lender"
             : c->role == VMIO_MEMLEND_ROLE_BORROWER ? "borrower"
                                                     : "observer",
             c->name);
    if (c->role == VMIO_MEMLEND_ROLE_BORROWER)
        resend_notices(m, c, 0);
}

/* ---- lender requests ---- */

static void reply_lease_seconds(vmio_memlend_manager *m, struct conn *c, uint16_t type,
                                uint32_t id)
{
    struct vmio_ml_buf b = { 0 };
    vmio_ml_put_u32(&b, m->lease_seconds);
    reply_ok(c, type, id, &b);
    vmio_ml_buf_free(&b);
}

static void on_register(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                        const uint8_t *body)
{
    struct vmio_ml_register reg;
    if (vmio_ml_decode_register("manager", body, h->length, &reg) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "%s", vmio_errmsg());
        return;
    }
    struct vmio_ml_lender_row row;
    int r = vmio_ml_db_lender_get(API_RUN, m->db, c->name, &row);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    if (r == 0) {
        struct vmio_ml_lender_row *all;
        size_t n;
        if ((r = vmio_ml_db_lenders(API_RUN, m->db, &all, &n)) < 0) {
            reply_lib_err(c, h->type, h->id, r);
            return;
        }
        free(all);
        if (n >= VMIO_ML_MAX_LENDERS) {
            reply_err(c, h->type, h->id, ENOSPC, "the manager already knows %zu lenders", n);
            return;
        }
        memset(&row, 0, sizeof row);
        snprintf(row.name, sizeof row.name, "%s", c->name);
    }
    snprintf(row.portal, sizeof row.portal, "%s", reg.portal);
    row.exportable = reg.exportable;
    row.available = 1;
    row.withdrawn = 0;
    struct lender_mem *lm = lmem_get(m, c->name);
    if (!lm) {
        reply_err(c, h->type, h->id, ENOMEM, "out of memory");
        return;
    }
    uint64_t now = vmio_now_ns();
    lm->deadline_ns = now + (uint64_t)m->lease_seconds * 1000000000ull;
    lm->exportable = reg.exportable;
    lm->written_ns = now;
    lm->dirty = 0;
    row.expiry = lmem_wall_expiry(lm, now);
    if ((r = tx_begin(m)) == 0)
        r = tx_end(m, vmio_ml_db_lender_put(API_RUN, m->db, &row));
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    c->registered = 1;
    vmio_log(VMIO_LOG_INFO, "memlend manager: lender %s registered: portal %s, %llu bytes",
             c->name, reg.portal, (unsigned long long)reg.exportable);
    reply_lease_seconds(m, c, h->type, h->id);
    resend_notices(m, c, 1);
}

static void on_heartbeat(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                         const uint8_t *body)
{
    uint64_t exportable;
    if (vmio_ml_decode_u64("manager", body, h->length, &exportable) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "HEARTBEAT: %s", vmio_errmsg());
        return;
    }
    struct vmio_ml_lender_row row;
    int r = vmio_ml_db_lender_get(API_RUN, m->db, c->name, &row);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    if (r == 0 || row.withdrawn) {
        reply_err(c, h->type, h->id, ENOENT, "lender %s is not registered", c->name);
        return;
    }
    struct lender_mem *lm = lmem_get(m, c->name);
    if (!lm) {
        reply_err(c, h->type, h->id, ENOMEM, "out of memory");
        return;
    }
    uint64_t now = vmio_now_ns();
    lm->deadline_ns = now + (uint64_t)m->lease_seconds * 1000000000ull;
    lm->exportable = exportable;
    /* The renewal lives in memory; the row is written at once only when
     * the lender comes back, otherwise at most once a second (timers()). */
    if (row.available && now - lm->written_ns < HEARTBEAT_WRITE_NS) {
        lm->dirty = 1;
        reply_lease_seconds(m, c, h->type, h->id);
        return;
    }
    if (!row.available)
        vmio_log(VMIO_LOG_INFO, "memlend manager: lender %s is back after its lease expired",
                 c->name);
    row.exportable = exportable;
    row.available = 1;
    row.expiry = lmem_wall_expiry(lm, now);
    lm->written_ns = now;
    lm->dirty = 0;
    if ((r = tx_begin(m)) == 0)
        r = tx_end(m, vmio_ml_db_lender_put(API_RUN, m->db, &row));
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    reply_lease_seconds(m, c, h->type, h->id);
}

static void on_withdraw(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                        const uint8_t *body)
{
    if (vmio_ml_decode_empty("manager", body, h->length) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "WITHDRAW: %s", vmio_errmsg());
        return;
    }
    int busy = vmio_ml_db_lease_count(API_RUN, m->db, c->name, 1);
    if (busy < 0) {
        reply_lib_err(c, h->type, h->id, busy);
        return;
    }
    if (busy > 0) {
        reply_err(c, h->type, h->id, EBUSY,
                  "lender %s still has %d lease(s) that are not RELEASED: reclaim them first",
                  c->name, busy);
        return;
    }
    struct vmio_ml_lender_row row;
    int r = vmio_ml_db_lender_get(API_RUN, m->db, c->name, &row);
    if (r > 0) {
        row.available = 0;
        row.withdrawn = 1;
        row.exportable = 0;
        if ((r = tx_begin(m)) == 0)
            r = tx_end(m, vmio_ml_db_lender_put(API_RUN, m->db, &row));
    }
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    c->registered = 0;
    struct lender_mem *lm = lmem_get(m, c->name);
    if (lm)
        lm->dirty = 0;
    vmio_log(VMIO_LOG_INFO, "memlend manager: lender %s withdrew", c->name);
    reply_ok(c, h->type, h->id, NULL);
}

/* Fetch a lease named in a request and check that this client owns it
 * (as its lender or its borrower). 1 when the caller may go on. */
static int own_lease(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                     uint64_t id, struct vmio_memlend_lease *l)
{
    int r = vmio_ml_db_lease_get(API_RUN, m->db, id, l);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return 0;
    }
    if (r == 0) {
        if (c->role == VMIO_MEMLEND_ROLE_LENDER)
            reply_err(c, h->type, h->id, ENOENT,
                      "lease %llu is unknown (it timed out, was cancelled or is gone): "
                      "remove its LUN if one exists",
                      (unsigned long long)id);
        else
            reply_err(c, h->type, h->id, ENOENT, "lease %llu is unknown",
                      (unsigned long long)id);
        return 0;
    }
    const char *owner = c->role == VMIO_MEMLEND_ROLE_LENDER ? l->lender : l->borrower;
    if (strcmp(owner, c->name) != 0) {
        reply_err(c, h->type, h->id, EPERM, "lease %llu belongs to %s %s, not to %s",
                  (unsigned long long)id,
                  c->role == VMIO_MEMLEND_ROLE_LENDER ? "lender" : "borrower", owner, c->name);
        return 0;
    }
    return 1;
}

static void on_provided(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                        const uint8_t *body)
{
    struct vmio_ml_provided p;
    struct vmio_memlend_lease l;
    if (vmio_ml_decode_provided("manager", body, h->length, &p) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "%s", vmio_errmsg());
        return;
    }
    if (!own_lease(m, c, h, p.lease_id, &l))
        return;
    if (l.state != VMIO_MEMLEND_PENDING) {
        if (p.err == 0 && l.state == VMIO_MEMLEND_READY && l.lun == p.lun &&
            strcmp(l.target_iqn, p.target_iqn) == 0) {
            reply_ok(c, h->type, h->id, NULL);   /* a resent answer */
            return;
        }
        reply_err(c, h->type, h->id, EINVAL, "lease %llu is %s, not PENDING",
                  (unsigned long long)l.id, vmio_memlend_state_name(l.state));
        return;
    }
    struct waiter *w = waiter_take(m, l.id);
    if (w && (!w->borrower || w->borrower->dead)) {
        /* The borrower went away in this very round: as if gone before. */
        fail_waiter(m, w, ECANCELED, "borrower %s went away before lender provisioned it",
                    l.borrower);
        if (p.err == 0)
            reply_err(c, h->type, h->id, ENOENT,
                      "lease %llu is unknown (its borrower went away): remove its LUN if one "
                      "exists", (unsigned long long)l.id);
        else
            reply_ok(c, h->type, h->id, NULL);
        return;
    }
    if (!w && p.err == 0) {
        /* No request waits for it (cannot happen: PENDING leases without a
         * waiting request are deleted): never READY without a borrower. */
        if (lease_delete(m, l.id) < 0) {
            reply_lib_err(c, h->type, h->id, -vmio_errno());
            return;
        }
        reply_err(c, h->type, h->id, ENOENT,
                  "lease %llu is unknown (nobody waits for it): remove its LUN if one exists",
                  (unsigned long long)l.id);
        return;
    }
    if (p.err != 0) {
        if (w) {
            fail_waiter(m, w, (int)p.err, "lender %s could not provision lease %llu: %s",
                        l.lender, (unsigned long long)l.id, strerror((int)p.err));
        } else if (lease_delete(m, l.id) < 0) {
            reply_lib_err(c, h->type, h->id, -vmio_errno());
            return;
        }
        reply_ok(c, h->type, h->id, NULL);
        return;
    }
    int r = tx_begin(m);
    if (r == 0)
        r = tx_end(m, vmio_ml_db_lease_set_ready(API_RUN, m->db, l.id, p.target_iqn, p.lun));
    if (r < 0) {
        if (w)
            fail_waiter(m, w, -r, "manager error: %s", vmio_errmsg());
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    reply_ok(c, h->type, h->id, NULL);
    l.state = VMIO_MEMLEND_READY;
    l.lun = p.lun;
    snprintf(l.target_iqn, sizeof l.target_iqn, "%s", p.target_iqn);
    vmio_log(VMIO_LOG_INFO, "memlend manager: lease %llu READY: %s lends %llu bytes to %s",
             (unsigned long long)l.id, l.lender, (unsigned long long)l.size, l.borrower);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_lease(&b, &l);
    reply_ok(w->borrower, VMIO_ML_REQUEST, w->req_id, &b);
    vmio_ml_buf_free(&b);
    /* Until ATTACHED it is given back if this connection closes (the
     * reply may never have arrived, or `attach` died) or at the deadline. */
    attach_wait_add(m, l.id, w->borrower);
    free(w);
}

/* The lease a lease request (a u64 id) names, when it decodes and the
 * client owns the lease; otherwise the error is answered and 0 returned. */
static int lease_request(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                         const uint8_t *body, const char *what, uint64_t *id,
                         struct vmio_memlend_lease *l)
{
    if (vmio_ml_decode_u64("manager", body, h->length, id) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "%s: %s", what, vmio_errmsg());
        return 0;
    }
    return own_lease(m, c, h, *id, l);
}

static void on_reclaim(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                       const uint8_t *body)
{
    uint64_t id;
    struct vmio_memlend_lease l;
    if (!lease_request(m, c, h, body, "RECLAIM", &id, &l))
        return;
    switch (l.state) {
    case VMIO_MEMLEND_PENDING:
        reply_err(c, h->type, h->id, EBUSY,
                  "lease %llu is still PENDING: answer its PROVISION with an error instead",
                  (unsigned long long)id);
        return;
    case VMIO_MEMLEND_RELEASED:
        reply_ok(c, h->type, h->id, NULL);
        notice(c, VMIO_MEMLEND_NOTICE_RELEASED, &l);
        return;
    case VMIO_MEMLEND_READY:
    case VMIO_MEMLEND_ATTACHED: {
        int r = lease_set_state(m, id, VMIO_MEMLEND_REVOKING);
        if (r < 0) {
            reply_lib_err(c, h->type, h->id, r);
            return;
        }
        l.state = VMIO_MEMLEND_REVOKING;
        vmio_log(VMIO_LOG_INFO, "memlend manager: lender %s reclaims lease %llu from %s",
                 l.lender, (unsigned long long)id, l.borrower);
        break;
    }
    default:   /* REVOKING, LOST: tell the borrower (again) */
        break;
    }
    reply_ok(c, h->type, h->id, NULL);
    notify_borrower(m, VMIO_MEMLEND_NOTICE_REVOKE, &l);
}

static void on_unexported(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                          const uint8_t *body)
{
    uint64_t id;
    struct vmio_memlend_lease l;
    if (!lease_request(m, c, h, body, "UNEXPORTED", &id, &l))
        return;
    /* ATTACHED: the borrower uses it and was not even asked. REVOKING or
     * LOST: the lender removed the LUN of a borrower that did not answer
     * (its policy allows that only once no initiator is logged in); the
     * borrower, if it comes back, hears that the lender is gone. */
    if (l.state == VMIO_MEMLEND_ATTACHED || l.state == VMIO_MEMLEND_PENDING) {
        reply_err(c, h->type, h->id, EBUSY,
                  "lease %llu is %s: the borrower may still use its LUN (reclaim it first)",
                  (unsigned long long)id, vmio_memlend_state_name(l.state));
        return;
    }
    int r = lease_delete(m, id);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    reply_ok(c, h->type, h->id, NULL);
    vmio_log(VMIO_LOG_INFO, "memlend manager: lease %llu of %s is gone", (unsigned long long)id,
             l.lender);
    if (l.state == VMIO_MEMLEND_READY || l.state == VMIO_MEMLEND_REVOKING ||
        l.state == VMIO_MEMLEND_LOST)
        notify_borrower(m, VMIO_MEMLEND_NOTICE_LENDER_LOST, &l);
}

/* ---- borrower requests ---- */

static void on_request(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                       const uint8_t *body)
{
    struct vmio_ml_request rq;
    if (vmio_ml_decode_request("manager", body, h->length, &rq) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "%s", vmio_errmsg());
        return;
    }
    if (rq.size == 0 || rq.size > VMIO_ML_MAX_SIZE || rq.size % VMIO_ML_SIZE_ALIGN != 0) {
        reply_err(c, h->type, h->id, EINVAL,
                  "size %llu is invalid (a non-zero multiple of %u up to %llu)",
                  (unsigned long long)rq.size, VMIO_ML_SIZE_ALIGN,
                  (unsigned long long)VMIO_ML_MAX_SIZE);
        return;
    }
    if (conn_has_waiter(m, c)) {
        reply_err(c, h->type, h->id, EBUSY, "this connection already waits for a lease");
        return;
    }
    int total = vmio_ml_db_lease_count(API_RUN, m->db, NULL, 0);
    if (total < 0) {
        reply_lib_err(c, h->type, h->id, total);
        return;
    }
    if ((unsigned)total >= VMIO_ML_MAX_LEASES) {
        reply_err(c, h->type, h->id, ENOSPC, "the manager already holds %d leases", total);
        return;
    }
    struct vmio_ml_lender_row *ld;
    size_t nld;
    struct vmio_memlend_lease *mine;
    size_t nmine;
    int r = vmio_ml_db_lenders(API_RUN, m->db, &ld, &nld);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    if ((r = vmio_ml_db_leases(API_RUN, m->db, NULL, c->name, 0, &mine, &nmine)) < 0) {
        free(ld);
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    /* The lender with the most free capacity, preferring one this borrower
     * borrows nothing from yet (a mirror needs two lenders). */
    struct vmio_ml_lender_row *best = NULL;
    int best_new = 0;
    uint64_t best_free = 0;
    char why[512] = "";
    size_t wl = 0;
    for (size_t i = 0; i < nld; i++) {
        struct vmio_ml_lender_row *l = &ld[i];
        uint64_t free_b = l->exportable > l->lent ? l->exportable - l->lent : 0;
        int connected = lender_conn(m, l->name) != NULL;
        if (wl < sizeof why - 1)
            wl += (size_t)snprintf(why + wl, sizeof why - wl, "%s%s: %s", wl ? ", " : "",
                                   l->name,
                                   !l->available ? "unavailable"
                                   : !connected  ? "not connected"
                                                 : "");
        if (wl < sizeof why - 1 && l->available && connected)
            wl += (size_t)snprintf(why + wl, sizeof why - wl, "%llu bytes free",
                                   (unsigned long long)free_b);
        if (!l->available || !connected || free_b < rq.size)
            continue;
        int is_new = 1;
        for (size_t j = 0; j < nmine; j++)
            if (mine[j].state != VMIO_MEMLEND_RELEASED && strcmp(mine[j].lender, l->name) == 0)
                is_new = 0;
        if (!best || is_new > best_new || (is_new == best_new && free_b > best_free)) {
            best = l;
            best_new = is_new;
            best_free = free_b;
        }
    }
    free(mine);
    if (!best) {
        reply_err(c, h->type, h->id, ENOSPC, "no lender can lend %llu bytes now (%s)",
                  (unsigned long long)rq.size, nld ? why : "no lender registered");
        free(ld);
        return;
    }
    uint64_t id = 0;
    if ((r = tx_begin(m)) == 0)
        r = tx_end(m, vmio_ml_db_lease_new(API_RUN, m->db, best->name, c->name, rq.size,
                                           best->portal, &id));
    if (r < 0) {
        free(ld);
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    struct waiter *w = calloc(1, sizeof *w);
    struct vmio_memlend_lease l;
    if (!w || vmio_ml_db_lease_get(API_RUN, m->db, id, &l) != 1) {
        free(w);
        lease_delete(m, id);
        free(ld);
        reply_err(c, h->type, h->id, ENOMEM, "out of memory");
        return;
    }
    uint32_t wait_ms = m->provision_timeout_ms;
    if (rq.wait_ms && rq.wait_ms < wait_ms)
        wait_ms = rq.wait_ms;
    w->lease_id = id;
    w->borrower = c;
    w->req_id = h->id;
    w->wait_ms = wait_ms;
    w->deadline_ns = vmio_now_ns() + (uint64_t)wait_ms * 1000000u;
    w->next = m->waiters;
    m->waiters = w;
    vmio_log(VMIO_LOG_INFO, "memlend manager: lease %llu: %s asks %llu bytes, %s provisions",
             (unsigned long long)id, c->name, (unsigned long long)rq.size, best->name);
    notify_lender(m, VMIO_MEMLEND_NOTICE_PROVISION, &l);
    free(ld);
}

static void on_attached(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                        const uint8_t *body)
{
    uint64_t id;
    struct vmio_memlend_lease l;
    if (!lease_request(m, c, h, body, "ATTACHED", &id, &l))
        return;
    if (l.state == VMIO_MEMLEND_ATTACHED) {
        reply_ok(c, h->type, h->id, NULL);
        return;
    }
    if (l.state != VMIO_MEMLEND_READY) {
        reply_err(c, h->type, h->id, EINVAL, "lease %llu is %s, not READY",
                  (unsigned long long)id, vmio_memlend_state_name(l.state));
        return;
    }
    int r = lease_set_state(m, id, VMIO_MEMLEND_ATTACHED);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    attach_wait_drop(m, id);
    reply_ok(c, h->type, h->id, NULL);
}

static void on_release(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                       const uint8_t *body)
{
    uint64_t id;
    struct vmio_memlend_lease l;
    if (!lease_request(m, c, h, body, "RELEASE", &id, &l))
        return;
    if (l.state == VMIO_MEMLEND_PENDING) {
        reply_err(c, h->type, h->id, EBUSY, "lease %llu is still PENDING",
                  (unsigned long long)id);
        return;
    }
    if (l.state != VMIO_MEMLEND_RELEASED) {
        int r = lease_set_state(m, id, VMIO_MEMLEND_RELEASED);
        if (r < 0) {
            reply_lib_err(c, h->type, h->id, r);
            return;
        }
        vmio_log(VMIO_LOG_INFO, "memlend manager: %s released lease %llu of %s", c->name,
                 (unsigned long long)id, l.lender);
        l.state = VMIO_MEMLEND_RELEASED;
    }
    reply_ok(c, h->type, h->id, NULL);
    notify_lender(m, VMIO_MEMLEND_NOTICE_RELEASED, &l);
}

static void on_status(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                      const uint8_t *body)
{
    if (vmio_ml_decode_empty("manager", body, h->length) < 0) {
        reply_err(c, h->type, h->id, EPROTO, "STATUS: %s", vmio_errmsg());
        return;
    }
    struct vmio_ml_lender_row *ld;
    size_t nld, nls;
    struct vmio_memlend_lease *ls;
    int r = vmio_ml_db_lenders(API_RUN, m->db, &ld, &nld);
    if (r < 0) {
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    if ((r = vmio_ml_db_leases(API_RUN, m->db, NULL, NULL, 0, &ls, &nls)) < 0) {
        free(ld);
        reply_lib_err(c, h->type, h->id, r);
        return;
    }
    nld = VMIO_MIN(nld, (size_t)VMIO_ML_MAX_LENDERS);
    nls = VMIO_MIN(nls, (size_t)VMIO_ML_MAX_LEASES);
    struct vmio_memlend_lender_info *info = nld ? calloc(nld, sizeof *info) : NULL;
    if (nld && !info) {
        free(ld);
        free(ls);
        reply_err(c, h->type, h->id, ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < nld; i++) {
        snprintf(info[i].name, sizeof info[i].name, "%s", ld[i].name);
        snprintf(info[i].portal, sizeof info[i].portal, "%s", ld[i].portal);
        info[i].exportable = ld[i].exportable;
        info[i].lent = ld[i].lent;
        info[i].available = ld[i].available;
        info[i].expiry = ld[i].expiry;
        struct lender_mem *lm = ld[i].available ? lmem_find(m, ld[i].name) : NULL;
        if (lm) {   /* newer than the row */
            info[i].expiry = lmem_wall_expiry(lm, vmio_now_ns());
            if (lm->dirty)
                info[i].exportable = lm->exportable;
        }
    }
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_status(&b, info, nld, ls, nls);
    reply_ok(c, h->type, h->id, &b);
    vmio_ml_buf_free(&b);
    free(info);
    free(ld);
    free(ls);
}

/* ---- dispatch ---- */

static const char *role_name(uint32_t role)
{
    return role == VMIO_MEMLEND_ROLE_LENDER     ? "lender"
           : role == VMIO_MEMLEND_ROLE_BORROWER ? "borrower"
                                                : "observer";
}

static void handle_frame(vmio_memlend_manager *m, struct conn *c, const struct vmio_ml_hdr *h,
                         const uint8_t *body)
{
    if (c->state == WANT_HELLO) {
        if (h->type != VMIO_ML_HELLO) {
            fatal(c, EACCES, "not authenticated: the first message must be HELLO");
            return;
        }
        on_hello(m, c, h, body);
        return;
    }
    if (c->state == WANT_AUTH) {
        if (h->type != VMIO_ML_AUTH) {
            fatal(c, EACCES, "not authenticated: AUTH must follow HELLO");
            return;
        }
        on_auth(m, c, h, body);
        return;
    }
    uint32_t need = 0;
    void (*fn)(vmio_memlend_manager *, struct conn *, const struct vmio_ml_hdr *,
               const uint8_t *) = NULL;
    switch (h->type) {
    case VMIO_ML_REGISTER: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_register; break;
    case VMIO_ML_HEARTBEAT: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_heartbeat; break;
    case VMIO_ML_WITHDRAW: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_withdraw; break;
    case VMIO_ML_PROVIDED: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_provided; break;
    case VMIO_ML_RECLAIM: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_reclaim; break;
    case VMIO_ML_UNEXPORTED: need = VMIO_MEMLEND_ROLE_LENDER; fn = on_unexported; break;
    case VMIO_ML_REQUEST: need = VMIO_MEMLEND_ROLE_BORROWER; fn = on_request; break;
    case VMIO_ML_ATTACHED: need = VMIO_MEMLEND_ROLE_BORROWER; fn = on_attached; break;
    case VMIO_ML_RELEASE: need = VMIO_MEMLEND_ROLE_BORROWER; fn = on_release; break;
    case VMIO_ML_STATUS: fn = on_status; break;
    case VMIO_ML_HELLO:
    case VMIO_ML_AUTH:
        reply_err(c, h->type, h->id, EPROTO, "already authenticated");
        return;
    default:
        fatal(c, EPROTO, "message type 0x%02x is not a request", h->type);
        return;
    }
    if (need && c->role != need) {
        reply_err(c, h->type, h->id, EPERM, "this request needs the %s role (connected as %s %s)",
                  role_name(need), role_name(c->role), c->name);
        return;
    }
    if (need == VMIO_MEMLEND_ROLE_LENDER && h->type != VMIO_ML_REGISTER && !c->registered) {
        reply_err(c, h->type, h->id, ENOENT,
                  "lender %s is not registered on this connection: register first", c->name);
        return;
    }
    fn(m, c, h, body);
}

/* Parse and handle the complete frames in c->in, at most FRAMES_PER_ROUND
 * (every request may commit to the database: one client pipelining
 * thousands must not stall the others); c->backlog tells whether more
 * are left for the next round. */
static void process_input(vmio_memlend_manager *m, struct conn *c)
{
    size_t off = 0;
    int handled = 0;
    c->backlog = 0;
    while (!c->dead && !c->closing && c->in_len - off >= VMIO_ML_HDR_SIZE) {
        if (handled == FRAMES_PER_ROUND) {
            c->backlog = 1;
            break;
        }
        struct vmio_ml_hdr h;
        if (vmio_ml_decode_hdr("manager", c->in + off, &h) < 0) {
            fatal(c, EPROTO, "malformed frame: %s", vmio_errmsg() + strlen("manager: "));
            break;
        }
        size_t limit = c->state == READY ? MAX_REQUEST_BODY : 4096;
        if (h.length > limit) {
            fatal(c, EPROTO, "request body of %u bytes exceeds %zu", h.length, limit);
            break;
        }
        if (c->in_len - off < VMIO_ML_HDR_SIZE + h.length)
            break;
        handle_frame(m, c, &h, c->in + off + VMIO_ML_HDR_SIZE);
        off += VMIO_ML_HDR_SIZE + h.length;
        handled++;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* One recv (unless frames are left over from the last round), then at
 * most FRAMES_PER_ROUND requests. */
static void conn_read(vmio_memlend_manager *m, struct conn *c)
{
    const size_t limit = MAX_REQUEST_BODY + VMIO_ML_HDR_SIZE + 8192;
    while (!c->dead && !c->backlog) {
        if (c->in_cap - c->in_len < 4096) {
            /* A whole maximal frame plus the 4096 always fits at limit. */
            if (c->in_cap >= limit) {
                fatal(c, EPROTO, "input buffer overflow");
                return;
            }
            size_t cap = c->in_cap ? VMIO_MIN(c->in_cap * 2, limit) : 8192;
            uint8_t *n = realloc(c->in, cap);
            if (!n) {
                conn_kill(c);
                return;
            }
            c->in = n;
            c->in_cap = cap;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_kill(c);
            return;
        }
        if (r == 0) {
            conn_kill(c);
            return;
        }
        c->in_len += (size_t)r;
        break;
    }
    if (!c->dead && !c->closing)
        process_input(m, c);
}

/* Forget a connection: its waiting requests die with it (their PENDING
 * leases are deleted; a late PROVIDED gets ENOENT), and the READY leases
 * it was answered but never reported ATTACHED are given back (RELEASED,
 * the lender is told) -- but not when the manager itself shuts down. */
static void conn_free(vmio_memlend_manager *m, struct conn *c, int shutdown)
{
    for (struct attach_wait **pa = &m->attach_waits; *pa;) {
        struct attach_wait *a = *pa;
        if (a->borrower == c) {
            *pa = a->next;
            if (!shutdown)
                attach_give_back(m, a->lease_id,
                                 "its borrower disconnected before reporting ATTACHED");
            free(a);
            continue;
        }
        pa = &a->next;
    }
    for (struct waiter **pw = &m->waiters; *pw;) {
        struct waiter *w = *pw;
        if (w->borrower == c) {
            *pw = w->next;
            w->borrower = NULL;
            fail_waiter(m, w, ECANCELED, "borrower %s went away before lender provisioned it",
                        c->name);
            continue;
        }
        pw = &w->next;
    }
    if (c->state == READY)
        vmio_log(VMIO_LOG_DEBUG, "memlend manager: %s %s disconnected", role_name(c->role),
                 c->name);
    close(c->fd);
    free(c->in);
    vmio_ml_buf_free(&c->out);
    free(c);
}

static void reap(vmio_memlend_manager *m)
{
    for (struct conn **pc = &m->conns; *pc;) {
        struct conn *c = *pc;
        if (c->dead) {
            *pc = c->next;
            m->nconns--;
            conn_free(m, c, 0);
            continue;
        }
        pc = &c->next;
    }
}

/* Unauthenticated connections are few: a new one evicts the oldest, so
 * one host cannot lock lenders and borrowers out. */
static void preauth_make_room(vmio_memlend_manager *m)
{
    int n = 0;
    struct conn *oldest = NULL;
    for (struct conn *c = m->conns; c; c = c->next) {
        if (c->dead || c->state == READY)
            continue;
        n++;
        if (!oldest || c->auth_deadline_ns < oldest->auth_deadline_ns)
            oldest = c;
    }
    if (n >= MAX_PREAUTH && oldest) {
        fatal(oldest, EBUSY, "too many unauthenticated connections: the oldest is closed");
        conn_kill(oldest);
    }
}

static void accept_all(vmio_memlend_manager *m)
{
    for (int i = 0; i < MAX_ACCEPT_ROUND; i++) {
        int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                vmio_log(VMIO_LOG_WARNING, "memlend manager: accept: %s", strerror(errno));
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c || m->nconns >= MAX_CONNS) {
            free(c);
            close(fd);
            vmio_log(VMIO_LOG_WARNING, "memlend manager: connection refused (%d connections)",
                     m->nconns);
            continue;
        }
        preauth_make_room(m);
        /* A borrower host that dies silently must close its connection:
         * its READY leases are given back then. */
        int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S, cnt = KEEPALIVE_CNT;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        c->fd = fd;
        struct vmio_transport *t;
        /* Only for the peer's description and socket tuning. */
        if (vmio_tcp_wrap("manager", fd, &t) == 0) {
            snprintf(c->peer, sizeof c->peer, "%s", t->peer);
            free(t);
        }
        c->state = WANT_HELLO;
        c->auth_deadline_ns = vmio_now_ns() + (uint64_t)AUTH_TIMEOUT_MS * 1000000u;
        c->next = m->conns;
        m->conns = c;
        m->nconns++;
    }
}

/* ---- timers ---- */

static void expire_lenders(vmio_memlend_manager *m)
{
    uint64_t now = vmio_now_ns();
    struct vmio_ml_lender_row *ld;
    size_t n;
    if (vmio_ml_db_lenders(API_RUN, m->db, &ld, &n) < 0) {
        vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct vmio_ml_lender_row *l = &ld[i];
        if (!l->available)
            continue;
        struct lender_mem *lm = lmem_get(m, l->name);
        if (!lm || now < lm->deadline_ns)
            continue;
        lm->dirty = 0;
        vmio_log(VMIO_LOG_WARNING, "memlend manager: lender %s missed its heartbeats: unavailable",
                 l->name);
        struct vmio_memlend_lease *ls;
        size_t nls;
        if (vmio_ml_db_leases(API_RUN, m->db, l->name, NULL, 0, &ls, &nls) < 0) {
            vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
            continue;
        }
        l->available = 0;
        int r = tx_begin(m);
        if (r == 0) {
            r = vmio_ml_db_lender_put(API_RUN, m->db, l);
            for (size_t j = 0; j < nls && r == 0; j++) {
                uint32_t s = ls[j].state;
                if (s == VMIO_MEMLEND_READY || s == VMIO_MEMLEND_ATTACHED ||
                    s == VMIO_MEMLEND_REVOKING)
                    r = vmio_ml_db_lease_set_state(API_RUN, m->db, ls[j].id, VMIO_MEMLEND_LOST);
            }
            r = tx_end(m, r);
        }
        if (r < 0) {
            vmio_log(VMIO_LOG_ERROR, "memlend manager: %s", vmio_errmsg());
            free(ls);
            continue;
        }
        for (size_t j = 0; j < nls; j++) {
            uint32_t s = ls[j].state;
            if (s == VMIO_MEMLEND_READY || s == VMIO_MEMLEND_ATTACHED ||
                s == VMIO_MEMLEND_REVOKING) {
                ls[j].state = VMIO_MEMLEND_LOST;
                vmio_log(VMIO_LOG_WARNING, "memlend manager: lease %llu of %s is LOST",
                         (unsigned long long)ls[j].id, ls[j].borrower);
                notify_borrower(m, VMIO_MEMLEND_NOTICE_LENDER_LOST, &ls[j]);
            } else if (s == VMIO_MEMLEND_PENDING) {
                struct waiter *w = waiter_take(m, ls[j].id);
                if (w)
                    fail_waiter(m, w, EHOSTUNREACH,
                                "lender %s expired before it provisioned lease %llu", l->name,
                                (unsigned long long)ls[j].id);
                else
                    lease_delete(m, ls[j].id);
            }
        }
        free(ls);
    }
    free(ld);
}

/* Run the timers that are due; return the poll timeout until the next. */
static int timers(vmio_memlend_manager *m)
{
    uint64_t now = vmio_now_ns();
    uint64_t next = now + 1000000000ull;
    if (now >= m->next_scan_ns) {
        expire_lenders(m);
        m->next_scan_ns = now + 500000000ull;
    }
    next = VMIO_MIN(next, m->next_scan_ns);
    for (struct lender_mem *l = m->lmems; l; l = l->next) {
        if (!l->dirty)
            continue;
        if (now - l->written_ns >= HEARTBEAT_WRITE_NS)
            lmem_flush(m, l, now);
        else
            next = VMIO_MIN(next, l->written_ns + HEARTBEAT_WRITE_NS);
    }
    for (struct attach_wait **pa = &m->attach_waits; *pa;) {
        struct attach_wait *a = *pa;
        /* While the connection that got the lease is open, the borrower is
         * still attaching (it reports ATTACHED after moving its data, which
         * can take long): only its closing gives the lease back. */
        if (a->borrower) {
            pa = &a->next;
            continue;
        }
        if (now >= a->deadline_ns) {
            *pa = a->next;
            char why[96];
            snprintf(why, sizeof why, "its borrower did not report ATTACHED within %u ms",
                     m->attach_timeout_ms);
            attach_give_back(m, a->lease_id, why);
            free(a);
            continue;
        }
        next = VMIO_MIN(next, a->deadline_ns);
        pa = &a->next;
    }
    for (struct waiter **pw = &m->waiters; *pw;) {
        struct waiter *w = *pw;
        if (now >= w->deadline_ns) {
            *pw = w->next;
            struct vmio_memlend_lease l;
            const char *lender = "?";
            if (vmio_ml_db_lease_get(API_RUN, m->db, w->lease_id, &l) == 1)
                lender = l.lender;
            fail_waiter(m, w, ETIMEDOUT, "lender %s did not provision lease %llu within %u ms",
                        lender, (unsigned long long)w->lease_id, w->wait_ms);
            continue;
        }
        next = VMIO_MIN(next, w->deadline_ns);
        pw = &w->next;
    }
    for (struct conn *c = m->conns; c; c = c->next) {
        if (c->dead || c->state == READY)
            continue;
        if (now >= c->auth_deadline_ns) {
            fatal(c, ETIMEDOUT, "authentication not completed within %d ms", AUTH_TIMEOUT_MS);
            conn_kill(c);
            continue;
        }
        next = VMIO_MIN(next, c->auth_deadline_ns);
    }
    uint64_t ms = next > now ? (next - now + 999999) / 1000000 : 0;
    return (int)VMIO_MIN(ms, 1000u);
}

/* ---- public API ---- */

int vmio_memlend_manager_new(const struct vmio_memlend_manager_options *opts,
                             vmio_memlend_manager **out)
{
    VMIO_CHECK_ARG(API_NEW, opts != NULL, EFAULT);
    VMIO_CHECK_ARG(API_NEW, out != NULL, EFAULT);
    VMIO_CHECK_ARG(API_NEW,
                   opts->struct_size >= offsetof(struct vmio_memlend_manager_options,
                                                 lease_seconds),
                   EINVAL);
    VMIO_CHECK_ARG(API_NEW, opts->listen != NULL, EINVAL);
    VMIO_CHECK_ARG(API_NEW, opts->db_path != NULL, EINVAL);
    VMIO_CHECK_ARG(API_NEW, opts->secret_file != NULL, EINVAL);
    uint32_t lease_s = 0, prov_ms = 0, attach_ms = 0;
    if (opts->struct_size >= offsetof(struct vmio_memlend_manager_options, lease_seconds) + 4)
        lease_s = opts->lease_seconds;
    if (opts->struct_size >=
        offsetof(struct vmio_memlend_manager_options, provision_timeout_ms) + 4)
        prov_ms = opts->provision_timeout_ms;
    if (opts->struct_size >= offsetof(struct vmio_memlend_manager_options, attach_timeout_ms) + 4)
        attach_ms = opts->attach_timeout_ms;
    if (attach_ms == 0)
        attach_ms = ATTACH_TIMEOUT_MS;
    if (lease_s == 0)
        lease_s = 30;
    if (prov_ms == 0)
        prov_ms = 30000;
    if (lease_s > 86400)
        return vmio_set_error(API_NEW, EINVAL, "lease_seconds %u exceeds 86400", lease_s);
    char host[256];
    uint16_t port;
    int r = vmio_ml_split_addr(API_NEW, opts->listen, host, sizeof host, &port, 1);
    if (r < 0)
        return r;
    vmio_memlend_manager *m = calloc(1, sizeof *m);
    if (!m)
        return vmio_set_error(API_NEW, ENOMEM, "out of memory");
    m->listen_fd = -1;
    m->stop_fd = -1;
    m->lease_seconds = lease_s;
    m->provision_timeout_ms = prov_ms;
    m->attach_timeout_ms = attach_ms;
    if ((r = vmio_read_secret_file(API_NEW, opts->secret_file, &m->secret, &m->secret_len)) < 0)
        goto fail;
    if ((r = vmio_ml_db_open(API_NEW, opts->db_path, &m->db)) < 0)
        goto fail;
    /* After a restart every lender gets a full lease to come back. */
    if ((r = vmio_ml_db_recover(API_NEW, m->db, wall_now(), lease_s)) < 0)
        goto fail;
    if (r > 0)
        vmio_log(VMIO_LOG_INFO, "memlend manager: dropped %d lease(s) that were PENDING", r);
    /* READY leases answered before the restart: their borrowers get the
     * full attach timeout to report ATTACHED. */
    struct vmio_memlend_lease *ready;
    size_t nready;
    if ((r = vmio_ml_db_leases(API_NEW, m->db, NULL, NULL, VMIO_MEMLEND_READY, &ready,
                               &nready)) < 0)
        goto fail;
    for (size_t i = 0; i < nready; i++)
        attach_wait_add(m, ready[i].id, NULL);
    free(ready);
    m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->stop_fd < 0) {
        r = vmio_set_error_errno(API_NEW, errno, "eventfd");
        goto fail;
    }
    r = vmio_tcp_listen(API_NEW, host, port, &m->port);
    if (r < 0)
        goto fail;
    m->listen_fd = r;
    fcntl(m->listen_fd, F_SETFL, fcntl(m->listen_fd, F_GETFL) | O_NONBLOCK);
    *out = m;
    return 0;
fail:
    vmio_memlend_manager_free(m);
    return r;
}

int vmio_memlend_manager_port(vmio_memlend_manager *m)
{
    VMIO_CHECK_ARG("vmio_memlend_manager_port", m != NULL, EFAULT);
    return m->port;
}

int vmio_memlend_manager_run(vmio_memlend_manager *m)
{
    VMIO_CHECK_ARG(API_RUN, m != NULL, EFAULT);
    struct pollfd *pfd = NULL;
    struct conn **pc = NULL;
    size_t cap = 0;
    int ret = 0;
    for (;;) {
        int timeout = timers(m);
        reap(m);
        size_t need = (size_t)m->nconns + 2;
        if (need > cap) {
            cap = need * 2;
            struct pollfd *np = realloc(pfd, cap * sizeof *np);
            if (np)
                pfd = np;
            struct conn **nc = realloc(pc, cap * sizeof *nc);
            if (nc)
                pc = nc;
            if (!np || !nc) {
                ret = vmio_set_error(API_RUN, ENOMEM, "out of memory");
                break;
            }
        }
        size_t n = 0;
        int backlog = 0;
        pfd[n++] = (struct pollfd){ .fd = m->stop_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
        for (struct conn *c = m->conns; c; c = c->next) {
            pc[n] = c;
            backlog |= c->backlog && !c->closing;
            pfd[n++] = (struct pollfd){
                .fd = c->fd,
                .events = (short)((c->closing || c->backlog ? 0 : POLLIN) |
                                  (c->out_off < c->out.len ? POLLOUT : 0)),
            };
        }
        int r = poll(pfd, n, backlog ? 0 : timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = vmio_set_error_errno(API_RUN, errno, "poll");
            break;
        }
        if (pfd[0].revents) {
            uint64_t v;
            ssize_t rd = read(m->stop_fd, &v, sizeof v);
            (void)rd;
            break;
        }
        if (pfd[1].revents)
            accept_all(m);
        for (size_t i = 2; i < n; i++) {
            struct conn *c = pc[i];
            if (!c->dead && !c->closing && c->backlog)
                process_input(m, c);   /* the next FRAMES_PER_ROUND requests */
            if (c->dead || !pfd[i].revents)
                continue;
            if (pfd[i].revents & POLLOUT)
                conn_flush(c);
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (c->closing)
                    conn_kill(c);
                else
                    conn_read(m, c);
            }
        }
    }
    free(pfd);
    free(pc);
    return ret;
}

void vmio_memlend_manager_stop(vmio_memlend_manager *m)
{
    if (!m || m->stop_fd < 0)
        return;
    /* Async-signal-safe: one write to the eventfd. */
    uint64_t one = 1;
    ssize_t w = write(m->stop_fd, &one, sizeof one);
    (void)w;
}

void vmio_memlend_manager_free(vmio_memlend_manager *m)
{
    if (!m)
        return;
    while (m->conns) {
        struct conn *c = m->conns;
        m->conns = c->next;
        conn_free(m, c, 1);
    }
    while (m->attach_waits) {
        struct attach_wait *a = m->attach_waits;
        m->attach_waits = a->next;
        free(a);
    }
    while (m->lmems) {
        struct lender_mem *l = m->lmems;
        m->lmems = l->next;
        free(l);
    }
    while (m->waiters) {
        struct waiter *w = m->waiters;
        m->waiters = w->next;
        free(w);
    }
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    if (m->stop_fd >= 0)
        close(m->stop_fd);
    vmio_ml_db_close(m->db);
    if (m->secret) {
        memset(m->secret, 0, m->secret_len);
        free(m->secret);
    }
    free(m);
}
