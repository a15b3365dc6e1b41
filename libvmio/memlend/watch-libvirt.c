/* libvirt guests for the lender's watcher (watch.h): a running guest that
 * swapped in since the previous sample (virDomainMemoryStats SWAP_IN, which
 * needs the balloon driver's stats period set) is memory pressure on this
 * host, so the lender lends nothing more and reclaims.
 *
 * libvirt is loaded (dlopen) only when a lender is configured with
 * libvirt guests: linked into libvmio, it would load its whole dependency
 * tree (GnuTLS, p11-kit, ...) into every program that uses the library,
 * QEMU's tools with the vmio driver included. The headers give the types. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "core/internal.h"
#include "memlend/watch.h"

#define MAX_GUESTS 1024
#define LIBVIRT_SONAME "libvirt.so.0"

/* The libvirt calls used here, resolved once. */
static struct {
    virConnectPtr (*open_ro)(const char *);
    int (*close)(virConnectPtr);
    int (*list)(virConnectPtr, virDomainPtr **, unsigned int);
    int (*free_dom)(virDomainPtr);
    int (*get_uuid)(virDomainPtr, unsigned char *);
    int (*mem_stats)(virDomainPtr, virDomainMemoryStatPtr, unsigned int, unsigned int);
    virErrorPtr (*last_error)(void);
    void (*set_error_func)(void *, virErrorFunc);
    char why[200];
    int ok;
} virt;
static pthread_once_t virt_once = PTHREAD_ONCE_INIT;

static void virt_load(void)
{
    void *h = dlopen(LIBVIRT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        strncpy(virt.why, e ? e : "dlopen failed", sizeof virt.why - 1);
        return;
    }
    struct { void **fn; const char *name; } syms[] = {
        { (void **)&virt.open_ro, "virConnectOpenReadOnly" },
        { (void **)&virt.close, "virConnectClose" },
        { (void **)&virt.list, "virConnectListAllDomains" },
        { (void **)&virt.free_dom, "virDomainFree" },
        { (void **)&virt.get_uuid, "virDomainGetUUID" },
        { (void **)&virt.mem_stats, "virDomainMemoryStats" },
        { (void **)&virt.last_error, "virGetLastError" },
        { (void **)&virt.set_error_func, "virSetErrorFunc" },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].fn = dlsym(h, syms[i].name);
        if (!*syms[i].fn) {
            snprintf(virt.why, sizeof virt.why, "%s lacks %s", LIBVIRT_SONAME, syms[i].name);
            return;   /* the handle stays open: harmless, and never retried */
        }
    }
    virt.ok = 1;
}

struct guest_seen {
    unsigned char uuid[VIR_UUID_BUFLEN];
    unsigned long long swap_in;
};

struct vmio_ml_guests {
    virConnectPtr conn;
    struct guest_seen *seen;
    size_t nseen;
};

static const char *virt_msg(void)
{
    virErrorPtr e = virt.last_error();
    return e && e->message ? e->message : "unknown libvirt error";
}

/* libvirt prints every error on stderr unless a handler is set; the
 * library never prints, and the messages reach the caller through
 * vmio_errmsg() anyway. The handler is process-wide: only a lender
 * configured with libvirt guests installs it. */
static void quiet(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

int vmio_ml_guests_open(const char *api, const char *uri, struct vmio_ml_guests **out)
{
    pthread_once(&virt_once, virt_load);
    if (!virt.ok)
        return vmio_set_error(api, ENOTSUP, "libvirt guests: cannot load %s: %s", LIBVIRT_SONAME,
                              virt.why);
    virt.set_error_func(NULL, quiet);
    struct vmio_ml_guests *g = calloc(1, sizeof *g);
    if (!g)
        return vmio_set_error(api, ENOMEM, "out of memory");
    g->conn = virt.open_ro(uri);
    if (!g->conn) {
        int r = vmio_set_error(api, EIO, "libvirt %s: %s", uri, virt_msg());
        free(g);
        return r;
    }
    *out = g;
    return 0;
}

int vmio_ml_guests_sample(const char *api, struct vmio_ml_guests *g, uint32_t *n,
                          uint32_t *swapping)
{
    virDomainPtr *doms = NULL;
    int nd = virt.list(g->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (nd < 0)
        return vmio_set_error(api, EIO, "libvirt: listing domains: %s", virt_msg());
    struct guest_seen *now = calloc((size_t)(nd ? nd : 1), sizeof *now);
    if (!now) {
        for (int i = 0; i < nd; i++)
            virt.free_dom(doms[i]);
        free(doms);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    uint32_t cnt = 0, swp = 0;
    for (int i = 0; i < nd && i < MAX_GUESTS; i++) {
        virDomainMemoryStatStruct st[VIR_DOMAIN_MEMORY_STAT_NR];
        int k = virt.mem_stats(doms[i], st, VIR_DOMAIN_MEMORY_STAT_NR, 0);
        unsigned char uuid[VIR_UUID_BUFLEN];
        if (k < 0 || virt.get_uuid(doms[i], uuid) < 0)
            continue; /* it may have just stopped */
        unsigned long long swap_in = 0;
        int have = 0;
        for (int j = 0; j < k; j++)
            if (st[j].tag == VIR_DOMAIN_MEMORY_STAT_SWAP_IN) {
                swap_in = st[j].val;
                have = 1;
            }
        if (!have)
            continue; /* no balloon statistics configured for this guest */
        memcpy(now[cnt].uuid, uuid, sizeof uuid);
        now[cnt].swap_in = swap_in;
        for (size_t s = 0; s < g->nseen; s++)
            if (memcmp(g->seen[s].uuid, uuid, sizeof uuid) == 0 &&
                swap_in > g->seen[s].swap_in)
                swp++;
        cnt++;
    }
    for (int i = 0; i < nd; i++)
        virt.free_dom(doms[i]);
    free(doms);
    free(g->seen);
    g->seen = now;
    g->nseen = cnt;
    *n = cnt;
    *swapping = swp;
    return 0;
}

void vmio_ml_guests_close(struct vmio_ml_guests *g)
{
    if (!g)
        return;
    if (g->conn)
        virt.close(g->conn);
    free(g->seen);
    free(g);
}
