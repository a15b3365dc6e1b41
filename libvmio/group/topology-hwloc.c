/* Host topology from hwloc (group/topology.h): the running host, an hwloc
 * XML file or a synthetic description ("package:2 core:4 pu:1"), flattened
 * into CPU -> core/socket/node, and the CPUs local to a PCI device from
 * the I/O objects of an hwloc XML file. Packages and cores are numbered by
 * hwloc's logical index (dense, host-wide unique); CPUs and NUMA nodes by
 * their OS index, the numbers the hypervisor pins with. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "core/internal.h"
#include "group/topology.h"

enum src { SRC_HOST, SRC_XML, SRC_SYNTHETIC };

static int open_topology(const char *api, enum src src, const char *arg, int io,
                         hwloc_topology_t *out)
{
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) < 0)
        return vmio_set_error_errno(api, errno ? errno : ENOMEM, "hwloc_topology_init");
    int r = 0;
    if (src == SRC_XML) {
        r = hwloc_topology_set_xml(h, arg);
        if (r < 0) {
            int e = errno ? errno : EINVAL;
            hwloc_topology_destroy(h);
            return vmio_set_error_errno(api, e, "hwloc XML %s", arg);
        }
    } else if (src == SRC_SYNTHETIC) {
        r = hwloc_topology_set_synthetic(h, arg);
        if (r < 0) {
            hwloc_topology_destroy(h);
            return vmio_set_error(api, EINVAL, "bad synthetic topology '%.64s'", arg);
        }
    }
    if (io)
        hwloc_topology_set_io_types_filter(h, HWLOC_TYPE_FILTER_KEEP_ALL);
    /* The host's CPUs as the hypervisor pins them, not only those this
     * process's cgroup or affinity allows. */
    if (src == SRC_HOST)
        hwloc_topology_set_flags(h, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
    if (hwloc_topology_load(h) < 0) {
        int e = errno ? errno : EINVAL;
        hwloc_topology_destroy(h);
        if (src == SRC_XML)
            return vmio_set_error(api, e == ENOENT ? ENOENT : EINVAL,
                                  "hwloc cannot load the XML topology %s", arg);
        return vmio_set_error_errno(api, e, "hwloc_topology_load");
    }
    *out = h;
    return 0;
}

static int flatten(const char *api, hwloc_topology_t h, struct vmio_topo *t)
{
    struct vmio_topo res;
    memset(&res, 0, sizeof res);
    int npu = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PU);
    int nnuma = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_NUMANODE);
    if (npu <= 0)
        return vmio_set_error(api, EINVAL, "hwloc topology has no PU");
    if (npu > VMIO_CPUSET_MAX)
        return vmio_set_error(api, EINVAL, "hwloc topology has %d PUs, at most %d are supported",
                              npu, VMIO_CPUSET_MAX);
    int maxnode = 0;
    for (int i = 0; i < nnuma; i++) {
        hwloc_obj_t n = hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, (unsigned)i);
        if (n->os_index >= VMIO_CPUSET_MAX)
            return vmio_set_error(api, EINVAL, "NUMA node %u is out of range", n->os_index);
        if ((int)n->os_index > maxnode)
            maxnode = (int)n->os_index;
    }
    res.nnodes = maxnode + 1;
    res.ncpus = (size_t)npu;
    res.cpus = calloc((size_t)npu, sizeof *res.cpus);
    res.node_mem = calloc((size_t)res.nnodes, sizeof *res.node_mem);
    if (!res.cpus || !res.node_mem) {
        vmio_topo_free(&res);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    for (int i = 0; i < nnuma; i++) {
        hwloc_obj_t n = hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, (unsigned)i);
        res.node_mem[n->os_index] = n->attr ? n->attr->numanode.local_memory : 0;
    }
    for (int i = 0; i < npu; i++) {
        hwloc_obj_t pu = hwloc_get_obj_by_type(h, HWLOC_OBJ_PU, (unsigned)i);
        struct vmio_topo_cpu *c = &res.cpus[i];
        c->id = (int)pu->os_index;
        hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_CORE, pu);
        hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_PACKAGE, pu);
        /* Without a Core level each PU is its own core. */
        c->core = core ? (int)core->logical_index : (int)pu->logical_index;
        c->socket = pkg ? (int)pkg->logical_index : 0;
        c->node = 0;
        for (int j = 0; j < nnuma; j++) {
            hwloc_obj_t n = hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, (unsigned)j);
            if (n->cpuset && hwloc_bitmap_isset(n->cpuset, pu->os_index)) {
                c->node = (int)n->os_index;
                break;
            }
        }
    }
    int r = vmio_topo_finish(api, &res);
    if (r < 0) {
        vmio_topo_free(&res);
        return r;
    }
    *t = res;
    return 0;
}

static int load(const char *api, enum src src, const char *arg, struct vmio_topo *t)
{
    VMIO_CHECK_ARG(api, t != NULL, EINVAL);
    memset(t, 0, sizeof *t);
    hwloc_topology_t h;
    int r = open_topology(api, src, arg, 0, &h);
    if (r < 0)
        return r;
    r = flatten(api, h, t);
    hwloc_topology_destroy(h);
    return r;
}

int vmio_topo_from_host(const char *api, struct vmio_topo *t)
{
    return load(api, SRC_HOST, NULL, t);
}

int vmio_topo_from_hwloc_xml(const char *api, const char *path, struct vmio_topo *t)
{
    VMIO_CHECK_ARG(api, path != NULL, EINVAL);
    return load(api, SRC_XML, path, t);
}

int vmio_topo_from_synthetic(const char *api, const char *desc, struct vmio_topo *t)
{
    VMIO_CHECK_ARG(api, desc != NULL, EINVAL);
    return load(api, SRC_SYNTHETIC, desc, t);
}

int vmio_topo_hwloc_pci_locality(const char *api, const char *hwloc_xml, const char *pci,
                                 struct vmio_cpuset *cpus, int *node)
{
    VMIO_CHECK_ARG(api, hwloc_xml != NULL && pci != NULL && cpus && node, EINVAL);
    hwloc_topology_t h;
    int r = open_topology(api, SRC_XML, hwloc_xml, 1, &h);
    if (r < 0)
        return r;
    hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(h, pci);
    if (!dev) {
        hwloc_topology_destroy(h);
        return vmio_set_error(api, ENOENT, "PCI device %s is not in %s", pci, hwloc_xml);
    }
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(h, dev);
    struct vmio_cpuset set;
    vmio_cpuset_zero(&set);
    unsigned i;
    if (anc && anc->cpuset) {
        hwloc_bitmap_foreach_begin(i, anc->cpuset)
        {
            if (i < VMIO_CPUSET_MAX)
                vmio_cpuset_set(&set, i);
        }
        hwloc_bitmap_foreach_end();
    }
    int n = -1;
    if (anc && anc->nodeset && hwloc_bitmap_weight(anc->nodeset) == 1)
        n = hwloc_bitmap_first(anc->nodeset);
    hwloc_topology_destroy(h);
    if (vmio_cpuset_empty(&set))
        return vmio_set_error(api, EINVAL, "PCI device %s has no local CPU in %s", pci,
                              hwloc_xml);
    *cpus = set;
    *node = n;
    return 0;
}
