/* The "xen" VM-group backend: Xen's own libxenctrl and libxenstore, in
 * dom0, without libxl or libvirt.
 *
 *   - dedicated CPUs: one cpupool per group ("vmio-<group>") with its own
 *     scheduler (credit or credit2); its CPUs come from Pool-0 and go back
 *     there. The pool's name is written where libxl keeps cpupool names
 *     (/local/pool/<id>/name in xenstore), so `xl cpupool-list` shows it;
 *   - vCPU pinning: hard affinity (xc_vcpu_setaffinity);
 *   - weight and cap: the credit or credit2 parameters of the domain, as
 *     its pool's scheduler has them;
 *   - membership: /local/domain/<domid>/vmio/group = "<id> <name>".
 *
 * Domains are found by name (/local/domain/<domid>/name, what xl and
 * xen-init-dom0 write). Two rules of Xen shape the setters: moving a
 * domain to another cpupool resets its vCPUs' hard affinity and its
 * scheduler parameters (they belong to the pool's scheduler), and a vCPU
 * cannot be pinned outside its domain's pool (EINVAL). So pool_move puts
 * back the pins, weight and cap the domain had where the new pool allows
 * them, and set_vcpu_pin onto the CPUs of a group's pool (vmio-*) moves
 * the domain there first: the result does not depend on the order in
 * which the core calls them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/backend.h"

/* Xen's public headers spell 8-byte alignment with a GNU attribute and
 * break on purpose under strict ISO C (see migrate/dirty-xen.c). */
#undef __STRICT_ANSI__
#include <xenctrl.h>
#include <xenstore.h>

#include "core/xen-log.h"

#define API_CONNECT "vmio_group_connect"
#define API_APPLY "vmio_group_apply"
#define API_DESTROY "vmio_group_destroy"

/* Domains scanned per hypercall when looking one up by name. */
#define XEN_DOM_BATCH 64
#define XEN_POOL0 0u

struct xen_priv {
    xc_interface *xch;
    struct xs_handle *xsh;
    int mapsize;              /* bytes of an xc_cpumap_t */
    struct vmio_cpuset host;  /* the host's online CPUs */
};

static struct xen_priv *priv(struct vmio_group_conn *c)
{
    return c->priv;
}

static int err_or(int fallback)
{
    return errno > 0 ? errno : fallback;
}

/* ---- open, close, capabilities ---------------------------------------- */

static void xen_close(struct vmio_group_conn *c)
{
    struct xen_priv *p = priv(c);
    if (!p)
        return;
    if (p->xsh)
        xs_close(p->xsh);
    if (p->xch)
        xc_interface_close(p->xch);
    free(p);
    c->priv = NULL;
}

static int xen_open(struct vmio_group_conn *c, const struct vmio_group_connect_opts *o)
{
    (void)o;
    struct xen_priv *p = calloc(1, sizeof *p);
    if (!p)
        return vmio_set_error(API_CONNECT, ENOMEM, "out of memory");
    c->priv = p;
    errno = 0;
    p->xch = xc_interface_open(vmio_xen_quiet_logger(), vmio_xen_quiet_logger(), 0);
    if (!p->xch) {
        int e = err_or(ENODEV);
        xen_close(c);
        return vmio_set_error_errno(API_CONNECT, e,
                                    "backend 'xen': cannot open libxenctrl (not a Xen dom0, or not root?)");
    }
    /* Online CPUs: those with a topology ("all CPUs" when unpinning). */
    errno = 0;
    unsigned n = 0;
    xc_cputopo_t *topo = NULL;
    if (xc_cputopoinfo(p->xch, &n, NULL) == 0 && n > 0 && (topo = calloc(n, sizeof *topo)) &&
        xc_cputopoinfo(p->xch, &n, topo) == 0) {
        for (unsigned i = 0; i < n && i < VMIO_CPUSET_MAX; i++)
            if (topo[i].core != XEN_INVALID_CORE_ID)
                vmio_cpuset_set(&p->host, i);
    }
    free(topo);
    if (vmio_cpuset_empty(&p->host)) {
        int e = err_or(EIO);
        xen_close(c);
        return vmio_set_error_errno(API_CONNECT, e, "backend 'xen': xc_cputopoinfo");
    }
    p->mapsize = xc_get_cpumap_size(p->xch);
    if (p->mapsize <= 0) {
        xen_close(c);
        return vmio_set_error(API_CONNECT, EIO, "backend 'xen': xc_get_cpumap_size failed");
    }
    errno = 0;
    p->xsh = xs_open(0);
    if (!p->xsh) {
        int e = err_or(ENOENT);
        xen_close(c);
        return vmio_set_error_errno(API_CONNECT, e,
                                    "backend 'xen': cannot connect to xenstore (is xenstored running?)");
    }
    snprintf(c->hypervisor, sizeof c->hypervisor, "Xen");
    c->default_pin = VMIO_GROUP_PIN_STRICT;
    return 0;
}

static uint64_t xen_capabilities(struct vmio_group_conn *c)
{
    (void)c;
    return VMIO_GROUP_CAP_DEDICATED_CPUS | VMIO_GROUP_CAP_POOL_SCHEDULER | VMIO_GROUP_CAP_WEIGHT |
           VMIO_GROUP_CAP_CAP | VMIO_GROUP_CAP_PIN_STRICT | VMIO_GROUP_CAP_PIN_LOOSE |
           VMIO_GROUP_CAP_METADATA | VMIO_GROUP_CAP_LIVE;
}

static const char *xen_cap_note(struct vmio_group_conn *c, uint64_t cap)
{
    (void)c;
    switch (cap) {
    case VMIO_GROUP_CAP_DEDICATED_CPUS:
        return "A cpupool per group (vmio-<group>) whose CPUs are taken from Pool-0 and given back when the group is destroyed.";
    case VMIO_GROUP_CAP_POOL_SCHEDULER:
        return "Each group's cpupool runs its own scheduler instance, credit or credit2 (policy scheduler).";
    case VMIO_GROUP_CAP_WEIGHT:
        return "The credit or credit2 weight of each member domain, as its cpupool's scheduler has it.";
    case VMIO_GROUP_CAP_CAP:
        return "The credit or credit2 cap of each member domain, in percent of one physical CPU.";
    case VMIO_GROUP_CAP_PIN_STRICT:
        return "Hard vCPU affinity to one physical CPU per vCPU (xc_vcpu_setaffinity): the 1:1 pinning Xen needs for HPC.";
    case VMIO_GROUP_CAP_PIN_LOOSE:
        return "Hard vCPU affinity to the group's CPU set (xc_vcpu_setaffinity).";
    case VMIO_GROUP_CAP_NUMA_MEMORY:
        return "Xen places a domain's memory when it is built; a running domain's memory cannot be moved to other NUMA nodes (set it with the domain's configuration before it starts).";
    case VMIO_GROUP_CAP_EMULATOR_PIN:
        return "PV and PVH domains have no emulator threads to pin (an HVM domain's device model runs in dom0 or a stub domain, outside this backend).";
    case VMIO_GROUP_CAP_SHARED_MEMORY:
        return "Grant-table sharing between domains needs cooperating drivers in every guest; there is no hypervisor-side group memory to attach.";
    case VMIO_GROUP_CAP_METADATA:
        return "Membership is written to xenstore (/local/domain/<domid>/vmio/group); it disappears with the domain, so the state directory is the durable record.";
    case VMIO_GROUP_CAP_HOSTDEV:
        return "PCI passthrough is done through libvirt (vmio_hostdev_* with a libvirt connection), not through this backend.";
    case VMIO_GROUP_CAP_LIVE:
        return "Pools, pins, weights and caps are changed on running domains.";
    case VMIO_GROUP_CAP_COSCHEDULE:
        return "Xen's credit scheduler has no gang scheduling of different domains; the group-aware credit scheduler of the VM-group work needed a patched hypervisor.";
    default:
        return NULL;
    }
}

/* ---- topology --------------------------------------------------------- */

static int xen_topology(struct vmio_group_conn *c, struct vmio_topo *out)
{
    struct xen_priv *p = priv(c);
    unsigned n = 0;
    if (xc_cputopoinfo(p->xch, &n, NULL) < 0)
        return vmio_set_error_errno(API_APPLY, err_or(EIO), "xc_cputopoinfo");
    xc_cputopo_t *topo = calloc(n ? n : 1, sizeof *topo);
    if (!topo)
        return vmio_set_error(API_APPLY, ENOMEM, "out of memory");
    if (xc_cputopoinfo(p->xch, &n, topo) < 0) {
        int e = err_or(EIO);
        free(topo);
        return vmio_set_error_errno(API_APPLY, e, "xc_cputopoinfo");
    }
    struct vmio_topo t;
    memset(&t, 0, sizeof t);
    t.cpus = calloc(n ? n : 1, sizeof *t.cpus);
    /* (socket, core) pairs seen so far: Xen's core ids repeat per socket. */
    uint64_t *pairs = calloc(n ? n : 1, sizeof *pairs);
    if (!t.cpus || !pairs) {
        free(topo);
        free(t.cpus);
        free(pairs);
        return vmio_set_error(API_APPLY, ENOMEM, "out of memory");
    }
    size_t npairs = 0;
    int maxnode = -1, maxsock = -1;
    for (unsigned i = 0; i < n && i < VMIO_CPUSET_MAX; i++) {
        if (topo[i].core == XEN_INVALID_CORE_ID)
            continue; /* offline or absent */
        uint64_t pair = (uint64_t)topo[i].socket << 32 | topo[i].core;
        size_t k = 0;
        while (k < npairs && pairs[k] != pair)
            k++;
        if (k == npairs)
            pairs[npairs++] = pair;
        struct vmio_topo_cpu *cpu = &t.cpus[t.ncpus++];
        cpu->id = (int)i;
        cpu->core = (int)k;
        cpu->socket = topo[i].socket == XEN_INVALID_SOCKET_ID ? 0 : (int)topo[i].socket;
        cpu->node = topo[i].node == XEN_INVALID_NODE_ID ? 0 : (int)topo[i].node;
        if (cpu->node > maxnode)
            maxnode = cpu->node;
        if (cpu->socket > maxsock)
            maxsock = cpu->socket;
    }
    free(topo);
    free(pairs);
    t.nnodes = maxnode + 1 > 0 ? maxnode + 1 : 1;
    t.nsockets = maxsock + 1 > 0 ? maxsock + 1 : 1;
    t.node_mem = calloc((size_t)t.nnodes, sizeof *t.node_mem);
    if (!t.node_mem) {
        free(t.cpus);
        return vmio_set_error(API_APPLY, ENOMEM, "out of memory");
    }
    /* Node memory is informative (placement warnings): a failure here
     * leaves it unknown (0). */
    unsigned nn = 0;
    if (xc_numainfo(p->xch, &nn, NULL, NULL) == 0 && nn > 0) {
        xc_meminfo_t *mi = calloc(nn, sizeof *mi);
        uint32_t *dist = calloc((size_t)nn * nn, sizeof *dist);
        if (mi && dist && xc_numainfo(p->xch, &nn, mi, dist) == 0) {
            for (unsigned i = 0; i < nn && (int)i < t.nnodes; i++)
                t.node_mem[i] = mi[i].memsize == XEN_INVALID_MEM_SZ ? 0 : mi[i].memsize;
        }
        free(mi);
        free(dist);
    }
    *out = t;
    return 0;
}

/* ---- domains ---------------------------------------------------------- */

static char *xs_get(struct xen_priv *p, const char *path)
{
    unsigned len = 0;
    return xs_read(p->xsh, XBT_NULL, path, &len); /* NUL-terminated */
}

static const char *sched_name(int sched)
{
    switch (sched) {
    case XEN_SCHEDULER_CREDIT: return "credit";
    case XEN_SCHEDULER_CREDIT2: return "credit2";
    case XEN_SCHEDULER_ARINC653: return "arinc653";
    case XEN_SCHEDULER_RTDS: return "rtds";
    case XEN_SCHEDULER_NULL: return "null";
    default: return "unknown";
    }
}

static void host_cpus(const struct xen_priv *p, struct vmio_cpuset *s)
{
    *s = p->host;
}

static void set_text(const struct vmio_cpuset *s, char *buf, size_t len)
{
    if (vmio_cpuset_format(s, buf, len) >= (int)len && len > 4)
        snprintf(buf + len - 4, 4, "...");
}

/* The domain called name: its info. -ENOENT with a message if none. */
static int find_domain(struct xen_priv *p, const char *api, const char *name,
                       xc_domaininfo_t *out)
{
    xc_domaininfo_t info[XEN_DOM_BATCH];
    uint32_t next = 0;
    for (;;) {
        int n = xc_domain_getinfolist(p->xch, next, XEN_DOM_BATCH, info);
        if (n < 0)
            return vmio_set_error_errno(api, err_or(EIO), "xc_domain_getinfolist");
        for (int i = 0; i < n; i++) {
            if (info[i].flags & XEN_DOMINF_dying)
                continue;
            char path[64];
            snprintf(path, sizeof path, "/local/domain/%u/name", (unsigned)info[i].domain);
            char *dn = xs_get(p, path);
            int match = dn && strcmp(dn, name) == 0;
            free(dn);
            if (match) {
                *out = info[i];
                return 0;
            }
        }
        if (n < XEN_DOM_BATCH)
            break;
        next = (uint32_t)info[n - 1].domain + 1;
    }
    return vmio_set_error(api, ENOENT, "no Xen domain named '%s'", name);
}

static unsigned dom_vcpus(const xc_domaininfo_t *di)
{
    return di->max_vcpu_id == XEN_INVALID_MAX_VCPU_ID ? 0 : di->max_vcpu_id + 1;
}

/* Every domain that has a name, dom0 included. */
static int xen_vm_list(struct vmio_group_conn *c, char ***names, size_t *count)
{
    struct xen_priv *p = priv(c);
    xc_domaininfo_t info[XEN_DOM_BATCH];
    char **out = NULL;
    size_t n = 0, cap = 0;
    uint32_t next = 0;
    int rc = 0;
    for (;;) {
        int got = xc_domain_getinfolist(p->xch, next, XEN_DOM_BATCH, info);
        if (got < 0) {
            rc = vmio_set_error_errno(API_APPLY, err_or(EIO), "xc_domain_getinfolist");
            goto fail;
        }
        for (int i = 0; i < got; i++) {
            if (info[i].flags & XEN_DOMINF_dying)
                continue;
            char path[64];
            snprintf(path, sizeof path, "/local/domain/%u/name", (unsigned)info[i].domain);
            char *dn = xs_get(p, path);
            if (!dn)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                char **t = realloc(out, ncap * sizeof *t);
                if (!t) {
                    free(dn);
                    rc = vmio_set_error(API_APPLY, ENOMEM, "out of memory");
                    goto fail;
                }
                out = t;
                cap = ncap;
            }
            out[n++] = dn;
        }
        if (got < XEN_DOM_BATCH)
            break;
        next = (uint32_t)info[got - 1].domain + 1;
    }
    *names = out;
    *count = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        free(out[i]);
    free(out);
    return rc;
}

/* ---- cpupools: lookups ------------------------------------------------- */

/* A cpupool's name as xl shows it: what libxl keeps in xenstore
 * (/local/pool/<id>/name), Pool-0 for pool 0 without one, and
 * "cpupool-<id>" for a pool nobody named. */
static void pool_name(struct xen_priv *p, uint32_t poolid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/local/pool/%u/name", (unsigned)poolid);
    char *n = xs_get(p, path);
    if (n)
        snprintf(buf, len, "%s", n);
    else if (poolid == XEN_POOL0)
        snprintf(buf, len, "Pool-0");
    else
        snprintf(buf, len, "cpupool-%u", (unsigned)poolid);
    free(n);
}

/* Scheduler (XEN_SCHEDULER_*) and CPUs of cpupool poolid; -errno. */
static int pool_info(struct xen_priv *p, const char *api, uint32_t poolid, int *sched,
                     struct vmio_cpuset *cpus)
{
    errno = 0;
    xc_cpupoolinfo_t *pi = xc_cpupool_getinfo(p->xch, poolid);
    if (!pi || pi->cpupool_id != poolid) {
        int e = pi ? ENOENT : err_or(ENOENT);
        if (pi)
            xc_cpupool_infofree(p->xch, pi);
        return vmio_set_error_errno(api, e, "cpupool %u", (unsigned)poolid);
    }
    if (sched)
        *sched = (int)pi->sched_id;
    if (cpus)
        vmio_cpuset_from_map(cpus, pi->cpumap, (size_t)p->mapsize);
    xc_cpupool_infofree(p->xch, pi);
    return 0;
}

/* Find the cpupool called name: its info (free with xc_cpupool_infofree),
 * or NULL if there is none; -errno on error. */
static int pool_find(struct xen_priv *p, const char *api, const char *name, xc_cpupoolinfo_t **out)
{
    *out = NULL;
    uint32_t next = 0;
    for (;;) {
        errno = 0;
        xc_cpupoolinfo_t *pi = xc_cpupool_getinfo(p->xch, next);
        if (!pi) {
            if (errno == ENOENT || errno == 0)
                return 0;
            return vmio_set_error_errno(api, errno, "xc_cpupool_getinfo");
        }
        char n[128];
        pool_name(p, pi->cpupool_id, n, sizeof n);
        if (strcmp(n, name) == 0) {
            *out = pi;
            return 0;
        }
        next = pi->cpupool_id + 1;
        xc_cpupool_infofree(p->xch, pi);
    }
}

/* Which pool holds cpu: its id, or -1 if the CPU is in none (free). */
static long cpu_owner(struct xen_priv *p, unsigned cpu)
{
    uint32_t next = 0;
    for (;;) {
        xc_cpupoolinfo_t *pi = xc_cpupool_getinfo(p->xch, next);
        if (!pi)
            return -1;
        long id = pi->cpupool_id;
        int has = cpu / 8 < (unsigned)p->mapsize && (pi->cpumap[cpu / 8] >> (cpu % 8) & 1);
        next = pi->cpupool_id + 1;
        xc_cpupool_infofree(p->xch, pi);
        if (has)
            return id;
    }
}

/* ---- scheduler parameters ---------------------------------------------- */

static int sched_has_weight(int sched)
{
    return sched == XEN_SCHEDULER_CREDIT || sched == XEN_SCHEDULER_CREDIT2;
}

/* A domain's credit or credit2 weight and cap; -ENOTSUP for other
 * schedulers. */
static int sched_get(struct xen_priv *p, const char *api, const char *vm, uint32_t domid, int sched,
                     unsigned *weight, unsigned *cap)
{
    if (sched == XEN_SCHEDULER_CREDIT) {
        struct xen_domctl_sched_credit sc;
        memset(&sc, 0, sizeof sc);
        if (xc_sched_credit_domain_get(p->xch, domid, &sc) < 0)
            return vmio_set_error_errno(api, err_or(EIO), "xc_sched_credit_domain_get('%s')", vm);
        *weight = sc.weight;
        *cap = sc.cap;
        return 0;
    }
    if (sched == XEN_SCHEDULER_CREDIT2) {
        struct xen_domctl_sched_credit2 sc;
        memset(&sc, 0, sizeof sc);
        if (xc_sched_credit2_domain_get(p->xch, domid, &sc) < 0)
            return vmio_set_error_errno(api, err_or(EIO), "xc_sched_credit2_domain_get('%s')", vm);
        *weight = sc.weight;
        *cap = sc.cap;
        return 0;
    }
    return vmio_set_error(api, ENOTSUP,
                          "'%s' is in a cpupool run by the %s scheduler: weight and cap need credit or credit2",
                          vm, sched_name(sched));
}

static int sched_set(struct xen_priv *p, const char *api, const char *vm, uint32_t domid, int sched,
                     unsigned weight, unsigned cap)
{
    int r = 0;
    if (sched == XEN_SCHEDULER_CREDIT) {
        struct xen_domctl_sched_credit sc = { .weight = (uint16_t)weight, .cap = (uint16_t)cap };
        r = xc_sched_credit_domain_set(p->xch, domid, &sc);
    } else if (sched == XEN_SCHEDULER_CREDIT2) {
        struct xen_domctl_sched_credit2 sc = { .weight = (uint16_t)weight, .cap = (uint16_t)cap };
        r = xc_sched_credit2_domain_set(p->xch, domid, &sc);
    } else {
        return vmio_set_error(api, ENOTSUP,
                              "'%s' is in a cpupool run by the %s scheduler: weight and cap need credit or credit2",
                              vm, sched_name(sched));
    }
    if (r < 0)
        return vmio_set_error_errno(api, err_or(EIO), "xc_sched_%s_domain_set('%s', weight %u, cap %u)",
                                    sched_name(sched), vm, weight, cap);
    return 0;
}

/* ---- one domain -------------------------------------------------------- */

static int get_pin(struct xen_priv *p, const char *api, const char *vm, uint32_t domid,
                   unsigned vcpu, xc_cpumap_t hard, xc_cpumap_t soft, struct vmio_cpuset *out)
{
    memset(hard, 0, (size_t)p->mapsize);
    memset(soft, 0, (size_t)p->mapsize);
    if (xc_vcpu_getaffinity(p->xch, domid, (int)vcpu, hard, soft, XEN_VCPUAFFINITY_HARD) < 0)
        return vmio_set_error_errno(api, err_or(EIO), "xc_vcpu_getaffinity('%s', vCPU %u)", vm, vcpu);
    /* Limited to the host's CPUs: "unpinned" reads back as all of them. */
    struct vmio_cpuset host;
    host_cpus(p, &host);
    vmio_cpuset_from_map(out, hard, (size_t)p->mapsize);
    vmio_cpuset_and(out, &host);
    return 0;
}

static int set_pin(struct xen_priv *p, const char *api, const char *vm, uint32_t domid,
                   unsigned vcpu, xc_cpumap_t hard, xc_cpumap_t soft, const struct vmio_cpuset *cpus)
{
    memset(soft, 0, (size_t)p->mapsize);
    vmio_cpuset_to_map(cpus, hard, (size_t)p->mapsize);
    if (xc_vcpu_setaffinity(p->xch, domid, (int)vcpu, hard, soft, XEN_VCPUAFFINITY_HARD) < 0) {
        char list[256];
        set_text(cpus, list, sizeof list);
        return vmio_set_error_errno(api, err_or(EIO), "xc_vcpu_setaffinity('%s', vCPU %u, CPUs %s)", vm,
                                    vcpu, list);
    }
    return 0;
}

static int xen_vm_get(struct vmio_group_conn *c, const char *vm, struct vmio_group_vm *out)
{
    struct xen_priv *p = priv(c);
    xc_domaininfo_t di;
    int rc = find_domain(p, API_APPLY, vm, &di);
    if (rc < 0)
        return rc;
    uint32_t domid = di.domain;
    unsigned nv = dom_vcpus(&di);
    if (nv > VMIO_GROUP_MAX_VCPUS)
        return vmio_set_error(API_APPLY, E2BIG, "domain '%s' has %u vCPUs (at most %d)", vm, nv,
                              VMIO_GROUP_MAX_VCPUS);

    struct vmio_group_vm *v = calloc(1, sizeof *v);
    xc_cpumap_t hard = xc_cpumap_alloc(p->xch), soft = xc_cpumap_alloc(p->xch);
    if (!v || !hard || !soft) {
        rc = vmio_set_error(API_APPLY, ENOMEM, "out of memory");
        goto out;
    }
    snprintf(v->name, sizeof v->name, "%s", vm);
    /* Paused domains count as running: everything here applies to them. */
    v->running = !(di.flags & XEN_DOMINF_shutdown);
    v->nvcpus = nv;
    v->mem_bytes = (uint64_t)di.tot_pages * XC_PAGE_SIZE;
    for (unsigned i = 0; i < nv; i++)
        if ((rc = get_pin(p, API_APPLY, vm, domid, i, hard, soft, &v->vcpu_pin[i])) < 0)
            goto out;

    int sched = 0;
    if ((rc = pool_info(p, API_APPLY, di.cpupool, &sched, NULL)) < 0)
        goto out;
    if (sched_has_weight(sched) &&
        (rc = sched_get(p, API_APPLY, vm, domid, sched, &v->weight, &v->cap)) < 0)
        goto out;
    if (di.cpupool != XEN_POOL0)
        pool_name(p, di.cpupool, v->pool, sizeof v->pool);

    char path[96];
    snprintf(path, sizeof path, "/local/domain/%u/vmio/group", (unsigned)domid);
    char *tag = xs_get(p, path);
    if (tag) {
        char *end = NULL;
        unsigned long id = strtoul(tag, &end, 10);
        if (end != tag && *end == ' ' && id > 0 && id <= UINT32_MAX) {
            v->tag_id = (uint32_t)id;
            snprintf(v->tag_name, sizeof v->tag_name, "%s", end + 1);
        }
        free(tag);
    }
    *out = *v;
    rc = 0;
out:
    free(hard);
    free(soft);
    free(v);
    return rc;
}

/* Move a domain to cpupool 'to'. Xen resets every vCPU's hard affinity and
 * the domain's scheduler parameters when it changes pool; what it had is
 * put back where the new pool allows it: the pins that meet the new pool's
 * CPUs, the weight and cap when both pools run credit or credit2. */
static int move_domain(struct xen_priv *p, const char *api, const char *vm, const xc_domaininfo_t *di,
                       uint32_t to)
{
    if (di->cpupool == to)
        return 0;
    unsigned nv = dom_vcpus(di), weight = 0, cap = 0;
    int from_sched = 0, to_sched = 0, rc;
    struct vmio_cpuset host, to_cpus;
    host_cpus(p, &host);
    if ((rc = pool_info(p, api, di->cpupool, &from_sched, NULL)) < 0 ||
        (rc = pool_info(p, api, to, &to_sched, &to_cpus)) < 0)
        return rc;
    if (sched_has_weight(from_sched) &&
        (rc = sched_get(p, api, vm, di->domain, from_sched, &weight, &cap)) < 0)
        return rc;
    struct vmio_cpuset *pins = calloc(nv ? nv : 1, sizeof *pins);
    xc_cpumap_t hard = xc_cpumap_alloc(p->xch), soft = xc_cpumap_alloc(p->xch);
    if (!pins || !hard || !soft) {
        rc = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < nv; i++)
        if ((rc = get_pin(p, api, vm, di->domain, i, hard, soft, &pins[i])) < 0)
            goto out;
    if (xc_cpupool_movedomain(p->xch, to, di->domain) < 0) {
        char n[128];
        pool_name(p, to, n, sizeof n);
        rc = vmio_set_error_errno(api, err_or(EIO), "xc_cpupool_movedomain('%s' to %s)", vm, n);
        goto out;
    }
    for (unsigned i = 0; i < nv; i++) {
        struct vmio_cpuset meet = pins[i];
        vmio_cpuset_and(&meet, &to_cpus);
        if (vmio_cpuset_equal(&pins[i], &host) || vmio_cpuset_empty(&meet))
            continue;
        if ((rc = set_pin(p, api, vm, di->domain, i, hard, soft, &pins[i])) < 0)
            goto out;
    }
    if (sched_has_weight(from_sched) && sched_has_weight(to_sched) && weight)
        rc = sched_set(p, api, vm, di->domain, to_sched, weight, cap);
out:
    free(pins);
    free(hard);
    free(soft);
    return rc;
}

/* ---- setters ---------------------------------------------------------- */

/* Xen pins a vCPU only within its domain's cpupool. CPUs that all belong
 * to a group's pool (vmio-*) mean the domain is joining that group: it is
 * moved there first. Anything else outside its pool is -EINVAL. */
static int xen_set_vcpu_pin(struct vmio_group_conn *c, const char *vm, unsigned vcpu,
                            const struct vmio_cpuset *cpus)
{
    struct xen_priv *p = priv(c);
    xc_domaininfo_t di;
    int rc = find_domain(p, API_APPLY, vm, &di);
    if (rc < 0)
        return rc;
    if (vmio_cpuset_empty(cpus))
        return vmio_set_error(API_APPLY, EINVAL, "vCPU %u of '%s': empty CPU set", vcpu, vm);
    if (vcpu >= dom_vcpus(&di))
        return vmio_set_error(API_APPLY, EINVAL, "'%s' has no vCPU %u", vm, vcpu);
    struct vmio_cpuset pool_cpus, meet = *cpus;
    if ((rc = pool_info(p, API_APPLY, di.cpupool, NULL, &pool_cpus)) < 0)
        return rc;
    vmio_cpuset_and(&meet, &pool_cpus);
    if (vmio_cpuset_empty(&meet)) {
        long owner = -2;
        for (int cpu = vmio_cpuset_next(cpus, 0); cpu >= 0; cpu = vmio_cpuset_next(cpus, (unsigned)cpu + 1)) {
            long o = cpu_owner(p, (unsigned)cpu);
            owner = owner == -2 || owner == o ? o : -1;
        }
        char pn[128] = "", list[256], cur[128];
        if (owner > 0)
            pool_name(p, (uint32_t)owner, pn, sizeof pn);
        if (owner <= 0 || strncmp(pn, "vmio-", 5) != 0) {
            set_text(cpus, list, sizeof list);
            pool_name(p, di.cpupool, cur, sizeof cur);
            return vmio_set_error(API_APPLY, EINVAL,
                                  "vCPU %u of '%s': CPUs %s are outside its cpupool %s (Xen pins vCPUs within their domain's cpupool)",
                                  vcpu, vm, list, cur);
        }
        if ((rc = move_domain(p, API_APPLY, vm, &di, (uint32_t)owner)) < 0)
            return rc;
    }
    xc_cpumap_t hard = xc_cpumap_alloc(p->xch), soft = xc_cpumap_alloc(p->xch);
    if (!hard || !soft)
        rc = vmio_set_error(API_APPLY, ENOMEM, "out of memory");
    else
        rc = set_pin(p, API_APPLY, vm, di.domain, vcpu, hard, soft, cpus);
    free(hard);
    free(soft);
    return rc;
}

/* Set the weight (which 0) or the cap (which 1) in the domain's pool's
 * scheduler, keeping the other parameter. */
static int set_sched_param(struct vmio_group_conn *c, const char *vm, int which, unsigned value)
{
    struct xen_priv *p = priv(c);
    const char *what = which ? "cap" : "weight";
    xc_domaininfo_t di;
    int rc = find_domain(p, API_APPLY, vm, &di);
    if (rc < 0)
        return rc;
    if (value > UINT16_MAX || (which == 0 && value == 0))
        return vmio_set_error(API_APPLY, EINVAL, "%s %u for '%s': Xen takes %s", what, value, vm,
                              which ? "0-65535" : "1-65535");
    int sched = 0;
    if ((rc = pool_info(p, API_APPLY, di.cpupool, &sched, NULL)) < 0)
        return rc;
    unsigned w = 0, cap = 0;
    if ((rc = sched_get(p, API_APPLY, vm, di.domain, sched, &w, &cap)) < 0)
        return rc;
    if (which)
        cap = value;
    else
        w = value;
    return sched_set(p, API_APPLY, vm, di.domain, sched, w, cap);
}

static int xen_set_weight(struct vmio_group_conn *c, const char *vm, unsigned weight)
{
    if (weight == 0)
        return 0; /* none known (a scheduler without weights): nothing to put back */
    return set_sched_param(c, vm, 0, weight);
}

static int xen_set_cap(struct vmio_group_conn *c, const char *vm, unsigned cap)
{
    return set_sched_param(c, vm, 1, cap);
}

static int xen_set_tag(struct vmio_group_conn *c, const char *vm, uint32_t id, const char *group)
{
    struct xen_priv *p = priv(c);
    xc_domaininfo_t di;
    int rc = find_domain(p, API_APPLY, vm, &di);
    if (rc < 0)
        return rc;
    char path[96];
    snprintf(path, sizeof path, "/local/domain/%u/vmio/group", (unsigned)di.domain);
    if (id == 0) {
        errno = 0;
        if (!xs_rm(p->xsh, XBT_NULL, path) && errno != ENOENT)
            return vmio_set_error_errno(API_APPLY, err_or(EIO), "xenstore rm %s", path);
        /* The parent holds nothing else of ours. */
        snprintf(path, sizeof path, "/local/domain/%u/vmio", (unsigned)di.domain);
        char **ents;
        unsigned n = 0;
        ents = xs_directory(p->xsh, XBT_NULL, path, &n);
        if (ents && n == 0)
            xs_rm(p->xsh, XBT_NULL, path);
        free(ents);
        return 0;
    }
    if (!group || !*group)
        return vmio_set_error(API_APPLY, EINVAL, "group tag for '%s': no group name", vm);
    char val[VMIO_GROUP_NAME_MAX + 16];
    int len = snprintf(val, sizeof val, "%u %s", (unsigned)id, group);
    if (len < 0 || (size_t)len >= sizeof val)
        return vmio_set_error(API_APPLY, EINVAL, "group name too long");
    if (!xs_write(p->xsh, XBT_NULL, path, val, (unsigned)len))
        return vmio_set_error_errno(API_APPLY, err_or(EIO), "xenstore write %s", path);
    return 0;
}

/* ---- cpupools: the group's pool ---------------------------------------- */

static void describe_pool(char *buf, size_t len, const char *name, const char *sched,
                          const struct vmio_cpuset *cpus)
{
    char list[512];
    set_text(cpus, list, sizeof list);
    snprintf(buf, len, "%s %s cpus %s", name, sched, list);
}

static int parse_sched(const char *api, const char *sched)
{
    if (!sched || !*sched || strcmp(sched, "credit") == 0)
        return XEN_SCHEDULER_CREDIT;
    if (strcmp(sched, "credit2") == 0)
        return XEN_SCHEDULER_CREDIT2;
    return vmio_set_error(api, EINVAL, "scheduler '%s': the xen backend takes credit or credit2", sched);
}

/* Move one CPU from pool 'from' (Xen id; -1: free) into pool 'to'. */
static int move_cpu(struct xen_priv *p, const char *api, long from, uint32_t to, unsigned cpu)
{
    if (from >= 0 && xc_cpupool_removecpu(p->xch, (uint32_t)from, (int)cpu) < 0)
        return vmio_set_error_errno(api, err_or(EIO), "xc_cpupool_removecpu(pool %ld, CPU %u)", from, cpu);
    if (xc_cpupool_addcpu(p->xch, to, (int)cpu) < 0) {
        int e = err_or(EIO);
        /* Do not leave the CPU in no pool at all. */
        if (from >= 0)
            xc_cpupool_addcpu(p->xch, (uint32_t)from, (int)cpu);
        return vmio_set_error_errno(api, e, "xc_cpupool_addcpu(pool %u, CPU %u)", (unsigned)to, cpu);
    }
    return 0;
}

/* Give every CPU of pool id back to Pool-0, destroy the pool and its
 * xenstore entry. */
static int drop_pool(struct xen_priv *p, const char *api, const char *name, uint32_t id,
                     const struct vmio_cpuset *cpus)
{
    int rc;
    for (int cpu = vmio_cpuset_next(cpus, 0); cpu >= 0; cpu = vmio_cpuset_next(cpus, (unsigned)cpu + 1))
        if ((rc = move_cpu(p, api, (long)id, XEN_POOL0, (unsigned)cpu)) < 0)
            return rc;
    if (xc_cpupool_destroy(p->xch, id) < 0)
        return vmio_set_error_errno(api, err_or(EIO), "xc_cpupool_destroy(%s)", name);
    char path[64];
    snprintf(path, sizeof path, "/local/pool/%u", (unsigned)id);
    xs_rm(p->xsh, XBT_NULL, path);
    return 0;
}

/* A new pool, named where libxl keeps cpupool names so xl shows it. */
static int new_pool(struct xen_priv *p, const char *api, const char *name, int sched, uint32_t *id)
{
    *id = XC_CPUPOOL_POOLID_ANY;
    if (xc_cpupool_create(p->xch, id, (uint32_t)sched) < 0)
        return vmio_set_error_errno(api, err_or(EIO), "xc_cpupool_create(%s, %s)", name, sched_name(sched));
    char path[64];
    snprintf(path, sizeof path, "/local/pool/%u/name", (unsigned)*id);
    if (!xs_write(p->xsh, XBT_NULL, path, name, (unsigned)strlen(name))) {
        int e = err_or(EIO);
        xc_cpupool_destroy(p->xch, *id);
        return vmio_set_error_errno(api, e, "xenstore write %s", path);
    }
    return 0;
}

static int xen_pool_ensure(struct vmio_group_conn *c, const char *pool, const struct vmio_cpuset *cpus,
                           const char *sched, int dry_run, struct vmio_group_report *rep)
{
    struct xen_priv *p = priv(c);
    int want_sched = parse_sched(API_APPLY, sched);
    if (want_sched < 0)
        return want_sched;
    if (vmio_cpuset_empty(cpus))
        return vmio_set_error(API_APPLY, EINVAL, "cpupool %s: empty CPU set", pool);
    for (int cpu = vmio_cpuset_next(cpus, 0); cpu >= 0; cpu = vmio_cpuset_next(cpus, (unsigned)cpu + 1))
        if (!vmio_cpuset_test(&p->host, (unsigned)cpu))
            return vmio_set_error(API_APPLY, EINVAL, "cpupool %s: CPU %d is not an online CPU of the host",
                                  pool, cpu);

    xc_cpupoolinfo_t *pi = NULL;
    int rc = pool_find(p, API_APPLY, pool, &pi);
    if (rc < 0)
        return rc;
    int exists = pi != NULL, have_sched = want_sched;
    uint32_t id = XC_CPUPOOL_POOLID_ANY, ndom = 0;
    struct vmio_cpuset have;
    vmio_cpuset_zero(&have);
    if (exists) {
        id = pi->cpupool_id;
        have_sched = (int)pi->sched_id;
        ndom = pi->n_dom;
        vmio_cpuset_from_map(&have, pi->cpumap, (size_t)p->mapsize);
        xc_cpupool_infofree(p->xch, pi);
        if (id == XEN_POOL0)
            return vmio_set_error(API_APPLY, EINVAL, "cpupool %s is Pool-0", pool);
        if (have_sched != want_sched && ndom > 0)
            return vmio_set_error(API_APPLY, EBUSY,
                                  "cpupool %s runs %s with %u domain(s) in it: a pool's scheduler cannot change; remove the members (or destroy the group) first",
                                  pool, sched_name(have_sched), (unsigned)ndom);
    }
    int recreate = exists && have_sched != want_sched;

    /* Every CPU to add must be free or in Pool-0 (or in this pool when it
     * is made again). */
    struct vmio_cpuset add = *cpus, drop = have;
    if (!recreate)
        vmio_cpuset_andnot(&add, &have);
    vmio_cpuset_andnot(&drop, cpus);
    long owner[VMIO_CPUSET_MAX];
    for (int cpu = vmio_cpuset_next(&add, 0); cpu >= 0; cpu = vmio_cpuset_next(&add, (unsigned)cpu + 1)) {
        owner[cpu] = cpu_owner(p, (unsigned)cpu);
        if (recreate && owner[cpu] == (long)id)
            owner[cpu] = XEN_POOL0; /* given back to Pool-0 first, below */
        else if (owner[cpu] > 0) {
            char n[128];
            pool_name(p, (uint32_t)owner[cpu], n, sizeof n);
            return vmio_set_error(API_APPLY, EBUSY, "cpupool %s: CPU %d belongs to cpupool %s", pool, cpu, n);
        }
    }
    if (exists && !recreate && vmio_cpuset_empty(&add) && vmio_cpuset_empty(&drop))
        return 0; /* in place */

    char before[640] = "", after[640];
    if (exists)
        describe_pool(before, sizeof before, pool, sched_name(have_sched), &have);
    describe_pool(after, sizeof after, pool, sched_name(want_sched), cpus);
    if (!dry_run) {
        if (recreate) {
            /* Empty, with another scheduler: made again. */
            if ((rc = drop_pool(p, API_APPLY, pool, id, &have)) < 0)
                return rc;
            vmio_cpuset_zero(&drop);
        }
        if ((!exists || recreate) && (rc = new_pool(p, API_APPLY, pool, want_sched, &id)) < 0)
            return rc;
        /* Grow first, so that the pool never runs out of CPUs under its
         * domains, then shrink. */
        for (int cpu = vmio_cpuset_next(&add, 0); cpu >= 0; cpu = vmio_cpuset_next(&add, (unsigned)cpu + 1))
            if ((rc = move_cpu(p, API_APPLY, owner[cpu], id, (unsigned)cpu)) < 0)
                return rc;
        for (int cpu = vmio_cpuset_next(&drop, 0); cpu >= 0; cpu = vmio_cpuset_next(&drop, (unsigned)cpu + 1))
            if ((rc = move_cpu(p, API_APPLY, (long)id, XEN_POOL0, (unsigned)cpu)) < 0)
                return rc;
    }
    if (rep)
        vmio_group_report_add(rep, NULL, "cpupool", before, after);
    return 0;
}

static int xen_pool_move(struct vmio_group_conn *c, const char *vm, const char *pool)
{
    struct xen_priv *p = priv(c);
    xc_domaininfo_t di;
    int rc = find_domain(p, API_APPLY, vm, &di);
    if (rc < 0)
        return rc;
    uint32_t to = XEN_POOL0;
    if (pool && *pool) {
        xc_cpupoolinfo_t *pi = NULL;
        if ((rc = pool_find(p, API_APPLY, pool, &pi)) < 0)
            return rc;
        if (!pi)
            return vmio_set_error(API_APPLY, ENOENT, "no cpupool named %s", pool);
        to = pi->cpupool_id;
        xc_cpupool_infofree(p->xch, pi);
    }
    return move_domain(p, API_APPLY, vm, &di, to);
}

static int xen_pool_get(struct vmio_group_conn *c, const char *pool, int *exists,
                        struct vmio_cpuset *cpus, char *sched, size_t schedlen)
{
    struct xen_priv *p = priv(c);
    xc_cpupoolinfo_t *pi = NULL;
    int rc = pool_find(p, API_APPLY, pool, &pi);
    if (rc < 0)
        return rc;
    *exists = pi != NULL;
    vmio_cpuset_zero(cpus);
    if (schedlen)
        sched[0] = '\0';
    if (pi) {
        vmio_cpuset_from_map(cpus, pi->cpumap, (size_t)p->mapsize);
        snprintf(sched, schedlen, "%s", sched_name((int)pi->sched_id));
        xc_cpupool_infofree(p->xch, pi);
    }
    return 0;
}

static int xen_pool_destroy(struct vmio_group_conn *c, const char *pool, int dry_run,
                            struct vmio_group_report *rep)
{
    struct xen_priv *p = priv(c);
    xc_cpupoolinfo_t *pi = NULL;
    int rc = pool_find(p, API_DESTROY, pool, &pi);
    if (rc < 0)
        return rc;
    if (!pi)
        return 0; /* already gone */
    uint32_t id = pi->cpupool_id, ndom = pi->n_dom;
    int sched = (int)pi->sched_id;
    struct vmio_cpuset have;
    vmio_cpuset_from_map(&have, pi->cpumap, (size_t)p->mapsize);
    xc_cpupool_infofree(p->xch, pi);
    if (id == XEN_POOL0)
        return vmio_set_error(API_DESTROY, EINVAL, "cpupool %s is Pool-0", pool);
    if (ndom > 0)
        return vmio_set_error(API_DESTROY, EBUSY, "cpupool %s still holds %u domain(s)", pool,
                              (unsigned)ndom);
    char before[640];
    describe_pool(before, sizeof before, pool, sched_name(sched), &have);
    if (!dry_run && (rc = drop_pool(p, API_DESTROY, pool, id, &have)) < 0)
        return rc;
    if (rep)
        vmio_group_report_add(rep, NULL, "cpupool", before, "");
    return 0;
}

const struct vmio_group_backend vmio_group_backend_xen = {
    .name = "xen",
    .open = xen_open,
    .close = xen_close,
    .capabilities = xen_capabilities,
    .cap_note = xen_cap_note,
    .topology = xen_topology,
    .vm_get = xen_vm_get,
    .set_vcpu_pin = xen_set_vcpu_pin,
    .set_emulator_pin = NULL,
    .set_weight = xen_set_weight,
    .set_cap = xen_set_cap,
    .set_mem_nodes = NULL,
    .set_shmem = NULL,
    .set_tag = xen_set_tag,
    .pool_ensure = xen_pool_ensure,
    .pool_get = xen_pool_get,
    .pool_move = xen_pool_move,
    .pool_destroy = xen_pool_destroy,
    .default_weight = 256,
    .vm_list = xen_vm_list,
};
