/* A silent libxentoollog logger (core/xen-log.h). */
#include <stdarg.h>

/* Xen's public headers spell 8-byte alignment with a GNU attribute and
 * break on purpose under strict ISO C (see migrate/dirty-xen.c). */
#undef __STRICT_ANSI__
#include <xentoollog.h>

#include "core/xen-log.h"

static void quiet_vmessage(struct xentoollog_logger *l, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
    (void)l, (void)level, (void)errnoval, (void)context, (void)format, (void)al;
}

static void quiet_destroy(struct xentoollog_logger *l)
{
    (void)l;
}

static struct xentoollog_logger quiet_logger = {
    .vmessage = quiet_vmessage,
    .progress = NULL,
    .destroy = quiet_destroy,
};

struct xentoollog_logger *vmio_xen_quiet_logger(void)
{
    return &quiet_logger;
}
