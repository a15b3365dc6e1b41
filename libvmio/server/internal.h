/* Shared by the server's two files: server.c (connections, protocol,
 * request threads) and export.c (exported directories and the resolution of
 * client paths beneath them). Not installed. */
#ifndef VMIO_SERVER_INTERNAL_H
#define VMIO_SERVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/server.h>
#include <vmio/storage.h>

#include "core/internal.h"

/* API prefix of errors that are produced inside the server and sent to a
 * client (the prefix itself is stripped before sending). */
#define VMIO_SERVER_API "vmio_server"

struct vmio_export {
    struct vmio_export *next;
    char *name;
    char *dir;          /* as given, for log messages */
    int dirfd;          /* O_PATH | O_DIRECTORY, opened once; -1 for Gfarm */
    int gfarm;          /* dir is a gfarm:// URI */
    unsigned flags;     /* VMIO_EXPORT_* */
};

/* Tests: make the request threads' WRITE pipes this large from now on
 * (0: the default), so that data that does not fit can be tested. */
void vmio_server_test_pipe_size(unsigned bytes);
/* Tests: WRITE frames whose data went through a pipe, and those whose
 * data had to be taken back out of it, since the process started. */
void vmio_server_test_splice_stats(uint64_t *spliced, uint64_t *spilled);

/* Open dir and make an export of it. Errors are recorded under api. */
int vmio_export_new(const char *api, const char *name, const char *dir, unsigned flags,
                    struct vmio_export **out);
/* e may be NULL. */
void vmio_export_free(struct vmio_export *e);

/* Open the client path (path_len bytes, not NUL-terminated) beneath the
 * export. open_flags are VMIO_WIRE_OPEN_* bits (already checked by the
 * decoder); create_size sizes a newly created file. On failure records a
 * message under VMIO_SERVER_API that is fit to send to the client (no
 * server-side paths) and returns -errno. */
int vmio_export_open(const struct vmio_export *e, const char *path, size_t path_len,
                     uint32_t open_flags, uint64_t create_size, vmio_file **out);

#endif
