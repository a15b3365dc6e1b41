/* Host side of the migration GPU offload (gpu.h): the CUDA driver API
 * loaded with dlopen("libcuda.so.1") (never linked; <cuda.h> is used for
 * types and prototypes only), the embedded kernels of gpu-kernels.cu,
 * pinned batches with one stream each. Built when nvcc was found; gpu-none.c
 * otherwise. The driver library is never dlclose'd: the driver starts
 * threads of its own, and unloading it under them is not safe. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "core/internal.h"
#include "migrate/gpu.h"

#define CU_STR_(x) #x
#define CU_STR(x) CU_STR_(x)

/* The driver entry points used, by the name <cuda.h> gives them: the
 * macros there map e.g. cuMemAlloc to the versioned symbol cuMemAlloc_v2,
 * and both the member names and the dlsym names below go through them. */
#define CU_FUNCS(X)                                                                    \
    X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString)              \
    X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute)      \
    X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) X(cuCtxSetCurrent)        \
    X(cuModuleLoadDataEx) X(cuModuleUnload) X(cuModuleGetFunction)                     \
    X(cuMemAlloc) X(cuMemFree) X(cuMemHostAlloc) X(cuMemFreeHost)                      \
    X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuLaunchKernel)                        \
    X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize)

struct cu_api {
#define CU_MEMBER(f) __typeof__(f) *f;
    CU_FUNCS(CU_MEMBER)
#undef CU_MEMBER
};

struct vmio_mig_gpu {
    struct cu_api cu;
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction k_analyze, k_scan, k_pack;
    int cc_major, cc_minor;
    char name[128];
};

enum { BATCH_IDLE, BATCH_QUEUED };

struct vmio_mig_gpu_dev {
    CUstream stream;
    void *host;                 /* one pinned allocation, carved below */
    CUdeviceptr mem;            /* one device allocation, carved below */
    CUdeviceptr pages, refs, has_ref, out, enc, offsets, packed;
    uint8_t *h_enc;             /* the host buffers handed out */
    struct vmio_mig_page_out *h_out;
    uint32_t page_size;         /* the buffers' */
    uint32_t state;
};

/* Names for the results the driver may give before cuGetErrorName works
 * (a stub library answers every call, that one included, with 34). */
static const char *cu_known_name(CUresult r)
{
    switch (r) {
    case CUDA_ERROR_STUB_LIBRARY:
        return "CUDA_ERROR_STUB_LIBRARY (the CUDA toolkit's link stub, not a driver)";
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
        return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
    case CUDA_ERROR_NO_DEVICE:
        return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_NOT_INITIALIZED:
        return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_OUT_OF_MEMORY:
        return "CUDA_ERROR_OUT_OF_MEMORY";
    default:
        return NULL;
    }
}

/* "NAME (code): description" of a driver result, into buf. */
static const char *cu_err(const struct cu_api *cu, CUresult r, char *buf, size_t n)
{
    const char *name = cu_known_name(r), *desc = NULL;
    if (!name && cu->cuGetErrorName && cu->cuGetErrorName(r, &name) != CUDA_SUCCESS)
        name = NULL;
    if (cu->cuGetErrorString && cu->cuGetErrorString(r, &desc) != CUDA_SUCCESS)
        desc = NULL;
    snprintf(buf, n, "%s (%d)%s%s", name ? name : "CUDA error", (int)r, desc ? ": " : "",
             desc ? desc : "");
    return buf;
}

/* Records a failed driver call: -ENOMEM for an allocation failure, else
 * -err. */
static int cu_fail(const char *api, const struct cu_api *cu, int err, const char *what,
                   CUresult r)
{
    char buf[256];
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
        err = ENOMEM;
    return vmio_set_error(api, err, "%s: %s", what, cu_err(cu, r, buf, sizeof buf));
}

static int cu_resolve(const char *api, const char *lib, void *h, struct cu_api *cu)
{
    void *sym;
#define CU_RESOLVE(f)                                                                  \
    sym = dlsym(h, CU_STR(f));                                                         \
    if (!sym)                                                                          \
        return vmio_set_error(api, ENODEV,                                             \
                              "no usable CUDA driver (%s lacks %s; too old, or not "   \
                              "a CUDA driver)", lib, CU_STR(f));                       \
    memcpy(&cu->f, &sym, sizeof sym);
    CU_FUNCS(CU_RESOLVE)
#undef CU_RESOLVE
    return 0;
}

int vmio_mig_gpu_open_lib(const char *api, const char *lib, struct vmio_mig_gpu **out)
{
    VMIO_CHECK_ARG(api, lib != NULL && out != NULL, EFAULT);
    struct vmio_mig_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return vmio_set_error(api, ENOMEM, "out of memory");
    struct cu_api *cu = &g->cu;
    char buf[256];
    int r;
    CUresult cr;

    dlerror();
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        if (why && strstr(why, "No such file"))
            r = vmio_set_error(api, ENODEV, "no CUDA driver (%s not found)", lib);
        else
            r = vmio_set_error(api, ENODEV, "no CUDA driver (%s cannot be loaded: %s)", lib,
                               why ? why : "unknown error");
        goto fail;
    }
    if ((r = cu_resolve(api, lib, h, cu)) < 0)
        goto fail;

    cr = cu->cuInit(0);
    if (cr == CUDA_ERROR_NO_DEVICE) {
        r = vmio_set_error(api, ENODEV, "no CUDA device (cuInit: %s)",
                           cu_err(cu, cr, buf, sizeof buf));
        goto fail;
    }
    if (cr != CUDA_SUCCESS) {
        r = vmio_set_error(api, ENODEV, "CUDA driver %s unusable (cuInit: %s)", lib,
                           cu_err(cu, cr, buf, sizeof buf));
        goto fail;
    }
    int version = 0;
    if ((cr = cu->cuDriverGetVersion(&version)) != CUDA_SUCCESS) {
        r = cu_fail(api, cu, ENODEV, "cuDriverGetVersion", cr);
        goto fail;
    }
    /* Kernels built by CUDA X.Y run on drivers of any X.* or later. */
    if (version < CUDA_VERSION / 1000 * 1000) {
        r = vmio_set_error(api, ENODEV,
                           "CUDA driver too old: it supports CUDA %d.%d, the kernels were "
                           "built for CUDA %d.%d", version / 1000, version % 1000 / 10,
                           CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
        goto fail;
    }
    int count = 0;
    if ((cr = cu->cuDeviceGetCount(&count)) != CUDA_SUCCESS) {
        r = cu_fail(api, cu, ENODEV, "cuDeviceGetCount", cr);
        goto fail;
    }
    if (count < 1) {
        r = vmio_set_error(api, ENODEV, "no CUDA device (the driver reports none)");
        goto fail;
    }
    if ((cr = cu->cuDeviceGet(&g->dev, 0)) != CUDA_SUCCESS ||
        (cr = cu->cuDeviceGetName(g->name, (int)sizeof g->name, g->dev)) != CUDA_SUCCESS ||
        (cr = cu->cuDeviceGetAttribute(&g->cc_major,
                                       CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                       g->dev)) != CUDA_SUCCESS ||
        (cr = cu->cuDeviceGetAttribute(&g->cc_minor,
                                       CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                       g->dev)) != CUDA_SUCCESS) {
        r = cu_fail(api, cu, ENODEV, "CUDA device 0", cr);
        goto fail;
    }
    g->name[sizeof g->name - 1] = 0;
    if ((cr = cu->cuDevicePrimaryCtxRetain(&g->ctx, g->dev)) != CUDA_SUCCESS) {
        r = cu_fail(api, cu, ENODEV, "cuDevicePrimaryCtxRetain", cr);
        g->ctx = NULL;
        goto fail;
    }
    if ((cr = cu->cuCtxSetCurrent(g->ctx)) != CUDA_SUCCESS) {
        r = cu_fail(api, cu, ENODEV, "cuCtxSetCurrent", cr);
        goto fail;
    }

    /* Load the fatbin: the driver picks the cubin of this device or JIT
     * compiles the PTX; a failure comes with the JIT's log. */
    char log[1024] = "";
    CUjit_option opt[2] = { CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
    void *val[2] = { log, (void *)(uintptr_t)sizeof log };
    cr = cu->cuModuleLoadDataEx(&g->mod, vmio_mig_gpu_image, 2, opt, val);
    if (cr != CUDA_SUCCESS) {
        log[sizeof log - 1] = 0;
        g->mod = NULL;
        r = vmio_set_error(api, ENODEV, "cannot load the kernels on %s (sm_%d%d): %s%s%s",
                           g->name, g->cc_major, g->cc_minor,
                           cu_err(cu, cr, buf, sizeof buf), log[0] ? ": " : "", log);
        goto fail;
    }
    static const char *const knames[3] = { VMIO_MIG_GPU_K_ANALYZE, VMIO_MIG_GPU_K_SCAN,
                                           VMIO_MIG_GPU_K_PACK };
    CUfunction *kf[3] = { &g->k_analyze, &g->k_scan, &g->k_pack };
    for (int i = 0; i < 3; i++) {
        if ((cr = cu->cuModuleGetFunction(kf[i], g->mod, knames[i])) != CUDA_SUCCESS) {
            r = vmio_set_error(api, ENODEV, "kernel %s missing from the image: %s",
                               knames[i], cu_err(cu, cr, buf, sizeof buf));
            goto fail;
        }
    }
    *out = g;
    return 0;

fail:
    vmio_mig_gpu_close(g);
    return r;
}

int vmio_mig_gpu_open(const char *api, struct vmio_mig_gpu **out)
{
    return vmio_mig_gpu_open_lib(api, "libcuda.so.1", out);
}

void vmio_mig_gpu_close(struct vmio_mig_gpu *g)
{
    if (!g)
        return;
    if (g->ctx) {
        g->cu.cuCtxSetCurrent(g->ctx);
        if (g->mod)
            g->cu.cuModuleUnload(g->mod);
        g->cu.cuCtxSetCurrent(NULL);
        g->cu.cuDevicePrimaryCtxRelease(g->dev);
    }
    free(g);
}

const char *vmio_mig_gpu_name(const struct vmio_mig_gpu *g)
{
    return g ? g->name : "";
}

static size_t align256(size_t x)
{
    return (x + 255) & ~(size_t)255;
}

int vmio_mig_gpu_alloc_batch(struct vmio_mig_gpu *g, uint32_t page_size, uint32_t max_pages,
                             struct vmio_mig_gpu_batch **out)
{
    static const char api[] = "vmio_mig_gpu_alloc_batch";
    VMIO_CHECK_ARG(api, g != NULL && out != NULL, EFAULT);
    if (page_size < VMIO_MIG_PAGE_MIN || page_size > VMIO_MIG_PAGE_MAX ||
        (page_size & (page_size - 1)))
        return vmio_set_error(api, EINVAL, "page size %u is not a power of two in [%u, %u]",
                              page_size, VMIO_MIG_PAGE_MIN, VMIO_MIG_PAGE_MAX);
    if (max_pages < 1 || (uint64_t)max_pages * page_size > VMIO_MIG_GPU_BATCH_MAX)
        return vmio_set_error(api, EINVAL, "%u pages of %u bytes: a batch holds 1 to %u bytes",
                              max_pages, page_size, VMIO_MIG_GPU_BATCH_MAX);
    struct cu_api *cu = &g->cu;
    CUresult cr;
    if ((cr = cu->cuCtxSetCurrent(g->ctx)) != CUDA_SUCCESS)
        return cu_fail(api, cu, EIO, "cuCtxSetCurrent", cr);

    struct vmio_mig_gpu_batch *b = calloc(1, sizeof *b);
    struct vmio_mig_gpu_dev *d = calloc(1, sizeof *d);
    if (!b || !d) {
        free(b);
        free(d);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    b->dev = d;
    b->max_pages = max_pages;
    size_t bytes = (size_t)max_pages * page_size;
    size_t outsz = (size_t)max_pages * sizeof(struct vmio_mig_page_out);

    /* Host: pages | refs | enc | out | has_ref, pinned. */
    size_t h_refs = align256(bytes), h_enc = h_refs + align256(bytes);
    size_t h_out = h_enc + align256(bytes), h_has = h_out + align256(outsz);
    size_t h_total = h_has + align256(max_pages);
    /* Device: the same, then offsets | packed. */
    size_t d_off = h_total, d_packed = d_off + align256((size_t)max_pages * 4);
    size_t d_total = d_packed + align256(bytes);
    int r;
    if ((cr = cu->cuMemHostAlloc(&d->host, h_total, 0)) != CUDA_SUCCESS) {
        d->host = NULL;
        r = cu_fail(api, cu, EIO, "pinned host memory (cuMemHostAlloc)", cr);
        goto fail;
    }
    if ((cr = cu->cuMemAlloc(&d->mem, d_total)) != CUDA_SUCCESS) {
        d->mem = 0;
        r = cu_fail(api, cu, EIO, "device memory (cuMemAlloc)", cr);
        goto fail;
    }
    if ((cr = cu->cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS) {
        d->stream = NULL;
        r = cu_fail(api, cu, EIO, "cuStreamCreate", cr);
        goto fail;
    }
    uint8_t *h = d->host;
    b->pages = h;
    b->refs = h + h_refs;
    b->has_ref = h + h_has;
    memset(b->has_ref, 0, max_pages);
    b->batch.page_size = page_size;
    b->batch.pages = b->pages;
    b->batch.refs = b->refs;
    b->batch.has_ref = b->has_ref;
    b->batch.enc = h + h_enc;
    b->batch.out = (struct vmio_mig_page_out *)(void *)(h + h_out);
    d->pages = d->mem;
    d->refs = d->mem + h_refs;
    d->enc = d->mem + h_enc;
    d->out = d->mem + h_out;
    d->has_ref = d->mem + h_has;
    d->offsets = d->mem + d_off;
    d->packed = d->mem + d_packed;
    d->h_enc = b->batch.enc;
    d->h_out = b->batch.out;
    d->page_size = page_size;
    d->state = BATCH_IDLE;
    *out = b;
    return 0;

fail:
    vmio_mig_gpu_free_batch(g, b);
    return r;
}

void vmio_mig_gpu_free_batch(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    if (!g || !b)
        return;
    struct vmio_mig_gpu_dev *d = b->dev;
    struct cu_api *cu = &g->cu;
    cu->cuCtxSetCurrent(g->ctx);
    if (d->stream) {
        cu->cuStreamSynchronize(d->stream);
        cu->cuStreamDestroy(d->stream);
    }
    if (d->mem)
        cu->cuMemFree(d->mem);
    if (d->host)
        cu->cuMemFreeHost(d->host);
    free(d);
    free(b);
}

/* The batch as the caller must leave it: its own buffers, its page size. */
static int batch_check(const char *api, const struct vmio_mig_gpu_batch *b)
{
    const struct vmio_mig_batch *x = &b->batch;
    const struct vmio_mig_gpu_dev *d = b->dev;
    if (x->pages != b->pages || x->refs != b->refs || x->has_ref != b->has_ref ||
        x->pages != d->host || x->enc != d->h_enc || x->out != d->h_out)
        return vmio_set_error(api, EINVAL, "the batch's buffers were replaced");
    if (x->n > b->max_pages)
        return vmio_set_error(api, EINVAL, "%u pages in a batch of %u", x->n, b->max_pages);
    if (x->page_size != d->page_size)
        return vmio_set_error(api, EINVAL, "page size changed from %u to %u", d->page_size,
                              x->page_size);
    return 0;
}

int vmio_mig_gpu_analyze(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    static const char api[] = "vmio_mig_gpu_analyze";
    VMIO_CHECK_ARG(api, g != NULL && b != NULL, EFAULT);
    struct vmio_mig_gpu_dev *d = b->dev;
    if (d->state != BATCH_IDLE)
        return vmio_set_error(api, EBUSY, "the batch is in flight");
    int r = batch_check(api, b);
    if (r < 0)
        return r;
    struct cu_api *cu = &g->cu;
    CUresult cr;
    if ((cr = cu->cuCtxSetCurrent(g->ctx)) != CUDA_SUCCESS)
        return cu_fail(api, cu, EIO, "cuCtxSetCurrent", cr);
    uint32_t n = b->batch.n, ps = b->batch.page_size, flags = b->batch.flags;
    if (n == 0) {
        d->state = BATCH_QUEUED;
        return 0;
    }
    const char *what = "copy-in";
    size_t bytes = (size_t)n * ps;
    if ((cr = cu->cuMemcpyHtoDAsync(d->pages, b->pages, bytes, d->stream)) != CUDA_SUCCESS ||
        (cr = cu->cuMemcpyHtoDAsync(d->has_ref, b->has_ref, n, d->stream)) != CUDA_SUCCESS)
        goto fail;
    /* References: only the span between the first and the last page that
     * has one, and only when DELTA may use them. */
    if (flags & VMIO_MIG_A_DELTA) {
        uint32_t lo = n, hi = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (b->has_ref[i]) {
                if (lo == n)
                    lo = i;
                hi = i + 1;
            }
        }
        if (lo < hi) {
            size_t off = (size_t)lo * ps;
            cr = cu->cuMemcpyHtoDAsync(d->refs + off, b->refs + off, (size_t)(hi - lo) * ps,
                                       d->stream);
            if (cr != CUDA_SUCCESS)
                goto fail;
        }
    }

    what = "kernel launch";
    void *pa[] = { &d->pages, &d->refs, &d->has_ref, &ps, &n, &flags, &d->out, &d->enc };
    const unsigned threads = 128;
    cr = cu->cuLaunchKernel(g->k_analyze, (n + threads - 1) / threads, 1, 1, threads, 1, 1, 0,
                            d->stream, pa, NULL);
    if (cr != CUDA_SUCCESS)
        goto fail;
    void *ps_[] = { &d->out, &n, &d->offsets };
    cr = cu->cuLaunchKernel(g->k_scan, 1, 1, 1, VMIO_MIG_GPU_SCAN_THREADS, 1, 1, 0, d->stream,
                            ps_, NULL);
    if (cr != CUDA_SUCCESS)
        goto fail;
    void *pp[] = { &d->out, &d->offsets, &d->enc, &ps, &d->packed };
    cr = cu->cuLaunchKernel(g->k_pack, n, 1, 1, 256, 1, 1, 0, d->stream, pp, NULL);
    if (cr != CUDA_SUCCESS)
        goto fail;

    what = "copy-out";
    cr = cu->cuMemcpyDtoHAsync(b->batch.out, d->out, (size_t)n * sizeof(struct vmio_mig_page_out),
                               d->stream);
    if (cr != CUDA_SUCCESS)
        goto fail;
    d->state = BATCH_QUEUED;
    return 0;

fail:
    /* Leave nothing of this batch running. */
    cu->cuStreamSynchronize(d->stream);
    return cu_fail(api, cu, EIO, what, cr);
}

int vmio_mig_gpu_wait(struct vmio_mig_gpu *g, struct vmio_mig_gpu_batch *b)
{
    static const char api[] = "vmio_mig_gpu_wait";
    VMIO_CHECK_ARG(api, g != NULL && b != NULL, EFAULT);
    struct vmio_mig_gpu_dev *d = b->dev;
    if (d->state != BATCH_QUEUED)
        return vmio_set_error(api, EINVAL, "the batch was not queued");
    d->state = BATCH_IDLE;
    struct cu_api *cu = &g->cu;
    CUresult cr;
    if ((cr = cu->cuCtxSetCurrent(g->ctx)) != CUDA_SUCCESS)
        return cu_fail(api, cu, EIO, "cuCtxSetCurrent", cr);
    if (b->batch.n == 0)
        return 0;
    if ((cr = cu->cuStreamSynchronize(d->stream)) != CUDA_SUCCESS)
        return cu_fail(api, cu, EIO, "analysis on the GPU", cr);

    uint64_t total;
    int r = vmio_mig_gpu_packed_size(api, &b->batch, &total);
    if (r < 0 || total == 0)
        return r;
    if ((cr = cu->cuMemcpyDtoHAsync(b->batch.enc, d->packed, total, d->stream)) != CUDA_SUCCESS ||
        (cr = cu->cuStreamSynchronize(d->stream)) != CUDA_SUCCESS)
        return cu_fail(api, cu, EIO, "copy-out of the encodings", cr);
    vmio_mig_gpu_unpack(&b->batch, total);
    return 0;
}
