/* GPU offload of the per-page analysis (codec.h) through the CUDA driver
 * API, which is dlopen'ed at run time (libcuda.so.1; the library never
 * links it). The kernels (gpu-kernels.cu) are compiled by nvcc at build
 * time into a fatbin embedded in the library; they call the same per-page
 * code as the CPU path (page-codec.h), so both produce identical results.
 *
 * Use:
 *   vmio_mig_gpu_open()          driver, device 0, kernels
 *   vmio_mig_gpu_alloc_batch()   pinned host buffers + device buffers + a
 *                                stream; the caller fills batch.n,
 *                                batch.flags, pages[], refs[], has_ref[]
 *   vmio_mig_gpu_analyze()       queues copy-in, kernels, copy-out on the
 *                                batch's stream and returns at once, so
 *                                several batches overlap
 *   vmio_mig_gpu_wait()          waits; then batch.out[] and batch.enc hold
 *                                exactly what vmio_mig_analyze_cpu(&batch)
 *                                would have written (enc: the DELTA/RLE
 *                                encodings at i * page_size; bytes of RAW
 *                                and ZERO pages are left unspecified)
 * What comes back over the bus is the results plus the encoded bytes only:
 * a kernel packs the encodings back to back on the device, and wait()
 * moves them to their places in enc on the host.
 *
 * Every call makes the device's context current on the calling thread, so
 * batches may be used from any thread, one thread per batch at a time.
 * Without kernels in the build (no nvcc), open() fails with -ENOTSUP. */
#ifndef VMIO_MIGRATE_GPU_H
#define VMIO_MIGRATE_GPU_H

#include <stdint.h>

#include "migrate/codec.h"

/* Kernel entry points of the embedded image (extern "C" names). */
#define VMIO_MIG_GPU_K_ANALYZE "vmio_mig_gpu_k_analyze"
#define VMIO_MIG_GPU_K_SCAN "vmio_mig_gpu_k_scan"
#define VMIO_MIG_GPU_K_PACK "vmio_mig_gpu_k_pack"
/* Threads of the single block of the scan kernel (a power of two). */
#define VMIO_MIG_GPU_SCAN_THREADS 1024u
/* Largest batch: max_pages * page_size (offsets on the device are 32-bit). */
#define VMIO_MIG_GPU_BATCH_MAX (1u << 30)

#ifdef __CUDACC__
#define VMIO_MIG_GPU_FN static __host__ __device__ inline
#else
#define VMIO_MIG_GPU_FN static inline
#endif

/* Bytes of page i's result that live in enc: the DELTA/RLE encoding; RAW
 * (the page itself) and ZERO pages have none. The device packs with this
 * rule and the host unpacks with it. */
VMIO_MIG_GPU_FN uint32_t vmio_mig_gpu_enc_bytes(const struct vmio_mig_page_out *o)
{
    return o->kind == VMIO_MIG_KIND_DELTA || o->kind == VMIO_MIG_KIND_RLE ? o->len : 0;
}

#ifndef __CUDACC__

/* Copy-out helpers (gpu-pack.c, in every build). packed_size checks
 * b->out[0..n) as the device left it and sums the bytes to fetch: 0, or
 * -EIO for a result that cannot be right. unpack moves the encodings,
 * packed back to back at the start of b->enc, to i * page_size. */
int vmio_mig_gpu_packed_size(const char *api, const struct vmio_mig_batch *b, uint64_t *total);
void vmio_mig_gpu_unpack(struct vmio_mig_batch *b, uint64_t total);

struct vmio_mig_gpu;
struct vmio_mig_gpu_dev;

struct vmio_mig_gpu_batch {
    /* batch.page_size is fixed at allocation; the caller sets batch.n
     * (<= max_pages) and batch.flags. batch.pages, refs, has_ref, out and
     * enc point at the pinned host buffers and must not be changed. */
    struct vmio_mig_batch batch;
    uint8_t *pages;     /* = batch.pages, writable: max_pages * page_size */
    uint8_t *refs;      /* = batch.refs, writable: max_pages * page_size */
    uint8_t *has_ref;   /* = batch.has_ref, writable: max_pages */
    uint32_t max_pages;
    struct vmio_mig_gpu_dev *dev;   /* private: device side, stream, state */
};

/* The embedded kernel image (a fatbin; size 0 when built without nvcc). */
extern const unsigned char vmio_mig_gpu_image[];
extern const uint64_t vmio_mig_gpu_image_size;

/* Opens the CUDA driver and device 0 and loads the kernels. -ENODEV when
 * there is no usable driver or device, -ENOTSUP when the library was built
 * without kernels; the message says which. */
int vmio_mig_gpu_open(const char *api, struct vmio_mig_gpu **out);
/* Same with the driver library at lib (a path or a soname). */
int vmio_mig_gpu_open_lib(const char *api, const char *lib, struct vmio_mig_gpu **out);
/* Closes; every batch must have been freed. g may be NULL. */
void vmio_mig_gpu_close(struct vmio_mig_gpu *g);
/* The device's name ("NVIDIA A100 ..."). */
const char *vmio_mig_gpu_name(const struct vmio_mig_gpu *g);

/* A batch for up to max_pages pages of page_size bytes (a power of two in
 * [VMIO_MIG_PAGE_MIN, VMIO_MIG_PAGE_MAX]). */
int vmio_mig_gpu_alloc_batch(struct vmio_mig_gpu *g, uint32_t page_size, uint32_t max_pages,
                             struct vmio_mig_gpu_batch **out);
/* Waits for the batch if it is in flight, then frees it. b may be NULL. */
void vmio_mig_gpu_free_batch(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b);
/* Queues the analysis of batch.n pages; returns without waiting.
 * -EBUSY when the batch is already in flight. */
int vmio_mig_gpu_analyze(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b);
/* Waits for a queued batch and places the results. -EINVAL when the batch
 * was not queued, -EIO when the device failed. */
int vmio_mig_gpu_wait(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b);

#endif /* !__CUDACC__ */

#endif
