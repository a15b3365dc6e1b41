/* The one error convention: negative errno returns plus a thread-local
 * message prefixed with the public API's name. */
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static _Thread_local struct vmio_error_copy last_error;

VMIO_PRINTF(4, 0)
static int vset(const char *api, int err, int add_strerror, const char *fmt, va_list ap)
{
    char tmp[sizeof last_error.msg];
    int n;

    if (err <= 0)
        err = EIO;
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (add_strerror) {
        char eb[128];
        const char *es = strerror_r(err, eb, sizeof eb);
        n = snprintf(last_error.msg, sizeof last_error.msg, "%s: %s: %s", api, tmp, es);
    } else {
        n = snprintf(last_error.msg, sizeof last_error.msg, "%s: %s", api, tmp);
    }
    (void)n;
    last_error.err = err;
    vmio_log(VMIO_LOG_DEBUG, "%s", last_error.msg);
    return -err;
}

int vmio_set_error(const char *api, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vset(api, err, 0, fmt, ap);
    va_end(ap);
    return r;
}

int vmio_set_error_errno(const char *api, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vset(api, err, 1, fmt, ap);
    va_end(ap);
    return r;
}

int vmio_error_reprefix(const char *api, int err)
{
    if (err < 0)
        err = -err;
    if (last_error.err == 0 || last_error.msg[0] == '\0')
        return vmio_set_error(api, err, "%s", strerror(err));
    /* Inner messages already start with an API name: replace it. */
    char tmp[sizeof last_error.msg];
    const char *colon = strstr(last_error.msg, ": ");
    const char *rest = colon ? colon + 2 : last_error.msg;
    snprintf(tmp, sizeof tmp, "%s", rest);
    return vmio_set_error(api, err, "%s", tmp);
}

void vmio_clear_error(void)
{
    last_error.err = 0;
    last_error.msg[0] = '\0';
}

void vmio_error_save(struct vmio_error_copy *e)
{
    *e = last_error;
}

void vmio_error_restore(const struct vmio_error_copy *e)
{
    last_error = *e;
}

VMIO_API const char *vmio_errmsg(void)
{
    return last_error.msg;
}

VMIO_API int vmio_errno(void)
{
    return last_error.err;
}
