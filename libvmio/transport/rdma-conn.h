/* The private data of an RDMA connection request and its answer
 * (docs/protocol.md section 12): magic, version, receive depth and buffer
 * size, 16 bytes big endian. Pure code, no verbs: shared by the RDMA
 * transport and the fuzz harness. */
#ifndef VMIO_TRANSPORT_RDMA_CONN_H
#define VMIO_TRANSPORT_RDMA_CONN_H

#include <stddef.h>
#include <stdint.h>

#define VMIO_RDMA_CONN_MAGIC 0x444d5256u     /* "VRMD" */
#define VMIO_RDMA_CONN_VERSION 1u
#define VMIO_RDMA_CONN_SIZE 16u
#define VMIO_RDMA_DEPTH_MIN 2u
#define VMIO_RDMA_DEPTH_MAX 4096u
#define VMIO_RDMA_MSG_MIN 256u
#define VMIO_RDMA_MSG_MAX (16u << 20)

struct vmio_rdma_conn {
    uint32_t depth;    /* receive buffers the sender posted */
    uint32_t msg;      /* bytes per receive buffer */
};

void vmio_rdma_conn_encode(uint8_t out[VMIO_RDMA_CONN_SIZE], const struct vmio_rdma_conn *c);
/* Check a peer's data (len bytes, data may be NULL); 0 or -EPROTO with a
 * message naming peer recorded under api. */
int vmio_rdma_conn_decode(const char *api, const char *peer, const void *data, size_t len,
                          struct vmio_rdma_conn *c);

#endif
