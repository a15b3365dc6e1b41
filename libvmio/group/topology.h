/* Host topology for group placement, and the placement itself. Internal.
 *
 * A topology is the host's CPUs as the hypervisor numbers them, each with
 * its core, socket and NUMA node, plus the memory of each node. It comes
 * from hwloc (the running host, an XML file, a synthetic description),
 * from libvirt's capabilities XML (<host><topology><cells>), or from Xen
 * (xc_cputopoinfo, in the Xen backend). Placement is a pure function of a
 * topology, a policy and the members' sizes, so it is tested on XML
 * topologies without any hypervisor. */
#ifndef VMIO_GROUP_TOPOLOGY_H
#define VMIO_GROUP_TOPOLOGY_H

#include <stddef.h>
#include <stdint.h>

#include "group/cpuset.h"

struct vmio_topo_cpu {
    int id;      /* CPU number as the hypervisor uses it (pinning) */
    int core;    /* physical core, unique host-wide */
    int socket;  /* package */
    int node;    /* NUMA node; 0 if the host has none */
};

struct vmio_topo {
    size_t ncpus;
    struct vmio_topo_cpu *cpus;   /* sorted by id */
    int nnodes;                   /* node ids are 0..nnodes-1 */
    uint64_t *node_mem;           /* bytes per node (0: unknown) */
    int nsockets;
};

void vmio_topo_free(struct vmio_topo *t);
/* All of these fill *t (zeroed first) and return 0 or -errno with
 * vmio_errmsg() set under api. */
int vmio_topo_from_host(const char *api, struct vmio_topo *t);               /* hwloc */
int vmio_topo_from_hwloc_xml(const char *api, const char *path, struct vmio_topo *t);
int vmio_topo_from_synthetic(const char *api, const char *desc, struct vmio_topo *t);
int vmio_topo_from_caps_xml(const char *api, const char *caps_xml, struct vmio_topo *t);
/* CPUs and node local to a PCI device ("0000:81:00.0"): from the hwloc XML
 * file when given (I/O objects), else sysfs under sysfs_root (NULL: /sys):
 * local_cpulist and numa_node. -ENOENT if the device is unknown. */
int vmio_topo_pci_locality(const char *api, const char *hwloc_xml, const char *sysfs_root,
                           const char *pci, struct vmio_cpuset *cpus, int *node);
/* For the topology sources: sort t->cpus by id, check the ids are unique
 * and below VMIO_CPUSET_MAX, nodes below nnodes, cores and sockets >= 0,
 * and set nsockets; -EINVAL under api otherwise. */
int vmio_topo_finish(const char *api, struct vmio_topo *t);
/* The hwloc half of vmio_topo_pci_locality (topology-hwloc.c; -ENOTSUP
 * without hwloc). *node is -1 when the device's CPUs span several nodes. */
int vmio_topo_hwloc_pci_locality(const char *api, const char *hwloc_xml, const char *pci,
                                 struct vmio_cpuset *cpus, int *node);

/* ---- placement -------------------------------------------------------- */

enum { VMIO_PLACE_PIN_NONE = 1, VMIO_PLACE_PIN_STRICT = 2, VMIO_PLACE_PIN_LOOSE = 3 };

struct vmio_place_member {
    const char *name;
    unsigned nvcpus;
    uint64_t mem_bytes;
};

struct vmio_place_request {
    const struct vmio_topo *topo;
    int pin;                      /* VMIO_PLACE_PIN_* (already resolved) */
    int locality;                 /* enum vmio_group_locality */
    struct vmio_cpuset near;      /* NEAR_PCI: the device's local CPUs */
    unsigned ncpus;               /* CPUs wanted; 0: sum of nvcpus */
    struct vmio_cpuset housekeeping; /* never given to vCPUs */
    struct vmio_cpuset taken;     /* dedicated to other groups */
    size_t nmembers;
    const struct vmio_place_member *members;
};

struct vmio_place_result {
    struct vmio_cpuset cpus;      /* the group's CPUs */
    struct vmio_cpuset nodes;     /* NUMA nodes they (and the memory) are on */
    struct vmio_cpuset emulator;  /* housekeeping CPUs, else the group's */
    /* per member, per vCPU: where it may run (one CPU when strict, the
     * group's set when loose). vcpu[m][v]. */
    struct vmio_cpuset **vcpu;
    size_t nmembers;
    char **warnings;
    size_t nwarnings;
};

/* 0, or -ENOSPC/-EINVAL with vmio_errmsg() under api. Strict pinning with
 * fewer CPUs than vCPUs is -ENOSPC (1:1 is impossible); other shortfalls
 * (the group does not fit one node/socket) are warnings. */
int vmio_place(const char *api, const struct vmio_place_request *req,
               struct vmio_place_result *out);
void vmio_place_result_free(struct vmio_place_result *r);

#endif
