/* The "libvirt" VM-group backend when libvmio was built without libvirt
 * (libvirt-dev and libxml2-dev are needed):
 * connecting fails with -ENOTSUP and says so. */
#include <errno.h>

#include "core/internal.h"
#include "group/backend.h"

static int none_open(struct vmio_group_conn *c, const struct vmio_group_connect_opts *o)
{
    (void)c;
    (void)o;
    return vmio_set_error("vmio_group_connect", ENOTSUP,
                          "backend 'libvirt': built without libvirt (libvirt-dev and "
                          "libxml2-dev are needed)");
}

const struct vmio_group_backend vmio_group_backend_libvirt = {
    .name = "libvirt",
    .open = none_open,
};

void *vmio_group_libvirt_conn(struct vmio_group_conn *c)
{
    (void)c;
    return NULL;
}
