/* libvmio VM groups: the VMs of one parallel job scheduled and placed as a
 * unit, and InfiniBand HCAs passed through to them.
 *
 * No hypervisor co-schedules different VMs as a gang. libvmio gets as close
 * as each one allows and says exactly what it can and cannot do
 * (vmio_group_capabilities()):
 *   - dedicated physical CPUs: a Xen cpupool per group with its own
 *     scheduler; on KVM a cgroup cpuset partition plus vCPU pinning;
 *   - a group weight and cap, split across the members by vCPU count;
 *   - co-location on one NUMA node or socket, or near a PCI device (an
 *     HCA), from the host topology (hwloc, libvirt capabilities, Xen's
 *     physinfo);
 *   - a pinning mode: strict 1:1 vCPU -> pCPU (what Xen needs for HPC) or
 *     loose (the group's CPU set; what KVM does best with);
 *   - housekeeping CPUs kept free of vCPUs (the emulator threads go there);
 *   - group shared memory where the backend has it (ivshmem <shmem> on QEMU).
 *
 * Backends: "libvirt" (KVM/QEMU, Xen through libvirt's libxl driver, and
 * libvirt's test driver) and "xen" (libxenctrl directly: cpupools, credit,
 * vCPU affinity). A group's definition (id, name, policy, members) is kept
 * in a state directory; each member also carries the group in its own
 * metadata (libvirt domain metadata, xenstore), so other tools see it.
 *
 * vmio_group_apply() is idempotent: it reads what is in place, changes only
 * what differs from the policy, and reports each change. Dry run reports
 * the same changes without making them.
 *
 * Error convention of <vmio/core.h>: 0 or a non-negative value on success,
 * a negative errno on failure with vmio_errmsg() set; -ENOTSUP when a
 * backend lacks a feature. Option structs: zero-initialise, set
 * struct_size, fill what you need; fields added later go at the end.
 */
#ifndef VMIO_GROUP_H
#define VMIO_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/core.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmio_group_conn vmio_group_conn;
typedef struct vmio_group vmio_group;
typedef struct vmio_group_report vmio_group_report;

/* ===== connection to a backend ======================================== */

struct vmio_group_connect_opts {
    size_t struct_size;
    /* "libvirt" (default) or "xen". */
    const char *backend;
    /* libvirt: the connection URI ("qemu:///system", "test:///path.xml",
     * "xen:///system"); NULL means libvirt's default. xen: unused. */
    const char *uri;
    /* Where group definitions are kept. NULL: $VMIO_GROUP_STATE_DIR, else
     * /var/lib/vmio/groups. Created if missing. */
    const char *state_dir;
    /* Host topology override: an hwloc XML file (for placement tests and
     * planning for another host). NULL: the backend's own view. */
    const char *topology_xml;
};

int vmio_group_connect(const struct vmio_group_connect_opts *opts, vmio_group_conn **out);
void vmio_group_disconnect(vmio_group_conn *conn);
/* "libvirt" or "xen"; and for libvirt the hypervisor ("QEMU", "Test",
 * "Xen"). Owned by conn. */
const char *vmio_group_backend_name(vmio_group_conn *conn);
const char *vmio_group_hypervisor(vmio_group_conn *conn);

/* What a backend can do: a mask of these bits. */
enum vmio_group_cap {
    VMIO_GROUP_CAP_DEDICATED_CPUS = 1u << 0, /* CPUs only the group runs on */
    VMIO_GROUP_CAP_POOL_SCHEDULER = 1u << 1, /* the group's own scheduler (Xen cpupool) */
    VMIO_GROUP_CAP_WEIGHT = 1u << 2,         /* proportional share */
    VMIO_GROUP_CAP_CAP = 1u << 3,            /* upper bound on CPU time */
    VMIO_GROUP_CAP_PIN_STRICT = 1u << 4,     /* 1:1 vCPU -> pCPU */
    VMIO_GROUP_CAP_PIN_LOOSE = 1u << 5,      /* vCPUs float over the group's set */
    VMIO_GROUP_CAP_NUMA_MEMORY = 1u << 6,    /* memory bound to NUMA nodes */
    VMIO_GROUP_CAP_EMULATOR_PIN = 1u << 7,   /* emulator threads on housekeeping CPUs */
    VMIO_GROUP_CAP_SHARED_MEMORY = 1u << 8,  /* group shared memory */
    VMIO_GROUP_CAP_METADATA = 1u << 9,       /* membership recorded on the VM itself */
    VMIO_GROUP_CAP_HOSTDEV = 1u << 10,       /* PCI passthrough (vmio_hostdev_*) */
    VMIO_GROUP_CAP_LIVE = 1u << 11,          /* changes reach running VMs */
    VMIO_GROUP_CAP_COSCHEDULE = 1u << 12     /* gang scheduling: no backend has it */
};
#define VMIO_GROUP_CAP_COUNT 13

/* Mask of enum vmio_group_cap bits this connection supports. */
int vmio_group_capabilities(vmio_group_conn *conn, uint64_t *caps);
/* Short name of one capability bit ("dedicated-cpus"), NULL if unknown. */
const char *vmio_group_cap_name(uint64_t cap);
/* Why the backend lacks (or how it provides) one capability, in one
 * sentence; owned by conn; never NULL for a known bit. */
const char *vmio_group_cap_note(vmio_group_conn *conn, uint64_t cap);

/* ===== groups ========================================================= */

/* Create a group; its id is allocated here and never reused. -EEXIST if
 * the name is taken. Names: 1-64 of [A-Za-z0-9_.-], not all digits. */
int vmio_group_create(vmio_group_conn *conn, const char *name, vmio_group **out);
/* Open an existing group by name or by decimal id. -ENOENT if none. */
int vmio_group_open(vmio_group_conn *conn, const char *name_or_id, vmio_group **out);
/* Names of all groups of this state directory; free with
 * vmio_group_list_free(). */
int vmio_group_list(vmio_group_conn *conn, char ***names, size_t *count);
void vmio_group_list_free(char **names, size_t count);
void vmio_group_close(vmio_group *g);

uint32_t vmio_group_id(const vmio_group *g);
const char *vmio_group_name(const vmio_group *g);
size_t vmio_group_member_count(const vmio_group *g);
const char *vmio_group_member(const vmio_group *g, size_t i);

/* Membership by domain name. Adding a VM that is in another group is
 * -EBUSY; adding one the backend does not know is -ENOENT. Removing a VM
 * undoes what apply set on it (pins, weight, cap, pool) where the backend
 * can, and drops its metadata. */
int vmio_group_add(vmio_group *g, const char *vm);
int vmio_group_remove(vmio_group *g, const char *vm);

/* Undo what apply set on every member, remove the group's pool or
 * partition, forget the group, and close g (also on failure). */
int vmio_group_destroy(vmio_group *g);

/* ===== policy ========================================================= */

enum vmio_group_pin {
    VMIO_GROUP_PIN_AUTO = 0,   /* strict on Xen, loose on KVM (the HPC paper) */
    VMIO_GROUP_PIN_NONE = 1,   /* leave affinity alone */
    VMIO_GROUP_PIN_STRICT = 2, /* vCPU i of each member on its own pCPU */
    VMIO_GROUP_PIN_LOOSE = 3   /* every vCPU on the group's CPU set */
};

enum vmio_group_locality {
    VMIO_GROUP_NEAR_ANY = 0,    /* wherever the CPUs are */
    VMIO_GROUP_NEAR_NODE = 1,   /* all members on one NUMA node if they fit */
    VMIO_GROUP_NEAR_SOCKET = 2, /* all members on one socket if they fit */
    VMIO_GROUP_NEAR_PCI = 3     /* on the CPUs local to a PCI device (an HCA) */
};

struct vmio_group_policy {
    size_t struct_size;
    int pin;             /* enum vmio_group_pin */
    int locality;        /* enum vmio_group_locality */
    const char *pci;     /* NEAR_PCI: "0000:81:00.0" */
    int dedicated;       /* nonzero: the group gets CPUs of its own */
    unsigned ncpus;      /* CPUs for the group; 0: the members' vCPU total */
    const char *housekeeping; /* CPU list kept free of vCPUs ("0,8"); emulator
                                 threads go there. NULL: none */
    unsigned weight;     /* group weight split by vCPU count; 0: leave */
    unsigned cap;        /* group cap in % of one CPU, split; 0: none */
    const char *scheduler; /* Xen pool scheduler ("credit", "credit2");
                              NULL: credit */
    uint64_t shmem_bytes;  /* group shared memory; 0: none */
};

/* Store the policy with the group (applied by vmio_group_apply()).
 * Validated against the backend's capabilities: asking for what it cannot
 * do is -ENOTSUP naming the capability. */
int vmio_group_set_policy(vmio_group *g, const struct vmio_group_policy *policy);
/* The stored policy; strings owned by g, valid until the next set/close. */
int vmio_group_get_policy(vmio_group *g, struct vmio_group_policy *policy);

#define VMIO_GROUP_DRY_RUN 1u  /* report the changes, make none */

/* Bring every member to the policy. Idempotent; *report (optional) lists
 * what changed (or would change). Members the backend no longer knows are
 * reported as warnings, not errors. On failure nothing is left changed:
 * the changes already made are undone, newest first, and the error
 * message says so (or names the first undo that failed in turn). */
int vmio_group_apply(vmio_group *g, unsigned flags, vmio_group_report **report);

/* One change made by apply (or that a dry run would make). */
struct vmio_group_change {
    const char *vm;      /* NULL for a group-wide change (a pool) */
    const char *what;    /* "vcpupin 3", "emulatorpin", "weight", "cap",
                            "cpupool", "numatune", "shmem", "metadata" */
    const char *before;  /* "" when nothing was set */
    const char *after;
};

size_t vmio_group_report_count(const vmio_group_report *r);
const struct vmio_group_change *vmio_group_report_change(const vmio_group_report *r, size_t i);
/* Things apply could not do or the caller should know ("group needs 10
 * CPUs, socket 0 has 8: spread over 2 sockets"). */
size_t vmio_group_report_warning_count(const vmio_group_report *r);
const char *vmio_group_report_warning(const vmio_group_report *r, size_t i);
/* The placement chosen: CPU list of the group and of each member's vCPUs
 * ("4-7"), as text; NULL if none. */
const char *vmio_group_report_cpus(const vmio_group_report *r);
void vmio_group_report_free(vmio_group_report *r);

/* ===== InfiniBand passthrough ========================================= */

struct vmio_hostdev {
    char pci[16];        /* "0000:81:00.0" */
    char name[64];       /* "mlx5_0" (sysfs), or libvirt's "pci_0000_81_00_0" */
    char driver[32];     /* bound driver: "mlx5_core", "vfio-pci", "" */
    uint16_t vendor, device;
    int is_vf;           /* an SR-IOV virtual function */
    char pf[16];         /* its physical function, "" if none */
    int numa_node;       /* -1 if unknown */
    char local_cpus[128];/* CPU list local to the device ("0-7") */
    int total_vfs, num_vfs; /* SR-IOV on a PF */
};

/* InfiniBand/RoCE HCAs and their VFs. Source: sysfs under sysfs_root
 * (NULL: "/sys"), and the libvirt node devices of conn when conn is a
 * libvirt connection (may be NULL). *out is malloc'd; free(). */
int vmio_hostdev_list(vmio_group_conn *conn, const char *sysfs_root,
                      struct vmio_hostdev **out, size_t *count);

/* For vmio_hostdev_xml_attach(): managed='yes' (libvirt detaches and
 * reattaches the device itself). */
#define VMIO_HOSTDEV_MANAGED 1u

/* Add <hostdev mode='subsystem' type='pci' managed='yes'> with the vfio
 * driver to a domain's XML (text in, text out, libxml2), and place the
 * vCPUs and memory on the device's NUMA node (<vcpu cpuset>, <numatune>)
 * when dev->local_cpus/numa_node are known. *xml_out is malloc'd. A
 * device already in the XML is not added twice. */
int vmio_hostdev_xml_attach(const char *domain_xml, const struct vmio_hostdev *dev,
                            unsigned flags, char **xml_out);
/* Remove that <hostdev> (and nothing else). -ENOENT if absent. */
int vmio_hostdev_xml_detach(const char *domain_xml, const char *pci, char **xml_out);

/* Attach/detach a device to a domain through libvirt (persistent config,
 * and live if running), always managed='yes'. flags: 0 or
 * VMIO_GROUP_DRY_RUN (the report carries the XML, nothing changes). Warns
 * through the report: passthrough blocks live migration. */
int vmio_hostdev_attach(vmio_group_conn *conn, const char *vm, const char *pci,
                        unsigned flags, vmio_group_report **report);
int vmio_hostdev_detach(vmio_group_conn *conn, const char *vm, const char *pci,
                        unsigned flags, vmio_group_report **report);
/* Unbind a device from its host driver for passthrough (libvirt
 * virNodeDeviceDetachFlags, vfio) and give it back. */
int vmio_hostdev_host_detach(vmio_group_conn *conn, const char *pci);
int vmio_hostdev_host_reattach(vmio_group_conn *conn, const char *pci);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_GROUP_H */
