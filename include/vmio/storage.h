/* libvmio storage API: open a VM image by URI, read and write it from many
 * threads at once, synchronously or through an event-loop friendly
 * asynchronous interface.
 *
 * URIs:
 *   /path/to/img, file:///path/to/img      local file (the embedded default)
 *   vmio://host[:port]/export/path?opt=v   a file served by vmiod
 *     options: secret-file=PATH, transport=tcp|rdma|auto, timeout=SECONDS,
 *     local=off|auto|on (same host: do the I/O on vmiod's open file)
 *
 * All functions follow the error convention of <vmio/core.h>.
 */
#ifndef VMIO_STORAGE_H
#define VMIO_STORAGE_H

#include <stdint.h>
#include <stddef.h>
#include <sys/uio.h>

#include <vmio/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default TCP port of vmiod. */
#define VMIO_DEFAULT_PORT 10810

typedef struct vmio_file vmio_file;

/* vmio_open() flags. */
#define VMIO_O_RDONLY 0x0u       /* read only (default) */
#define VMIO_O_RDWR 0x1u         /* read and write */
#define VMIO_O_CREATE 0x2u       /* create if missing (implies RDWR) */
#define VMIO_O_DIRECT 0x4u       /* bypass the page cache where the backend can */
#define VMIO_O_TRUNC 0x8u        /* truncate to 0 on open (implies RDWR) */
#define VMIO_O_EXCL 0x10u        /* with CREATE: fail if it exists */

/* Per-request flags for writes. */
#define VMIO_REQ_FUA 0x1u        /* durable before completion */
#define VMIO_REQ_MAY_TRIM 0x2u   /* write_zeroes may deallocate */

/* Optional settings for vmio_open_ex(). Zero-initialise, set struct_size
 * to sizeof(struct vmio_open_options), fill what you need. Fields added
 * later go at the end; the library reads only struct_size bytes. */
struct vmio_open_options {
    uint32_t struct_size;
    uint32_t flags_reserved;      /* must be 0 */
    const char *secret_file;      /* vmio://: shared secret (else URI option,
                                     else $VMIO_SECRET_FILE) */
    uint32_t connect_timeout_ms;  /* vmio://: 0 = 10000 */
    uint32_t reconnect_timeout_ms;/* vmio://: how long a lost connection is
                                     retried before requests fail; 0 = 30000 */
    uint32_t workers;             /* file://: threads serving the async API;
                                     0 = 4 */
    uint32_t reserved0;
    uint64_t create_size;         /* with VMIO_O_CREATE: size of a new file */
};

VMIO_API int vmio_open(const char *uri, unsigned flags, vmio_file **file);
VMIO_API int vmio_open_ex(const char *uri, unsigned flags,
                          const struct vmio_open_options *opts,
                          vmio_file **file);
/* Waits for in-flight requests, then frees. file may be NULL.
 * Returns 0 or the error of a final flush-free shutdown (never leaks). */
VMIO_API int vmio_close(vmio_file *file);

/* Synchronous I/O. Reads and writes are all-or-nothing: 0 on success
 * (every byte moved), negative errno otherwise. A read past the end of the
 * file fails with -EINVAL; so does a write past the end (use truncate). */
VMIO_API int vmio_pread(vmio_file *file, void *buf, size_t count, uint64_t offset);
VMIO_API int vmio_pwrite(vmio_file *file, const void *buf, size_t count,
                         uint64_t offset, unsigned req_flags);
VMIO_API int vmio_preadv(vmio_file *file, const struct iovec *iov, int iovcnt,
                         uint64_t offset);
VMIO_API int vmio_pwritev(vmio_file *file, const struct iovec *iov, int iovcnt,
                          uint64_t offset, unsigned req_flags);
VMIO_API int vmio_flush(vmio_file *file);
VMIO_API int vmio_discard(vmio_file *file, uint64_t offset, uint64_t length);
VMIO_API int vmio_write_zeroes(vmio_file *file, uint64_t offset, uint64_t length,
                               unsigned req_flags);
VMIO_API int vmio_get_size(vmio_file *file, uint64_t *size);
VMIO_API int vmio_truncate(vmio_file *file, uint64_t size);

/* Extent query (sparse awareness). Describes the run starting at offset:
 * *length gets its length (<= max_length), *type one of these. */
enum vmio_extent_type {
    VMIO_EXTENT_DATA = 0,
    VMIO_EXTENT_HOLE = 1   /* unallocated; reads as zeroes */
};
VMIO_API int vmio_block_status(vmio_file *file, uint64_t offset,
                               uint64_t max_length, uint64_t *length,
                               int *type);

/* Capabilities of an open file (bit set). */
#define VMIO_CAP_WRITE 0x1u
#define VMIO_CAP_FLUSH 0x2u
#define VMIO_CAP_DISCARD 0x4u
#define VMIO_CAP_WRITE_ZEROES 0x8u
#define VMIO_CAP_BLOCK_STATUS 0x10u
#define VMIO_CAP_FUA 0x20u
/* Flush on one handle makes writes of every handle on the same image
 * durable (NBD's multi-conn). */
#define VMIO_CAP_MULTI_CONN 0x40u
VMIO_API int vmio_get_caps(vmio_file *file, unsigned *caps);

/* Copy len bytes from src at src_off to dst at dst_off without moving
 * them through the caller, when the storage allows it: between two local
 * files this is copy_file_range(2), which file systems with reflinks
 * (XFS, Btrfs) turn into shared extents. Both ranges must lie inside
 * their files. Returns 0, -ENOTSUP when this pair of files cannot be
 * offloaded (copy with reads and writes instead), or another -errno.
 * flags must be 0. Since 0.2 (symbol version VMIO_0.2). */
VMIO_API int vmio_copy_range(vmio_file *src, uint64_t src_off, vmio_file *dst, uint64_t dst_off,
                             uint64_t len, unsigned flags);

/* Name of the backend serving the file ("file", "vmio"). Never NULL. */
VMIO_API const char *vmio_backend_name(vmio_file *file);

/* ---- Asynchronous interface ----
 *
 * Submit requests; each completes exactly once with its callback run from
 * vmio_aio_run_completions() on the caller's thread (never from inside the
 * submit call). vmio_aio_fd() returns a file descriptor (an epoll set) that
 * becomes readable whenever completions are pending or replies have
 * arrived: add it to your event loop (QEMU AioContext, epoll, poll) and call
 * vmio_aio_run_completions() when it fires; that call also reads the
 * replies of vmio:// requests, on your thread. It may fire with nothing to
 * do. Buffers must stay valid until the callback ran.
 *
 * result is 0 on success or a negative errno; in the callback,
 * vmio_errmsg() describes a failure.
 */
typedef void (*vmio_aio_cb)(void *opaque, int result);

VMIO_API int vmio_aio_preadv(vmio_file *file, const struct iovec *iov, int iovcnt,
                             uint64_t offset, vmio_aio_cb cb, void *opaque);
VMIO_API int vmio_aio_pwritev(vmio_file *file, const struct iovec *iov, int iovcnt,
                              uint64_t offset, unsigned req_flags,
                              vmio_aio_cb cb, void *opaque);
VMIO_API int vmio_aio_flush(vmio_file *file, vmio_aio_cb cb, void *opaque);
VMIO_API int vmio_aio_discard(vmio_file *file, uint64_t offset, uint64_t length,
                              vmio_aio_cb cb, void *opaque);
VMIO_API int vmio_aio_write_zeroes(vmio_file *file, uint64_t offset,
                                   uint64_t length, unsigned req_flags,
                                   vmio_aio_cb cb, void *opaque);
/* The fd to poll for readability. Stable for the life of the file (it
 * survives reconnects); owned by the file. */
VMIO_API int vmio_aio_fd(vmio_file *file);
/* Runs pending callbacks; returns how many ran (>= 0). */
VMIO_API int vmio_aio_run_completions(vmio_file *file);
/* Requests submitted and not yet reported through a callback. */
VMIO_API int vmio_aio_in_flight(vmio_file *file);

/* Counters of one open file (all monotonic). */
struct vmio_file_stats {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t reads, writes, flushes, discards, write_zeroes;
    uint64_t bytes_read, bytes_written;
    uint64_t reconnects;      /* vmio://: connections re-established */
    uint64_t retried;         /* vmio://: requests resent after reconnect */
    /* Since 0.2 (vmio://): how READ/WRITE data moved */
    uint64_t rdma_bytes;      /* one-sided RDMA into/out of registered memory */
    uint64_t bounce_bytes;    /* one-sided RDMA through a bounce buffer */
    uint64_t inline_bytes;    /* in the message stream (TCP, small I/O) */
    char transport[160];      /* "rdma", "tcp", "tcp (RDMA failed: ...)" */
    uint64_t regcache_hits;   /* rdma-regcache: buffers found registered */
    uint64_t regcache_misses; /* rdma-regcache: buffers registered on use */
};
VMIO_API int vmio_get_stats(vmio_file *file, struct vmio_file_stats *stats);

/* Tell the library that I/O buffers will come from [addr, addr+len) (a
 * VMM's guest RAM, a benchmark's buffers). Over RDMA the region is
 * registered with the device once, and the server then moves the data of
 * every request whose buffer lies inside it straight to or from this
 * memory (zero-copy); other buffers go through a bounce buffer. The
 * registration is kept across reconnects. -ENOTSUP: the backend needs no
 * registration (file://); -ENOMEM/-EPERM with a message naming
 * RLIMIT_MEMLOCK when the locked-memory limit is too small. Since 0.2. */
VMIO_API int vmio_register_memory(vmio_file *file, void *addr, size_t len);
/* Drop a registration made at addr, and any registration the
 * rdma-regcache URI option cached for memory containing addr (call it
 * before freeing such memory); no I/O may use it any more. -EBUSY when
 * requests in flight still use it. */
VMIO_API int vmio_unregister_memory(vmio_file *file, void *addr);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_STORAGE_H */
