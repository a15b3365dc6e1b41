/* The migration GPU offload (gpu.h) in a build without CUDA kernels (nvcc
 * or <cuda.h> was not found at build time): opening fails with -ENOTSUP,
 * so the engine encodes on CPU threads. */
#include <stddef.h>

#include "core/internal.h"
#include "migrate/gpu.h"

const unsigned char vmio_mig_gpu_image[1] = { 0 };
const uint64_t vmio_mig_gpu_image_size = 0;

int vmio_mig_gpu_open_lib(const char *api, const char *lib, struct vmio_mig_gpu **out)
{
    (void)lib;
    (void)out;
    return vmio_set_error(api, ENOTSUP, "built without CUDA kernels (they need nvcc and "
                          "cuda.h at build time, and the cuda option not disabled)");
}

int vmio_mig_gpu_open(const char *api, struct vmio_mig_gpu **out)
{
    return vmio_mig_gpu_open_lib(api, "libcuda.so.1", out);
}

void vmio_mig_gpu_close(struct vmio_mig_gpu *g)
{
    (void)g;
}

const char *vmio_mig_gpu_name(const struct vmio_mig_gpu *g)
{
    (void)g;
    return "";
}

int vmio_mig_gpu_alloc_batch(struct vmio_mig_gpu *g, uint32_t page_size, uint32_t max_pages,
                             struct vmio_mig_gpu_batch **out)
{
    (void)g;
    (void)page_size;
    (void)max_pages;
    (void)out;
    return vmio_set_error("vmio_mig_gpu_alloc_batch", ENOTSUP, "built without CUDA kernels");
}

void vmio_mig_gpu_free_batch(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    (void)g;
    (void)b;
}

int vmio_mig_gpu_analyze(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    (void)g;
    (void)b;
    return vmio_set_error("vmio_mig_gpu_analyze", ENOTSUP, "built without CUDA kernels");
}

int vmio_mig_gpu_wait(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    (void)g;
    (void)b;
    return vmio_set_error("vmio_mig_gpu_wait", ENOTSUP, "built without CUDA kernels");
}
