/* Dirty source 1: caller-supplied bitmaps (a VMM that owns KVM's dirty
 * log passes them through vmio_migrate_track_bitmap()).
 *
 * collect calls the caller's vmio_migrate_dirty_fn with a scratch bitmap
 * zeroed here (the public contract promises the callback a zeroed
 * bitmap), clears any bit the callback set past npages, and ORs the rest
 * into the engine's bitmap. start and stop have nothing to do: the caller
 * tracks writes itself. Collects of different regions may run
 * concurrently; the callback is then called concurrently too. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "migrate/dirty.h"

/* Errors of collect happen inside a send. */
#define RUN_API "vmio_migrate_send"

struct dirty_bitmap {
    struct vmio_mig_dirty base;
    vmio_migrate_dirty_fn fn;
    void *opaque;
};

static int bitmap_start(struct vmio_mig_dirty *d)
{
    (void)d;
    return 0;
}

static int bitmap_collect(struct vmio_mig_dirty *d, uint32_t region, uint64_t *bitmap,
                          uint64_t npages)
{
    struct dirty_bitmap *b = (struct dirty_bitmap *)d;
    if (npages == 0)
        return 0;
    uint64_t nwords = (npages + 63) / 64;
    if (nwords > SIZE_MAX / sizeof(uint64_t))
        return vmio_set_error(RUN_API, ENOMEM, "dirty bitmap of %llu pages too large",
                              (unsigned long long)npages);
    uint64_t *scratch = calloc((size_t)nwords, sizeof(uint64_t));
    if (!scratch)
        return vmio_set_error(RUN_API, ENOMEM, "dirty bitmap of %llu pages",
                              (unsigned long long)npages);
    int rc = b->fn(b->opaque, region, scratch, npages);
    if (rc != 0) {
        free(scratch);
        if (rc > 0)
            return vmio_set_error(RUN_API, EINVAL,
                                  "dirty bitmap callback returned %d for region %u "
                                  "(expected 0 or a negative errno)", rc, region);
        int err = rc < -4095 ? EIO : -rc;
        return vmio_set_error_errno(RUN_API, err, "dirty bitmap callback failed for region %u",
                                    region);
    }
    if (npages % 64)
        scratch[nwords - 1] &= (UINT64_C(1) << (npages % 64)) - 1;
    for (uint64_t i = 0; i < nwords; i++)
        bitmap[i] |= scratch[i];
    free(scratch);
    return 0;
}

static void bitmap_stop(struct vmio_mig_dirty *d)
{
    (void)d;
}

static void bitmap_free(struct vmio_mig_dirty *d)
{
    free(d);
}

static const struct vmio_mig_dirty_ops bitmap_ops = {
    .name = "bitmap",
    .start = bitmap_start,
    .collect = bitmap_collect,
    .stop = bitmap_stop,
    .free = bitmap_free,
    .pause = NULL,
};

int vmio_mig_dirty_bitmap_new(vmio_migrate_dirty_fn fn, void *opaque,
                              struct vmio_mig_dirty **out)
{
    static const char api[] = "vmio_migrate_track_bitmap";
    VMIO_CHECK_ARG(api, fn != NULL, EINVAL);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    struct dirty_bitmap *b = calloc(1, sizeof *b);
    if (!b)
        return vmio_set_error(api, ENOMEM, "out of memory");
    b->base.ops = &bitmap_ops;
    b->fn = fn;
    b->opaque = opaque;
    *out = &b->base;
    return 0;
}
