/* The memory-lending manager when the library is built without SQLite
 * (libsqlite3-dev missing, or -Dsqlite=disabled): says so. The client,
 * the protocol and CHAP derivation do not need SQLite and are built
 * anyway. */
#include "core/internal.h"

#include <vmio/memlend.h>

int vmio_memlend_manager_new(const struct vmio_memlend_manager_options *opts,
                             vmio_memlend_manager **out)
{
    (void)opts, (void)out;
    return vmio_set_error("vmio_memlend_manager_new", ENOTSUP,
                          "built without SQLite: the memlend manager needs it (rebuild with "
                          "libsqlite3-dev installed)");
}

int vmio_memlend_manager_port(vmio_memlend_manager *m)
{
    (void)m;
    return vmio_set_error("vmio_memlend_manager_port", ENOTSUP, "built without SQLite");
}

int vmio_memlend_manager_run(vmio_memlend_manager *m)
{
    (void)m;
    return vmio_set_error("vmio_memlend_manager_run", ENOTSUP, "built without SQLite");
}

void vmio_memlend_manager_stop(vmio_memlend_manager *m)
{
    (void)m;
}

void vmio_memlend_manager_free(vmio_memlend_manager *m)
{
    (void)m;
}
