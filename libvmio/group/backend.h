/* VM-group backends: the vtable each hypervisor backend fills, and what the
 * core (group.c) shares with them. Internal.
 *
 * The core owns the policy, the placement and the diff: it reads a VM's
 * current state with vm_get(), works out what must change, reports each
 * change, and (unless dry run) calls one setter per change. A setter left
 * NULL is a capability the backend lacks; the core then fails with
 * -ENOTSUP naming it before changing anything. */
#ifndef VMIO_GROUP_BACKEND_H
#define VMIO_GROUP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/group.h>

#include "group/cpuset.h"
#include "group/topology.h"

#define VMIO_GROUP_NAME_MAX 64
#define VMIO_GROUP_MAX_VCPUS 512

/* One VM as the backend sees it now. */
struct vmio_group_vm {
    char name[256];
    int running;
    unsigned nvcpus;              /* current vCPUs (max if not running) */
    uint64_t mem_bytes;
    /* vcpu_pin[i]: where vCPU i may run now (all host CPUs if unpinned) */
    struct vmio_cpuset vcpu_pin[VMIO_GROUP_MAX_VCPUS];
    struct vmio_cpuset emulator_pin;  /* empty if the backend has none */
    unsigned weight;              /* 0: the backend has no weight */
    unsigned cap;                 /* % of one CPU; 0: none */
    char pool[VMIO_GROUP_NAME_MAX + 8]; /* Xen cpupool, libvirt partition; "" */
    struct vmio_cpuset mem_nodes; /* bound memory nodes; empty: none */
    uint64_t shmem_bytes;         /* the group's shared memory; 0: none */
    /* The group tag found on the VM (its metadata): id 0 if none. */
    uint32_t tag_id;
    char tag_name[VMIO_GROUP_NAME_MAX + 1];
};

struct vmio_group_conn;

struct vmio_group_backend {
    const char *name;                       /* "libvirt", "xen" */
    int (*open)(struct vmio_group_conn *c, const struct vmio_group_connect_opts *o);
    void (*close)(struct vmio_group_conn *c);
    uint64_t (*capabilities)(struct vmio_group_conn *c);
    /* One sentence on how the backend provides cap, or why it cannot. */
    const char *(*cap_note)(struct vmio_group_conn *c, uint64_t cap);
    /* The host's CPUs as this hypervisor numbers them. */
    int (*topology)(struct vmio_group_conn *c, struct vmio_topo *out);
    /* -ENOENT with a message if the VM does not exist. */
    int (*vm_get)(struct vmio_group_conn *c, const char *vm, struct vmio_group_vm *out);

    /* Setters: 0 or -errno with vmio_errmsg() set. NULL: not supported. */
    int (*set_vcpu_pin)(struct vmio_group_conn *c, const char *vm, unsigned vcpu,
                        const struct vmio_cpuset *cpus);
    int (*set_emulator_pin)(struct vmio_group_conn *c, const char *vm,
                            const struct vmio_cpuset *cpus);
    int (*set_weight)(struct vmio_group_conn *c, const char *vm, unsigned weight);
    int (*set_cap)(struct vmio_group_conn *c, const char *vm, unsigned cap);
    int (*set_mem_nodes)(struct vmio_group_conn *c, const char *vm,
                         const struct vmio_cpuset *nodes);
    /* Group shared memory (ivshmem on QEMU): name is the group's. */
    int (*set_shmem)(struct vmio_group_conn *c, const char *vm, const char *name,
                     uint64_t bytes);
    /* Record membership on the VM (id 0: remove the tag). */
    int (*set_tag)(struct vmio_group_conn *c, const char *vm, uint32_t id, const char *group);

    /* Dedicated CPUs. pool_ensure creates or resizes the group's pool (Xen
     * cpupool "vmio-<name>", libvirt cgroup partition) to exactly cpus
     * with the scheduler, reporting what it changed (dry run: nothing
     * changed). pool_move puts a VM into it (pool NULL: back to the
     * default pool). pool_destroy removes it (members must be out). */
    int (*pool_ensure)(struct vmio_group_conn *c, const char *pool, const struct vmio_cpuset *cpus,
                       const char *sched, int dry_run, struct vmio_group_report *rep);
    int (*pool_move)(struct vmio_group_conn *c, const char *vm, const char *pool);
    int (*pool_destroy)(struct vmio_group_conn *c, const char *pool, int dry_run,
                        struct vmio_group_report *rep);
    /* What pool_ensure would change, for undoing it: *exists, and if so its
     * CPUs and scheduler's name. NULL: a pool change cannot be undone. */
    int (*pool_get)(struct vmio_group_conn *c, const char *pool, int *exists,
                    struct vmio_cpuset *cpus, char *sched, size_t schedlen);
    /* Default weight a VM is put back to when it leaves a group. */
    unsigned default_weight;
    /* Names of every VM the backend knows (*names malloc'd, each string
     * too). Used to keep other VMs off a group's dedicated CPUs where the
     * backend has no pools. NULL: not supported. */
    int (*vm_list)(struct vmio_group_conn *c, char ***names, size_t *count);
};

extern const struct vmio_group_backend vmio_group_backend_libvirt;
extern const struct vmio_group_backend vmio_group_backend_xen;

struct vmio_group_conn {
    const struct vmio_group_backend *be;
    void *priv;                 /* the backend's */
    char *state_dir;
    char *topology_xml;         /* override, or NULL */
    char hypervisor[64];        /* set by open: "QEMU", "Test", "Xen" */
    int default_pin;            /* VMIO_GROUP_PIN_STRICT (Xen) or _LOOSE */
    /* The report of the apply/remove in progress (NULL otherwise): where a
     * setter warns when the driver refused part of a change and it fell
     * back (vmio_group_report_warn). */
    struct vmio_group_report *report;
};

/* Report building (group.c). Strings are copied. */
void vmio_group_report_add(struct vmio_group_report *r, const char *vm, const char *what,
                           const char *before, const char *after);
void vmio_group_report_warn(struct vmio_group_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct vmio_group_report *vmio_group_report_new(void);

/* Tests only: the nth change made by the following vmio_group_apply calls
 * fails with EIO (0: none), so that undoing can be checked at every step. */
void vmio_group_test_fail_change(unsigned n);

/* libvirt, loaded at run time (libvirt-dl.c): linked into libvmio it would
 * load GnuTLS and the rest of its tree into every program. Returns the
 * dlopen handle, or NULL with vmio_errmsg() set under api. */
void *vmio_libvirt_handle(const char *api);
/* Resolve one symbol of it: NULL with vmio_errmsg() set if absent. */
void *vmio_libvirt_sym(const char *api, const char *name);
/* The virConnectPtr of a libvirt connection (backend-libvirt.c), NULL for
 * any other backend. For vmio_hostdev_* (hostdev-libvirt.c). */
void *vmio_group_libvirt_conn(struct vmio_group_conn *c);

#endif
