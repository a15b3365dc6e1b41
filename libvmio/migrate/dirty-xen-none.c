/* The Xen dirty source when the library is built without libxenctrl and
 * libxenforeignmemory (-Dxen=disabled, or libxen-dev missing): says so. */
#include "core/internal.h"
#include "migrate/dirty.h"

int vmio_mig_dirty_xen_new(const char *api, uint32_t domid, struct vmio_mig_region_desc **regs,
                           uint32_t *nregs, struct vmio_mig_dirty **out)
{
    (void)regs, (void)nregs, (void)out;
    return vmio_set_error(api, ENOTSUP,
                          "domain %u: built without Xen support (rebuild with libxen-dev and "
                          "-Dxen=enabled)", domid);
}
