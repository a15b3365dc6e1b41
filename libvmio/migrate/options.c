/* Options and region checks shared by the sender and the receiver, and
 * the codec names. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "migrate/engine.h"
#include "migrate/stream.h"

void vmio_mig_opts_resolve(const struct vmio_migrate_options *in, struct vmio_migrate_options *o)
{
    memset(o, 0, sizeof(*o));
    if (in)
        memcpy(o, in, VMIO_MIN((size_t)in->struct_size, sizeof(*o)));
    o->struct_size = sizeof(*o);
    if (!o->codecs)
        o->codecs = VMIO_MIGRATE_CODECS_ALL;
    o->codecs |= VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_RAW);
    if (!o->threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n > 0 ? (uint32_t)VMIO_MIN(n, 64) : 1;
    }
    if (!o->batch_pages)
        o->batch_pages = 256;
    if (!o->max_rounds)
        o->max_rounds = 30;
    if (!o->zstd_level)
        o->zstd_level = 1;
    if (!o->delta_cache_bytes)
        o->delta_cache_bytes = 64ull << 20;
    if (!o->downtime_ns)
        o->downtime_ns = 300000000ull;
    if (!o->timeout_ms)
        o->timeout_ms = 30000;
}

int vmio_mig_check_opts(const char *api, const struct vmio_migrate_options *o)
{
    if (o && o->struct_size < 8)
        return vmio_set_error(api, EINVAL, "options: struct_size not set");
    if (o && o->struct_size >= offsetof(struct vmio_migrate_options, secret_file) +
                                   sizeof(const char *) && o->secret_file)
        return vmio_set_error(api, ENOTSUP, "options: secret_file is reserved");
    if (o && o->policy > VMIO_MIGRATE_FIXED)
        return vmio_set_error(api, EINVAL, "options: unknown policy %u", o->policy);
    if (o && o->gpu > VMIO_MIGRATE_GPU_REQUIRE)
        return vmio_set_error(api, EINVAL, "options: unknown gpu mode %u", o->gpu);
    if (o && o->batch_pages > 4096)
        return vmio_set_error(api, EINVAL, "options: batch_pages %u > 4096", o->batch_pages);
    return 0;
}

int vmio_mig_check_region(const char *api, const struct vmio_migrate_region *r)
{
    VMIO_CHECK_ARG(api, r != NULL, EINVAL);
    if (r->struct_size < offsetof(struct vmio_migrate_region, name) + sizeof(const char *))
        return vmio_set_error(api, EINVAL, "region: struct_size not set");
    uint32_t ps = r->page_size;
    if (ps < VMIO_MIG_PAGE_MIN || ps > VMIO_MIG_PAGE_MAX || (ps & (ps - 1)))
        return vmio_set_error(api, EINVAL, "region: page size %u is not a power of two "
                              "from 4096 to 65536", ps);
    if (!r->length || r->length % ps)
        return vmio_set_error(api, EINVAL, "region: the length (%llu) must be a non-zero "
                              "multiple of the page size %u", (unsigned long long)r->length, ps);
    if (!r->base || (uintptr_t)r->base % VMIO_MIG_PAGE_MIN)
        return vmio_set_error(api, EINVAL, "region: base %p is not aligned to 4096 bytes",
                              r->base);
    if (r->name && strlen(r->name) >= VMIO_MIG_NAME_MAX)
        return vmio_set_error(api, EINVAL, "region: name longer than %u bytes",
                              VMIO_MIG_NAME_MAX - 1);
    return 0;
}

const char *vmio_migrate_codec_name(int codec)
{
    static const char *const names[] = { "raw", "zero", "rle", "delta",
                                         "dedup", "zstd", "lz4", "skip" };
    if (codec < 0 || codec >= (int)VMIO_ARRAY_SIZE(names))
        return NULL;
    return names[codec];
}
