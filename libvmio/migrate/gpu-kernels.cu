/* CUDA kernels of the migration GPU offload (host side: gpu.c). Compiled
 * by nvcc at build time into a fatbin that is embedded in the library and
 * loaded with the driver API. The per-page decisions and encodings are
 * page-codec.h's, the same code the CPU path runs.
 *
 * Per batch, on one stream:
 *   k_analyze  one thread per page: vmio_pc_analyze_page() into out[i]
 *              and enc + i * page_size
 *   k_scan     one block: offset of each page's encoding in a packed
 *              buffer (exclusive prefix sum of vmio_mig_gpu_enc_bytes)
 *   k_pack     one block per page: copies the encoding to its offset, so
 *              only the encoded bytes cross the bus on the way back
 * Device buffers come from cuMemAlloc (256-byte aligned) and page_size is
 * a multiple of 4096, so every page starts 8-byte aligned as page-codec.h
 * requires. */
#include <stdint.h>

#include "migrate/page-codec.h"
#include "migrate/gpu.h"

extern "C" __global__ void vmio_mig_gpu_k_analyze(const uint8_t *pages, const uint8_t *refs,
                                                  const uint8_t *has_ref, uint32_t page_size,
                                                  uint32_t n, uint32_t flags,
                                                  struct vmio_mig_page_out *out, uint8_t *enc)
{
    uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    size_t off = (size_t)i * page_size;
    vmio_pc_analyze_page(pages + off, has_ref[i] ? refs + off : NULL, page_size, flags,
                         &out[i], enc + off);
}

extern "C" __global__ void vmio_mig_gpu_k_scan(const struct vmio_mig_page_out *out, uint32_t n,
                                               uint32_t *offsets)
{
    __shared__ uint32_t part[VMIO_MIG_GPU_SCAN_THREADS];
    uint32_t t = threadIdx.x;
    uint32_t per = (n + blockDim.x - 1) / blockDim.x;
    uint32_t lo = t * per < n ? t * per : n;
    uint32_t hi = lo + per < n ? lo + per : n;
    uint32_t sum = 0;
    for (uint32_t i = lo; i < hi; i++)
        sum += vmio_mig_gpu_enc_bytes(&out[i]);
    part[t] = sum;
    __syncthreads();
    /* Inclusive scan of the per-thread sums (Hillis-Steele). */
    for (uint32_t d = 1; d < blockDim.x; d <<= 1) {
        uint32_t v = t >= d ? part[t - d] : 0;
        __syncthreads();
        part[t] += v;
        __syncthreads();
    }
    uint32_t base = part[t] - sum;
    for (uint32_t i = lo; i < hi; i++) {
        offsets[i] = base;
        base += vmio_mig_gpu_enc_bytes(&out[i]);
    }
}

extern "C" __global__ void vmio_mig_gpu_k_pack(const struct vmio_mig_page_out *out,
                                               const uint32_t *offsets, const uint8_t *enc,
                                               uint32_t page_size, uint8_t *packed)
{
    uint32_t i = blockIdx.x;
    uint32_t len = vmio_mig_gpu_enc_bytes(&out[i]);
    const uint8_t *src = enc + (size_t)i * page_size;
    uint8_t *dst = packed + offsets[i];
    for (uint32_t k = threadIdx.x; k < len; k += blockDim.x)
        dst[k] = src[k];
}
