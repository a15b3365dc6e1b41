/* The memory-lending client (include/vmio/memlend.h, "client"): one TCP
 * connection to the manager, synchronous request/reply. Notices the
 * manager pushes while a call waits for its reply are queued for
 * vmio_memlend_next_notice(). vmio_memlend_client_fd() is an epoll fd
 * over the socket and an eventfd raised while the queue is not empty, so
 * it is readable whenever a notice may be waiting. Not thread-safe: one
 * thread per client at a time. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/internal.h"
#include "memlend/proto.h"
#include "protocol/auth.h"
#include "transport/transport.h"

#define MAX_QUEUED 65536   /* unread notices: more break the connection */
#define REQUEST_MARGIN_MS 3000

struct qnode {
    struct qnode *next;
    struct vmio_memlend_notice n;
};

struct vmio_memlend_client {
    int fd;
    int epfd;
    int evfd;
    uint32_t timeout_ms;
    uint32_t role;
    uint32_t lease_seconds;
    uint32_t next_id;
    char name[VMIO_ML_MAX_NAME + 1];
    char addr[160];
    uint8_t *in;
    size_t in_len, in_cap;
    struct qnode *qhead, *qtail;
    size_t qlen;
    int broken;              /* the stream is unusable: errno */
    char broken_msg[VMIO_ML_MAX_ERRMSG + 64];
};

static const char *const state_names[] = {
    [VMIO_MEMLEND_PENDING] = "PENDING",   [VMIO_MEMLEND_READY] = "READY",
    [VMIO_MEMLEND_ATTACHED] = "ATTACHED", [VMIO_MEMLEND_REVOKING] = "REVOKING",
    [VMIO_MEMLEND_RELEASED] = "RELEASED", [VMIO_MEMLEND_LOST] = "LOST",
};

const char *vmio_memlend_state_name(uint32_t state)
{
    if (state < VMIO_ARRAY_SIZE(state_names) && state_names[state])
        return state_names[state];
    return "UNKNOWN";
}

/* ---- connection state ---- */

static int VMIO_PRINTF(4, 5) set_broken(vmio_memlend_client *c, const char *api, int err,
                                        const char *fmt, ...)
{
    if (!c->broken) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
        va_end(ap);
        c->broken = err;
    }
    return vmio_set_error(api, c->broken, "%s", c->broken_msg);
}

static int check_broken(vmio_memlend_client *c, const char *api)
{
    if (c->broken)
        return vmio_set_error(api, c->broken, "%s", c->broken_msg);
    return 0;
}

static int remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = vmio_now_ns();
    if (deadline_ns == UINT64_MAX)
        return -1;
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return (int)VMIO_MIN(ms, (uint64_t)INT32_MAX);
}

static uint64_t deadline_after(uint32_t ms)
{
    return vmio_now_ns() + (uint64_t)ms * 1000000u;
}

/* ---- notice queue ---- */

static void queue_signal(vmio_memlend_client *c)
{
    uint64_t one = 1;
    ssize_t w = write(c->evfd, &one, sizeof one);
    (void)w;
}

static void queue_drain_signal(vmio_memlend_client *c)
{
    uint64_t v;
    ssize_t r = read(c->evfd, &v, sizeof v);
    (void)r;
}

static int queue_push(vmio_memlend_client *c, const char *api,
                      const struct vmio_memlend_notice *n)
{
    /* Dropping one could lose a REVOKE: give up on the connection instead
     * (its owner reconnects and the manager sends what is pending again). */
    if (c->qlen >= MAX_QUEUED) {
        int r = set_broken(c, api, ENOBUFS,
                           "more than %d notices from the manager at %s were not read "
                           "(vmio_memlend_next_notice): connection abandoned",
                           MAX_QUEUED, c->addr);
        queue_signal(c);
        return r;
    }
    struct qnode *q = malloc(sizeof *q);
    if (!q)
        return vmio_set_error(api, ENOMEM, "out of memory");
    q->n = *n;
    q->next = NULL;
    if (c->qtail)
        c->qtail->next = q;
    else
        c->qhead = q;
    c->qtail = q;
    c->qlen++;
    queue_signal(c);
    return 0;
}

static int queue_pop(vmio_memlend_client *c, struct vmio_memlend_notice *n)
{
    struct qnode *q = c->qhead;
    if (!q)
        return 0;
    c->qhead = q->next;
    if (!c->qhead)
        c->qtail = NULL;
    c->qlen--;
    *n = q->n;
    free(q);
    if (!c->qhead)
        queue_drain_signal(c);
    return 1;
}

/* ---- frames ---- */

static int send_all(vmio_memlend_client *c, const char *api, const uint8_t *p, size_t n,
                    uint64_t deadline_ns)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return set_broken(c, api, errno == EPIPE || errno == ECONNRESET ? EPIPE : errno,
                              "sending to the manager at %s: %s", c->addr, strerror(errno));
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        int r = poll(&pfd, 1, remaining_ms(deadline_ns));
        if (r < 0 && errno != EINTR)
            return set_broken(c, api, errno, "poll: %s", strerror(errno));
        if (r == 0)
            return set_broken(c, api, ETIMEDOUT,
                              "sending to the manager at %s timed out (connection abandoned)",
                              c->addr);
    }
    return 0;
}

static int send_frame(vmio_memlend_client *c, const char *api, uint16_t type, uint32_t id,
                      const struct vmio_ml_buf *body, uint64_t deadline_ns)
{
    struct vmio_ml_buf f = { 0 };
    vmio_ml_put_frame(&f, type, id, 0, body ? body->data : NULL, body ? body->len : 0);
    if (f.oom || (body && body->oom)) {
        vmio_ml_buf_free(&f);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    int r = send_all(c, api, f.data, f.len, deadline_ns);
    vmio_ml_buf_free(&f);
    return r;
}

/* Wait for one complete frame in c->in: 1 (header in *h, body at
 * c->in + VMIO_ML_HDR_SIZE until consume()), 0 on timeout, or -errno. */
static int read_frame(vmio_memlend_client *c, const char *api, uint64_t deadline_ns,
                      struct vmio_ml_hdr *h)
{
    for (;;) {
        if (c->in_len >= VMIO_ML_HDR_SIZE) {
            if (vmio_ml_decode_hdr(api, c->in, h) < 0)
                return set_broken(c, api, EPROTO, "manager at %s: %s", c->addr,
                                  vmio_errmsg() + strlen(api) + 2);
            size_t need = VMIO_ML_HDR_SIZE + h->length;
            if (c->in_len >= need)
                return 1;
            if (c->in_cap < need) {
                uint8_t *n = realloc(c->in, need);
                if (!n)
                    return vmio_set_error(api, ENOMEM, "out of memory");
                c->in = n;
                c->in_cap = need;
            }
        } else if (c->in_cap < 4096) {
            uint8_t *n = realloc(c->in, 4096);
            if (!n)
                return vmio_set_error(api, ENOMEM, "out of memory");
            c->in = n;
            c->in_cap = 4096;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (r > 0) {
            c->in_len += (size_t)r;
            continue;
        }
        if (r == 0)
            return set_broken(c, api, EPIPE, "the manager at %s closed the connection",
                              c->addr);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return set_broken(c, api, errno == ECONNRESET ? EPIPE : errno,
                              "receiving from the manager at %s: %s", c->addr, strerror(errno));
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&pfd, 1, remaining_ms(deadline_ns));
        if (pr < 0 && errno != EINTR)
            return set_broken(c, api, errno, "poll: %s", strerror(errno));
        if (pr == 0)
            return 0;
    }
}

static void consume(vmio_memlend_client *c, const struct vmio_ml_hdr *h)
{
    size_t n = VMIO_ML_HDR_SIZE + h->length;
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* A frame that is not the awaited reply: queue a notice, take a FATAL's
 * reason, drop stale replies. 0 or -errno. */
static int handle_async(vmio_memlend_client *c, const char *api, const struct vmio_ml_hdr *h)
{
    const uint8_t *body = c->in + VMIO_ML_HDR_SIZE;
    if (h->type == VMIO_ML_NOTICE) {
        struct vmio_memlend_notice n;
        if (vmio_ml_decode_notice(api, body, h->length, &n) < 0)
            return set_broken(c, api, EPROTO, "manager at %s sent a bad notice: %s", c->addr,
                              vmio_errmsg() + strlen(api) + 2);
        return queue_push(c, api, &n);
    }
    if (h->type == VMIO_ML_FATAL) {
        char msg[VMIO_ML_MAX_ERRMSG + 1];
        if (vmio_ml_decode_error(api, body, h->length, msg) < 0)
            snprintf(msg, sizeof msg, "(unreadable reason)");
        return set_broken(c, api, h->status, "the manager at %s closed the connection: %s",
                          c->addr, msg);
    }
    if (h->type & VMIO_ML_REPLY)
        return 0;   /* a reply to a call that gave up: stale */
    return set_broken(c, api, EPROTO, "manager at %s sent request type 0x%02x", c->addr,
                      h->type);
}

/* Queue the complete frames already received (they came in the same recv
 * as a reply or a notice taken from the queue): the socket will not
 * become readable for them, the eventfd must. 0 or -errno (the stream is
 * broken; the eventfd is raised so that a poller learns it). */
static int drain_buffered(vmio_memlend_client *c, const char *api)
{
    while (!c->broken && c->in_len >= VMIO_ML_HDR_SIZE) {
        struct vmio_ml_hdr h;
        if (vmio_ml_decode_hdr(api, c->in, &h) < 0) {
            set_broken(c, api, EPROTO, "manager at %s: %s", c->addr,
                       vmio_errmsg() + strlen(api) + 2);
            break;
        }
        if (c->in_len < VMIO_ML_HDR_SIZE + h.length)
            return 0;
        int r = handle_async(c, api, &h);
        consume(c, &h);
        if (r < 0 && !c->broken)
            return r;
    }
    if (c->broken) {
        queue_signal(c);
        return -c->broken;
    }
    return 0;
}

/* Send a request and wait for its reply. On success the reply body is
 * copied to *rbody (malloc'd, NULL when empty) unless rbody is NULL (then
 * the body must be empty). A non-zero status becomes the call's error with
 * the manager's message. */
static int call_once(vmio_memlend_client *c, const char *api, uint16_t type,
                     const struct vmio_ml_buf *body, uint32_t wait_ms, uint8_t **rbody,
                     size_t *rlen)
{
    int r = check_broken(c, api);
    if (r < 0)
        return r;
    uint32_t id = ++c->next_id;
    if (id == 0)
        id = ++c->next_id;
    uint64_t deadline = deadline_after(wait_ms);
    if ((r = send_frame(c, api, type, id, body, deadline)) < 0)
        return r;
    for (;;) {
        struct vmio_ml_hdr h;
        r = read_frame(c, api, deadline, &h);
        if (r < 0)
            return r;
        if (r == 0)
            return set_broken(c, api, ETIMEDOUT,
                              "no answer from the manager at %s within %u ms (connection "
                              "abandoned)",
                              c->addr, wait_ms);
        if (!(h.type & VMIO_ML_REPLY) || h.id != id) {
            r = handle_async(c, api, &h);
            consume(c, &h);
            if (r < 0)
                return r;
            continue;
        }
        const uint8_t *p = c->in + VMIO_ML_HDR_SIZE;
        if (h.type != (type | VMIO_ML_REPLY)) {
            consume(c, &h);
            return set_broken(c, api, EPROTO, "manager at %s answered type 0x%02x with 0x%02x",
                              c->addr, type, h.type);
        }
        if (h.status != 0) {
            char msg[VMIO_ML_MAX_ERRMSG + 1];
            if (vmio_ml_decode_error(api, p, h.length, msg) < 0) {
                consume(c, &h);
                return set_broken(c, api, EPROTO, "manager at %s: bad error reply: %s",
                                  c->addr, vmio_errmsg() + strlen(api) + 2);
            }
            consume(c, &h);
            return vmio_set_error(api, h.status, "manager: %s", msg);
        }
        if (!rbody) {
            r = vmio_ml_decode_empty(api, p, h.length);
            consume(c, &h);
            if (r < 0)
                return set_broken(c, api, EPROTO, "manager at %s: %s", c->addr,
                                  vmio_errmsg() + strlen(api) + 2);
            return 0;
        }
        uint8_t *copy = NULL;
        if (h.length) {
            copy = malloc(h.length);
            if (!copy) {
                consume(c, &h);
                return vmio_set_error(api, ENOMEM, "out of memory");
            }
            memcpy(copy, p, h.length);
        }
        *rlen = h.length;
        *rbody = copy;
        consume(c, &h);
        return 0;
    }
}

static int call(vmio_memlend_client *c, const char *api, uint16_t type,
                const struct vmio_ml_buf *body, uint32_t wait_ms, uint8_t **rbody, size_t *rlen)
{
    int r = call_once(c, api, type, body, wait_ms, rbody, rlen);
    if (c->broken || c->in_len == 0)
        return r;
    /* Notices that followed the reply: the call's own result (and error
     * message) stays; a broken stream shows in the next call. */
    struct vmio_error_copy e;
    vmio_error_save(&e);
    drain_buffered(c, api);
    vmio_error_restore(&e);
    return r;
}

/* A reply body that failed to decode breaks the connection (the two ends
 * disagree on the protocol). */
static int bad_reply(vmio_memlend_client *c, const char *api)
{
    return set_broken(c, api, EPROTO, "manager at %s: %s", c->addr,
                      vmio_errmsg() + strlen(api) + 2);
}

/* ---- connect / disconnect ---- */

static int handshake(vmio_memlend_client *c, const char *api, const uint8_t *secret,
                     size_t secret_len)
{
    uint64_t deadline = deadline_after(c->timeout_ms);
    struct vmio_ml_hello hello = { .min_version = VMIO_ML_VERSION,
                                   .max_version = VMIO_ML_VERSION,
                                   .role = c->role };
    snprintf(hello.name, sizeof hello.name, "%s", c->name);
    int r = vmio_auth_random(api, hello.nonce, sizeof hello.nonce);
    if (r < 0)
        return r;
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello(&b, &hello);
    uint8_t *rb = NULL;
    size_t rl = 0;
    r = call(c, api, VMIO_ML_HELLO, &b, c->timeout_ms, &rb, &rl);
    vmio_ml_buf_free(&b);
    if (r < 0)
        return r;
    struct vmio_ml_hello_reply rep;
    r = vmio_ml_decode_hello_reply(api, rb, rl, &rep);
    free(rb);
    if (r < 0)
        return bad_reply(c, api);
    uint8_t want[VMIO_ML_PROOF_SIZE];
    vmio_ml_proof(secret, secret_len, 1, hello.nonce, rep.nonce, c->role, c->name, want);
    if (!vmio_auth_proof_equal(want, rep.proof))
        return set_broken(c, api, EACCES,
                          "the manager at %s could not prove that it knows our shared secret "
                          "(different secret files?)",
                          c->addr);
    uint8_t proof[VMIO_ML_PROOF_SIZE];
    vmio_ml_proof(secret, secret_len, 0, hello.nonce, rep.nonce, c->role, c->name, proof);
    b = (struct vmio_ml_buf){ 0 };
    vmio_ml_put_bytes(&b, proof, sizeof proof);
    r = call(c, api, VMIO_ML_AUTH, &b, (uint32_t)VMIO_MAX(remaining_ms(deadline), 1), NULL,
             NULL);
    vmio_ml_buf_free(&b);
    return r;
}

int vmio_memlend_connect(const char *addr, const char *secret_file, int role, const char *name,
                         uint32_t timeout_ms, vmio_memlend_client **out)
{
    static const char api[] = "vmio_memlend_connect";
    VMIO_CHECK_ARG(api, addr != NULL, EFAULT);
    VMIO_CHECK_ARG(api, secret_file != NULL, EFAULT);
    VMIO_CHECK_ARG(api, name != NULL, EFAULT);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    if (role < VMIO_MEMLEND_ROLE_LENDER || role > VMIO_MEMLEND_ROLE_OBSERVER)
        return vmio_set_error(api, EINVAL, "unknown role %d", role);
    if (!vmio_ml_name_valid(name))
        return vmio_set_error(api, EINVAL,
                              "invalid name '%.80s' (1-63 characters of A-Z a-z 0-9 . _ -)",
                              name);
    char host[256];
    uint16_t port;
    int r = vmio_ml_split_addr(api, addr, host, sizeof host, &port, 0);
    if (r < 0)
        return r;
    uint8_t *secret;
    size_t slen;
    if ((r = vmio_read_secret_file(api, secret_file, &secret, &slen)) < 0)
        return r;
    vmio_memlend_client *c = calloc(1, sizeof *c);
    if (!c) {
        free(secret);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    c->fd = c->epfd = c->evfd = -1;
    c->timeout_ms = timeout_ms ? timeout_ms : 30000;
    c->role = (uint32_t)role;
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    struct vmio_transport *t;
    r = vmio_tcp_connect(api, host, port, (int)VMIO_MIN(c->timeout_ms, (uint32_t)INT32_MAX), &t);
    if (r < 0)
        goto fail;
    c->fd = t->fd;
    free(t);   /* keep the socket, drop the stream wrapper */
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->evfd < 0 || c->epfd < 0) {
        r = vmio_set_error_errno(api, errno, "eventfd/epoll");
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN };
    ev.data.fd = c->fd;
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        r = vmio_set_error_errno(api, errno, "epoll_ctl");
        goto fail;
    }
    ev.data.fd = c->evfd;
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0) {
        r = vmio_set_error_errno(api, errno, "epoll_ctl");
        goto fail;
    }
    r = handshake(c, api, secret, slen);
    if (r < 0)
        goto fail;
    memset(secret, 0, slen);
    free(secret);
    *out = c;
    return 0;
fail:
    memset(secret, 0, slen);
    free(secret);
    /* Keep the recorded error across the cleanup. */
    {
        struct vmio_error_copy e;
        vmio_error_save(&e);
        vmio_memlend_disconnect(c);
        vmio_error_restore(&e);
    }
    return r;
}

void vmio_memlend_disconnect(vmio_memlend_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->evfd >= 0)
        close(c->evfd);
    struct vmio_memlend_notice n;
    while (queue_pop(c, &n))
        ;
    free(c->in);
    free(c);
}

int vmio_memlend_client_fd(vmio_memlend_client *c)
{
    VMIO_CHECK_ARG("vmio_memlend_client_fd", c != NULL, EFAULT);
    return c->epfd;
}

int vmio_memlend_lease_seconds(vmio_memlend_client *c)
{
    VMIO_CHECK_ARG("vmio_memlend_lease_seconds", c != NULL, EFAULT);
    return (int)c->lease_seconds;
}

int vmio_memlend_next_notice(vmio_memlend_client *c, int timeout_ms,
                             struct vmio_memlend_notice *n)
{
    static const char api[] = "vmio_memlend_next_notice";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    VMIO_CHECK_ARG(api, n != NULL, EFAULT);
    if (queue_pop(c, n)) {
        drain_buffered(c, api);
        return 0;
    }
    if (c->broken)
        return vmio_set_error(api, EPIPE, "%s", c->broken_msg);
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : deadline_after((uint32_t)timeout_ms);
    for (;;) {
        struct vmio_ml_hdr h;
        int r = read_frame(c, api, deadline, &h);
        if (r < 0)
            return c->broken ? vmio_set_error(api, EPIPE, "%s", c->broken_msg) : r;
        if (r == 0)
            return vmio_set_error(api, ETIMEDOUT, "no notice within %d ms", timeout_ms);
        r = handle_async(c, api, &h);
        consume(c, &h);
        if (queue_pop(c, n)) {
            drain_buffered(c, api);
            return 0;
        }
        if (r < 0)
            return c->broken ? vmio_set_error(api, EPIPE, "%s", c->broken_msg) : r;
    }
}

/* ---- lender calls ---- */

static int lease_seconds_call(vmio_memlend_client *c, const char *api, uint16_t type,
                              const struct vmio_ml_buf *b)
{
    uint8_t *rb = NULL;
    size_t rl = 0;
    int r = call(c, api, type, b, c->timeout_ms, &rb, &rl);
    if (r < 0)
        return r;
    uint32_t secs;
    r = vmio_ml_decode_lease_seconds(api, rb, rl, &secs);
    free(rb);
    if (r < 0)
        return bad_reply(c, api);
    c->lease_seconds = secs;
    return 0;
}

int vmio_memlend_register(vmio_memlend_client *c, const char *portal, uint64_t exportable)
{
    static const char api[] = "vmio_memlend_register";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    VMIO_CHECK_ARG(api, portal != NULL, EFAULT);
    if (!vmio_ml_portal_valid(portal))
        return vmio_set_error(api, EINVAL,
                              "invalid portal '%.80s' (1-127 printable characters, no spaces)",
                              portal);
    struct vmio_ml_register reg = { .exportable = exportable };
    snprintf(reg.portal, sizeof reg.portal, "%s", portal);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_register(&b, &reg);
    int r = lease_seconds_call(c, api, VMIO_ML_REGISTER, &b);
    vmio_ml_buf_free(&b);
    return r;
}

int vmio_memlend_heartbeat(vmio_memlend_client *c, uint64_t exportable)
{
    static const char api[] = "vmio_memlend_heartbeat";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_put_u64(&b, exportable);
    int r = lease_seconds_call(c, api, VMIO_ML_HEARTBEAT, &b);
    vmio_ml_buf_free(&b);
    return r;
}

static int simple_call(vmio_memlend_client *c, const char *api, uint16_t type,
                       const struct vmio_ml_buf *b)
{
    return call(c, api, type, b, c->timeout_ms, NULL, NULL);
}

static int id_call(vmio_memlend_client *c, const char *api, uint16_t type, uint64_t id)
{
    struct vmio_ml_buf b = { 0 };
    vmio_ml_put_u64(&b, id);
    int r = simple_call(c, api, type, &b);
    vmio_ml_buf_free(&b);
    return r;
}

int vmio_memlend_withdraw(vmio_memlend_client *c)
{
    static const char api[] = "vmio_memlend_withdraw";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    return simple_call(c, api, VMIO_ML_WITHDRAW, NULL);
}

int vmio_memlend_provided(vmio_memlend_client *c, uint64_t lease_id, const char *target_iqn,
                          uint32_t lun, int err)
{
    static const char api[] = "vmio_memlend_provided";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    struct vmio_ml_provided p = { .lease_id = lease_id };
    if (err == 0) {
        VMIO_CHECK_ARG(api, target_iqn != NULL, EFAULT);
        if (!vmio_ml_iqn_valid(target_iqn))
            return vmio_set_error(api, EINVAL,
                                  "invalid target IQN '%.80s' (1-223 printable characters)",
                                  target_iqn);
        snprintf(p.target_iqn, sizeof p.target_iqn, "%s", target_iqn);
        p.lun = lun;
    } else {
        if (err < 0)
            err = -err;
        /* Errors the protocol cannot name travel as EIO. */
        p.err = (uint32_t)(vmio_ml_errno_valid(err) ? err : EIO);
    }
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_provided(&b, &p);
    int r = simple_call(c, api, VMIO_ML_PROVIDED, &b);
    vmio_ml_buf_free(&b);
    return r;
}

int vmio_memlend_reclaim(vmio_memlend_client *c, uint64_t lease_id)
{
    VMIO_CHECK_ARG("vmio_memlend_reclaim", c != NULL, EFAULT);
    return id_call(c, "vmio_memlend_reclaim", VMIO_ML_RECLAIM, lease_id);
}

int vmio_memlend_unexported(vmio_memlend_client *c, uint64_t lease_id)
{
    VMIO_CHECK_ARG("vmio_memlend_unexported", c != NULL, EFAULT);
    return id_call(c, "vmio_memlend_unexported", VMIO_ML_UNEXPORTED, lease_id);
}

/* ---- borrower calls ---- */

int vmio_memlend_request(vmio_memlend_client *c, uint64_t size, struct vmio_memlend_lease *out)
{
    static const char api[] = "vmio_memlend_request";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    /* The manager gives up (and says why) before we do. */
    struct vmio_ml_request rq = { .size = size, .wait_ms = c->timeout_ms };
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_request(&b, &rq);
    uint8_t *rb = NULL;
    size_t rl = 0;
    uint32_t wait = c->timeout_ms > UINT32_MAX - REQUEST_MARGIN_MS
                        ? UINT32_MAX
                        : c->timeout_ms + REQUEST_MARGIN_MS;
    int r = call(c, api, VMIO_ML_REQUEST, &b, wait, &rb, &rl);
    vmio_ml_buf_free(&b);
    if (r < 0)
        return r;
    struct vmio_memlend_lease l;
    r = vmio_ml_decode_lease_body(api, rb, rl, &l);
    free(rb);
    if (r < 0)
        return bad_reply(c, api);
    *out = l;
    return 0;
}

int vmio_memlend_attached(vmio_memlend_client *c, uint64_t lease_id)
{
    VMIO_CHECK_ARG("vmio_memlend_attached", c != NULL, EFAULT);
    return id_call(c, "vmio_memlend_attached", VMIO_ML_ATTACHED, lease_id);
}

int vmio_memlend_release(vmio_memlend_client *c, uint64_t lease_id)
{
    VMIO_CHECK_ARG("vmio_memlend_release", c != NULL, EFAULT);
    return id_call(c, "vmio_memlend_release", VMIO_ML_RELEASE, lease_id);
}

/* ---- anyone ---- */

int vmio_memlend_status(vmio_memlend_client *c, struct vmio_memlend_lease **leases,
                        size_t *nleases, struct vmio_memlend_lender_info **lenders,
                        size_t *nlenders)
{
    static const char api[] = "vmio_memlend_status";
    VMIO_CHECK_ARG(api, c != NULL, EFAULT);
    VMIO_CHECK_ARG(api, leases != NULL && nleases != NULL, EFAULT);
    VMIO_CHECK_ARG(api, lenders != NULL && nlenders != NULL, EFAULT);
    uint8_t *rb = NULL;
    size_t rl = 0;
    int r = call(c, api, VMIO_ML_STATUS, NULL, c->timeout_ms, &rb, &rl);
    if (r < 0)
        return r;
    r = vmio_ml_decode_status(api, rb, rl, leases, nleases, lenders, nlenders);
    free(rb);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return bad_reply(c, api);
    return 0;
}

void vmio_memlend_status_free(struct vmio_memlend_lease *leases,
                              struct vmio_memlend_lender_info *lenders)
{
    free(leases);
    free(lenders);
}
