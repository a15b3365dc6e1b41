/* One Gfarm file through libgfarm: the thin layer shared by the gfarm://
 * backend's in-process mode and by the vmio-gfarm-helper processes.
 *
 * libgfarm keeps process-wide state (one gfmd connection cache, one
 * configuration, scheduling caches) and its documentation says it is not
 * thread-safe. Every call below therefore runs under one process-wide
 * lock; callers that want parallel I/O use several helper processes, each
 * with its own libgfarm (see gfarm.c). Errors are recorded with
 * vmio_set_error() under the prefix "gfarm" and Gfarm's own message. */
#ifndef VMIO_STORAGE_GFARM_IO_H
#define VMIO_STORAGE_GFARM_IO_H

#include <stddef.h>
#include <stdint.h>

struct gfio;

/* Open flags. */
#define GFIO_RDWR 0x1u
#define GFIO_CREATE 0x2u
#define GFIO_TRUNC 0x4u
#define GFIO_EXCL 0x8u

/* Initialise libgfarm once for the process (reference counted). */
int gfio_init(void);
void gfio_fini(void);

/* path: a Gfarm path or URL ("/images/a.img", "gfarm:///images/a.img",
 * "gfarm://mds:601/images/a.img"). beneath: if not NULL, the opened file's
 * real path must lie beneath it (an export's root; symlinks inside Gfarm
 * must not lead out of it). */
int gfio_open(const char *path, unsigned flags, uint64_t create_size, const char *beneath,
              struct gfio **out);
int gfio_close(struct gfio *g);
int gfio_pread(struct gfio *g, void *buf, size_t len, uint64_t off);
int gfio_pwrite(struct gfio *g, const void *buf, size_t len, uint64_t off);
int gfio_datasync(struct gfio *g);
int gfio_truncate(struct gfio *g, uint64_t size);
int gfio_size(struct gfio *g, uint64_t *size);

/* Hosts holding a complete, live replica of path. *hosts is a malloc'd
 * array of malloc'd strings; free with gfio_free_hosts(). */
int gfio_replica_hosts(const char *path, char ***hosts, int *nhosts);
void gfio_free_hosts(char **hosts, int nhosts);

/* Turn a Gfarm error into -errno, recording "what: Gfarm's message". */
int gfio_error(int gfarm_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
