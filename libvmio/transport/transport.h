/* The transport seam shared by the storage protocol and (later) the
 * migration stream: a reliable, ordered byte stream with vectored send and
 * exact-length receive. TCP now; the RDMA transport adds one-sided data
 * movement behind the same ops. */
#ifndef VMIO_TRANSPORT_H
#define VMIO_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vmio_transport;

struct vmio_transport_ops {
    uint32_t struct_size;
    const char *name;
    /* Send every byte of iov (may modify iov). 0 or -errno. */
    int (*sendv)(struct vmio_transport *t, struct iovec *iov, int iovcnt);
    /* Receive exactly len bytes. 0, -errno, or -EPIPE at end of stream. */
    int (*recv)(struct vmio_transport *t, void *buf, size_t len);
    /* Make blocked sendv/recv return (peer death, stop). */
    void (*shutdown)(struct vmio_transport *t);
    void (*close)(struct vmio_transport *t);
};

struct vmio_transport {
    const struct vmio_transport_ops *ops;
    int fd;
    char peer[80];          /* "host:port" for messages */
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

#endif
