/* libvmio: fast VM I/O across a cluster. Umbrella header. */
#ifndef VMIO_VMIO_H
#define VMIO_VMIO_H

#include <vmio/core.h>
#include <vmio/storage.h>
#include <vmio/server.h>
#include <vmio/migrate.h>
#include <vmio/memlend.h>
#include <vmio/group.h>

#endif /* VMIO_VMIO_H */
