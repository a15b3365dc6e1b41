/* The transport seam shared by the storage protocol, the migration stream
 * and vmio-bench: a reliable, ordered byte stream with vectored send and
 * exact-length receive, plus (RDMA only) registered memory and one-sided
 * RDMA WRITE/READ into the peer's registered buffers. TCP implements the
 * stream; RDMA (transport/rdma.c) implements both. */
#ifndef VMIO_TRANSPORT_H
#define VMIO_TRANSPORT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vmio_transport;
struct vmio_mr;

struct vmio_transport_ops {
    uint32_t struct_size;
    const char *name;
    /* Send every byte of iov (may modify iov). 0 or -errno. */
    int (*sendv)(struct vmio_transport *t, struct iovec *iov, int iovcnt);
    /* Receive exactly len bytes. 0, -errno, or -EPIPE at end of stream. */
    int (*recv)(struct vmio_transport *t, void *buf, size_t len);
    /* Receive between 1 and len bytes, blocking until at least one.
     * Returns the count, -EPIPE at end of stream, or -errno. */
    long (*recv_some)(struct vmio_transport *t, void *buf, size_t len);
    /* Like recv_some, but spin (yielding the CPU to anything runnable)
     * for at most budget_ns instead of sleeping; -EAGAIN when nothing
     * came. NULL where polling is not offered (RDMA). */
    long (*recv_poll)(struct vmio_transport *t, void *buf, size_t len, uint64_t budget_ns);
    /* Move between 1 and len bytes of the stream into the pipe pipefd
     * without copying them through user space (splice), waiting for data
     * but never for room in the pipe: -ENOSPC when the pipe is full and
     * nothing was moved, -EPIPE at end of stream, -errno. NULL where the
     * transport cannot (RDMA). */
    long (*splice_in)(struct vmio_transport *t, int pipefd, size_t len);
    /* 1 when recv would not block (data, end of stream or an error is
     * pending), 0 otherwise. Never blocks. */
    int (*readable)(struct vmio_transport *t);
    /* Make blocked sendv/recv return (peer death, stop). */
    void (*shutdown)(struct vmio_transport *t);
    /* Stop receiving: blocked and later recv calls return -EPIPE; sends
     * still go out. */
    void (*shutdown_read)(struct vmio_transport *t);
    /* The caller will poll t->fd from now on (an RDMA transport keeps its
     * eventfd current only then). NULL: the fd is always current. */
    void (*set_pollable)(struct vmio_transport *t);
    /* recv/recv_some give up with -EAGAIN after ms without data (0 = wait
     * for ever). */
    void (*set_recv_timeout)(struct vmio_transport *t, int ms);
    void (*close)(struct vmio_transport *t);
    /* Send iov, then len bytes of file fd from off, without copying them
     * through user space (sendfile). 0, -errno, or -ENODATA when the file
     * ended first (the stream is then broken: close it). NULL where the
     * transport cannot (RDMA). */
    int (*sendfile)(struct vmio_transport *t, struct iovec *iov, int iovcnt, int fd,
                    uint64_t off, size_t len);

    /* One-sided data movement; NULL on stream-only transports (TCP).
     * mr_reg registers [addr, addr+len) for local use and for remote
     * read and write by the connected peer. */
    int (*mr_reg)(struct vmio_transport *t, void *addr, size_t len, struct vmio_mr **out);
    /* Copy len bytes from local (inside mr) to the peer's raddr/rkey, or
     * from the peer into local; return when the transfer completed. */
    int (*rdma_write)(struct vmio_transport *t, struct vmio_mr *mr, const void *local,
                      size_t len, uint64_t raddr, uint32_t rkey);
    int (*rdma_read)(struct vmio_transport *t, struct vmio_mr *mr, void *local, size_t len,
                     uint64_t raddr, uint32_t rkey);
};

/* A registered memory region. Valid for every transport whose domain
 * equals mr->domain (one protection domain per RDMA device), so a
 * registration survives reconnects. */
struct vmio_mr {
    void *addr;
    size_t len;
    uint32_t lkey, rkey;
    const void *domain;
    void *impl;
};
void vmio_mr_dereg(struct vmio_mr *mr);   /* mr may be NULL */

struct vmio_transport {
    const struct vmio_transport_ops *ops;
    int fd;                 /* pollable (after set_pollable): readable when
                               ops->readable is 1 */
    char peer[80];          /* "host:port" for messages */
    const void *domain;     /* RDMA protection domain, NULL for TCP */
};

static inline int vmio_transport_sendv(struct vmio_transport *t, struct iovec *iov, int n)
{
    return t->ops->sendv(t, iov, n);
}
static inline int vmio_transport_recv(struct vmio_transport *t, void *buf, size_t len)
{
    return t->ops->recv(t, buf, len);
}
static inline void vmio_transport_shutdown(struct vmio_transport *t)
{
    t->ops->shutdown(t);
}
static inline long vmio_transport_recv_some(struct vmio_transport *t, void *buf, size_t len)
{
    return t->ops->recv_some(t, buf, len);
}
/* -ENOTSUP when the transport cannot poll. */
static inline long vmio_transport_recv_poll(struct vmio_transport *t, void *buf, size_t len,
                                            uint64_t budget_ns)
{
    return t->ops->recv_poll ? t->ops->recv_poll(t, buf, len, budget_ns) : -ENOTSUP;
}
/* -ENOTSUP when the transport cannot splice. */
static inline long vmio_transport_splice_in(struct vmio_transport *t, int pipefd, size_t len)
{
    return t->ops->splice_in ? t->ops->splice_in(t, pipefd, len) : -ENOTSUP;
}
static inline int vmio_transport_readable(struct vmio_transport *t)
{
    return t->ops->readable(t);
}
static inline void vmio_transport_shutdown_read(struct vmio_transport *t)
{
    t->ops->shutdown_read(t);
}
static inline void vmio_transport_set_pollable(struct vmio_transport *t)
{
    if (t->ops->set_pollable)
        t->ops->set_pollable(t);
}
static inline void vmio_transport_set_recv_timeout(struct vmio_transport *t, int ms)
{
    t->ops->set_recv_timeout(t, ms);
}
static inline int vmio_transport_is_rdma(const struct vmio_transport *t)
{
    return t->ops->rdma_write != NULL;
}
/* t may be NULL. */
static inline void vmio_transport_close(struct vmio_transport *t)
{
    if (t)
        t->ops->close(t);
}

/* TCP. connect: resolves host (names, IPv4, IPv6), tries each address
 * within timeout_ms. Errors are recorded under api. */
int vmio_tcp_connect(const char *api, const char *host, uint16_t port, int timeout_ms,
                     struct vmio_transport **out);
/* Listening socket (host NULL = any). Returns the fd or -errno. */
int vmio_tcp_listen(const char *api, const char *host, uint16_t port, int *bound_port);
/* Wrap an accepted socket. */
int vmio_tcp_wrap(const char *api, int fd, struct vmio_transport **out);

/* RDMA (librdmacm + libibverbs, RC queue pairs); built with -Drdma.
 * Without it these return -ENOTSUP with a message. */
struct vmio_rdma_listener;
struct vmio_rdma_opts {
    unsigned recv_depth;     /* receive buffers per side (credits); 0 = 64 */
    unsigned msg_size;       /* bytes per SEND/RECV buffer; 0 = 64 KiB */
    unsigned max_rdma;       /* one-sided operations in flight; 0 = 64 */
    unsigned busy_poll_us;   /* spin on the CQ before sleeping; 0 = none */
};
int vmio_rdma_connect(const char *api, const char *host, uint16_t port, int timeout_ms,
                      const struct vmio_rdma_opts *o, struct vmio_transport **out);
/* Listen on host (NULL = any) and port; *fd is pollable for new
 * connection requests. */
int vmio_rdma_listen(const char *api, const char *host, uint16_t port,
                     const struct vmio_rdma_opts *o, struct vmio_rdma_listener **out, int *fd);
/* Take one pending connection request: 0 with *out set, -EAGAIN when
 * none is pending, other -errno (logged under api) for a request that was
 * refused. Does not wait for the peer. */
int vmio_rdma_accept(const char *api, struct vmio_rdma_listener *l, struct vmio_transport **out);
void vmio_rdma_listener_close(struct vmio_rdma_listener *l);
int vmio_rdma_available(void);   /* 1 when an RDMA device is present */

#endif
