/* The sender object and the pipeline that runs one migration
 * (pipeline.c). */
#ifndef VMIO_MIGRATE_SENDER_H
#define VMIO_MIGRATE_SENDER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <vmio/migrate.h>

#include "migrate/engine.h"
#include "migrate/stream.h"

struct vmio_mig_dirty;

struct vmio_mig_sregion {
    uint8_t *base;
    uint64_t length;
    uint32_t page_size;
    uint64_t npages;
    uint64_t loc0;          /* first global location (pages of earlier regions) */
    char name[VMIO_MIG_NAME_MAX];
    struct vmio_mig_dcache dc;
    uint64_t *bitmap;       /* dirty pages of the next round */
};

struct vmio_migrate_sender {
    struct vmio_migrate_options o;
    struct vmio_mig_sregion *regions;
    uint32_t nregions;
    struct vmio_mig_dirty *dirty;
    vmio_migrate_stop_fn stop_fn;
    void *stop_opaque;
    vmio_migrate_round_fn round_fn;
    void *round_opaque;

    atomic_int cancel;
    pthread_mutex_t cancel_mx;      /* guards t for cancel */
    struct vmio_transport *t;

    struct vmio_migrate_round_stats *stats;
    uint32_t nstats;
};

/* Run one migration over t (pipeline.c). */
int vmio_mig_run(struct vmio_migrate_sender *s, struct vmio_transport *t);

#endif
