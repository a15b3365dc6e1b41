/* The borrower without json-c (LVM's JSON reports cannot be read): every
 * call fails with -ENOTSUP and says why. */
#include <errno.h>
#include <stdlib.h>

#include <vmio/memlend.h>

#include "core/internal.h"

#define NOT_BUILT(api)                                                          \
    vmio_set_error(api, ENOTSUP, "the borrower needs json-c (libjson-c-dev) to " \
                   "read LVM's reports; this libvmio was built without it")

int vmio_memlend_borrower_new(const struct vmio_memlend_borrower_options *opts,
                              vmio_memlend_borrower **out)
{
    (void)opts;
    if (out)
        *out = NULL;
    return NOT_BUILT("vmio_memlend_borrower_new");
}

void vmio_memlend_borrower_free(vmio_memlend_borrower *b)
{
    (void)b;
}

int vmio_memlend_swap_attach(vmio_memlend_borrower *b, const char *vg, const char *lv,
                             uint64_t size, uint32_t flags, uint64_t lease_ids[2])
{
    (void)b, (void)vg, (void)lv, (void)size, (void)flags, (void)lease_ids;
    return NOT_BUILT("vmio_memlend_swap_attach");
}

int vmio_memlend_swap_detach(vmio_memlend_borrower *b, const char *vg, uint64_t lease_id)
{
    (void)b, (void)vg, (void)lease_id;
    return NOT_BUILT("vmio_memlend_swap_detach");
}

int vmio_memlend_swap_status(vmio_memlend_borrower *b, const char *vg,
                             struct vmio_memlend_swap_place **out, size_t *n)
{
    (void)b, (void)vg;
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    return NOT_BUILT("vmio_memlend_swap_status");
}

void vmio_memlend_swap_status_free(struct vmio_memlend_swap_place *p)
{
    free(p);
}

int vmio_memlend_swap_agent(vmio_memlend_borrower *b, vmio_memlend_swap_event_fn fn, void *ctx)
{
    (void)b, (void)fn, (void)ctx;
    return NOT_BUILT("vmio_memlend_swap_agent");
}

void vmio_memlend_swap_agent_stop(vmio_memlend_borrower *b)
{
    (void)b;
}
