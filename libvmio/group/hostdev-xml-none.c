/* libvirt XML editing for InfiniBand passthrough when libvmio is built
 * without libxml2: every call fails with -ENOTSUP and says why. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/internal.h"
#include "group/hostdev.h"

static int no_libxml2(const char *api)
{
    return vmio_set_error(api, ENOTSUP, "libvmio was built without libxml2");
}

int vmio_hostdev_xml_edit(const char *api, const char *domain_xml, const struct vmio_hostdev *dev,
                          const char *pci, unsigned flags, int attach, char **xml_out,
                          struct vmio_hostdev_edit *e)
{
    (void)domain_xml, (void)dev, (void)pci, (void)flags, (void)attach, (void)xml_out, (void)e;
    return no_libxml2(api);
}

int vmio_hostdev_xml_has(const char *api, const char *domain_xml, const struct vmio_pci_addr *a)
{
    (void)domain_xml, (void)a;
    return no_libxml2(api);
}

char *vmio_hostdev_xml_device(const struct vmio_pci_addr *a, unsigned flags, const char *driver)
{
    (void)a, (void)flags, (void)driver;
    return NULL;
}

int vmio_hostdev_parse_nodedev(const char *api, const char *xml, struct vmio_hostdev *d,
                               unsigned *class_out)
{
    (void)xml;
    memset(d, 0, sizeof *d);
    d->numa_node = -1;
    *class_out = 0;
    return no_libxml2(api);
}

VMIO_API int vmio_hostdev_xml_attach(const char *domain_xml, const struct vmio_hostdev *dev,
                                     unsigned flags, char **xml_out)
{
    (void)domain_xml, (void)dev, (void)flags, (void)xml_out;
    return no_libxml2("vmio_hostdev_xml_attach");
}

VMIO_API int vmio_hostdev_xml_detach(const char *domain_xml, const char *pci, char **xml_out)
{
    (void)domain_xml, (void)pci, (void)xml_out;
    return no_libxml2("vmio_hostdev_xml_detach");
}
