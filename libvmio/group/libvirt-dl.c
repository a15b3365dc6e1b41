/* libvirt for the VM-group backends, loaded at run time: linked into
 * libvmio, libvirt.so would bring GnuTLS and the rest of its tree into
 * every program using the library. Loaded once per process and never
 * unloaded (the process may be threaded); the callers keep their own
 * table of resolved symbols. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "group/backend.h"

#define LIBVIRT_SONAME "libvirt.so.0"

static void *handle;
static char why[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    handle = dlopen(LIBVIRT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        snprintf(why, sizeof why, "%s", e ? e : "dlopen failed");
    }
}

void *vmio_libvirt_handle(const char *api)
{
    pthread_once(&once, load);
    if (!handle)
        vmio_set_error(api, ENOTSUP, "cannot load %s: %s", LIBVIRT_SONAME, why);
    return handle;
}

void *vmio_libvirt_sym(const char *api, const char *name)
{
    void *h = vmio_libvirt_handle(api);
    if (!h)
        return NULL;
    void *p = dlsym(h, name);
    if (!p)
        vmio_set_error(api, ENOTSUP, "%s lacks %s (libvirt too old?)", LIBVIRT_SONAME, name);
    return p;
}
