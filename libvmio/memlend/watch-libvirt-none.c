/* libvirt guests for the lender's watcher when the library is built without
 * libvirt (-Dlibvirt=disabled, or libvirt-dev missing): says so. */
#include "core/internal.h"
#include "memlend/watch.h"

int vmio_ml_guests_open(const char *api, const char *uri, struct vmio_ml_guests **out)
{
    (void)out;
    return vmio_set_error(api, ENOTSUP,
                          "libvirt %s: built without libvirt support (rebuild with "
                          "libvirt-dev and -Dlibvirt=enabled)", uri);
}

int vmio_ml_guests_sample(const char *api, struct vmio_ml_guests *g, uint32_t *n,
                          uint32_t *swapping)
{
    (void)g, (void)n, (void)swapping;
    return vmio_set_error(api, ENOTSUP, "built without libvirt support");
}

void vmio_ml_guests_close(struct vmio_ml_guests *g)
{
    (void)g;
}
