/* The storage backend vtable. One file per backend (file.c, remote.c,
 * later gfarm.c); storage.c is the public entry code and the only caller.
 * Operations a backend leaves NULL are filled with -ENOTSUP stubs at
 * registration (backend.c), so call sites never test for NULL.
 *
 * Errors: a backend records its message with vmio_set_error() under its
 * own prefix ("file", "vmio") and returns -errno; storage.c re-prefixes it
 * with the public API name. */
#ifndef VMIO_STORAGE_BACKEND_H
#define VMIO_STORAGE_BACKEND_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vmio/storage.h>

#include "core/internal.h"
#include "core/uri.h"

enum vmio_op {
    VMIO_OP_READ = 1,
    VMIO_OP_WRITE = 2,
    VMIO_OP_FLUSH = 3,
    VMIO_OP_DISCARD = 4,
    VMIO_OP_WRITE_ZEROES = 5
};

/* One request travelling through a backend's native asynchronous path.
 * The backend calls req->complete(req, result) exactly once, from any
 * thread, after recording the error (if any) on that thread. */
struct vmio_req {
    int op;
    const struct iovec *iov;
    int iovcnt;
    size_t count;           /* READ/WRITE: total bytes of iov */
    uint64_t offset;
    uint64_t length;        /* DISCARD/WRITE_ZEROES */
    unsigned flags;         /* VMIO_REQ_* */
    void (*complete)(struct vmio_req *req, int result);
    void *owner;            /* for the completer */
};

struct vmio_backend_ops {
    uint32_t struct_size;   /* sizeof(struct vmio_backend_ops) when built */
    const char *name;       /* "file", "vmio" */
    const char *scheme;     /* URI scheme it serves */

    int (*open)(const struct vmio_uri *uri, unsigned flags,
                const struct vmio_open_options *opts, void **state);
    void (*close)(void *state);
    unsigned (*caps)(void *state);

    int (*preadv)(void *state, const struct iovec *iov, int iovcnt, uint64_t offset);
    int (*pwritev)(void *state, const struct iovec *iov, int iovcnt, uint64_t offset,
                   unsigned flags);
    int (*flush)(void *state);
    int (*discard)(void *state, uint64_t offset, uint64_t length);
    int (*write_zeroes)(void *state, uint64_t offset, uint64_t length, unsigned flags);
    int (*get_size)(void *state, uint64_t *size);
    int (*truncate)(void *state, uint64_t size);
    int (*block_status)(void *state, uint64_t offset, uint64_t max_length,
                        uint64_t *length, int *type);
    /* Native asynchronous submission. A backend without it (stub returns
     * -ENOTSUP) gets the storage layer's worker threads instead. */
    int (*submit)(void *state, struct vmio_req *req);
    /* Add backend counters (reconnects, retried). */
    void (*stats)(void *state, struct vmio_file_stats *st);
    /* Event-loop integration for native async backends: the storage layer
     * polls epfd on behalf of the user (vmio_aio_fd returns it); a backend
     * keeps its own readiness source (its socket) registered there and
     * writes efd when it changed it. progress() handles whatever input is
     * ready without blocking (wait = 0) or waits for at least some
     * (wait = 1); it returns how many requests it completed. */
    void (*attach_aio)(void *state, int epfd, int efd);
    int (*progress)(void *state, int wait);
    /* Name for vmio_backend_name() when it depends on the open file
     * (gfarm:// routed through a vmiod); NULL = the static name. */
    const char *(*describe)(void *state);
    /* Write out anything the backend buffered (write-behind); called by
     * vmio_close() before close, its error is vmio_close()'s result. */
    int (*finish)(void *state);
    /* Memory the caller will do I/O from/to (vmio_register_memory): the
     * RDMA path moves data straight into it. -ENOTSUP stub: nothing to
     * register for this backend. */
    int (*register_memory)(void *state, void *addr, size_t len);
    int (*unregister_memory)(void *state, void *addr);
};

extern const struct vmio_backend_ops vmio_backend_file;
/* The descriptor of a file-backend state that copy_file_range may use. */
int vmio_file_backend_fd(void *state);
extern const struct vmio_backend_ops vmio_backend_remote;
extern const struct vmio_backend_ops vmio_backend_gfarm;

/* Copy ops, filling every NULL with an -ENOTSUP stub. */
void vmio_backend_fill(struct vmio_backend_ops *dst, const struct vmio_backend_ops *src);
/* Backend for a URI scheme, or NULL. */
const struct vmio_backend_ops *vmio_backend_find(const char *scheme);

/* Internal constructors (server, tests). */
/* Wrap an open fd (ownership passes in, also on failure) as a file-backend
 * handle. flags: VMIO_O_RDWR / VMIO_O_DIRECT as used to open it. */
int vmio_file_from_fd(const char *api, int fd, unsigned flags, const char *name,
                      vmio_file **out);

/* The descriptor behind an open file-backend handle (the server's LOCAL
 * reply), or -ENOTSUP for other backends. No error is recorded. */
int vmio_file_local_fd(vmio_file *f);

/* file.c: backend state around an already open fd (fd owned on success). */
int vmio_file_backend_adopt(int fd, unsigned flags, const char *name, void **state);

static inline size_t vmio_iov_size(const struct iovec *iov, int n)
{
    size_t s = 0;
    for (int i = 0; i < n; i++)
        s += iov[i].iov_len;
    return s;
}

#endif
