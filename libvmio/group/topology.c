/* Host topology helpers shared by every source (group/topology.h): freeing,
 * the final sort and sanity checks, and the CPUs local to a PCI device,
 * from an hwloc XML file (topology-hwloc.c) or from sysfs (local_cpulist,
 * numa_node). Reads only under the sysfs root it is given. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "group/topology.h"

void vmio_topo_free(struct vmio_topo *t)
{
    if (!t)
        return;
    free(t->cpus);
    free(t->node_mem);
    memset(t, 0, sizeof *t);
}

static int cmp_cpu(const void *a, const void *b)
{
    const struct vmio_topo_cpu *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

int vmio_topo_finish(const char *api, struct vmio_topo *t)
{
    if (t->ncpus == 0 || !t->cpus)
        return vmio_set_error(api, EINVAL, "topology has no CPUs");
    if (t->ncpus > VMIO_CPUSET_MAX)
        return vmio_set_error(api, EINVAL, "topology has %zu CPUs, at most %d are supported",
                              t->ncpus, VMIO_CPUSET_MAX);
    if (t->nnodes < 1)
        return vmio_set_error(api, EINVAL, "topology has no NUMA node");
    qsort(t->cpus, t->ncpus, sizeof *t->cpus, cmp_cpu);
    int maxsock = -1;
    for (size_t i = 0; i < t->ncpus; i++) {
        const struct vmio_topo_cpu *c = &t->cpus[i];
        if (c->id < 0 || c->id >= VMIO_CPUSET_MAX)
            return vmio_set_error(api, EINVAL, "CPU %d is out of range (0-%d)", c->id,
                                  VMIO_CPUSET_MAX - 1);
        if (i && t->cpus[i - 1].id == c->id)
            return vmio_set_error(api, EINVAL, "CPU %d is listed twice", c->id);
        if (c->node < 0 || c->node >= t->nnodes)
            return vmio_set_error(api, EINVAL, "CPU %d is on node %d, outside 0-%d", c->id,
                                  c->node, t->nnodes - 1);
        if (c->core < 0 || c->socket < 0 || c->socket >= VMIO_CPUSET_MAX)
            return vmio_set_error(api, EINVAL, "CPU %d has no valid core/socket", c->id);
        if (c->socket > maxsock)
            maxsock = c->socket;
    }
    t->nsockets = maxsock + 1;
    return 0;
}

/* "dddd:bb:dd.f", hex digits: the only names looked up under sysfs, so
 * that a device name never walks elsewhere in the tree. */
static int valid_pci_name(const char *s)
{
    static const char form[] = "xxxx:xx:xx.x";
    if (strlen(s) != sizeof form - 1)
        return 0;
    for (size_t i = 0; form[i]; i++) {
        if (form[i] == 'x' ? !isxdigit((unsigned char)s[i]) : s[i] != form[i])
            return 0;
    }
    return 1;
}

static int sysfs_locality(const char *api, const char *root, const char *pci,
                          struct vmio_cpuset *cpus, int *node)
{
    char dir[512], path[600], buf[4096];
    snprintf(dir, sizeof dir, "%s/bus/pci/devices/%s", root ? root : "/sys", pci);
    if (access(dir, F_OK) != 0)
        return vmio_set_error(api, ENOENT, "PCI device %s not found under %s", pci,
                              root ? root : "/sys");
    snprintf(path, sizeof path, "%s/local_cpulist", dir);
    int r = vmio_read_small_file(path, buf, sizeof buf);
    if (r < 0)
        return vmio_set_error_errno(api, -r, "cannot read %s", path);
    struct vmio_cpuset set;
    if (vmio_cpuset_parse(buf, &set) < 0)
        return vmio_error_reprefix(api, EINVAL);
    if (vmio_cpuset_empty(&set))
        return vmio_set_error(api, EINVAL, "%s lists no CPU", path);
    long n = -1;
    snprintf(path, sizeof path, "%s/numa_node", dir);
    if (vmio_read_small_file(path, buf, sizeof buf) == 0) {
        char *end;
        errno = 0;
        n = strtol(buf, &end, 10);
        while (isspace((unsigned char)*end))
            end++;
        if (errno || *end || end == buf || n < -1 || n >= VMIO_CPUSET_MAX)
            return vmio_set_error(api, EINVAL, "%s: bad NUMA node '%.32s'", path, buf);
    }
    *cpus = set;
    *node = (int)n;
    return 0;
}

int vmio_topo_pci_locality(const char *api, const char *hwloc_xml, const char *sysfs_root,
                           const char *pci, struct vmio_cpuset *cpus, int *node)
{
    VMIO_CHECK_ARG(api, pci != NULL && cpus != NULL && node != NULL, EINVAL);
    if (!valid_pci_name(pci))
        return vmio_set_error(api, EINVAL,
                              "bad PCI address '%.32s' (expected domain:bus:slot.function, "
                              "e.g. 0000:81:00.0)",
                              pci);
    if (hwloc_xml)
        return vmio_topo_hwloc_pci_locality(api, hwloc_xml, pci, cpus, node);
    return sysfs_locality(api, sysfs_root, pci, cpus, node);
}
