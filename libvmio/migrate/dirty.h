/* Dirty sources of the migration sender: which pages of each region were
 * written since the previous collection. Behind a vtable so that the
 * engine does not care whether a VMM passes bitmaps (dirty-bitmap.c),
 * this process's memory is tracked with userfaultfd-wp + PAGEMAP_SCAN
 * (dirty-uffd.c) or a Xen domain's log-dirty mode is used (dirty-xen.c). */
#ifndef VMIO_MIGRATE_DIRTY_H
#define VMIO_MIGRATE_DIRTY_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/migrate.h>

struct vmio_mig_dirty;

struct vmio_mig_dirty_ops {
    const char *name;   /* "bitmap", "uffd", "xen" */
    /* Start tracking every region: from now on writes are recorded. Called
     * once, before round 0 reads any page. */
    int (*start)(struct vmio_mig_dirty *d);
    /* OR into bitmap (npages bits, bit i of word i / 64 = page i of the
     * region) the pages written since start or the previous collect of
     * this region, and re-arm tracking for them, so that a write racing
     * with the collection is reported now or next time, never lost. */
    int (*collect)(struct vmio_mig_dirty *d, uint32_t region, uint64_t *bitmap,
                   uint64_t npages);
    /* Stop tracking (leave the memory writable as before). May be called
     * without start. */
    void (*stop)(struct vmio_mig_dirty *d);
    void (*free)(struct vmio_mig_dirty *d);
    /* Optional: pause the VM for stop-and-copy (Xen). NULL when the
     * source cannot. */
    int (*pause)(struct vmio_mig_dirty *d);
};

struct vmio_mig_dirty {
    const struct vmio_mig_dirty_ops *ops;
};

/* The regions as the engine knows them. */
struct vmio_mig_region_desc {
    uint8_t *base;
    uint64_t length;
    uint32_t page_size;
};

/* Caller bitmaps: collect calls fn with a zeroed scratch bitmap (as the
 * public API promises) and ORs its bits, those below npages, into the
 * engine's bitmap; an error of fn is returned with the message set under
 * "vmio_migrate_send". start and stop do nothing. */
int vmio_mig_dirty_bitmap_new(vmio_migrate_dirty_fn fn, void *opaque,
                              struct vmio_mig_dirty **out);
/* userfaultfd write-protect (UFFD_FEATURE_WP_ASYNC) + PAGEMAP_SCAN over the
 * regions (this process's private anonymous memory, -EINVAL otherwise);
 * registers them at once, start write-protects them, collect needs npages
 * equal to the region's page count, stop unregisters (a later start
 * registers again). Collects of different regions may run concurrently.
 * Errors of new under api (-ENOTSUP with a message naming what the kernel
 * lacks, -EPERM with a hint when userfaultfd is not allowed); errors of
 * start/collect under "vmio_migrate_send". */
int vmio_mig_dirty_uffd_new(const char *api, const struct vmio_mig_region_desc *r,
                            uint32_t nr, struct vmio_mig_dirty **out);
/* A Xen domain: maps its RAM (the regions are returned in *regs, *nregs,
 * owned by the source), log-dirty through libxenctrl. -ENOTSUP without
 * Xen support. */
int vmio_mig_dirty_xen_new(const char *api, uint32_t domid, struct vmio_mig_region_desc **regs,
                           uint32_t *nregs, struct vmio_mig_dirty **out);

#endif
