/* The RDMA transport when the library is built without libibverbs and
 * librdmacm (-Drdma=disabled, or the -dev packages missing): every entry
 * point says so. */
#include "core/internal.h"
#include "transport/transport.h"

#define NOT_BUILT(api) \
    vmio_set_error(api, ENOTSUP, "the RDMA transport is not built in (rebuild with -Drdma=enabled)")

int vmio_rdma_available(void)
{
    return 0;
}

int vmio_rdma_connect(const char *api, const char *host, uint16_t port, int timeout_ms,
                      const struct vmio_rdma_opts *o, struct vmio_transport **out)
{
    (void)host, (void)port, (void)timeout_ms, (void)o, (void)out;
    return NOT_BUILT(api);
}

int vmio_rdma_listen(const char *api, const char *host, uint16_t port,
                     const struct vmio_rdma_opts *o, struct vmio_rdma_listener **out, int *fd)
{
    (void)host, (void)port, (void)o, (void)out, (void)fd;
    return NOT_BUILT(api);
}

int vmio_rdma_accept(const char *api, struct vmio_rdma_listener *l, struct vmio_transport **out)
{
    (void)l, (void)out;
    return NOT_BUILT(api);
}

void vmio_rdma_listener_close(struct vmio_rdma_listener *l)
{
    (void)l;
}

void vmio_mr_dereg(struct vmio_mr *mr)
{
    (void)mr;
}
