/* vmio:// backend (placeholder while being written). */
#include "storage/backend.h"
const struct vmio_backend_ops vmio_backend_remote = { .struct_size = sizeof(struct vmio_backend_ops), .name = "vmio", .scheme = "vmio" };
