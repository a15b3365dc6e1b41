/* libvmio core: version, feature discovery, errors and logging.
 *
 * Error convention (the whole library): every function that can fail
 * returns a negative errno value (-EINVAL, -EIO, ...) or NULL, and records a
 * human-readable message for the calling thread, prefixed with the name of
 * the API that failed ("vmio_open: ..."). vmio_errmsg() returns it.
 * Out-parameters are written only on success. Library code never prints;
 * install a log callback to see what it would have said.
 */
#ifndef VMIO_CORE_H
#define VMIO_CORE_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define VMIO_API __attribute__((visibility("default")))
#else
#define VMIO_API
#endif

#define VMIO_VERSION_MAJOR 0
#define VMIO_VERSION_MINOR 1
#define VMIO_VERSION_MICRO 0
#define VMIO_VERSION_NUMBER \
    ((VMIO_VERSION_MAJOR << 16) | (VMIO_VERSION_MINOR << 8) | VMIO_VERSION_MICRO)

/* The version of the library actually loaded (may differ from the headers). */
VMIO_API uint32_t vmio_version_number(void);
VMIO_API const char *vmio_version_string(void);

/* Optional components. Explicit values: they are part of the ABI. */
enum vmio_feature {
    VMIO_FEATURE_FILE = 1,       /* file:// backend (always) */
    VMIO_FEATURE_REMOTE = 2,     /* vmio:// client over TCP (always) */
    VMIO_FEATURE_SERVER = 3,     /* embedded vmiod server (always) */
    VMIO_FEATURE_RDMA = 4,       /* RDMA transport */
    VMIO_FEATURE_GFARM = 5,      /* gfarm:// backend */
    VMIO_FEATURE_LIBVIRT = 6,    /* libvirt group backend */
    VMIO_FEATURE_XEN = 7,        /* Xen backends */
    VMIO_FEATURE_CUDA = 8,       /* CUDA offload built (GPU may still be absent) */
    VMIO_FEATURE_HWLOC = 9,      /* hwloc placement */
    VMIO_FEATURE_MEMLEND_MANAGER = 10,  /* memory-lending manager (SQLite) */
    VMIO_FEATURE_MEMLEND_BORROWER = 11  /* vmio-swap's LVM driving (json-c) */
};

/* 1 if the feature was built in, 0 if not, -EINVAL for an unknown value. */
VMIO_API int vmio_supports(int feature);
/* Name of a feature ("rdma"), or NULL if unknown. */
VMIO_API const char *vmio_feature_name(int feature);

/* Message describing the calling thread's last failure, or "" if none.
 * Valid until the next libvmio call on this thread. Never NULL. */
VMIO_API const char *vmio_errmsg(void);
/* The errno (positive) that went with the last failure, 0 if none. */
VMIO_API int vmio_errno(void);

enum vmio_log_level {
    VMIO_LOG_ERROR = 0,
    VMIO_LOG_WARNING = 1,
    VMIO_LOG_INFO = 2,
    VMIO_LOG_DEBUG = 3
};

/* Called from any library thread; must be thread-safe and must not call
 * back into libvmio. */
typedef void (*vmio_log_fn)(void *opaque, int level, const char *msg);

/* Install (or, with fn == NULL, remove) the process-wide log callback.
 * Messages above max_level are not formatted at all. */
VMIO_API void vmio_set_log(vmio_log_fn fn, void *opaque, int max_level);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_CORE_H */
