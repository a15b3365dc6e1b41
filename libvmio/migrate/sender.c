/* The migration sender: regions, dirty sources, the pre-copy rounds and
 * the pipeline that overlaps fetch + analysis (parallel), the commit of
 * dedup decisions (serial, in stream order), packing + compression
 * (parallel) and sending (serial, in stream order).
 *
 * Batches live in a ring of pool slots indexed by sequence number:
 *   READY -> ANALYZED -> COMMITTED -> PACKED -> sent, slot FREE again.
 * Round k+1 is dispatched only when round k has been sent, so that each
 * page is in at most one batch at a time (the delta cache and the dedup
 * table rely on it) and the round's statistics are final when the next
 * dirty set is collected. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/internal.h"
#include "migrate/dirty.h"
#include "migrate/engine.h"
#include "migrate/sender.h"
#include "migrate/stream.h"

#define API_SEND "vmio_migrate_send"

/* ---- sender object ------------------------------------------------------ */

int vmio_migrate_sender_new(const struct vmio_migrate_options *o, vmio_migrate_sender **out)
{
    const char *api = "vmio_migrate_sender_new";
    VMIO_CHECK_ARG(api, out != NULL, EINVAL);
    int r = vmio_mig_check_opts(api, o);
    if (r < 0)
        return r;
    struct vmio_migrate_sender *s = calloc(1, sizeof(*s));
    if (!s)
        return vmio_set_error(api, ENOMEM, "out of memory");
    vmio_mig_opts_resolve(o, &s->o);
    pthread_mutex_init(&s->cancel_mx, NULL);
    *out = s;
    return 0;
}

static void free_regions(struct vmio_migrate_sender *s)
{
    free(s->regions);
    s->regions = NULL;
    s->nregions = 0;
}

void vmio_migrate_sender_free(vmio_migrate_sender *s)
{
    if (!s)
        return;
    if (s->dirty) {
        s->dirty->ops->stop(s->dirty);
        s->dirty->ops->free(s->dirty);
    }
    free_regions(s);
    free(s->stats);
    pthread_mutex_destroy(&s->cancel_mx);
    free(s);
}

int vmio_migrate_sender_add_region(vmio_migrate_sender *s, const struct vmio_migrate_region *reg)
{
    const char *api = "vmio_migrate_sender_add_region";
    VMIO_CHECK_ARG(api, s != NULL, EINVAL);
    int r = vmio_mig_check_region(api, reg);
    if (r < 0)
        return r;
    if (s->dirty && strcmp(s->dirty->ops->name, "bitmap"))
        return vmio_set_error(api, EBUSY, "regions cannot change once %s tracking is set up",
                              s->dirty->ops->name);
    if (s->nregions >= VMIO_MIG_MAX_REGIONS)
        return vmio_set_error(api, ENOSPC, "more than %u regions", VMIO_MIG_MAX_REGIONS);
    struct vmio_mig_sregion *n = realloc(s->regions, (s->nregions + 1) * sizeof(*n));
    if (!n)
        return vmio_set_error(api, ENOMEM, "out of memory");
    s->regions = n;
    struct vmio_mig_sregion *g = &s->regions[s->nregions];
    memset(g, 0, sizeof(*g));
    g->base = reg->base;
    g->length = reg->length;
    g->page_size = reg->page_size;
    g->npages = reg->length / reg->page_size;
    if (reg->name)
        strcpy(g->name, reg->name);
    return (int)s->nregions++;
}

static int set_dirty(struct vmio_migrate_sender *s, const char *api, struct vmio_mig_dirty *d)
{
    if (s->dirty) {
        d->ops->free(d);
        return vmio_set_error(api, EBUSY, "a dirty source (%s) is already set",
                              s->dirty->ops->name);
    }
    s->dirty = d;
    return 0;
}

int vmio_migrate_track_bitmap(vmio_migrate_sender *s, vmio_migrate_dirty_fn fn, void *opaque)
{
    const char *api = "vmio_migrate_track_bitmap";
    VMIO_CHECK_ARG(api, s != NULL && fn != NULL, EINVAL);
    if (s->dirty)
        return vmio_set_error(api, EBUSY, "a dirty source (%s) is already set",
                              s->dirty->ops->name);
    struct vmio_mig_dirty *d;
    int r = vmio_mig_dirty_bitmap_new(fn, opaque, &d);
    if (r < 0)
        return vmio_set_error(api, -r, "cannot set up the bitmap source");
    return set_dirty(s, api, d);
}

int vmio_migrate_track_uffd(vmio_migrate_sender *s)
{
    const char *api = "vmio_migrate_track_uffd";
    VMIO_CHECK_ARG(api, s != NULL, EINVAL);
    if (!s->nregions)
        return vmio_set_error(api, EINVAL, "add the regions first");
    if (s->dirty)
        return vmio_set_error(api, EBUSY, "a dirty source (%s) is already set",
                              s->dirty->ops->name);
    struct vmio_mig_region_desc *rd = calloc(s->nregions, sizeof(*rd));
    if (!rd)
        return vmio_set_error(api, ENOMEM, "out of memory");
    for (uint32_t i = 0; i < s->nregions; i++)
        rd[i] = (struct vmio_mig_region_desc){ s->regions[i].base, s->regions[i].length,
                                               s->regions[i].page_size };
    struct vmio_mig_dirty *d;
    int r = vmio_mig_dirty_uffd_new(api, rd, s->nregions, &d);
    free(rd);
    if (r < 0)
        return r;
    return set_dirty(s, api, d);
}

int vmio_migrate_track_xen(vmio_migrate_sender *s, uint32_t domid)
{
    const char *api = "vmio_migrate_track_xen";
    VMIO_CHECK_ARG(api, s != NULL, EINVAL);
    if (s->dirty)
        return vmio_set_error(api, EBUSY, "a dirty source (%s) is already set",
                              s->dirty->ops->name);
    if (s->nregions)
        return vmio_set_error(api, EBUSY, "a Xen domain brings its own regions: add none");
    struct vmio_mig_region_desc *rd;
    uint32_t nr;
    struct vmio_mig_dirty *d;
    int r = vmio_mig_dirty_xen_new(api, domid, &rd, &nr, &d);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < nr; i++) {
        char name[32];
        snprintf(name, sizeof name, "xen-%u-%u", domid, i);
        struct vmio_migrate_region reg = { sizeof(reg), rd[i].page_size, rd[i].base,
                                           rd[i].length, name };
        r = vmio_migrate_sender_add_region(s, &reg);
        if (r < 0) {
            free_regions(s);
            d->ops->free(d);
            return vmio_error_reprefix(api, -r);
        }
    }
    return set_dirty(s, api, d);
}

int vmio_migrate_set_stop_fn(vmio_migrate_sender *s, vmio_migrate_stop_fn fn, void *opaque)
{
    VMIO_CHECK_ARG("vmio_migrate_set_stop_fn", s != NULL, EINVAL);
    s->stop_fn = fn;
    s->stop_opaque = opaque;
    return 0;
}

int vmio_migrate_set_round_fn(vmio_migrate_sender *s, vmio_migrate_round_fn fn, void *opaque)
{
    VMIO_CHECK_ARG("vmio_migrate_set_round_fn", s != NULL, EINVAL);
    s->round_fn = fn;
    s->round_opaque = opaque;
    return 0;
}

void vmio_migrate_sender_cancel(vmio_migrate_sender *s)
{
    if (!s)
        return;
    atomic_store(&s->cancel, 1);
    pthread_mutex_lock(&s->cancel_mx);
    if (s->t)
        vmio_transport_shutdown(s->t);
    pthread_mutex_unlock(&s->cancel_mx);
}

int vmio_migrate_sender_rounds(vmio_migrate_sender *s)
{
    VMIO_CHECK_ARG("vmio_migrate_sender_rounds", s != NULL, EINVAL);
    return (int)s->nstats;
}

int vmio_migrate_sender_round_stats(vmio_migrate_sender *s, uint32_t round,
                                    struct vmio_migrate_round_stats *st)
{
    const char *api = "vmio_migrate_sender_round_stats";
    VMIO_CHECK_ARG(api, s != NULL && st != NULL, EINVAL);
    VMIO_CHECK_ARG(api, st->struct_size >= 8, EINVAL);
    if (round >= s->nstats)
        return vmio_set_error(api, ERANGE, "round %u: the last send did %u rounds", round,
                              s->nstats);
    size_t n = VMIO_MIN((size_t)st->struct_size, sizeof(*st));
    memcpy(st, &s->stats[round], n);
    st->struct_size = (uint32_t)n;
    return 0;
}

/* ---- send --------------------------------------------------------------- */

int vmio_migrate_send(vmio_migrate_sender *s, const char *uri)
{
    VMIO_CHECK_ARG(API_SEND, s != NULL && uri != NULL, EINVAL);
    if (!s->nregions)
        return vmio_set_error(API_SEND, EINVAL, "no memory regions to send");
    struct vmio_mig_addr a;
    int r = vmio_mig_parse_addr(API_SEND, uri, &a);
    if (r < 0)
        return r;
    struct vmio_transport *t;
    r = vmio_mig_connect(API_SEND, &a, (int)s->o.timeout_ms, &t);
    if (r < 0)
        return vmio_error_reprefix(API_SEND, -r);
    r = vmio_mig_run(s, t);
    vmio_transport_close(t);
    return r;
}

int vmio_migrate_send_fd(vmio_migrate_sender *s, int fd)
{
    const char *api = "vmio_migrate_send_fd";
    VMIO_CHECK_ARG(api, s != NULL && fd >= 0, EINVAL);
    struct vmio_transport *t;
    int r = vmio_mig_wrap_fd(api, fd, &t);
    if (r < 0)
        return r;
    r = vmio_mig_run(s, t);
    vmio_transport_close(t);
    return r < 0 ? vmio_error_reprefix(api, -r) : r;
}
