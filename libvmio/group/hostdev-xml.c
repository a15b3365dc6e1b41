/* libvirt XML for InfiniBand passthrough, with libxml2: add or remove a
 * PCI <hostdev> (vfio, or pciback on Xen) in a domain's XML and put its vCPUs and memory on
 * the device's NUMA node (vmio_hostdev_xml_attach/detach), and read a
 * libvirt node device's XML (for vmio_hostdev_list). Text in, text out:
 * no libvirt call here, so it is tested and fuzzed on its own.
 *
 * The parser never prints (XML_PARSE_NOERROR/NOWARNING: errors come back
 * through vmio_errmsg()) and never fetches anything (XML_PARSE_NONET, no
 * entity substitution, no DTD loading). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#include "core/internal.h"
#include "group/cpuset.h"
#include "group/hostdev.h"

#define PARSE_FLAGS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS)

/* Parse text; -EINVAL with libxml2's reason under api. */
static int parse(const char *api, const char *what, const char *text, xmlDocPtr *out)
{
    size_t len = strlen(text);
    if (len > (size_t)INT32_MAX)
        return vmio_set_error(api, EINVAL, "%s XML too large", what);
    xmlParserCtxtPtr ctx = xmlNewParserCtxt();
    if (!ctx)
        return vmio_set_error(api, ENOMEM, "out of memory");
    xmlDocPtr doc = xmlCtxtReadMemory(ctx, text, (int)len, "domain.xml", NULL, PARSE_FLAGS);
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(ctx);
        char msg[160] = "not well-formed";
        if (e && e->message) {
            snprintf(msg, sizeof msg, "%s", e->message);
            msg[strcspn(msg, "\n")] = '\0';
        }
        int r = vmio_set_error(api, EINVAL, "malformed %s XML (line %d): %s", what,
                               e ? e->line : 0, msg);
        xmlFreeParserCtxt(ctx);
        return r;
    }
    xmlFreeParserCtxt(ctx);
    *out = doc;
    return 0;
}

static int is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
        if (is_elem(n, name))
            return n;
    return NULL;
}

/* An attribute as a number (decimal or 0x hex); dflt if absent, -1 if
 * unparsable. */
static long prop_num(xmlNodePtr n, const char *name, long dflt)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long r = strtol((const char *)v, &end, 0);
    if (errno || end == (char *)v || *end || r < 0)
        r = -1;
    xmlFree(v);
    return r;
}

static long text_num(xmlNodePtr n, long dflt)
{
    if (!n)
        return dflt;
    xmlChar *v = xmlNodeGetContent(n);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long r = strtol((const char *)v, &end, 0);
    if (errno || end == (char *)v || r < 0)
        r = dflt;
    xmlFree(v);
    return r;
}

/* <address domain= bus= slot= function=/> as a PCI address: 0 or -1. */
static int addr_of(xmlNodePtr a, struct vmio_pci_addr *out)
{
    if (!a)
        return -1;
    long d = prop_num(a, "domain", 0), b = prop_num(a, "bus", -1), s = prop_num(a, "slot", -1),
         f = prop_num(a, "function", -1);
    if (d < 0 || d > 0xffff || b < 0 || b > 0xff || s < 0 || s > 0x1f || f < 0 || f > 7)
        return -1;
    out->domain = (unsigned)d;
    out->bus = (unsigned)b;
    out->slot = (unsigned)s;
    out->function = (unsigned)f;
    return 0;
}

static int same_addr(const struct vmio_pci_addr *a, const struct vmio_pci_addr *b)
{
    return a->domain == b->domain && a->bus == b->bus && a->slot == b->slot &&
           a->function == b->function;
}

static int prop_is(xmlNodePtr n, const char *name, const char *value)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    int r = v && xmlStrEqual(v, BAD_CAST value);
    xmlFree(v);
    return r;
}

/* The PCI <hostdev> of devices at address a, or NULL. */
static xmlNodePtr find_hostdev(xmlNodePtr devices, const struct vmio_pci_addr *a)
{
    for (xmlNodePtr n = devices ? devices->children : NULL; n; n = n->next) {
        if (!is_elem(n, "hostdev") || !prop_is(n, "type", "pci"))
            continue;
        struct vmio_pci_addr h;
        if (addr_of(child(child(n, "source"), "address"), &h) == 0 && same_addr(&h, a))
            return n;
    }
    return NULL;
}

static void get_prop(xmlNodePtr n, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
    if (v) {
        snprintf(buf, len, "%s", (const char *)v);
        xmlFree(v);
    }
}

/* Whitespace-only text under parent (an empty <devices>\n</devices> keeps
 * it): without it the serialiser indents what is added. */
static void drop_blanks(xmlNodePtr parent)
{
    xmlNodePtr n = parent->children;
    while (n) {
        xmlNodePtr next = n->next;
        if (n->type == XML_TEXT_NODE && xmlIsBlankNode(n)) {
            xmlUnlinkNode(n);
            xmlFreeNode(n);
        }
        n = next;
    }
}

static int root_domain(const char *api, xmlDocPtr doc, xmlNodePtr *root)
{
    xmlNodePtr r = xmlDocGetRootElement(doc);
    if (!r || !is_elem(r, "domain"))
        return vmio_set_error(api, EINVAL, "not a libvirt domain XML (root element <%s>)",
                              r ? (const char *)r->name : "");
    *root = r;
    return 0;
}

static void fill_address(xmlNodePtr addr, const struct vmio_pci_addr *a)
{
    char buf[16];
    snprintf(buf, sizeof buf, "0x%04x", a->domain);
    xmlNewProp(addr, BAD_CAST "domain", BAD_CAST buf);
    snprintf(buf, sizeof buf, "0x%02x", a->bus);
    xmlNewProp(addr, BAD_CAST "bus", BAD_CAST buf);
    snprintf(buf, sizeof buf, "0x%02x", a->slot);
    xmlNewProp(addr, BAD_CAST "slot", BAD_CAST buf);
    snprintf(buf, sizeof buf, "0x%x", a->function);
    xmlNewProp(addr, BAD_CAST "function", BAD_CAST buf);
}

/* A new <hostdev> element (unlinked), or NULL on allocation failure.
 * driver: "vfio" (KVM/QEMU) or "xen" (pciback; libvirt's libxl driver
 * takes no other). */
static xmlNodePtr new_hostdev(const struct vmio_pci_addr *a, unsigned flags, const char *driver)
{
    xmlNodePtr h = xmlNewNode(NULL, BAD_CAST "hostdev");
    if (!h)
        return NULL;
    xmlNewProp(h, BAD_CAST "mode", BAD_CAST "subsystem");
    xmlNewProp(h, BAD_CAST "type", BAD_CAST "pci");
    xmlNewProp(h, BAD_CAST "managed", BAD_CAST((flags & VMIO_HOSTDEV_MANAGED) ? "yes" : "no"));
    xmlNodePtr drv = xmlNewChild(h, NULL, BAD_CAST "driver", NULL);
    xmlNodePtr src = xmlNewChild(h, NULL, BAD_CAST "source", NULL);
    xmlNodePtr addr = src ? xmlNewChild(src, NULL, BAD_CAST "address", NULL) : NULL;
    if (!drv || !addr) {
        xmlFreeNode(h);
        return NULL;
    }
    xmlNewProp(drv, BAD_CAST "name", BAD_CAST driver);
    fill_address(addr, a);
    return h;
}

/* A malloc'd copy of libxml2's buffer, ending in a newline. */
static char *copy_buffer(xmlBufferPtr b)
{
    const char *c = (const char *)xmlBufferContent(b);
    size_t n = strlen(c);
    while (n && c[n - 1] == '\n')
        n--;
    char *s = malloc(n + 2);
    if (s) {
        memcpy(s, c, n);
        s[n] = '\n';
        s[n + 1] = '\0';
    }
    return s;
}

/* Serialise a lone node (indented) into a malloc'd string. */
static char *dump(xmlDocPtr doc, xmlNodePtr node)
{
    xmlBufferPtr b = xmlBufferCreate();
    if (!b)
        return NULL;
    char *s = xmlNodeDump(b, doc, node, 0, 1) >= 0 ? copy_buffer(b) : NULL;
    xmlBufferFree(b);
    return s;
}

/* The whole document (its DTD and comments too: entities declared there
 * must stay resolvable), indented, without the <?xml?> declaration. */
static char *dump_doc(xmlDocPtr doc)
{
    xmlBufferPtr b = xmlBufferCreate();
    if (!b)
        return NULL;
    char *s = NULL;
    xmlSaveCtxtPtr sc = xmlSaveToBuffer(b, NULL, XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
    if (sc) {
        long k = xmlSaveDoc(sc, doc);
        if (xmlSaveClose(sc) >= 0 && k >= 0)
            s = copy_buffer(b);
    }
    xmlBufferFree(b);
    return s;
}

char *vmio_hostdev_xml_device(const struct vmio_pci_addr *a, unsigned flags, const char *driver)
{
    xmlNodePtr h = new_hostdev(a, flags, driver);
    if (!h)
        return NULL;
    char *s = dump(NULL, h);
    xmlFreeNode(h);
    return s;
}

/* <vcpu placement='static' cpuset='cpus'>: records before/after in e. */
static int place_vcpus(const char *api, xmlNodePtr root, const char *cpus,
                       struct vmio_hostdev_edit *e)
{
    struct vmio_cpuset s;
    if (vmio_cpuset_parse(cpus, &s) < 0 || vmio_cpuset_empty(&s))
        return vmio_set_error(api, EINVAL, "bad local CPU list of the device: '%s'", cpus);
    char canon[sizeof e->cpuset_after];
    if (vmio_cpuset_format(&s, canon, sizeof canon) >= (int)sizeof canon)
        return vmio_set_error(api, EINVAL, "local CPU list too long: '%s'", cpus);
    xmlNodePtr vcpu = child(root, "vcpu");
    if (!vcpu && !(vcpu = xmlNewChild(root, NULL, BAD_CAST "vcpu", BAD_CAST "1")))
        return vmio_set_error(api, ENOMEM, "out of memory");
    char placement[32];
    get_prop(vcpu, "placement", placement, sizeof placement);
    get_prop(vcpu, "cpuset", e->cpuset_before, sizeof e->cpuset_before);
    snprintf(e->cpuset_after, sizeof e->cpuset_after, "%s", canon);
    if (strcmp(placement, "auto") == 0 || strcmp(e->cpuset_before, canon) != 0) {
        xmlSetProp(vcpu, BAD_CAST "placement", BAD_CAST "static");
        xmlSetProp(vcpu, BAD_CAST "cpuset", BAD_CAST canon);
        e->cpuset_changed = 1;
    }
    return 0;
}

/* <numatune><memory mode='strict' nodeset='node'/></numatune>. */
static int place_memory(const char *api, xmlNodePtr root, int node, struct vmio_hostdev_edit *e)
{
    xmlNodePtr nt = child(root, "numatune");
    if (!nt) {
        nt = xmlNewNode(NULL, BAD_CAST "numatune");
        if (!nt)
            return vmio_set_error(api, ENOMEM, "out of memory");
        xmlNodePtr vcpu = child(root, "vcpu");
        if (vcpu)
            xmlAddNextSibling(vcpu, nt);
        else
            xmlAddChild(root, nt);
    }
    xmlNodePtr mem = child(nt, "memory");
    if (!mem && !(mem = xmlNewChild(nt, NULL, BAD_CAST "memory", NULL)))
        return vmio_set_error(api, ENOMEM, "out of memory");
    char mode[32], placement[32];
    get_prop(mem, "mode", mode, sizeof mode);
    get_prop(mem, "placement", placement, sizeof placement);
    get_prop(mem, "nodeset", e->nodeset_before, sizeof e->nodeset_before);
    snprintf(e->nodeset_after, sizeof e->nodeset_after, "%d", node);
    if (strcmp(mode, "strict") != 0 || strcmp(placement, "auto") == 0 ||
        strcmp(e->nodeset_before, e->nodeset_after) != 0) {
        xmlUnsetProp(mem, BAD_CAST "placement");
        xmlSetProp(mem, BAD_CAST "mode", BAD_CAST "strict");
        xmlSetProp(mem, BAD_CAST "nodeset", BAD_CAST e->nodeset_after);
        e->nodeset_changed = 1;
    }
    return 0;
}

int vmio_hostdev_xml_edit(const char *api, const char *domain_xml, const struct vmio_hostdev *dev,
                          const char *pci, unsigned flags, int attach, char **xml_out,
                          struct vmio_hostdev_edit *e)
{
    struct vmio_hostdev_edit local;
    if (!e)
        e = &local;
    memset(e, 0, sizeof *e);
    struct vmio_pci_addr a;
    if (attach)
        pci = dev->pci;
    if (vmio_hostdev_pci_parse(pci, &a) < 0)
        return vmio_set_error(api, EINVAL, "bad PCI address '%s' (want 0000:81:00.0)", pci);
    if (attach && dev->numa_node < -1)
        return vmio_set_error(api, EINVAL, "bad NUMA node %d", dev->numa_node);
    xmlDocPtr doc;
    int r = parse(api, "domain", domain_xml, &doc);
    if (r < 0)
        return r;
    xmlNodePtr root = NULL;
    if ((r = root_domain(api, doc, &root)) < 0)
        goto out;
    xmlNodePtr devices = child(root, "devices");
    xmlNodePtr h = find_hostdev(devices, &a);
    if (attach) {
        if (!h) {
            if (!devices && !(devices = xmlNewChild(root, NULL, BAD_CAST "devices", NULL))) {
                r = vmio_set_error(api, ENOMEM, "out of memory");
                goto out;
            }
            drop_blanks(devices);
            xmlChar *type = xmlGetProp(root, BAD_CAST "type");
            const char *drv = vmio_hostdev_driver(type && !strcmp((const char *)type, "xen"));
            xmlFree(type);
            if (!(h = new_hostdev(&a, flags, drv)) || !xmlAddChild(devices, h)) {
                xmlFreeNode(h);
                r = vmio_set_error(api, ENOMEM, "out of memory");
                goto out;
            }
            e->hostdev_changed = 1;
        }
        if (dev->local_cpus[0] && (r = place_vcpus(api, root, dev->local_cpus, e)) < 0)
            goto out;
        if (dev->numa_node >= 0 && (r = place_memory(api, root, dev->numa_node, e)) < 0)
            goto out;
    } else {
        if (!h) {
            char canon[16];
            vmio_hostdev_pci_format(&a, canon, sizeof canon);
            r = vmio_set_error(api, ENOENT, "no PCI hostdev %s in the domain XML", canon);
            goto out;
        }
        /* Every copy of it: libvirt refuses a device listed twice, so an
         * XML that has it twice is repaired rather than half detached. */
        while (h) {
            xmlUnlinkNode(h);
            xmlFreeNode(h);
            h = find_hostdev(devices, &a);
        }
        e->hostdev_changed = 1;
    }
    char *s = dump_doc(doc);
    if (!s) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    *xml_out = s;
    r = 0;
out:
    xmlFreeDoc(doc);
    return r;
}

int vmio_hostdev_xml_has(const char *api, const char *domain_xml, const struct vmio_pci_addr *a)
{
    xmlDocPtr doc;
    int r = parse(api, "domain", domain_xml, &doc);
    if (r < 0)
        return r;
    xmlNodePtr root = NULL;
    if ((r = root_domain(api, doc, &root)) == 0)
        r = find_hostdev(child(root, "devices"), a) != NULL;
    xmlFreeDoc(doc);
    return r;
}

VMIO_API int vmio_hostdev_xml_attach(const char *domain_xml, const struct vmio_hostdev *dev,
                                     unsigned flags, char **xml_out)
{
    const char *api = "vmio_hostdev_xml_attach";
    VMIO_CHECK_ARG(api, domain_xml != NULL, EFAULT);
    VMIO_CHECK_ARG(api, dev != NULL, EFAULT);
    VMIO_CHECK_ARG(api, xml_out != NULL, EFAULT);
    VMIO_CHECK_ARG(api, (flags & ~VMIO_HOSTDEV_MANAGED) == 0, EINVAL);
    VMIO_CHECK_ARG(api, memchr(dev->pci, '\0', sizeof dev->pci) != NULL, EINVAL);
    VMIO_CHECK_ARG(api, memchr(dev->local_cpus, '\0', sizeof dev->local_cpus) != NULL, EINVAL);
    return vmio_hostdev_xml_edit(api, domain_xml, dev, NULL, flags, 1, xml_out, NULL);
}

VMIO_API int vmio_hostdev_xml_detach(const char *domain_xml, const char *pci, char **xml_out)
{
    const char *api = "vmio_hostdev_xml_detach";
    VMIO_CHECK_ARG(api, domain_xml != NULL, EFAULT);
    VMIO_CHECK_ARG(api, pci != NULL, EFAULT);
    VMIO_CHECK_ARG(api, xml_out != NULL, EFAULT);
    return vmio_hostdev_xml_edit(api, domain_xml, NULL, pci, 0, 0, xml_out, NULL);
}

/* ---- node devices ------------------------------------------------------ */

static void text_of(xmlNodePtr n, char *buf, size_t len)
{
    buf[0] = '\0';
    xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
    if (v) {
        snprintf(buf, len, "%s", (const char *)v);
        xmlFree(v);
    }
}

int vmio_hostdev_parse_nodedev(const char *api, const char *xml, struct vmio_hostdev *d,
                               unsigned *class_out)
{
    memset(d, 0, sizeof *d);
    d->numa_node = -1;
    *class_out = 0;
    xmlDocPtr doc;
    int r = parse(api, "node device", xml, &doc);
    if (r < 0)
        return r;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr cap = NULL;
    for (xmlNodePtr n = root && is_elem(root, "device") ? root->children : NULL; n; n = n->next)
        if (is_elem(n, "capability") && prop_is(n, "type", "pci"))
            cap = n;
    if (!cap) {
        xmlFreeDoc(doc);
        return 0;
    }
    text_of(child(root, "name"), d->name, sizeof d->name);
    text_of(child(child(root, "driver"), "name"), d->driver, sizeof d->driver);
    long cls = text_num(child(cap, "class"), 0);
    *class_out = (unsigned)cls;
    long dom = text_num(child(cap, "domain"), 0), bus = text_num(child(cap, "bus"), 0),
         slot = text_num(child(cap, "slot"), 0), fn = text_num(child(cap, "function"), 0);
    if (dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7) {
        xmlFreeDoc(doc);
        return vmio_set_error(api, EINVAL, "node device %s: bad PCI address", d->name);
    }
    struct vmio_pci_addr a = { (unsigned)dom, (unsigned)bus, (unsigned)slot, (unsigned)fn };
    vmio_hostdev_pci_format(&a, d->pci, sizeof d->pci);
    long v = prop_num(child(cap, "vendor"), "id", 0), p = prop_num(child(cap, "product"), "id", 0);
    d->vendor = (uint16_t)(v > 0 ? v : 0);
    d->device = (uint16_t)(p > 0 ? p : 0);
    xmlNodePtr numa = child(cap, "numa");
    if (numa) {
        long nn = prop_num(numa, "node", -1);
        d->numa_node = nn >= 0 && nn < 4096 ? (int)nn : -1;
    }
    for (xmlNodePtr n = cap->children; n; n = n->next) {
        if (!is_elem(n, "capability"))
            continue;
        if (prop_is(n, "type", "virt_functions")) {
            long m = prop_num(n, "maxCount", 0);
            d->total_vfs = m > 0 && m < 65536 ? (int)m : 0;
            for (xmlNodePtr c = n->children; c; c = c->next)
                if (is_elem(c, "address"))
                    d->num_vfs++;
        } else if (prop_is(n, "type", "phys_function")) {
            struct vmio_pci_addr pf;
            if (addr_of(child(n, "address"), &pf) == 0) {
                d->is_vf = 1;
                vmio_hostdev_pci_format(&pf, d->pf, sizeof d->pf);
            }
        }
    }
    xmlFreeDoc(doc);
    return 1;
}
