/* The same-host data path of vmio:// (URI option local=, docs/protocol.md
 * section 13): a client that runs on the server's host takes over the
 * server's open descriptor of the image and does its I/O itself, like
 * HDFS short-circuit reads and Gfarm's access to a local spool. */
#ifndef VMIO_STORAGE_LOCAL_H
#define VMIO_STORAGE_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/wire.h"

/* This host's kernel boot id and the inode of our pid namespace: a peer
 * with the same two runs on the same kernel and sees the same pids. */
int vmio_local_identity(const char *api, uint8_t boot_id[16], uint64_t *pidns);

/* Take the descriptor a LOCAL reply names: checks the identity, then
 * pidfd_getfd() (the server's own open file), else opens /proc/PID/fd/N
 * (read-write when rw), and checks that it is the image (st_dev, st_ino).
 * Returns the descriptor (close-on-exec) with how it was obtained in how,
 * or < 0 with the reason recorded under api. */
int vmio_local_take_fd(const char *api, const struct vmio_wire_local_reply *m, int rw,
                       char *how, size_t howlen);

#endif
