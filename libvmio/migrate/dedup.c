/* The sender's picture of which bytes the receiver holds where, for the
 * DEDUP codec: a digest per location and an open-addressing table from
 * digest to a location holding it. Stale table entries (their location
 * was overwritten since) are recognised by comparing with loc_hash and
 * reused; the table is rebuilt when it fills. Used by one thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "migrate/engine.h"

static uint64_t key_of(const uint8_t *h)
{
    uint64_t k;
    memcpy(&k, h, sizeof(k));
    return k ? k : 1;   /* 0 marks an empty slot */
}

int vmio_mig_dedup_init(struct vmio_mig_dedup *d, uint64_t nloc)
{
    memset(d, 0, sizeof(*d));
    d->nloc = nloc;
    d->cap = 1024;
    while (d->cap < nloc * 2)
        d->cap <<= 1;
    d->loc_hash = malloc(nloc * VMIO_MIG_HASH_SIZE);
    d->loc_valid = calloc(nloc, 1);
    d->keys = calloc(d->cap, sizeof(uint64_t));
    d->locs = malloc(d->cap * sizeof(uint64_t));
    if (!d->loc_hash || !d->loc_valid || !d->keys || !d->locs) {
        vmio_mig_dedup_free(d);
        return -ENOMEM;
    }
    return 0;
}

void vmio_mig_dedup_free(struct vmio_mig_dedup *d)
{
    free(d->loc_hash);
    free(d->loc_valid);
    free(d->keys);
    free(d->locs);
    memset(d, 0, sizeof(*d));
}

int vmio_mig_dedup_holds(const struct vmio_mig_dedup *d, uint64_t loc, const uint8_t *hash)
{
    return loc < d->nloc && d->loc_valid[loc] &&
           memcmp(d->loc_hash[loc], hash, VMIO_MIG_HASH_SIZE) == 0;
}

static int slot_live(const struct vmio_mig_dedup *d, uint64_t i)
{
    uint64_t loc = d->locs[i];
    return d->loc_valid[loc] && key_of(d->loc_hash[loc]) == d->keys[i];
}

uint64_t vmio_mig_dedup_find(struct vmio_mig_dedup *d, const uint8_t *hash)
{
    uint64_t k = key_of(hash), mask = d->cap - 1;
    for (uint64_t i = k & mask;; i = (i + 1) & mask) {
        if (!d->keys[i])
            return UINT64_MAX;
        if (d->keys[i] == k && vmio_mig_dedup_holds(d, d->locs[i], hash))
            return d->locs[i];
    }
}

static void insert(struct vmio_mig_dedup *d, uint64_t k, uint64_t loc)
{
    uint64_t mask = d->cap - 1;
    for (uint64_t i = k & mask;; i = (i + 1) & mask) {
        if (!d->keys[i]) {
            d->keys[i] = k;
            d->locs[i] = loc;
            d->used++;
            return;
        }
        if (!slot_live(d, i)) {          /* reuse a stale slot */
            d->keys[i] = k;
            d->locs[i] = loc;
            return;
        }
    }
}

static void rebuild(struct vmio_mig_dedup *d)
{
    memset(d->keys, 0, d->cap * sizeof(uint64_t));
    d->used = 0;
    for (uint64_t loc = 0; loc < d->nloc; loc++)
        if (d->loc_valid[loc] && vmio_mig_dedup_find(d, d->loc_hash[loc]) == UINT64_MAX)
            insert(d, key_of(d->loc_hash[loc]), loc);
}

int vmio_mig_dedup_set(struct vmio_mig_dedup *d, uint64_t loc, const uint8_t *hash)
{
    if (loc >= d->nloc)
        return -EINVAL;
    if (!hash) {
        d->loc_valid[loc] = 0;
        return 0;
    }
    if (d->loc_valid[loc] && memcmp(d->loc_hash[loc], hash, VMIO_MIG_HASH_SIZE) == 0)
        return 0;
    memcpy(d->loc_hash[loc], hash, VMIO_MIG_HASH_SIZE);
    d->loc_valid[loc] = 1;
    if (vmio_mig_dedup_find(d, hash) != UINT64_MAX)
        return 0;                        /* another location already serves it */
    if (d->used + 1 > d->cap / 4 * 3)
        rebuild(d);
    if (d->used + 1 > d->cap / 4 * 3)
        return 0;                        /* every slot live: forgo this one */
    insert(d, key_of(hash), loc);
    return 0;
}
