/* The delta codec's bounded cache of the version last sent of each page:
 * direct-mapped by location, one spin lock per slot (two pages of
 * concurrent batches may share a slot). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "migrate/engine.h"

int vmio_mig_dcache_init(struct vmio_mig_dcache *c, uint64_t bytes, uint32_t page_size)
{
    memset(c, 0, sizeof(*c));
    c->page_size = page_size;
    c->nslots = bytes / page_size;
    if (!c->nslots)
        return 0;
    c->tags = calloc(c->nslots, sizeof(uint64_t));
    c->locks = malloc(c->nslots * sizeof(atomic_flag));
    c->data = mmap(NULL, c->nslots * page_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (c->data == MAP_FAILED)
        c->data = NULL;
    if (!c->tags || !c->locks || !c->data) {
        vmio_mig_dcache_free(c);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < c->nslots; i++)
        atomic_flag_clear(&c->locks[i]);
    return 0;
}

void vmio_mig_dcache_free(struct vmio_mig_dcache *c)
{
    if (c->data)
        munmap(c->data, c->nslots * c->page_size);
    free(c->tags);
    free(c->locks);
    memset(c, 0, sizeof(*c));
}

int vmio_mig_dcache_swap(struct vmio_mig_dcache *c, uint64_t loc, const uint8_t *page,
                         uint8_t *ref)
{
    if (!c->nslots)
        return 0;
    uint64_t s = loc % c->nslots;
    uint8_t *slot = c->data + s * c->page_size;
    while (atomic_flag_test_and_set_explicit(&c->locks[s], memory_order_acquire))
        ;
    int hit = c->tags[s] == loc + 1;
    if (hit && ref)
        memcpy(ref, slot, c->page_size);
    if (page) {
        memcpy(slot, page, c->page_size);
        c->tags[s] = loc + 1;
    } else if (hit) {
        c->tags[s] = 0;
    }
    atomic_flag_clear_explicit(&c->locks[s], memory_order_release);
    return hit;
}
