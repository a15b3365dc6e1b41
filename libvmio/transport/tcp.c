/* TCP transport: blocking sockets with TCP_NODELAY, vectored sends. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/internal.h"
#include "transport/transport.h"

/* Send every byte of iov with sendmsg flags (MSG_NOSIGNAL added). */
static int send_all(struct vmio_transport *t, struct iovec *iov, int iovcnt, int flags)
{
    while (iovcnt > 0) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)(iovcnt > 1024 ? 1024 : iovcnt) };
        ssize_t n = sendmsg(t->fd, &mh, MSG_NOSIGNAL | flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int tcp_sendv(struct vmio_transport *t, struct iovec *iov, int iovcnt)
{
    return send_all(t, iov, iovcnt, 0);
}

static int tcp_sendfile(struct vmio_transport *t, struct iovec *iov, int iovcnt, int fd,
                        uint64_t off, size_t len)
{
    /* The header with MSG_MORE: it leaves in one segment with the data. */
    int r = send_all(t, iov, iovcnt, MSG_MORE);
    if (r < 0)
        return r;
    off_t o = (off_t)off;
    while (len > 0) {
        ssize_t n = sendfile(t->fd, fd, &o, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENODATA;
        len -= (size_t)n;
    }
    return 0;
}

static int tcp_recv(struct vmio_transport *t, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(t->fd, p, len, MSG_WAITALL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static long tcp_recv_some(struct vmio_transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(t->fd, buf, len, 0);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        if (errno != EINTR)
            return -errno;
    }
}

static long tcp_recv_poll(struct vmio_transport *t, void *buf, size_t len, uint64_t budget_ns)
{
    uint64_t start = vmio_now_ns();
    for (;;) {
        ssize_t n = recv(t->fd, buf, len, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (vmio_now_ns() - start >= budget_ns)
            return -EAGAIN;
        /* A peer on this same CPU gets to run (and to send). */
        sched_yield();
    }
}

static long tcp_splice_in(struct vmio_transport *t, int pipefd, size_t len)
{
    for (;;) {
        /* SPLICE_F_NONBLOCK: a full pipe must not block us (only we
         * drain it). The blocking socket waits for data inside splice;
         * the poll below covers sockets that return EAGAIN anyway (a
         * receive timeout). */
        ssize_t n = splice(t->fd, NULL, pipefd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        struct pollfd pf = { .fd = pipefd, .events = POLLOUT };
        if (poll(&pf, 1, 0) == 0)
            return -ENOSPC;
        pf = (struct pollfd){ .fd = t->fd, .events = POLLIN };
        if (poll(&pf, 1, -1) < 0 && errno != EINTR)
            return -errno;
    }
}

static int tcp_readable(struct vmio_transport *t)
{
    char b;
    ssize_t n = recv(t->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void tcp_shutdown(struct vmio_transport *t)
{
    shutdown(t->fd, SHUT_RDWR);
}

static void tcp_set_recv_timeout(struct vmio_transport *t, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void tcp_shutdown_read(struct vmio_transport *t)
{
    shutdown(t->fd, SHUT_RD);
}

static void tcp_close(struct vmio_transport *t)
{
    close(t->fd);
    free(t);
}

static const struct vmio_transport_ops tcp_ops = {
    .struct_size = sizeof(struct vmio_transport_ops),
    .name = "tcp",
    .sendv = tcp_sendv,
    .recv = tcp_recv,
    .recv_some = tcp_recv_some,
    .recv_poll = tcp_recv_poll,
    .splice_in = tcp_splice_in,
    .readable = tcp_readable,
    .shutdown = tcp_shutdown,
    .shutdown_read = tcp_shutdown_read,
    .set_recv_timeout = tcp_set_recv_timeout,
    .close = tcp_close,
    .sendfile = tcp_sendfile,
};

static void tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

static void describe(int fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
            port = ntohs(s4->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            port = ntohs(s6->sin6_port);
        }
    }
    snprintf(out, n, "%s:%u", host, port);
}

int vmio_tcp_wrap(const char *api, int fd, struct vmio_transport **out)
{
    struct vmio_transport *t = calloc(1, sizeof *t);
    if (!t)
        return vmio_set_error(api, ENOMEM, "out of memory");
    tune(fd);
    t->ops = &tcp_ops;
    t->fd = fd;
    describe(fd, t->peer, sizeof t->peer);
    *out = t;
    return 0;
}

static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int r = connect(fd, sa, len);
    if (r < 0 && errno != EINPROGRESS)
        return -errno;
    if (r < 0) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        do
            r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r == 0)
            return -ETIMEDOUT;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err)
            return -err;
    }
    fcntl(fd, F_SETFL, fl);
    return 0;
}

int vmio_tcp_connect(const char *api, const char *host, uint16_t port, int timeout_ms,
                     struct vmio_transport **out)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
    struct addrinfo *res, *ai;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    int r = getaddrinfo(host, ps, &hints, &res);
    if (r != 0)
        return vmio_set_error(api, r == EAI_SYSTEM ? errno : EHOSTUNREACH,
                              "cannot resolve %s: %s", host, gai_strerror(r));
    int err = EHOSTUNREACH;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        r = connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
        if (r == 0) {
            freeaddrinfo(res);
            return vmio_tcp_wrap(api, fd, out);
        }
        err = -r;
        close(fd);
    }
    freeaddrinfo(res);
    return vmio_set_error_errno(api, err, "cannot connect to %s port %u", host, port);
}

int vmio_tcp_listen(const char *api, const char *host, uint16_t port, int *bound_port)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    int r = getaddrinfo(host, ps, &hints, &res);
    if (r != 0)
        return vmio_set_error(api, EINVAL, "cannot resolve listen address %s: %s",
                              host ? host : "*", gai_strerror(r));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        r = vmio_set_error_errno(api, errno, "socket");
        freeaddrinfo(res);
        return r;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        r = vmio_set_error_errno(api, errno, "cannot listen on %s:%u", host ? host : "*", port);
        freeaddrinfo(res);
        close(fd);
        return r;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (bound_port)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}
