/* InfiniBand passthrough through libvirt: attach/detach a PCI device to a
 * domain (persistent definition edited with hostdev-xml.c and redefined;
 * hot-plugged too when the domain runs), unbind/rebind it on the host
 * (node-device API, vfio), and libvirt's PCI node devices for
 * vmio_hostdev_list. libvirt is dlopen'ed (libvirt-dl.c); its headers only
 * give the types. The connection belongs to the libvirt backend
 * (vmio_group_libvirt_conn()). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "core/internal.h"
#include "group/backend.h"
#include "group/hostdev.h"

#define API_ATTACH "vmio_hostdev_attach"
#define API_DETACH "vmio_hostdev_detach"

#define PCI_CLASS_INFINIBAND 0x0207u

struct virt {
    virErrorPtr (*last_error)(void);
    void (*set_error_func)(void *, virErrorFunc);
    virDomainPtr (*lookup)(virConnectPtr, const char *);
    char *(*get_xml)(virDomainPtr, unsigned int);
    virDomainPtr (*define)(virConnectPtr, const char *);
    int (*is_active)(virDomainPtr);
    int (*attach)(virDomainPtr, const char *, unsigned int);
    int (*detach)(virDomainPtr, const char *, unsigned int);
    int (*dom_free)(virDomainPtr);
    int (*list_nodedevs)(virConnectPtr, virNodeDevicePtr **, unsigned int);
    virNodeDevicePtr (*nodedev_lookup)(virConnectPtr, const char *);
    char *(*nodedev_xml)(virNodeDevicePtr, unsigned int);
    int (*nodedev_detach)(virNodeDevicePtr, const char *, unsigned int);
    int (*nodedev_reattach)(virNodeDevicePtr);
    int (*nodedev_free)(virNodeDevicePtr);
};

/* libvirt prints every error on stderr unless a handler is set; the
 * library never prints, and the message reaches the caller anyway. */
static void quiet(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

/* Resolve the calls; the connection of conn into *vc. */
static int load(const char *api, struct vmio_group_conn *conn, struct virt *v, virConnectPtr *vc)
{
    struct { void **fn; const char *name; } syms[] = {
        { (void **)&v->last_error, "virGetLastError" },
        { (void **)&v->set_error_func, "virSetErrorFunc" },
        { (void **)&v->lookup, "virDomainLookupByName" },
        { (void **)&v->get_xml, "virDomainGetXMLDesc" },
        { (void **)&v->define, "virDomainDefineXML" },
        { (void **)&v->is_active, "virDomainIsActive" },
        { (void **)&v->attach, "virDomainAttachDeviceFlags" },
        { (void **)&v->detach, "virDomainDetachDeviceFlags" },
        { (void **)&v->dom_free, "virDomainFree" },
        { (void **)&v->list_nodedevs, "virConnectListAllNodeDevices" },
        { (void **)&v->nodedev_lookup, "virNodeDeviceLookupByName" },
        { (void **)&v->nodedev_xml, "virNodeDeviceGetXMLDesc" },
        { (void **)&v->nodedev_detach, "virNodeDeviceDetachFlags" },
        { (void **)&v->nodedev_reattach, "virNodeDeviceReAttach" },
        { (void **)&v->nodedev_free, "virNodeDeviceFree" },
    };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(syms); i++)
        if (!(*syms[i].fn = vmio_libvirt_sym(api, syms[i].name)))
            return -vmio_errno();
    v->set_error_func(NULL, quiet);
    if (!conn || !conn->be || strcmp(conn->be->name, "libvirt") != 0)
        return vmio_set_error(api, ENOTSUP, "needs a libvirt connection (this one is %s)",
                              conn && conn->be ? conn->be->name : "none");
    void *c = vmio_group_libvirt_conn(conn);
    if (!c)
        return vmio_set_error(api, ENOTSUP, "the libvirt connection is closed");
    *vc = c;
    return 0;
}

static const char *virt_msg(const struct virt *v)
{
    virErrorPtr e = v->last_error();
    return e && e->message ? e->message : "unknown libvirt error";
}

static int virt_code(const struct virt *v)
{
    virErrorPtr e = v->last_error();
    return e ? e->code : 0;
}

static int canon_pci(const char *api, const char *pci, struct vmio_pci_addr *a, char *buf)
{
    if (vmio_hostdev_pci_parse(pci, a) < 0)
        return vmio_set_error(api, EINVAL, "bad PCI address '%s' (want 0000:81:00.0)", pci);
    vmio_hostdev_pci_format(a, buf, 16);
    return 0;
}

/* ---- node devices for vmio_hostdev_list -------------------------------- */

static int merge(struct vmio_hostdev **devs, size_t *n, const struct vmio_hostdev *d,
                 unsigned cls)
{
    for (size_t i = 0; i < *n; i++) {
        struct vmio_hostdev *o = &(*devs)[i];
        if (strcmp(o->pci, d->pci) != 0)
            continue;
        /* sysfs is the fresher view: fill only what it lacked. */
        if (o->numa_node < 0)
            o->numa_node = d->numa_node;
        if (!o->driver[0])
            snprintf(o->driver, sizeof o->driver, "%s", d->driver);
        if (!o->name[0])
            snprintf(o->name, sizeof o->name, "%s", d->name);
        if (!o->is_vf && d->is_vf) {
            o->is_vf = 1;
            snprintf(o->pf, sizeof o->pf, "%s", d->pf);
        }
        if (!o->total_vfs)
            o->total_vfs = d->total_vfs;
        if (!o->num_vfs)
            o->num_vfs = d->num_vfs;
        return 0;
    }
    int wanted = (cls >> 8) == PCI_CLASS_INFINIBAND;
    for (size_t i = 0; !wanted && d->is_vf && i < *n; i++)
        wanted = strcmp((*devs)[i].pci, d->pf) == 0;
    if (!wanted)
        return 0;
    struct vmio_hostdev *nv = realloc(*devs, (*n + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    nv[(*n)++] = *d;
    *devs = nv;
    return 0;
}

int vmio_hostdev_list_libvirt(const char *api, struct vmio_group_conn *conn,
                              struct vmio_hostdev **devs, size_t *n)
{
    struct virt v;
    virConnectPtr vc;
    int r = load(api, conn, &v, &vc);
    if (r < 0)
        return r;
    virNodeDevicePtr *nd = NULL;
    int cnt = v.list_nodedevs(vc, &nd, VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV);
    if (cnt < 0)
        return vmio_set_error(api, EIO, "listing libvirt's PCI node devices: %s", virt_msg(&v));
    /* Work on a copy: on failure the caller's list stays as it was. */
    struct vmio_hostdev *copy = malloc((*n + 1) * sizeof *copy);
    size_t cn = *n;
    if (!copy)
        r = vmio_set_error(api, ENOMEM, "out of memory");
    else if (*n)
        memcpy(copy, *devs, *n * sizeof *copy);
    /* PFs first so that their VFs find them: two passes. */
    for (int pass = 0; pass < 2 && r == 0; pass++) {
        for (int i = 0; i < cnt && r == 0; i++) {
            char *xml = v.nodedev_xml(nd[i], 0);
            if (!xml)
                continue; /* gone meanwhile */
            struct vmio_hostdev d;
            unsigned cls;
            int p = vmio_hostdev_parse_nodedev(api, xml, &d, &cls);
            free(xml);
            if (p < 0)
                r = p;
            else if (p == 1 && d.is_vf == pass && merge(&copy, &cn, &d, cls) < 0)
                r = vmio_set_error(api, ENOMEM, "out of memory");
        }
    }
    for (int i = 0; i < cnt; i++)
        v.nodedev_free(nd[i]);
    free(nd);
    if (r < 0) {
        free(copy);
        return r;
    }
    free(*devs);
    *devs = copy;
    *n = cn;
    return 0;
}

/* ---- attach/detach to a domain ----------------------------------------- */

/* The device as vmio_hostdev_list sees it (NUMA node, local CPUs), or
 * -ENOENT if the host has no such PCI device. */
static int find_device(const char *api, struct vmio_group_conn *conn, const struct virt *v,
                       virConnectPtr vc, const struct vmio_pci_addr *a, const char *pci,
                       struct vmio_hostdev *out)
{
    struct vmio_hostdev *list = NULL;
    size_t n = 0;
    int r = vmio_hostdev_list(conn, NULL, &list, &n);
    if (r < 0)
        return vmio_error_reprefix(api, -r);
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].pci, pci) == 0) {
            *out = list[i];
            free(list);
            return 1;
        }
    free(list);
    /* Not an HCA: any PCI device libvirt or sysfs knows may be passed
     * through, only without NUMA placement. */
    memset(out, 0, sizeof *out);
    snprintf(out->pci, sizeof out->pci, "%s", pci);
    out->numa_node = -1;
    char name[32];
    vmio_hostdev_pci_nodedev_name(a, name, sizeof name);
    virNodeDevicePtr nd = v->nodedev_lookup(vc, name);
    if (nd) {
        char *xml = v->nodedev_xml(nd, 0);
        unsigned cls;
        if (xml && vmio_hostdev_parse_nodedev(api, xml, out, &cls) < 0)
            vmio_clear_error();
        free(xml);
        v->nodedev_free(nd);
        snprintf(out->pci, sizeof out->pci, "%s", pci);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s", pci);
    if (access(path, F_OK) == 0)
        return 0;
    return vmio_set_error(api, ENOENT, "no PCI device %s on this host (sysfs or libvirt)", pci);
}

static void warn_migration(struct vmio_group_report *rep, const char *vm, const char *pci)
{
    vmio_group_report_warn(rep,
                           "%s: PCI passthrough of %s blocks live migration (libvirt refuses "
                           "to migrate a domain with a host device); detach it before migrating",
                           vm, pci);
}

static int change(const char *api, vmio_group_conn *conn, const char *vm, const char *pci,
                  unsigned flags, vmio_group_report **report, int attach)
{
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, vm != NULL, EFAULT);
    VMIO_CHECK_ARG(api, pci != NULL, EFAULT);
    VMIO_CHECK_ARG(api, (flags & ~VMIO_GROUP_DRY_RUN) == 0, EINVAL);
    int dry = (flags & VMIO_GROUP_DRY_RUN) != 0;
    /* Always managed: libvirt unbinds the device from its host driver when
     * the domain starts and gives it back when it stops. (The flag cannot
     * be passed here: VMIO_HOSTDEV_MANAGED has VMIO_GROUP_DRY_RUN's value.) */
    unsigned xflags = VMIO_HOSTDEV_MANAGED;
    struct vmio_pci_addr a;
    char canon[16];
    int r = canon_pci(api, pci, &a, canon);
    if (r < 0)
        return r;
    struct virt v;
    virConnectPtr vc;
    if ((r = load(api, conn, &v, &vc)) < 0)
        return r;
    struct vmio_hostdev dev;
    if (attach && (r = find_device(api, conn, &v, vc, &a, canon, &dev)) < 0)
        return r;
    virDomainPtr dom = v.lookup(vc, vm);
    if (!dom)
        return vmio_set_error(api, ENOENT, "no domain '%s': %s", vm, virt_msg(&v));
    struct vmio_group_report *rep = vmio_group_report_new();
    char *xml = NULL, *nxml = NULL, *live = NULL, *devxml = NULL;
    if (!rep) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    if (!(xml = v.get_xml(dom, VIR_DOMAIN_XML_INACTIVE))) {
        r = vmio_set_error(api, EIO, "domain '%s': reading its XML: %s", vm, virt_msg(&v));
        goto out;
    }
    struct vmio_hostdev_edit e;
    if ((r = vmio_hostdev_xml_edit(api, xml, attach ? &dev : NULL, canon, xflags, attach, &nxml,
                                   &e)) < 0)
        goto out;
    if (attach && dev.numa_node < 0 && !dev.local_cpus[0])
        vmio_group_report_warn(rep, "%s: NUMA node of %s unknown: vCPUs and memory left where "
                                    "they are", vm, canon);
    if (e.hostdev_changed)
        vmio_group_report_add(rep, vm, "hostdev", attach ? "" : canon, attach ? canon : "");
    else
        vmio_group_report_warn(rep, "%s: %s is already attached", vm, canon);
    if (e.cpuset_changed)
        vmio_group_report_add(rep, vm, "vcpu cpuset", e.cpuset_before, e.cpuset_after);
    if (e.nodeset_changed)
        vmio_group_report_add(rep, vm, "numatune", e.nodeset_before, e.nodeset_after);
    if (attach)
        warn_migration(rep, vm, canon);
    if (dry) {
        vmio_group_report_add(rep, vm, "domain xml", "", nxml);
        r = 0;
        goto out;
    }
    int changed = e.hostdev_changed || e.cpuset_changed || e.nodeset_changed;
    int hot = 0;
    int active = v.is_active(dom);
    if (active == 1 && e.hostdev_changed) {
        /* The running domain: hot-plug (or unplug) the device itself. */
        if (!(live = v.get_xml(dom, 0))) {
            r = vmio_set_error(api, EIO, "domain '%s': reading its live XML: %s", vm,
                               virt_msg(&v));
            goto out;
        }
        int has = vmio_hostdev_xml_has(api, live, &a);
        if (has < 0) {
            r = has;
            goto out;
        }
        if (has != attach) {
            if (!(devxml = vmio_hostdev_xml_device(
                      &a, xflags, vmio_hostdev_driver(!strcasecmp(conn->hypervisor, "xen"))))) {
                r = vmio_set_error(api, ENOMEM, "out of memory");
                goto out;
            }
            int k = attach ? v.attach(dom, devxml, VIR_DOMAIN_AFFECT_LIVE)
                           : v.detach(dom, devxml, VIR_DOMAIN_AFFECT_LIVE);
            if (k < 0 && virt_code(&v) == VIR_ERR_NO_SUPPORT) {
                vmio_group_report_warn(rep, "%s: the %s driver cannot %s devices on a running "
                                            "domain (%s): the change takes effect at its next "
                                            "start", vm, conn->hypervisor,
                                       attach ? "attach" : "detach", virt_msg(&v));
            } else if (k < 0) {
                r = vmio_set_error(api, EIO, "domain '%s': %s %s live: %s", vm,
                                   attach ? "attaching" : "detaching", canon, virt_msg(&v));
                goto out;
            } else {
                hot = 1;
                vmio_group_report_add(rep, vm, "hostdev (live)", attach ? "" : canon,
                                      attach ? canon : "");
            }
        }
    }
    if (changed) {
        virDomainPtr nd = v.define(vc, nxml);
        if (!nd) {
            r = vmio_set_error(api, EIO, "domain '%s': defining the new XML: %s", vm,
                               virt_msg(&v));
            if (hot) /* put the running domain back as it was */
                (void)(attach ? v.detach(dom, devxml, VIR_DOMAIN_AFFECT_LIVE)
                              : v.attach(dom, devxml, VIR_DOMAIN_AFFECT_LIVE));
            goto out;
        }
        v.dom_free(nd);
    }
    r = 0;
out:
    free(xml);
    free(nxml);
    free(live);
    free(devxml);
    v.dom_free(dom);
    if (r == 0 && report)
        *report = rep;
    else if (rep)
        vmio_group_report_free(rep);
    if (r == 0)
        vmio_clear_error();
    return r;
}

VMIO_API int vmio_hostdev_attach(vmio_group_conn *conn, const char *vm, const char *pci,
                                 unsigned flags, vmio_group_report **report)
{
    return change(API_ATTACH, conn, vm, pci, flags, report, 1);
}

VMIO_API int vmio_hostdev_detach(vmio_group_conn *conn, const char *vm, const char *pci,
                                 unsigned flags, vmio_group_report **report)
{
    return change(API_DETACH, conn, vm, pci, flags, report, 0);
}

/* ---- host side: unbind for vfio, rebind ------------------------------- */

static int host_op(const char *api, vmio_group_conn *conn, const char *pci, int detach)
{
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, pci != NULL, EFAULT);
    struct vmio_pci_addr a;
    char canon[16], name[32];
    int r = canon_pci(api, pci, &a, canon);
    if (r < 0)
        return r;
    struct virt v;
    virConnectPtr vc;
    if ((r = load(api, conn, &v, &vc)) < 0)
        return r;
    vmio_hostdev_pci_nodedev_name(&a, name, sizeof name);
    virNodeDevicePtr nd = v.nodedev_lookup(vc, name);
    if (!nd)
        return vmio_set_error(api, ENOENT, "no node device %s (%s): %s", name, canon,
                              virt_msg(&v));
    const char *drv = vmio_hostdev_driver(!strcasecmp(conn->hypervisor, "xen"));
    int k = detach ? v.nodedev_detach(nd, drv, 0) : v.nodedev_reattach(nd);
    if (k < 0) {
        if (virt_code(&v) == VIR_ERR_NO_SUPPORT)
            r = vmio_set_error(api, ENOTSUP, "the %s driver cannot %s host devices: %s",
                               conn->hypervisor[0] ? conn->hypervisor : "libvirt",
                               detach ? "detach" : "reattach", virt_msg(&v));
        else
            r = vmio_set_error(api, EIO, "%s %s: %s", detach ? "detaching" : "reattaching",
                               canon, virt_msg(&v));
    }
    v.nodedev_free(nd);
    return r;
}

VMIO_API int vmio_hostdev_host_detach(vmio_group_conn *conn, const char *pci)
{
    return host_op("vmio_hostdev_host_detach", conn, pci, 1);
}

VMIO_API int vmio_hostdev_host_reattach(vmio_group_conn *conn, const char *pci)
{
    return host_op("vmio_hostdev_host_reattach", conn, pci, 0);
}
