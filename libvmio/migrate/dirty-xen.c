/* Dirty source for a Xen domain (PVH or HVM), used by the migration sender
 * in dom0: the domain's RAM is mapped read-only with libxenforeignmemory,
 * pages written between rounds come from Xen's log-dirty mode through
 * libxenctrl, and the domain is paused for stop-and-copy.
 *
 * Memory layout: every guest frame 0..max_gpfn is mapped in one foreign
 * mapping with a per-page error array. Frames that fail to map (MMIO
 * holes, unpopulated frames) are left out: the regions are the runs of
 * frames that mapped, in ascending frame order, so holes are neither sent
 * nor read. A frame populated later (ballooning) is not seen.
 *
 * Log-dirty: XEN_DOMCTL_SHADOW_OP_CLEAN returns and clears the domain's
 * whole bitmap at once, while the engine collects region by region. The
 * bits of a CLEAN are kept in a pending bitmap until their region takes
 * them; a region collected twice without a CLEAN in between triggers the
 * next CLEAN. So a write is reported now or in a later collection, never
 * lost, and one round over all regions costs one hypercall.
 *
 * Xen itself writes some guest pages without logging them: the vcpu_info
 * areas (time info, event upcall flags) and shared_info (event bitmaps)
 * that the guest placed in its RAM. So the source keeps an XXH3-64 hash
 * of every page, taken at start and whenever the page is reported; at
 * pause it hashes all memory once more and reports the pages that changed
 * unlogged. That costs a pass over memory at start and in the downtime
 * (several GB/s per core natively). Xen's writes after the pause (an
 * event sent to the paused domain) still go unseen.
 *
 * PV domains are refused: their frames are machine frames reached through
 * the guest's own p2m, and Debian's Xen has no shadow paging, which
 * log-dirty on PV needs. The domain stays paused after pause() (the caller
 * destroys it after a successful migration, or unpauses it). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xxhash.h>

#include "core/internal.h"
#include "migrate/dirty.h"

/* Xen's public headers spell 8-byte alignment with a GNU attribute and
 * break on purpose under strict ISO C (-std=c11 defines __STRICT_ANSI__);
 * the C library headers are in already, only Xen's see this. */
#undef __STRICT_ANSI__
#include <xenctrl.h>
#include <xenforeignmemory.h>

#include "core/xen-log.h"

#define XEN_PAGE 4096u

struct xen_region {
    uint64_t gfn;   /* first guest frame */
    uint64_t pages;
    uint64_t hoff;  /* its first page's index in hash[] */
};

struct dirty_xen {
    struct vmio_mig_dirty base;
    const char *api;
    uint32_t domid;
    xc_interface *xch;
    xenforeignmemory_handle *fmem;
    uint8_t *map;              /* frames 0..nframes-1, holes unmapped */
    uint64_t nframes;          /* max_gpfn + 1 */
    struct vmio_mig_region_desc *regs;
    struct xen_region *xr;
    uint32_t nregs;
    uint8_t *taken;            /* per region: collected since the last CLEAN */
    xc_hypercall_buffer_t hb;  /* bitmap Xen writes into */
    int hb_pages;
    uint64_t *pending;         /* cleaned bits not yet collected */
    uint64_t *hash;            /* per mapped page, as last hashed */
    uint64_t npages;           /* mapped pages */
    int logdirty;
    int paused;
};

static uint64_t words_for(uint64_t bits)
{
    return (bits + 63) / 64;
}

static int xen_start(struct vmio_mig_dirty *d)
{
    struct dirty_xen *x = (struct dirty_xen *)d;
    if (x->logdirty)
        return 0;
    if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) < 0) {
        int e = errno ? errno : EIO;
        if (e == EOPNOTSUPP || e == ENOSYS)
            return vmio_set_error(x->api, ENOTSUP,
                                  "domain %u: Xen refused log-dirty mode (a PV domain on a Xen "
                                  "without shadow paging?)", x->domid);
        if (e == EBUSY)
            return vmio_set_error(x->api, EBUSY,
                                  "domain %u is already in log-dirty mode (another migration "
                                  "running?)", x->domid);
        return vmio_set_error_errno(x->api, e, "domain %u: enabling log-dirty mode", x->domid);
    }
    x->logdirty = 1;
    /* Writes since the enable are what counts: drop anything older. */
    memset(x->pending, 0, words_for(x->nframes) * 8);
    memset(x->taken, 1, x->nregs);
    /* After the enable: a later write is logged or changes the hash. */
    for (uint32_t i = 0; i < x->nregs; i++)
        for (uint64_t p = 0; p < x->xr[i].pages; p++)
            x->hash[x->xr[i].hoff + p] = XXH3_64bits(x->regs[i].base + p * XEN_PAGE, XEN_PAGE);
    return 0;
}

/* One CLEAN: OR the domain's dirty frames into pending. */
static int xen_clean(struct dirty_xen *x)
{
    uint64_t words = words_for(x->nframes);
    uint64_t *bm = x->hb.hbuf;
    memset(bm, 0, words * 8);
    xc_shadow_op_stats_t st;
    memset(&st, 0, sizeof st);
    if (xc_logdirty_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_CLEAN, &x->hb,
                            (unsigned long)x->nframes, 0, &st) < 0)
        return vmio_set_error_errno(x->api, errno ? errno : EIO,
                                    "domain %u: reading the dirty bitmap", x->domid);
    for (uint64_t i = 0; i < words; i++)
        x->pending[i] |= bm[i];
    memset(x->taken, 0, x->nregs);
    return 0;
}

static int xen_collect(struct vmio_mig_dirty *d, uint32_t region, uint64_t *bitmap,
                       uint64_t npages)
{
    struct dirty_xen *x = (struct dirty_xen *)d;
    if (region >= x->nregs || npages != x->xr[region].pages)
        return vmio_set_error(x->api, EINVAL, "domain %u: region %u with %llu pages unknown",
                              x->domid, region, (unsigned long long)npages);
    if (!x->logdirty)
        return vmio_set_error(x->api, EINVAL, "domain %u: log-dirty is not started", x->domid);
    if (x->taken[region]) {
        int r = xen_clean(x);
        if (r < 0)
            return r;
    }
    uint64_t g0 = x->xr[region].gfn;
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t g = g0 + i;
        uint64_t m = 1ull << (g % 64);
        if (x->pending[g / 64] & m) {
            x->pending[g / 64] &= ~m;
            bitmap[i / 64] |= 1ull << (i % 64);
            x->hash[x->xr[region].hoff + i] =
                XXH3_64bits(x->regs[region].base + i * XEN_PAGE, XEN_PAGE);
        }
    }
    x->taken[region] = 1;
    return 0;
}

static void xen_stop(struct vmio_mig_dirty *d)
{
    struct dirty_xen *x = (struct dirty_xen *)d;
    if (x->logdirty) {
        xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0);
        x->logdirty = 0;
    }
}

static int xen_pause(struct vmio_mig_dirty *d)
{
    struct dirty_xen *x = (struct dirty_xen *)d;
    if (x->paused)
        return 0;
    if (xc_domain_pause(x->xch, x->domid) < 0)
        return vmio_set_error_errno(x->api, errno ? errno : EIO, "pausing domain %u", x->domid);
    x->paused = 1;
    if (!x->logdirty)
        return 0;
    /* Pages Xen changed without logging them: reported by the next
     * collect of their region. */
    for (uint32_t i = 0; i < x->nregs; i++)
        for (uint64_t p = 0; p < x->xr[i].pages; p++) {
            uint64_t h = XXH3_64bits(x->regs[i].base + p * XEN_PAGE, XEN_PAGE);
            if (h != x->hash[x->xr[i].hoff + p]) {
                uint64_t g = x->xr[i].gfn + p;
                x->pending[g / 64] |= 1ull << (g % 64);
                x->hash[x->xr[i].hoff + p] = h;
            }
        }
    return 0;
}

static void xen_free(struct vmio_mig_dirty *d)
{
    struct dirty_xen *x = (struct dirty_xen *)d;
    if (!x)
        return;
    if (x->xch)
        xen_stop(d);
    if (x->map)
        xenforeignmemory_unmap(x->fmem, x->map, x->nframes);
    if (x->hb.hbuf)
        xc__hypercall_buffer_free_pages(x->xch, &x->hb, x->hb_pages);
    if (x->fmem)
        xenforeignmemory_close(x->fmem);
    if (x->xch)
        xc_interface_close(x->xch);
    free(x->regs);
    free(x->xr);
    free(x->taken);
    free(x->pending);
    free(x->hash);
    free(x);
}

static const struct vmio_mig_dirty_ops xen_ops = {
    .name = "xen",
    .start = xen_start,
    .collect = xen_collect,
    .stop = xen_stop,
    .free = xen_free,
    .pause = xen_pause,
};

/* Find the domain and check that this source can handle it. */
static int check_domain(struct dirty_xen *x)
{
    xc_dominfo_t info;
    memset(&info, 0, sizeof info);
    int n = xc_domain_getinfo(x->xch, x->domid, 1, &info);
    if (n < 0)
        return vmio_set_error_errno(x->api, errno ? errno : EIO, "looking up domain %u", x->domid);
    if (n != 1 || info.domid != x->domid)
        return vmio_set_error(x->api, ESRCH, "no Xen domain with id %u", x->domid);
    if (x->domid == 0)
        return vmio_set_error(x->api, EINVAL, "domain 0 cannot migrate itself");
    if (info.dying || info.shutdown || info.crashed)
        return vmio_set_error(x->api, ESRCH, "domain %u is %s", x->domid,
                              info.dying ? "dying" : info.crashed ? "crashed" : "shut down");
    if (!info.hvm)
        return vmio_set_error(x->api, ENOTSUP,
                              "domain %u is a PV domain: only PVH and HVM domains are supported "
                              "(log-dirty on PV needs shadow paging)", x->domid);
    return 0;
}

/* Map frames 0..max_gpfn and make the regions from the runs that mapped. */
static int map_memory(struct dirty_xen *x)
{
    xen_pfn_t maxgpfn = 0;
    if (xc_domain_maximum_gpfn(x->xch, x->domid, &maxgpfn) < 0)
        return vmio_set_error_errno(x->api, errno ? errno : EIO,
                                    "domain %u: reading the highest guest frame", x->domid);
    x->nframes = (uint64_t)maxgpfn + 1;
    xen_pfn_t *gfns = malloc(x->nframes * sizeof *gfns);
    int *err = calloc(x->nframes, sizeof *err);
    if (!gfns || !err) {
        free(gfns);
        free(err);
        return vmio_set_error(x->api, ENOMEM, "domain %u: %llu frames", x->domid,
                              (unsigned long long)x->nframes);
    }
    for (uint64_t g = 0; g < x->nframes; g++)
        gfns[g] = g;
    x->map = xenforeignmemory_map(x->fmem, x->domid, PROT_READ, x->nframes, gfns, err);
    free(gfns);
    if (!x->map) {
        free(err);
        return vmio_set_error_errno(x->api, errno ? errno : EIO,
                                    "domain %u: mapping its memory", x->domid);
    }
    /* Runs of mapped frames. */
    uint32_t cap = 0;
    for (uint64_t g = 0; g < x->nframes;) {
        if (err[g]) {
            g++;
            continue;
        }
        uint64_t s = g;
        while (g < x->nframes && !err[g])
            g++;
        if (x->nregs == cap) {
            cap = cap ? cap * 2 : 8;
            struct xen_region *nx = realloc(x->xr, cap * sizeof *nx);
            if (!nx) {
                free(err);
                return vmio_set_error(x->api, ENOMEM, "domain %u: regions", x->domid);
            }
            x->xr = nx;
        }
        x->xr[x->nregs].gfn = s;
        x->xr[x->nregs].pages = g - s;
        x->xr[x->nregs].hoff = x->npages;
        x->npages += g - s;
        x->nregs++;
    }
    free(err);
    if (!x->nregs)
        return vmio_set_error(x->api, EIO, "domain %u: none of its %llu frames could be mapped",
                              x->domid, (unsigned long long)x->nframes);
    x->regs = calloc(x->nregs, sizeof *x->regs);
    x->taken = calloc(x->nregs, 1);
    if (!x->regs || !x->taken)
        return vmio_set_error(x->api, ENOMEM, "domain %u: regions", x->domid);
    for (uint32_t i = 0; i < x->nregs; i++) {
        x->regs[i].base = x->map + x->xr[i].gfn * XEN_PAGE;
        x->regs[i].length = x->xr[i].pages * XEN_PAGE;
        x->regs[i].page_size = XEN_PAGE;
    }
    return 0;
}

int vmio_mig_dirty_xen_new(const char *api, uint32_t domid, struct vmio_mig_region_desc **regs,
                           uint32_t *nregs, struct vmio_mig_dirty **out)
{
    struct dirty_xen *x = calloc(1, sizeof *x);
    if (!x)
        return vmio_set_error(api, ENOMEM, "Xen dirty source");
    x->base.ops = &xen_ops;
    x->api = api;
    x->domid = domid;
    x->hb.ubuf = (void *)-1;
    int r;
    x->xch = xc_interface_open(vmio_xen_quiet_logger(), vmio_xen_quiet_logger(), 0);
    if (!x->xch) {
        int e = errno ? errno : ENODEV;
        r = e == EACCES || e == EPERM
                ? vmio_set_error(api, e, "opening the Xen control interface: permission denied "
                                         "(run as root in dom0)")
                : vmio_set_error_errno(api, e, "opening the Xen control interface (is this a Xen "
                                               "dom0 with xen-privcmd loaded?)");
        goto fail;
    }
    x->fmem = xenforeignmemory_open(vmio_xen_quiet_logger(), 0);
    if (!x->fmem) {
        r = vmio_set_error_errno(api, errno ? errno : ENODEV, "opening xenforeignmemory");
        goto fail;
    }
    if ((r = check_domain(x)) < 0 || (r = map_memory(x)) < 0)
        goto fail;
    uint64_t words = words_for(x->nframes);
    x->hb_pages = (int)((words * 8 + XEN_PAGE - 1) / XEN_PAGE);
    x->pending = calloc(words, 8);
    x->hash = calloc(x->npages, 8);
    if (!x->pending || !x->hash || !xc__hypercall_buffer_alloc_pages(x->xch, &x->hb, x->hb_pages)) {
        r = vmio_set_error(api, ENOMEM, "domain %u: dirty bitmap of %llu frames", domid,
                           (unsigned long long)x->nframes);
        goto fail;
    }
    *regs = x->regs;
    *nregs = x->nregs;
    *out = &x->base;
    return 0;
fail:
    xen_free(&x->base);
    return r;
}
