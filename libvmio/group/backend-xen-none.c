/* The "xen" VM-group backend when libvmio was built without Xen
 * (libxen-dev is needed):
 * connecting fails with -ENOTSUP and says so. */
#include <errno.h>

#include "core/internal.h"
#include "group/backend.h"

static int none_open(struct vmio_group_conn *c, const struct vmio_group_connect_opts *o)
{
    (void)c;
    (void)o;
    return vmio_set_error("vmio_group_connect", ENOTSUP,
                          "backend 'xen': built without Xen (libxen-dev is needed)");
}

const struct vmio_group_backend vmio_group_backend_xen = {
    .name = "xen",
    .open = none_open,
};
