/* Host half of the GPU offload's packed copy-out (gpu.h): the device packs
 * the DELTA/RLE encodings of a batch back to back (k_scan + k_pack in
 * gpu-kernels.cu), only those bytes come back, into the start of the
 * batch's enc buffer, and these functions check the results that decide
 * how many bytes that is and move each encoding to i * page_size. Plain C,
 * in every build, so that it is tested on machines without a GPU. */
#include <string.h>

#include "core/internal.h"
#include "migrate/gpu.h"

int vmio_mig_gpu_packed_size(const char *api, const struct vmio_mig_batch *b, uint64_t *total)
{
    uint32_t limit = vmio_mig_enc_limit(b->page_size);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const struct vmio_mig_page_out *o = &b->out[i];
        uint32_t len = vmio_mig_gpu_enc_bytes(o);
        /* These come from the device: bound them before they size a copy. */
        if (o->kind > VMIO_MIG_KIND_DELTA || len > limit ||
            (o->kind == VMIO_MIG_KIND_RAW && o->len != b->page_size) ||
            (o->kind == VMIO_MIG_KIND_ZERO && o->len != 0))
            return vmio_set_error(api, EIO, "the GPU returned an invalid result for page %u "
                                  "(kind %u, length %u)", i, o->kind, o->len);
        sum += len;
    }
    *total = sum;
    return 0;
}

void vmio_mig_gpu_unpack(struct vmio_mig_batch *b, uint64_t total)
{
    /* Last page first: page i's packed bytes start at or before
     * i * page_size (every encoding is shorter than a page), and all that
     * is still to move lies below its packed offset, so nothing is
     * overwritten before it has moved. */
    uint64_t off = total;
    for (uint32_t i = b->n; i-- > 0;) {
        uint32_t len = vmio_mig_gpu_enc_bytes(&b->out[i]);
        off -= len;
        uint64_t dst = (uint64_t)i * b->page_size;
        if (len && off != dst)
            memmove(b->enc + dst, b->enc + off, len);
    }
}
