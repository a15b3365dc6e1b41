/* InfiniBand passthrough (vmio_hostdev_*): what hostdev.c (sysfs listing),
 * hostdev-xml.c (libxml2 editing of domain and node-device
 * XML) and hostdev-libvirt.c (libvirt calls) share: PCI addresses, the XML
 * edit. Internal. */
#ifndef VMIO_GROUP_HOSTDEV_H
#define VMIO_GROUP_HOSTDEV_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <vmio/group.h>

/* A PCI address: "0000:81:00.0", "81:00.0" or libvirt's node-device name
 * "pci_0000_81_00_0". */
struct vmio_pci_addr {
    unsigned domain, bus, slot, function;
};

/* The address helpers are small enough to live here, so that the XML code
 * (fuzzed on its own) needs no other file. */
static inline int vmio_hostdev_hex_(const char *s, size_t n, unsigned max, unsigned *out)
{
    if (n == 0 || n > 8)
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -EINVAL;
        v = v * 16 + d;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* 0 or -EINVAL (no message: callers word their own). */
static inline int vmio_hostdev_pci_parse(const char *text, struct vmio_pci_addr *a)
{
    if (!text)
        return -EINVAL;
    char sep1 = ':', sep2 = ':', sep3 = '.';
    if (strncmp(text, "pci_", 4) == 0) {
        text += 4;
        sep1 = sep2 = sep3 = '_';
    }
    /* Fields right to left: function, slot, bus, optional domain. */
    const char *p3 = strrchr(text, sep3);
    if (!p3)
        return -EINVAL;
    const char *p2 = NULL, *p1 = NULL;
    for (const char *q = p3 - 1; q >= text; q--)
        if (*q == sep2) {
            p2 = q;
            break;
        }
    if (!p2)
        return -EINVAL;
    for (const char *q = p2 - 1; q >= text; q--)
        if (*q == sep1) {
            p1 = q;
            break;
        }
    struct vmio_pci_addr r = { 0, 0, 0, 0 };
    if (vmio_hostdev_hex_(p3 + 1, strlen(p3 + 1), 7, &r.function) < 0 ||
        vmio_hostdev_hex_(p2 + 1, (size_t)(p3 - p2 - 1), 0x1f, &r.slot) < 0)
        return -EINVAL;
    if (p1) {
        if (vmio_hostdev_hex_(p1 + 1, (size_t)(p2 - p1 - 1), 0xff, &r.bus) < 0 ||
            vmio_hostdev_hex_(text, (size_t)(p1 - text), 0xffff, &r.domain) < 0)
            return -EINVAL;
    } else if (vmio_hostdev_hex_(text, (size_t)(p2 - text), 0xff, &r.bus) < 0) {
        return -EINVAL;
    }
    *a = r;
    return 0;
}

/* "0000:81:00.0" into buf (at least 16 bytes). */
static inline void vmio_hostdev_pci_format(const struct vmio_pci_addr *a, char *buf, size_t len)
{
    snprintf(buf, len, "%04x:%02x:%02x.%x", a->domain, a->bus, a->slot, a->function);
}

/* libvirt's node-device name, "pci_0000_81_00_0". */
static inline void vmio_hostdev_pci_nodedev_name(const struct vmio_pci_addr *a, char *buf,
                                                 size_t len)
{
    snprintf(buf, len, "pci_%04x_%02x_%02x_%x", a->domain, a->bus, a->slot, a->function);
}

/* What one domain-XML edit did, for the report. "" when unknown/none. */
struct vmio_hostdev_edit {
    int hostdev_changed;        /* the <hostdev> was added/removed */
    int cpuset_changed;
    char cpuset_before[128], cpuset_after[128];
    int nodeset_changed;
    char nodeset_before[128], nodeset_after[128];
};

/* Attach (attach != 0; dev must be set) or detach (pci) on a domain XML
 * text. *xml_out is malloc'd; e (optional) says what changed. 0 or -errno
 * with vmio_errmsg() under api: -EINVAL malformed XML or not a domain,
 * -ENOENT detaching an absent device, -ENOTSUP without libxml2. */
int vmio_hostdev_xml_edit(const char *api, const char *domain_xml, const struct vmio_hostdev *dev,
                          const char *pci, unsigned flags, int attach, char **xml_out,
                          struct vmio_hostdev_edit *e);
/* Whether the domain XML has a PCI <hostdev> at that address: 1, 0, or
 * -errno. */
int vmio_hostdev_xml_has(const char *api, const char *domain_xml, const struct vmio_pci_addr *a);
/* The <hostdev> element alone, for virDomainAttachDeviceFlags, with that
 * <driver name> (vmio_hostdev_driver). malloc'd, NULL on allocation
 * failure. */
char *vmio_hostdev_xml_device(const struct vmio_pci_addr *a, unsigned flags, const char *driver);
/* The host driver a passed-through device is bound to: "xen" (pciback)
 * for a Xen domain, else "vfio"; also the <hostdev><driver name>. */
static inline const char *vmio_hostdev_driver(int xen)
{
    return xen ? "xen" : "vfio";
}

/* One libvirt node device's XML (a <device> with a PCI capability) into
 * *d (zeroed first, numa_node -1). Returns 1 for a PCI device, 0 for any
 * other device, -errno on malformed XML. *class_out: the PCI class. */
int vmio_hostdev_parse_nodedev(const char *api, const char *xml, struct vmio_hostdev *d,
                               unsigned *class_out);

/* Merge libvirt's PCI node devices of conn into *devs, *n (realloc'd):
 * known addresses get the fields sysfs lacked, new InfiniBand devices
 * (and VFs of listed PFs) are appended. 0, or -errno (the list is left as
 * it was). -ENOTSUP when conn is not a libvirt connection. */
int vmio_hostdev_list_libvirt(const char *api, struct vmio_group_conn *conn,
                              struct vmio_hostdev **devs, size_t *n);

#endif
