/* RDMA connection private data: encoder and strict decoder (see
 * rdma-conn.h). */
#include <string.h>

#include "core/internal.h"
#include "transport/rdma-conn.h"

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void vmio_rdma_conn_encode(uint8_t out[VMIO_RDMA_CONN_SIZE], const struct vmio_rdma_conn *c)
{
    put_be32(out, VMIO_RDMA_CONN_MAGIC);
    put_be32(out + 4, VMIO_RDMA_CONN_VERSION);
    put_be32(out + 8, c->depth);
    put_be32(out + 12, c->msg);
}

int vmio_rdma_conn_decode(const char *api, const char *peer, const void *data, size_t len,
                          struct vmio_rdma_conn *c)
{
    /* The CM pads private data to its own size: longer is fine. */
    if (!data || len < VMIO_RDMA_CONN_SIZE)
        return vmio_set_error(api, EPROTO, "%s: peer did not send vmio connection data", peer);
    const uint8_t *p = data;
    uint32_t magic = get_be32(p), version = get_be32(p + 4);
    if (magic != VMIO_RDMA_CONN_MAGIC || version != VMIO_RDMA_CONN_VERSION)
        return vmio_set_error(api, EPROTO, "%s: not a vmio RDMA peer (magic %08x version %u)",
                              peer, magic, version);
    uint32_t depth = get_be32(p + 8), msg = get_be32(p + 12);
    if (depth < VMIO_RDMA_DEPTH_MIN || depth > VMIO_RDMA_DEPTH_MAX || msg < VMIO_RDMA_MSG_MIN ||
        msg > VMIO_RDMA_MSG_MAX)
        return vmio_set_error(api, EPROTO, "%s: bad RDMA connection data (depth %u, message "
                              "size %u)", peer, depth, msg);
    c->depth = depth;
    c->msg = msg;
    return 0;
}
