/* Internal helpers shared by every libvmio module: error recording, logging,
 * small utilities. Not installed. */
#ifndef VMIO_CORE_INTERNAL_H
#define VMIO_CORE_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <vmio/core.h>

#if defined(__GNUC__)
#define VMIO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define VMIO_UNUSED __attribute__((unused))
#else
#define VMIO_PRINTF(a, b)
#define VMIO_UNUSED
#endif

#define VMIO_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VMIO_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VMIO_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Record the calling thread's last error and return -err (err > 0).
 * api is the public function name used as the message prefix. */
int vmio_set_error(const char *api, int err, const char *fmt, ...) VMIO_PRINTF(3, 4);
/* Same as vmio_set_error, appending ": strerror(err)". */
int vmio_set_error_errno(const char *api, int err, const char *fmt, ...) VMIO_PRINTF(3, 4);
/* Re-prefix an error already recorded by an inner call with a new API
 * name ("vmio_pread: " + inner message), return -err. */
int vmio_error_reprefix(const char *api, int err);
void vmio_clear_error(void);

/* Saved copy of a thread's error, to carry a failure across threads
 * (worker -> completion callback). */
struct vmio_error_copy {
    int err;
    char msg[256];
};
void vmio_error_save(struct vmio_error_copy *e);
void vmio_error_restore(const struct vmio_error_copy *e);

void vmio_log(int level, const char *fmt, ...) VMIO_PRINTF(2, 3);
int vmio_log_enabled(int level);

/* Argument validation at the public boundary. */
#define VMIO_CHECK_ARG(api, cond, err)                                        \
    do {                                                                      \
        if (!(cond))                                                          \
            return vmio_set_error(api, err, "invalid argument: %s", #cond);   \
    } while (0)

/* Monotonic clock in nanoseconds. */
uint64_t vmio_now_ns(void);

/* Full-length I/O on a stream fd, restarting on EINTR/short transfers.
 * Return 0, -errno, or -EPIPE on EOF. */
int vmio_read_full(int fd, void *buf, size_t len);
int vmio_write_full(int fd, const void *buf, size_t len);

/* Copy n bytes between a flat buffer and an iovec array, starting skip
 * bytes into the iovecs. */
struct iovec;
void vmio_iov_to_buf(void *dst, const struct iovec *iov, int iovcnt, size_t skip, size_t n);
void vmio_buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *src, size_t n);

/* A whole small file (procfs, sysfs attributes) into buf, NUL-terminated.
 * 0, -errno, or -EFBIG if it holds len - 1 bytes or more. No message. */
int vmio_read_small_file(const char *path, char *buf, size_t len);

/* Read a shared-secret file: rejects empty files and files others can read.
 * Trailing newlines are stripped. *out is malloc'd. */
int vmio_read_secret_file(const char *api, const char *path, uint8_t **out, size_t *len);

#endif /* VMIO_CORE_INTERNAL_H */
