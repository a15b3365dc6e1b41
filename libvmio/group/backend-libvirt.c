/* The "libvirt" VM-group backend: KVM/QEMU, Xen through libvirt's libxl
 * driver, and libvirt's test driver. libvirt is dlopen'ed (libvirt-dl.c);
 * only its headers are used at build time. Domain XML is read and edited
 * with libxml2 (shared memory, and the test driver's scheduler settings).
 *
 * Each setter first asks for the persistent definition and, when the
 * domain runs, the live one too (VIR_DOMAIN_AFFECT_CONFIG|LIVE); a driver
 * that refuses that combination gets each half alone, then the current
 * definition alone, and the fallback is reported as a warning. The group
 * tag is domain metadata in the namespace https://libvmio.org/xmlns/group/1
 * (<vmio:group id='3' name='web'/>), visible with `virsh metadata`. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "core/internal.h"
#include "group/backend.h"

#define API "vmio_group_apply" /* re-prefixed by the caller (group.c) */
#define META_URI "https://libvmio.org/xmlns/group/1"
#define META_KEY "vmio"
#define QUOTA_PERIOD 100000ull

/* The libvirt calls used here, resolved once per process. */
#define LV_SYMS(X)                                                                        \
    X(virConnectPtr, virConnectOpen, (const char *))                                      \
    X(int, virConnectClose, (virConnectPtr))                                              \
    X(const char *, virConnectGetType, (virConnectPtr))                                   \
    X(char *, virConnectGetCapabilities, (virConnectPtr))                                 \
    X(int, virNodeGetInfo, (virConnectPtr, virNodeInfoPtr))                               \
    X(int, virConnectListAllDomains, (virConnectPtr, virDomainPtr **, unsigned int))      \
    X(virDomainPtr, virDomainLookupByName, (virConnectPtr, const char *))                 \
    X(int, virDomainFree, (virDomainPtr))                                                 \
    X(const char *, virDomainGetName, (virDomainPtr))                                     \
    X(int, virDomainGetInfo, (virDomainPtr, virDomainInfoPtr))                            \
    X(int, virDomainGetVcpuPinInfo, (virDomainPtr, int, unsigned char *, int, unsigned int)) \
    X(int, virDomainGetEmulatorPinInfo, (virDomainPtr, unsigned char *, int, unsigned int)) \
    X(int, virDomainPinVcpuFlags, (virDomainPtr, unsigned int, unsigned char *, int,       \
                                   unsigned int))                                         \
    X(int, virDomainPinEmulator, (virDomainPtr, unsigned char *, int, unsigned int))       \
    X(char *, virDomainGetSchedulerType, (virDomainPtr, int *))                           \
    X(int, virDomainGetSchedulerParametersFlags, (virDomainPtr, virTypedParameterPtr,     \
                                                  int *, unsigned int))                   \
    X(int, virDomainGetSchedulerParameters, (virDomainPtr, virTypedParameterPtr, int *))  \
    X(int, virDomainSetSchedulerParametersFlags, (virDomainPtr, virTypedParameterPtr, int, \
                                                  unsigned int))                          \
    X(int, virDomainGetNumaParameters, (virDomainPtr, virTypedParameterPtr, int *,         \
                                        unsigned int))                                    \
    X(int, virDomainSetNumaParameters, (virDomainPtr, virTypedParameterPtr, int,           \
                                        unsigned int))                                    \
    X(char *, virDomainGetMetadata, (virDomainPtr, int, const char *, unsigned int))      \
    X(int, virDomainSetMetadata, (virDomainPtr, int, const char *, const char *,           \
                                  const char *, unsigned int))                            \
    X(char *, virDomainGetXMLDesc, (virDomainPtr, unsigned int))                          \
    X(virDomainPtr, virDomainDefineXML, (virConnectPtr, const char *))                    \
    X(int, virDomainAttachDeviceFlags, (virDomainPtr, const char *, unsigned int))        \
    X(int, virDomainDetachDeviceFlags, (virDomainPtr, const char *, unsigned int))       \
    X(virErrorPtr, virGetLastError, (void))                                               \
    X(int, virInitialize, (void))                                                         \
    X(void, virResetLastError, (void))                                                    \
    X(void, virSetErrorFunc, (void *, virErrorFunc))                                      \
    X(void, virTypedParamsClear, (virTypedParameterPtr, int))

#define LV_FIELD(ret, name, args) ret(*name) args;
static struct {
    LV_SYMS(LV_FIELD)
    int ok;
    struct vmio_error_copy err;
} lv;
#undef LV_FIELD
static pthread_once_t lv_once = PTHREAD_ONCE_INIT;

static void quiet(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e;
}

static void lv_load(void)
{
#define LV_RESOLVE(ret, name, args)                                                       \
    if (!(*(void **)&lv.name = vmio_libvirt_sym("vmio_group_connect", #name))) {          \
        vmio_error_save(&lv.err);                                                         \
        return;                                                                           \
    }
    LV_SYMS(LV_RESOLVE)
#undef LV_RESOLVE
    /* libvirt prints every error on stderr unless a handler is set; the
     * library never prints: messages reach the caller via vmio_errmsg(). */
    if (lv.virInitialize() < 0) {
        vmio_set_error("vmio_group_connect", EIO, "libvirt: virInitialize failed");
        vmio_error_save(&lv.err);
        return;
    }
    lv.virSetErrorFunc(NULL, quiet);
    lv.ok = 1;
}

/* conn->priv. The virConnectPtr comes first: with the test driver each
 * connection to a custom host XML has its own state, so the unit tests
 * read changes back through this very connection. */
#define MEMO_SLOTS 8

struct lvpriv {
    virConnectPtr conn;
    int is_test, is_qemu, is_xen;
    int maxcpus;         /* host CPUs: cpumap width */
    uint64_t caps;
    /* with_flags(): the flag level each operation last worked with, for
     * inactive [0] and running [1] domains */
    struct {
        int (*op)(virDomainPtr, unsigned, void *);
        int level[2];
    } memo[MEMO_SLOTS];
};

static struct lvpriv *P(struct vmio_group_conn *c)
{
    return c->priv;
}

void *vmio_group_libvirt_conn(struct vmio_group_conn *c)
{
    if (!c || c->be != &vmio_group_backend_libvirt || !c->priv)
        return NULL;
    return P(c)->conn;
}

static const char *lv_msg(void)
{
    virErrorPtr e = lv.virGetLastError();
    return e && e->message ? e->message : "unknown libvirt error";
}

static int lv_code(void)
{
    virErrorPtr e = lv.virGetLastError();
    return e ? e->code : 0;
}

/* ---- connection ------------------------------------------------------- */

static uint64_t caps_for(const struct lvpriv *p)
{
    uint64_t base = VMIO_GROUP_CAP_DEDICATED_CPUS | VMIO_GROUP_CAP_PIN_STRICT |
                    VMIO_GROUP_CAP_PIN_LOOSE | VMIO_GROUP_CAP_METADATA;
    if (p->is_test)
        return base | VMIO_GROUP_CAP_WEIGHT | VMIO_GROUP_CAP_CAP | VMIO_GROUP_CAP_NUMA_MEMORY |
               VMIO_GROUP_CAP_EMULATOR_PIN | VMIO_GROUP_CAP_SHARED_MEMORY;
    if (p->is_qemu)
        return base | VMIO_GROUP_CAP_WEIGHT | VMIO_GROUP_CAP_CAP | VMIO_GROUP_CAP_NUMA_MEMORY |
               VMIO_GROUP_CAP_EMULATOR_PIN | VMIO_GROUP_CAP_SHARED_MEMORY |
               VMIO_GROUP_CAP_HOSTDEV | VMIO_GROUP_CAP_LIVE;
    if (p->is_xen)
        return base | VMIO_GROUP_CAP_WEIGHT | VMIO_GROUP_CAP_CAP | VMIO_GROUP_CAP_HOSTDEV |
               VMIO_GROUP_CAP_LIVE;
    return base;
}

static int lv_open(struct vmio_group_conn *c, const struct vmio_group_connect_opts *o)
{
    static const char api[] = "vmio_group_connect";
    pthread_once(&lv_once, lv_load);
    if (!lv.ok) {
        vmio_error_restore(&lv.err);
        return -ENOTSUP;
    }
    struct lvpriv *p = calloc(1, sizeof *p);
    if (!p)
        return vmio_set_error(api, ENOMEM, "out of memory");
    lv.virResetLastError();
    p->conn = lv.virConnectOpen(o->uri);
    if (!p->conn) {
        int r = vmio_set_error(api, EIO, "libvirt %s: %s", o->uri ? o->uri : "(default URI)",
                               lv_msg());
        free(p);
        return r;
    }
    const char *type = lv.virConnectGetType(p->conn);
    snprintf(c->hypervisor, sizeof c->hypervisor, "%s", type ? type : "unknown");
    /* libvirt says "TEST", "QEMU", "Xen": named as <vmio/group.h> does */
    p->is_test = strcasecmp(c->hypervisor, "test") == 0;
    p->is_qemu = strcasecmp(c->hypervisor, "qemu") == 0;
    p->is_xen = strcasecmp(c->hypervisor, "xen") == 0;
    if (p->is_test)
        snprintf(c->hypervisor, sizeof c->hypervisor, "Test");
    else if (p->is_xen)
        snprintf(c->hypervisor, sizeof c->hypervisor, "Xen");
    virNodeInfo ni;
    if (lv.virNodeGetInfo(p->conn, &ni) == 0)
        p->maxcpus = (int)ni.cpus;
    if (p->maxcpus <= 0 || p->maxcpus > VMIO_CPUSET_MAX)
        p->maxcpus = VMIO_CPUSET_MAX;
    p->caps = caps_for(p);
    /* The paper's advice: 1:1 pinning on Xen, the host scheduler on KVM. */
    c->default_pin = p->is_xen ? VMIO_GROUP_PIN_STRICT : VMIO_GROUP_PIN_LOOSE;
    c->priv = p;
    return 0;
}

static void lv_close(struct vmio_group_conn *c)
{
    struct lvpriv *p = P(c);
    if (!p)
        return;
    lv.virConnectClose(p->conn);
    free(p);
    c->priv = NULL;
}

static uint64_t lv_caps(struct vmio_group_conn *c)
{
    return P(c)->caps;
}

static const char *lv_cap_note(struct vmio_group_conn *c, uint64_t cap)
{
    const struct lvpriv *p = P(c);
    int have = (p->caps & cap) != 0;
    switch (cap) {
    case VMIO_GROUP_CAP_DEDICATED_CPUS:
        return p->is_qemu ? "KVM: no gang scheduling; dedicated CPUs emulated by pinning other "
                            "domains off the group's CPUs"
               : p->is_xen ? "libvirt libxl driver: no cpupool API; dedicated CPUs emulated by "
                             "pinning other domains off the group's CPUs (use the xen backend "
                             "for cpupools)"
                           : "dedicated CPUs emulated by pinning other domains off the group's "
                             "CPUs";
    case VMIO_GROUP_CAP_POOL_SCHEDULER:
        return "libvirt has no per-group scheduler: cpupools need the xen backend";
    case VMIO_GROUP_CAP_WEIGHT:
        return p->is_test  ? "libvirt test driver: does not store scheduler parameters; the "
                             "weight is kept as <cputune><shares> in the persistent definition"
               : p->is_qemu ? "KVM: the weight is cgroup cpu_shares of each domain"
               : p->is_xen  ? "Xen credit scheduler weight through libxl"
                            : "no scheduler weight known for this driver";
    case VMIO_GROUP_CAP_CAP:
        return p->is_test  ? "libvirt test driver: the cap is kept as <cputune><global_quota> "
                             "in the persistent definition"
               : p->is_qemu ? "KVM: the cap is the domain's global_quota per 100 ms period"
               : p->is_xen  ? "Xen credit scheduler cap through libxl"
                            : "no CPU cap known for this driver";
    case VMIO_GROUP_CAP_PIN_STRICT:
    case VMIO_GROUP_CAP_PIN_LOOSE:
        return "vCPU pinning with virDomainPinVcpuFlags";
    case VMIO_GROUP_CAP_NUMA_MEMORY:
        return have ? "memory bound with virDomainSetNumaParameters (numa_nodeset)"
                    : "libvirt libxl driver: no NUMA memory binding";
    case VMIO_GROUP_CAP_EMULATOR_PIN:
        return have ? "emulator threads pinned with virDomainPinEmulator"
                    : "this driver has no emulator threads to pin";
    case VMIO_GROUP_CAP_SHARED_MEMORY:
        return p->is_test  ? "libvirt test driver: <shmem> (ivshmem-plain) in the persistent "
                             "definition only; no device reaches a real VM"
               : p->is_qemu ? "QEMU ivshmem-plain <shmem> device shared by the group's domains"
                            : "no group shared memory through libvirt for this driver (Xen "
                              "grant-table sharing needs the xen backend)";
    case VMIO_GROUP_CAP_METADATA:
        return "group recorded as domain metadata (" META_URI ")";
    case VMIO_GROUP_CAP_HOSTDEV:
        return have ? "PCI passthrough with <hostdev managed='yes'> (vfio)"
                    : "libvirt test driver: no device attach";
    case VMIO_GROUP_CAP_LIVE:
        return have ? "changes reach running domains (live) and their persistent definition"
                    : "libvirt test driver: no live changes to a real VM";
    case VMIO_GROUP_CAP_COSCHEDULE:
        return p->is_xen ? "Xen: no gang scheduling of different domains (a group-aware "
                           "credit scheduler is not upstream)"
                         : "KVM: no gang scheduling of different VMs; the Linux scheduler runs "
                           "each vCPU thread on its own";
    }
    return NULL;
}

/* ---- topology --------------------------------------------------------- */

static int lv_topology(struct vmio_group_conn *c, struct vmio_topo *out)
{
    struct lvpriv *p = P(c);
    char *caps = lv.virConnectGetCapabilities(p->conn);
    if (caps) {
        struct vmio_topo t = { 0 };
        int r = vmio_topo_from_caps_xml(API, caps, &t);
        free(caps);
        if (r == 0 && t.ncpus > 0) {
            *out = t;
            return 0;
        }
        if (r == 0)
            vmio_topo_free(&t);
    }
    /* No <cells> (the test driver with a custom host): nodeinfo's shape,
     * CPUs numbered node by node, socket by socket, core by core. */
    virNodeInfo ni;
    if (lv.virNodeGetInfo(p->conn, &ni) < 0)
        return vmio_set_error(API, EIO, "libvirt: node info: %s", lv_msg());
    unsigned nodes = ni.nodes ? ni.nodes : 1, sockets = ni.sockets ? ni.sockets : 1;
    unsigned cores = ni.cores ? ni.cores : 1, threads = ni.threads ? ni.threads : 1;
    size_t n = (size_t)nodes * sockets * cores * threads;
    if (n == 0 || n > VMIO_CPUSET_MAX || n != ni.cpus)
        return vmio_set_error(API, EINVAL,
                              "libvirt: no NUMA cells in the capabilities and node info "
                              "%u nodes x %u sockets x %u cores x %u threads != %u CPUs",
                              nodes, sockets, cores, threads, ni.cpus);
    struct vmio_topo t = { 0 };
    t.cpus = calloc(n, sizeof *t.cpus);
    t.node_mem = calloc(nodes, sizeof *t.node_mem);
    if (!t.cpus || !t.node_mem) {
        free(t.cpus);
        free(t.node_mem);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    size_t i = 0;
    for (unsigned nd = 0; nd < nodes; nd++)
        for (unsigned s = 0; s < sockets; s++)
            for (unsigned co = 0; co < cores; co++)
                for (unsigned th = 0; th < threads; th++, i++) {
                    t.cpus[i].id = (int)i;
                    t.cpus[i].node = (int)nd;
                    t.cpus[i].socket = (int)(nd * sockets + s);
                    t.cpus[i].core = (int)((nd * sockets + s) * cores + co);
                }
    for (unsigned nd = 0; nd < nodes; nd++)
        t.node_mem[nd] = (uint64_t)ni.memory * 1024 / nodes;
    t.ncpus = n;
    t.nnodes = (int)nodes;
    t.nsockets = (int)(nodes * sockets);
    *out = t;
    return 0;
}

/* ---- domains ---------------------------------------------------------- */

static int lookup(struct vmio_group_conn *c, const char *vm, virDomainPtr *out)
{
    lv.virResetLastError();
    virDomainPtr d = lv.virDomainLookupByName(P(c)->conn, vm);
    if (!d) {
        if (lv_code() == VIR_ERR_NO_DOMAIN)
            return vmio_set_error(API, ENOENT, "no VM '%s' in libvirt", vm);
        return vmio_set_error(API, EIO, "libvirt: looking up '%s': %s", vm, lv_msg());
    }
    *out = d;
    return 0;
}

static int is_running(virDomainPtr d)
{
    virDomainInfo info;
    if (lv.virDomainGetInfo(d, &info) < 0)
        return 0;
    return info.state == VIR_DOMAIN_RUNNING || info.state == VIR_DOMAIN_BLOCKED ||
           info.state == VIR_DOMAIN_PAUSED;
}

static xmlDocPtr inactive_xml(virDomainPtr d)
{
    char *x = lv.virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    if (!x)
        return NULL;
    xmlDocPtr doc = xmlReadMemory(x, (int)strlen(x), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    free(x);
    return doc;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
    for (xmlNodePtr k = n ? n->children : NULL; k; k = k->next)
        if (k->type == XML_ELEMENT_NODE && strcmp((const char *)k->name, name) == 0)
            return k;
    return NULL;
}

static int node_u64(xmlNodePtr n, uint64_t *v)
{
    if (!n)
        return -1;
    xmlChar *t = xmlNodeGetContent(n);
    if (!t)
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll((const char *)t, &end, 10);
    int ok = errno == 0 && end != (char *)t && *end == '\0' && x >= 0;
    xmlFree(t);
    if (!ok)
        return -1;
    *v = (uint64_t)x;
    return 0;
}

static uint64_t unit_bytes(const char *unit)
{
    if (!unit || !strcmp(unit, "b") || !strcmp(unit, "bytes"))
        return 1;
    if (!strcmp(unit, "KiB") || !strcmp(unit, "K") || !strcmp(unit, "k"))
        return 1ull << 10;
    if (!strcmp(unit, "M") || !strcmp(unit, "MiB"))
        return 1ull << 20;
    if (!strcmp(unit, "G") || !strcmp(unit, "GiB"))
        return 1ull << 30;
    return 1ull << 20;
}

/* From the persistent XML: the group's shared memory and (test driver)
 * the weight and cap kept in <cputune>. */
static void from_xml(xmlDocPtr doc, int is_test, struct vmio_group_vm *v)
{
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr s = child(child(root, "devices"), "shmem"); s; s = s->next) {
        if (s->type != XML_ELEMENT_NODE || strcmp((const char *)s->name, "shmem") != 0)
            continue;
        xmlChar *name = xmlGetProp(s, BAD_CAST "name");
        int ours = name && strncmp((const char *)name, "vmio-", 5) == 0;
        xmlFree(name);
        xmlNodePtr size = child(s, "size");
        uint64_t n;
        if (ours && node_u64(size, &n) == 0) {
            xmlChar *unit = xmlGetProp(size, BAD_CAST "unit");
            v->shmem_bytes = n * unit_bytes((const char *)unit);
            xmlFree(unit);
        }
    }
    if (!is_test)
        return;
    xmlNodePtr ct = child(root, "cputune");
    uint64_t x, per;
    if (node_u64(child(ct, "shares"), &x) == 0)
        v->weight = (unsigned)x;
    if (node_u64(child(ct, "global_quota"), &x) == 0 &&
        node_u64(child(ct, "global_period"), &per) == 0 && per)
        v->cap = (unsigned)(x * 100 / per);
}

static void sched_get(virDomainPtr d, struct vmio_group_vm *v)
{
    int n = 0;
    char *type = lv.virDomainGetSchedulerType(d, &n);
    free(type);
    if (n <= 0 || n > 64)
        return;
    virTypedParameter params[64];
    memset(params, 0, sizeof params);
    /* the test driver refuses the Flags variant (it adds STRING_OKAY) */
    int want = n;
    if (lv.virDomainGetSchedulerParametersFlags(d, params, &n, 0) < 0) {
        n = want;
        if (lv.virDomainGetSchedulerParameters(d, params, &n) < 0)
            return;
    }
    long long quota = 0;
    unsigned long long period = 0;
    for (int i = 0; i < n; i++) {
        virTypedParameterPtr t = &params[i];
        if (!strcmp(t->field, "weight") && t->type == VIR_TYPED_PARAM_UINT)
            v->weight = t->value.ui;
        else if (!strcmp(t->field, "cpu_shares") && t->type == VIR_TYPED_PARAM_ULLONG)
            v->weight = (unsigned)t->value.ul;
        else if (!strcmp(t->field, "cap") && t->type == VIR_TYPED_PARAM_UINT)
            v->cap = t->value.ui;
        else if (!strcmp(t->field, "global_quota") && t->type == VIR_TYPED_PARAM_LLONG)
            quota = t->value.l;
        else if (!strcmp(t->field, "global_period") && t->type == VIR_TYPED_PARAM_ULLONG)
            period = t->value.ul;
    }
    if (quota > 0 && period > 0)
        v->cap = (unsigned)((unsigned long long)quota * 100 / period);
    lv.virTypedParamsClear(params, n);
}

static void numa_get(virDomainPtr d, struct vmio_group_vm *v)
{
    virTypedParameter params[16];
    int n = 16;
    memset(params, 0, sizeof params);
    if (lv.virDomainGetNumaParameters(d, params, &n, 0) < 0)
        return;
    for (int i = 0; i < n; i++)
        if (!strcmp(params[i].field, VIR_DOMAIN_NUMA_NODESET) &&
            params[i].type == VIR_TYPED_PARAM_STRING && params[i].value.s)
            vmio_cpuset_parse(params[i].value.s, &v->mem_nodes);
    lv.virTypedParamsClear(params, n);
}

static void tag_get(virDomainPtr d, struct vmio_group_vm *v)
{
    lv.virResetLastError();
    char *m = lv.virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, META_URI, 0);
    if (!m)
        return;
    xmlDocPtr doc = xmlReadMemory(m, (int)strlen(m), "metadata.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    free(m);
    if (!doc)
        return;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlChar *id = root ? xmlGetProp(root, BAD_CAST "id") : NULL;
    xmlChar *name = root ? xmlGetProp(root, BAD_CAST "name") : NULL;
    if (id && name) {
        char *end;
        unsigned long x = strtoul((const char *)id, &end, 10);
        if (*end == '\0' && x > 0 && x < UINT32_MAX &&
            strlen((const char *)name) <= VMIO_GROUP_NAME_MAX) {
            v->tag_id = (uint32_t)x;
            snprintf(v->tag_name, sizeof v->tag_name, "%s", (const char *)name);
        }
    }
    xmlFree(id);
    xmlFree(name);
    xmlFreeDoc(doc);
}

static int lv_vm_get(struct vmio_group_conn *c, const char *vm, struct vmio_group_vm *out)
{
    struct lvpriv *p = P(c);
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    memset(out, 0, offsetof(struct vmio_group_vm, vcpu_pin));
    memset(&out->emulator_pin, 0, sizeof *out - offsetof(struct vmio_group_vm, emulator_pin));
    snprintf(out->name, sizeof out->name, "%s", vm);
    virDomainInfo info;
    if (lv.virDomainGetInfo(d, &info) < 0) {
        r = vmio_set_error(API, EIO, "libvirt: info of '%s': %s", vm, lv_msg());
        goto out;
    }
    out->running = info.state == VIR_DOMAIN_RUNNING || info.state == VIR_DOMAIN_BLOCKED ||
                   info.state == VIR_DOMAIN_PAUSED;
    out->nvcpus = info.nrVirtCpu;
    out->mem_bytes = (uint64_t)info.maxMem * 1024;
    unsigned nv = VMIO_MIN(out->nvcpus, (unsigned)VMIO_GROUP_MAX_VCPUS);
    int maplen = VIR_CPU_MAPLEN(p->maxcpus);
    unsigned char *maps = calloc(nv ? nv : 1, (size_t)maplen);
    if (!maps) {
        r = vmio_set_error(API, ENOMEM, "out of memory");
        goto out;
    }
    int got = nv ? lv.virDomainGetVcpuPinInfo(d, (int)nv, maps, maplen, 0) : 0;
    if (got < 0) {
        free(maps);
        r = vmio_set_error(API, EIO, "libvirt: vCPU pinning of '%s': %s", vm, lv_msg());
        goto out;
    }
    for (unsigned i = 0; i < nv; i++)
        vmio_cpuset_from_map(&out->vcpu_pin[i], maps + (size_t)i * (size_t)maplen,
                             (size_t)maplen);
    vmio_cpuset_zero(&out->emulator_pin);
    if (lv.virDomainGetEmulatorPinInfo(d, maps, maplen, 0) == 1)
        vmio_cpuset_from_map(&out->emulator_pin, maps, (size_t)maplen);
    free(maps);
    vmio_cpuset_zero(&out->mem_nodes);
    /* the test driver reports a fixed weight of 50 whatever is set: its
     * weight and cap are the ones kept in the XML (from_xml) */
    if (!p->is_test)
        sched_get(d, out);
    numa_get(d, out);
    tag_get(d, out);
    xmlDocPtr doc = inactive_xml(d);
    if (doc) {
        from_xml(doc, p->is_test, out);
        xmlFreeDoc(doc);
    }
    r = 0;
out:
    lv.virDomainFree(d);
    return r;
}

static int lv_vm_list(struct vmio_group_conn *c, char ***names, size_t *count)
{
    virDomainPtr *doms = NULL;
    int n = lv.virConnectListAllDomains(P(c)->conn, &doms, 0);
    if (n < 0)
        return vmio_set_error(API, EIO, "libvirt: listing domains: %s", lv_msg());
    char **v = calloc((size_t)n + 1, sizeof *v);
    int r = v ? 0 : vmio_set_error(API, ENOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *name = lv.virDomainGetName(doms[i]);
        if (r == 0 && name && !(v[k++] = strdup(name)))
            r = vmio_set_error(API, ENOMEM, "out of memory");
        lv.virDomainFree(doms[i]);
    }
    free(doms);
    if (r < 0) {
        for (size_t i = 0; v && i < k; i++)
            free(v[i]);
        free(v);
        return r;
    }
    *names = v;
    *count = k;
    return 0;
}

/* ---- setters ---------------------------------------------------------- */

/* Run op with CONFIG|LIVE (running) or CONFIG; fall back to each half,
 * then to the current definition, warning in the apply's report. The
 * level that worked is remembered per operation, so the next call of a
 * driver that refuses the combination goes straight to what it takes. */
typedef int (*flag_op)(virDomainPtr d, unsigned flags, void *arg);

enum { LEVEL_BOTH, LEVEL_HALVES, LEVEL_CURRENT, LEVEL_COUNT };

static int try_level(struct vmio_group_conn *c, virDomainPtr d, const char *what, flag_op op,
                     void *arg, int level, int running)
{
    unsigned both = VIR_DOMAIN_AFFECT_CONFIG | (running ? VIR_DOMAIN_AFFECT_LIVE : 0);
    if (level == LEVEL_BOTH)
        return op(d, both, arg) == 0 ? 0 : -1;
    if (level == LEVEL_HALVES) {
        if (!running)
            return -1;
        int live = op(d, VIR_DOMAIN_AFFECT_LIVE, arg) == 0;
        int config = op(d, VIR_DOMAIN_AFFECT_CONFIG, arg) == 0;
        if (live && config)
            return 0;
        if (!live && !config)
            return -1;
        vmio_group_report_warn(c->report,
                               "libvirt %s driver: %s changed in the %s definition only "
                               "(the driver refused the %s one)",
                               c->hypervisor, what, live ? "live" : "persistent",
                               live ? "persistent" : "live");
        return 0;
    }
    if (op(d, VIR_DOMAIN_AFFECT_CURRENT, arg) < 0)
        return -1;
    vmio_group_report_warn(c->report,
                           "libvirt %s driver: %s refused for the live and persistent "
                           "definitions together; changed in the current one only",
                           c->hypervisor, what);
    return 0;
}

static int with_flags(struct vmio_group_conn *c, virDomainPtr d, const char *what, flag_op op,
                      void *arg)
{
    struct lvpriv *p = P(c);
    int running = is_running(d);
    size_t slot = 0;
    while (slot < MEMO_SLOTS && p->memo[slot].op && p->memo[slot].op != op)
        slot++;
    int first = slot < MEMO_SLOTS && p->memo[slot].op ? p->memo[slot].level[running] : -1;
    lv.virResetLastError();
    for (int i = -1; i < LEVEL_COUNT; i++) {
        int level = i < 0 ? first : i;
        if (level < 0 || (i >= 0 && level == first))
            continue;
        /* libvirt's libxl driver takes LIVE|CONFIG and changes the live
         * definition only (seen with vCPU pins, libvirt 9.0): on a running
         * Xen domain every operation is tried one half at a time */
        if (level == LEVEL_BOTH && running && p->is_xen)
            continue;
        if (try_level(c, d, what, op, arg, level, running) == 0) {
            if (slot < MEMO_SLOTS) {
                p->memo[slot].op = op;
                p->memo[slot].level[running] = level;
            }
            return 0;
        }
    }
    return vmio_set_error(API, EIO, "libvirt: %s: %s", what, lv_msg());
}

struct pin_arg {
    unsigned vcpu;
    unsigned char *map;
    int maplen;
};

static int op_vcpupin(virDomainPtr d, unsigned flags, void *arg)
{
    struct pin_arg *a = arg;
    return lv.virDomainPinVcpuFlags(d, a->vcpu, a->map, a->maplen, flags);
}

static int op_emupin(virDomainPtr d, unsigned flags, void *arg)
{
    struct pin_arg *a = arg;
    return lv.virDomainPinEmulator(d, a->map, a->maplen, flags);
}

static int pin_common(struct vmio_group_conn *c, const char *vm, int emulator, unsigned vcpu,
                      const struct vmio_cpuset *cpus)
{
    struct lvpriv *p = P(c);
    unsigned char map[VMIO_CPUSET_MAX / 8];
    struct pin_arg a = { .vcpu = vcpu, .map = map, .maplen = VIR_CPU_MAPLEN(p->maxcpus) };
    vmio_cpuset_to_map(cpus, map, (size_t)a.maplen);
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    const char *what = emulator ? "emulator pinning" : "vCPU pinning";
    r = with_flags(c, d, what, emulator ? op_emupin : op_vcpupin, &a);
    if (r < 0 && emulator)
        r = vmio_set_error(API, -r, "%s of '%s': %s", what, vm, lv_msg());
    else if (r < 0)
        r = vmio_set_error(API, -r, "%s of '%s' (vCPU %u): %s", what, vm, vcpu, lv_msg());
    lv.virDomainFree(d);
    return r;
}

static int lv_set_vcpu_pin(struct vmio_group_conn *c, const char *vm, unsigned vcpu,
                           const struct vmio_cpuset *cpus)
{
    return pin_common(c, vm, 0, vcpu, cpus);
}

static int lv_set_emulator_pin(struct vmio_group_conn *c, const char *vm,
                               const struct vmio_cpuset *cpus)
{
    return pin_common(c, vm, 1, 0, cpus);
}

/* Define the domain again from its persistent XML after edit() changed
 * it (libxml2). */
static int redefine(struct vmio_group_conn *c, virDomainPtr d, const char *vm,
                    int (*edit)(xmlDocPtr doc, void *arg), void *arg)
{
    xmlDocPtr doc = inactive_xml(d);
    if (!doc)
        return vmio_set_error(API, EIO, "libvirt: XML of '%s': %s", vm, lv_msg());
    int r = edit(doc, arg);
    if (r < 0) {
        xmlFreeDoc(doc);
        return vmio_set_error(API, ENOMEM, "editing the XML of '%s'", vm);
    }
    xmlChar *text = NULL;
    int len = 0;
    xmlDocDumpMemory(doc, &text, &len);
    xmlFreeDoc(doc);
    if (!text)
        return vmio_set_error(API, ENOMEM, "out of memory");
    virDomainPtr nd = lv.virDomainDefineXML(P(c)->conn, (const char *)text);
    xmlFree(text);
    if (!nd)
        return vmio_set_error(API, EIO, "libvirt: defining '%s': %s", vm, lv_msg());
    lv.virDomainFree(nd);
    return 0;
}

static xmlNodePtr ensure_child(xmlNodePtr parent, const char *name)
{
    xmlNodePtr n = child(parent, name);
    return n ? n : xmlNewChild(parent, NULL, BAD_CAST name, NULL);
}

static void drop_child(xmlNodePtr parent, const char *name)
{
    xmlNodePtr n;
    while ((n = child(parent, name))) {
        xmlUnlinkNode(n);
        xmlFreeNode(n);
    }
}

struct tune_arg {
    int weight;          /* 1: set shares, else cap */
    uint64_t value;
};

/* <cputune>: its children must keep libvirt's order only for display;
 * the parser accepts any order. */
static int edit_tune(xmlDocPtr doc, void *arg)
{
    struct tune_arg *a = arg;
    xmlNodePtr ct = ensure_child(xmlDocGetRootElement(doc), "cputune");
    if (!ct)
        return -1;
    char buf[32];
    if (a->weight) {
        drop_child(ct, "shares");
        if (!a->value)
            return 0; /* back to none (undoing a first weight) */
        snprintf(buf, sizeof buf, "%" PRIu64, a->value);
        return xmlNewChild(ct, NULL, BAD_CAST "shares", BAD_CAST buf) ? 0 : -1;
    }
    drop_child(ct, "global_period");
    drop_child(ct, "global_quota");
    if (!a->value)
        return 0;
    snprintf(buf, sizeof buf, "%llu", QUOTA_PERIOD);
    if (!xmlNewChild(ct, NULL, BAD_CAST "global_period", BAD_CAST buf))
        return -1;
    snprintf(buf, sizeof buf, "%" PRIu64, (uint64_t)(a->value * QUOTA_PERIOD / 100));
    return xmlNewChild(ct, NULL, BAD_CAST "global_quota", BAD_CAST buf) ? 0 : -1;
}

struct sched_arg {
    virTypedParameter params[2];
    int n;
};

static int op_sched(virDomainPtr d, unsigned flags, void *arg)
{
    struct sched_arg *a = arg;
    return lv.virDomainSetSchedulerParametersFlags(d, a->params, a->n, flags);
}

static void tp_set(virTypedParameterPtr t, const char *field, int type)
{
    memset(t, 0, sizeof *t);
    snprintf(t->field, sizeof t->field, "%s", field);
    t->type = type;
}

static int sched_set(struct vmio_group_conn *c, const char *vm, int weight, unsigned value)
{
    struct lvpriv *p = P(c);
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    /* weight 0: none known before the group set one (a VM that is not
     * running, with no <shares>): back to none in its definition */
    if (p->is_test || (weight && value == 0)) {
        struct tune_arg a = { .weight = weight, .value = value };
        r = redefine(c, d, vm, edit_tune, &a);
        lv.virDomainFree(d);
        return r;
    }
    struct sched_arg a = { .n = 1 };
    if (weight && p->is_xen) {
        tp_set(&a.params[0], "weight", VIR_TYPED_PARAM_UINT);
        a.params[0].value.ui = value;
    } else if (weight) {
        tp_set(&a.params[0], "cpu_shares", VIR_TYPED_PARAM_ULLONG);
        a.params[0].value.ul = value;
    } else if (p->is_xen) {
        tp_set(&a.params[0], "cap", VIR_TYPED_PARAM_UINT);
        a.params[0].value.ui = value;
    } else {
        tp_set(&a.params[0], "global_period", VIR_TYPED_PARAM_ULLONG);
        a.params[0].value.ul = QUOTA_PERIOD;
        tp_set(&a.params[1], "global_quota", VIR_TYPED_PARAM_LLONG);
        a.params[1].value.l = value ? (long long)(value * QUOTA_PERIOD / 100) : -1;
        a.n = 2;
    }
    r = with_flags(c, d, weight ? "scheduler weight" : "CPU cap", op_sched, &a);
    if (r < 0)
        r = vmio_set_error(API, -r, "%s of '%s': %s", weight ? "weight" : "cap", vm, lv_msg());
    lv.virDomainFree(d);
    return r;
}

static int lv_set_weight(struct vmio_group_conn *c, const char *vm, unsigned weight)
{
    return sched_set(c, vm, 1, weight);
}

static int lv_set_cap(struct vmio_group_conn *c, const char *vm, unsigned cap)
{
    return sched_set(c, vm, 0, cap);
}

static int op_numa(virDomainPtr d, unsigned flags, void *arg)
{
    return lv.virDomainSetNumaParameters(d, arg, 1, flags);
}

static int lv_set_mem_nodes(struct vmio_group_conn *c, const char *vm,
                            const struct vmio_cpuset *nodes)
{
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    char text[1024];
    vmio_cpuset_format(nodes, text, sizeof text);
    virTypedParameter t;
    tp_set(&t, VIR_DOMAIN_NUMA_NODESET, VIR_TYPED_PARAM_STRING);
    t.value.s = text;
    r = with_flags(c, d, "NUMA memory binding", op_numa, &t);
    if (r < 0)
        r = vmio_set_error(API, -r, "numatune of '%s': %s", vm, lv_msg());
    lv.virDomainFree(d);
    return r;
}

struct meta_arg {
    const char *xml;
};

static int op_meta(virDomainPtr d, unsigned flags, void *arg)
{
    struct meta_arg *a = arg;
    return lv.virDomainSetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, a->xml,
                                   a->xml ? META_KEY : NULL, META_URI, flags);
}

static int lv_set_tag(struct vmio_group_conn *c, const char *vm, uint32_t id, const char *group)
{
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    char xml[200];
    struct meta_arg a = { .xml = NULL };
    if (id) {
        /* group names are [A-Za-z0-9_.-]: nothing to escape */
        snprintf(xml, sizeof xml, "<group id='%" PRIu32 "' name='%s'/>", id, group);
        a.xml = xml;
    }
    r = with_flags(c, d, "group metadata", op_meta, &a);
    if (r < 0)
        r = vmio_set_error(API, -r, "metadata of '%s': %s", vm, lv_msg());
    lv.virDomainFree(d);
    return r;
}

struct shmem_arg {
    char name[VMIO_GROUP_NAME_MAX + 8];
    uint64_t mib;
};

static int edit_shmem(xmlDocPtr doc, void *arg)
{
    struct shmem_arg *a = arg;
    xmlNodePtr devs = ensure_child(xmlDocGetRootElement(doc), "devices");
    if (!devs)
        return -1;
    for (xmlNodePtr s = devs->children, next; s; s = next) {
        next = s->next;
        if (s->type != XML_ELEMENT_NODE || strcmp((const char *)s->name, "shmem") != 0)
            continue;
        xmlChar *name = xmlGetProp(s, BAD_CAST "name");
        int ours = name && strncmp((const char *)name, "vmio-", 5) == 0;
        xmlFree(name);
        if (ours) {
            xmlUnlinkNode(s);
            xmlFreeNode(s);
        }
    }
    if (!a->mib)
        return 0;
    xmlNodePtr s = xmlNewChild(devs, NULL, BAD_CAST "shmem", NULL);
    if (!s || !xmlNewProp(s, BAD_CAST "name", BAD_CAST a->name))
        return -1;
    xmlNodePtr m = xmlNewChild(s, NULL, BAD_CAST "model", NULL);
    if (!m || !xmlNewProp(m, BAD_CAST "type", BAD_CAST "ivshmem-plain"))
        return -1;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, a->mib);
    xmlNodePtr sz = xmlNewChild(s, NULL, BAD_CAST "size", BAD_CAST buf);
    return sz && xmlNewProp(sz, BAD_CAST "unit", BAD_CAST "M") ? 0 : -1;
}

/* Take the group's ivshmem device out of a running domain: the device as
 * the live XML has it (libvirt matches every field), detached live. A
 * refusal is a warning: the persistent definition no longer has it. */
static void detach_live_shmem(struct vmio_group_conn *c, virDomainPtr d, const char *name)
{
    char *x = lv.virDomainGetXMLDesc(d, 0);
    xmlDocPtr doc = x ? xmlReadMemory(x, (int)strlen(x), "domain.xml", NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR |
                                      XML_PARSE_NOWARNING) : NULL;
    free(x);
    if (!doc)
        return;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr s = child(child(root, "devices"), "shmem"); s; s = s->next) {
        if (s->type != XML_ELEMENT_NODE || strcmp((const char *)s->name, "shmem") != 0)
            continue;
        xmlChar *n = xmlGetProp(s, BAD_CAST "name");
        int ours = n && strcmp((const char *)n, name) == 0;
        xmlFree(n);
        if (!ours)
            continue;
        xmlBufferPtr buf = xmlBufferCreate();
        if (buf && xmlNodeDump(buf, doc, s, 0, 0) > 0 &&
            lv.virDomainDetachDeviceFlags(d, (const char *)xmlBufferContent(buf),
                                          VIR_DOMAIN_AFFECT_LIVE) < 0)
            vmio_group_report_warn(c->report,
                                   "libvirt %s driver: shared memory %s left in the running "
                                   "domain until it restarts: %s",
                                   c->hypervisor, name, lv_msg());
        if (buf)
            xmlBufferFree(buf);
        break;
    }
    xmlFreeDoc(doc);
}

static int lv_set_shmem(struct vmio_group_conn *c, const char *vm, const char *group,
                        uint64_t bytes)
{
    struct lvpriv *p = P(c);
    virDomainPtr d;
    int r = lookup(c, vm, &d);
    if (r < 0)
        return r;
    struct shmem_arg a = { .mib = (bytes + (1u << 20) - 1) >> 20 };
    snprintf(a.name, sizeof a.name, "vmio-%s", group);
    r = redefine(c, d, vm, edit_shmem, &a);
    if (r == 0 && !bytes && !p->is_test && is_running(d))
        detach_live_shmem(c, d, a.name);
    if (r == 0 && bytes && is_running(d)) {
        char xml[256];
        snprintf(xml, sizeof xml,
                 "<shmem name='%s'><model type='ivshmem-plain'/><size unit='M'>%" PRIu64
                 "</size></shmem>",
                 a.name, a.mib);
        if (p->is_test || lv.virDomainAttachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE) < 0)
            vmio_group_report_warn(c->report,
                                   "libvirt %s driver: shared memory %s added to the persistent "
                                   "definition; running domains see it after a restart",
                                   c->hypervisor, a.name);
    }
    lv.virDomainFree(d);
    return r;
}

const struct vmio_group_backend vmio_group_backend_libvirt = {
    .name = "libvirt",
    .open = lv_open,
    .close = lv_close,
    .capabilities = lv_caps,
    .cap_note = lv_cap_note,
    .topology = lv_topology,
    .vm_get = lv_vm_get,
    .set_vcpu_pin = lv_set_vcpu_pin,
    .set_emulator_pin = lv_set_emulator_pin,
    .set_weight = lv_set_weight,
    .set_cap = lv_set_cap,
    .set_mem_nodes = lv_set_mem_nodes,
    .set_shmem = lv_set_shmem,
    .set_tag = lv_set_tag,
    .default_weight = 1024,
    .vm_list = lv_vm_list,
};
