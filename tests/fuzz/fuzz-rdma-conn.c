/* Fuzz target for the RDMA connection data (libvmio/transport/rdma-conn.c),
 * the first bytes a peer sends on an RDMA connection, before any
 * authentication. Contract: a failure is -EPROTO with the caller's prefix
 * and leaves the result untouched; a success has depth and buffer size in
 * range and re-encodes to the same 16 bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "transport/rdma-conn.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so that ASan sees any over-read. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    struct vmio_rdma_conn c = { 0xdead, 0xbeef };
    int r = vmio_rdma_conn_decode(API, "peer", size ? copy : NULL, size, &c);
    if (r < 0) {
        CHECK(r == -EPROTO);
        CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
        CHECK(c.depth == 0xdead && c.msg == 0xbeef);
    } else {
        CHECK(r == 0 && size >= VMIO_RDMA_CONN_SIZE);
        CHECK(c.depth >= VMIO_RDMA_DEPTH_MIN && c.depth <= VMIO_RDMA_DEPTH_MAX);
        CHECK(c.msg >= VMIO_RDMA_MSG_MIN && c.msg <= VMIO_RDMA_MSG_MAX);
        uint8_t again[VMIO_RDMA_CONN_SIZE];
        vmio_rdma_conn_encode(again, &c);
        CHECK(memcmp(again, copy, VMIO_RDMA_CONN_SIZE) == 0);
    }
    free(copy);
    return 0;
}
