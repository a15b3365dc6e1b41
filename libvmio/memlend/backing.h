/* The lender's backing memory: a tmpfs (or ramfs) mounted under a state
 * directory owned by the lender, one file per lease, sized with
 * ftruncate (pages are allocated as the borrower writes them). Freeing
 * is unlink, after checking that nobody (the target) still holds the file
 * open, so the memory is really given back. */
#ifndef VMIO_MEMLEND_BACKING_H
#define VMIO_MEMLEND_BACKING_H

#include <stddef.h>
#include <stdint.h>

struct vmio_ml_backing {
    char dir[400];              /* the mount point: <state>/mem */
    int ramfs;                  /* 1: ramfs (never swapped, no size limit) */
};

/* Mount (or reuse a memory file system already mounted on) <state>/mem. */
int vmio_ml_backing_open(const char *api, const char *state_dir, int ramfs,
                         struct vmio_ml_backing *b);
/* Path of a lease's file. */
int vmio_ml_backing_path(const struct vmio_ml_backing *b, uint64_t lease_id, char *buf,
                         size_t n);
/* Create the lease's file of size bytes (fails if it exists). */
int vmio_ml_backing_create(const char *api, const struct vmio_ml_backing *b, uint64_t lease_id,
                           uint64_t size);
/* Bytes allocated to the file (what the borrower wrote), or -errno. */
int64_t vmio_ml_backing_resident(const struct vmio_ml_backing *b, uint64_t lease_id);
/* Unlink the file when no other process has it open (-EBUSY otherwise);
 * *freed = bytes it held. -ENOENT when it does not exist. */
int vmio_ml_backing_free(const char *api, const struct vmio_ml_backing *b, uint64_t lease_id,
                         uint64_t *freed);
/* Lease ids of the files present; *ids malloc'd. */
int vmio_ml_backing_list(const char *api, const struct vmio_ml_backing *b, uint64_t **ids,
                         size_t *n);
/* Unmount when no files are left (on stop). */
void vmio_ml_backing_close(const struct vmio_ml_backing *b);

#endif
