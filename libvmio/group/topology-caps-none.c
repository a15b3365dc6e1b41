/* libvirt capabilities XML as a topology source, without libxml2:
 * -ENOTSUP. */
#include "core/internal.h"
#include "group/topology.h"

int vmio_topo_from_caps_xml(const char *api, const char *caps_xml, struct vmio_topo *t)
{
    (void)caps_xml;
    (void)t;
    return vmio_set_error(api, ENOTSUP,
                          "capabilities XML topology: libvmio was built without libxml2");
}
