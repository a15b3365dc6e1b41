/* placeholder */
#include <vmio/server.h>
#include "core/internal.h"
VMIO_API int vmio_server_new(vmio_server **s) { return vmio_set_error("vmio_server_new", ENOTSUP, "not yet"); }
VMIO_API void vmio_server_free(vmio_server *s) { }
VMIO_API int vmio_server_set_secret(vmio_server *s, const void *p, size_t l) { return -ENOTSUP; }
VMIO_API int vmio_server_set_secret_file(vmio_server *s, const char *p) { return -ENOTSUP; }
VMIO_API int vmio_server_set_workers(vmio_server *s, unsigned w) { return -ENOTSUP; }
VMIO_API int vmio_server_add_export(vmio_server *s, const char *n, const char *d, unsigned f) { return -ENOTSUP; }
VMIO_API int vmio_server_listen(vmio_server *s, const char *h, uint16_t p) { return -ENOTSUP; }
VMIO_API int vmio_server_port(vmio_server *s) { return -ENOTSUP; }
VMIO_API int vmio_server_start(vmio_server *s) { return -ENOTSUP; }
VMIO_API int vmio_server_stop(vmio_server *s) { return -ENOTSUP; }
