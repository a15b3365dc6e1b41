/* Connections of the migration stream: addresses ("tcp://", "rdma://",
 * "host:port" = RDMA when this host has a device, else TCP), connect,
 * listen/accept with a timeout and cancellation, wrapping a caller's
 * socket, and the emulated link rate used by benchmarks. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "migrate/engine.h"

int vmio_mig_parse_addr(const char *api, const char *uri, struct vmio_mig_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (!uri || !*uri)
        return vmio_set_error(api, EINVAL, "empty address");
    const char *p = uri;
    if (!strncmp(p, "tcp://", 6)) {
        a->kind = 1;
        p += 6;
    } else if (!strncmp(p, "rdma://", 7)) {
        a->kind = 2;
        p += 7;
    } else if (strstr(p, "://")) {
        return vmio_set_error(api, EINVAL, "address \"%s\": unknown scheme (tcp:// or rdma://)",
                              uri);
    }
    const char *colon, *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he || he[1] != ':')
            return vmio_set_error(api, EINVAL, "address \"%s\": bad [IPv6]:port", uri);
        hs = p + 1;
        colon = he + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon)
            return vmio_set_error(api, EINVAL, "address \"%s\": no port (host:port)", uri);
        he = colon;
    }
    size_t hl = (size_t)(he - hs);
    if (hl >= sizeof(a->host))
        return vmio_set_error(api, EINVAL, "address \"%s\": host name too long", uri);
    memcpy(a->host, hs, hl);
    a->host[hl] = 0;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == 0 || *end || errno || port > 65535)
        return vmio_set_error(api, EINVAL, "address \"%s\": bad port", uri);
    a->port = (uint16_t)port;
    return 0;
}

int vmio_mig_connect(const char *api, const struct vmio_mig_addr *a, int timeout_ms,
                     struct vmio_transport **out)
{
    const char *host = a->host[0] ? a->host : "localhost";
    if (a->kind == 2)
        return vmio_rdma_connect(api, host, a->port, timeout_ms, NULL, out);
    if (a->kind == 0 && vmio_rdma_available() == 1 &&
        vmio_rdma_connect(api, host, a->port, timeout_ms < 3000 ? timeout_ms : 3000, NULL,
                          out) == 0)
        return 0;
    return vmio_tcp_connect(api, host, a->port, timeout_ms, out);
}

struct vmio_mig_listener {
    int tcp_fd;
    struct vmio_rdma_listener *rdma;
    int rdma_fd;
};

int vmio_mig_listen(const char *api, const struct vmio_mig_addr *a,
                    struct vmio_mig_listener **out, int *port)
{
    struct vmio_mig_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return vmio_set_error(api, ENOMEM, "out of memory");
    l->tcp_fd = l->rdma_fd = -1;
    const char *host = a->host[0] && strcmp(a->host, "*") ? a->host : NULL;
    int bound = a->port, r;
    if (a->kind != 2) {
        r = vmio_tcp_listen(api, host, a->port, &bound);
        if (r < 0) {
            free(l);
            return r;
        }
        l->tcp_fd = r;
    }
    if (a->kind == 2 || (a->kind == 0 && vmio_rdma_available() == 1)) {
        r = vmio_rdma_listen(api, host, (uint16_t)bound, NULL, &l->rdma, &l->rdma_fd);
        if (r < 0 && a->kind == 2) {
            free(l);
            return r;
        }
        if (r < 0)
            l->rdma = NULL;   /* auto: TCP only */
    }
    *port = bound;
    *out = l;
    return 0;
}

int vmio_mig_accept(const char *api, struct vmio_mig_listener *l, int timeout_ms,
                    atomic_int *cancel, struct vmio_transport **out)
{
    uint64_t deadline = vmio_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        if (cancel && atomic_load(cancel))
            return vmio_set_error(api, ECANCELED, "cancelled while waiting for a sender");
        struct pollfd p[2];
        int n = 0, ti = -1, ri = -1;
        if (l->tcp_fd >= 0) {
            ti = n;
            p[n++] = (struct pollfd){ .fd = l->tcp_fd, .events = POLLIN };
        }
        if (l->rdma) {
            ri = n;
            p[n++] = (struct pollfd){ .fd = l->rdma_fd, .events = POLLIN };
        }
        int r = poll(p, (nfds_t)n, 200);
        if (r < 0 && errno != EINTR)
            return vmio_set_error_errno(api, errno, "poll");
        if (ri >= 0 && (p[ri].revents & POLLIN)) {
            r = vmio_rdma_accept(api, l->rdma, out);
            if (r == 0)
                return 0;
            if (r != -EAGAIN)
                return r;
        }
        if (ti >= 0 && (p[ti].revents & POLLIN)) {
            int fd = accept4(l->tcp_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                return vmio_tcp_wrap(api, fd, out);
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                return vmio_set_error_errno(api, errno, "accept");
        }
        if (timeout_ms > 0 && vmio_now_ns() > deadline)
            return vmio_set_error(api, ETIMEDOUT, "no sender connected within %d ms",
                                  timeout_ms);
    }
}

void vmio_mig_listener_close(struct vmio_mig_listener *l)
{
    if (!l)
        return;
    if (l->tcp_fd >= 0)
        close(l->tcp_fd);
    if (l->rdma)
        vmio_rdma_listener_close(l->rdma);
    free(l);
}

int vmio_mig_wrap_fd(const char *api, int fd, struct vmio_transport **out)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0)
        return vmio_set_error_errno(api, errno, "dup of the caller's socket");
    return vmio_tcp_wrap(api, d, out);
}

void vmio_mig_ratelimit_wait(struct vmio_mig_ratelimit *r, uint64_t ready_ns, uint64_t bytes)
{
    if (!r->rate)
        return;
    /* A link that serialises at rate: the bytes start when they were
     * ready and the link was free; no credit builds up while idle. */
    uint64_t start = r->next_ns > ready_ns ? r->next_ns : ready_ns;
    r->next_ns = start + (uint64_t)((double)bytes * 1e9 / (double)r->rate);
    uint64_t now = vmio_now_ns();
    if (r->next_ns <= now)
        return;
    uint64_t d = r->next_ns - now;
    struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}
