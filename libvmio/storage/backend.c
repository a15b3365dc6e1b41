/* Backend registry and the -ENOTSUP stubs that fill unimplemented ops. */
#include <string.h>

#include "config.h"

#include "storage/backend.h"

static int stub_open(const struct vmio_uri *u, unsigned f, const struct vmio_open_options *o,
                     void **s)
{
    return vmio_set_error("backend", ENOTSUP, "open not supported");
}
static void stub_close(void *s) { }
static unsigned stub_caps(void *s) { return 0; }
static int stub_preadv(void *s, const struct iovec *iov, int n, uint64_t off)
{
    return vmio_set_error("backend", ENOTSUP, "read not supported by this backend");
}
static int stub_pwritev(void *s, const struct iovec *iov, int n, uint64_t off, unsigned f)
{
    return vmio_set_error("backend", ENOTSUP, "write not supported by this backend");
}
static int stub_flush(void *s)
{
    return vmio_set_error("backend", ENOTSUP, "flush not supported by this backend");
}
static int stub_discard(void *s, uint64_t off, uint64_t len)
{
    return vmio_set_error("backend", ENOTSUP, "discard not supported by this backend");
}
static int stub_write_zeroes(void *s, uint64_t off, uint64_t len, unsigned f)
{
    return vmio_set_error("backend", ENOTSUP, "write_zeroes not supported by this backend");
}
static int stub_get_size(void *s, uint64_t *size)
{
    return vmio_set_error("backend", ENOTSUP, "size not supported by this backend");
}
static int stub_truncate(void *s, uint64_t size)
{
    return vmio_set_error("backend", ENOTSUP, "truncate not supported by this backend");
}
static int stub_block_status(void *s, uint64_t off, uint64_t max, uint64_t *len, int *type)
{
    /* Everything is data: always correct, merely not sparse-aware. */
    *len = max;
    *type = VMIO_EXTENT_DATA;
    return 0;
}
static int stub_submit(void *s, struct vmio_req *r)
{
    return -ENOTSUP;
}
static void stub_stats(void *s, struct vmio_file_stats *st) { }
static void stub_attach_aio(void *s, int epfd, int efd) { }
static int stub_progress(void *s, int wait) { return 0; }
static const char *stub_describe(void *s) { return NULL; }
static int stub_finish(void *s) { return 0; }
static int stub_register_memory(void *s, void *addr, size_t len)
{
    return vmio_set_error("backend", ENOTSUP, "this backend needs no memory registration");
}
static int stub_unregister_memory(void *s, void *addr)
{
    return vmio_set_error("backend", ENOTSUP, "this backend needs no memory registration");
}

#define FILL(f) dst->f = src->f ? src->f : stub_##f
void vmio_backend_fill(struct vmio_backend_ops *dst, const struct vmio_backend_ops *src)
{
    memset(dst, 0, sizeof *dst);
    dst->struct_size = sizeof *dst;
    dst->name = src->name;
    dst->scheme = src->scheme;
    FILL(open);
    FILL(close);
    FILL(caps);
    FILL(preadv);
    FILL(pwritev);
    FILL(flush);
    FILL(discard);
    FILL(write_zeroes);
    FILL(get_size);
    FILL(truncate);
    FILL(block_status);
    FILL(submit);
    FILL(stats);
    FILL(attach_aio);
    FILL(progress);
    FILL(describe);
    FILL(finish);
    FILL(register_memory);
    FILL(unregister_memory);
}

static const struct vmio_backend_ops *const backends[] = {
    &vmio_backend_file,
    &vmio_backend_remote,
#if VMIO_BUILT_GFARM
    &vmio_backend_gfarm,
#endif
};

const struct vmio_backend_ops *vmio_backend_find(const char *scheme)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(backends); i++)
        if (strcmp(backends[i]->scheme, scheme) == 0)
            return backends[i];
    return NULL;
}
