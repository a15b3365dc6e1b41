/* Optional log callback: the library never prints on its own. */
#include <pthread.h>
#include <stdio.h>

#include "core/internal.h"

static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static vmio_log_fn log_fn;
static void *log_opaque;
static int log_max = -1;

VMIO_API void vmio_set_log(vmio_log_fn fn, void *opaque, int max_level)
{
    pthread_rwlock_wrlock(&log_lock);
    log_fn = fn;
    log_opaque = opaque;
    log_max = fn ? max_level : -1;
    pthread_rwlock_unlock(&log_lock);
}

int vmio_log_enabled(int level)
{
    return level <= __atomic_load_n(&log_max, __ATOMIC_RELAXED);
}

void vmio_log(int level, const char *fmt, ...)
{
    if (!vmio_log_enabled(level))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_rwlock_rdlock(&log_lock);
    if (log_fn && level <= log_max)
        log_fn(log_opaque, level, msg);
    pthread_rwlock_unlock(&log_lock);
}
