/* Host topology without hwloc: every hwloc-based source of a topology
 * (the running host, hwloc XML, synthetic descriptions, PCI locality from
 * hwloc XML) fails with -ENOTSUP. */
#include "core/internal.h"
#include "group/topology.h"

int vmio_topo_from_host(const char *api, struct vmio_topo *t)
{
    (void)t;
    return vmio_set_error(api, ENOTSUP, "host topology: libvmio was built without hwloc");
}

int vmio_topo_from_hwloc_xml(const char *api, const char *path, struct vmio_topo *t)
{
    (void)path;
    (void)t;
    return vmio_set_error(api, ENOTSUP, "hwloc XML topology: libvmio was built without hwloc");
}

int vmio_topo_from_synthetic(const char *api, const char *desc, struct vmio_topo *t)
{
    (void)desc;
    (void)t;
    return vmio_set_error(api, ENOTSUP,
                          "synthetic topology: libvmio was built without hwloc");
}

int vmio_topo_hwloc_pci_locality(const char *api, const char *hwloc_xml, const char *pci,
                                 struct vmio_cpuset *cpus, int *node)
{
    (void)hwloc_xml;
    (void)pci;
    (void)cpus;
    (void)node;
    return vmio_set_error(api, ENOTSUP,
                          "PCI locality from hwloc XML: libvmio was built without hwloc");
}
