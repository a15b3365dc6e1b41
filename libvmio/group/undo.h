/* The undo log of vmio_group_apply: every change apply makes is recorded,
 * with the value it replaces, before it is made; when a later step fails,
 * the changes already made are put back, newest first, so that a failed
 * apply leaves the VMs and pools as it found them. Internal. */
#ifndef VMIO_GROUP_UNDO_H
#define VMIO_GROUP_UNDO_H

#include <stddef.h>
#include <stdint.h>

#include "group/backend.h"

enum vmio_undo_kind {
    VMIO_UNDO_VCPU_PIN,
    VMIO_UNDO_EMULATOR_PIN,
    VMIO_UNDO_WEIGHT,
    VMIO_UNDO_CAP,
    VMIO_UNDO_MEM_NODES,
    VMIO_UNDO_POOL_MOVE,  /* name: the pool the VM was in ("": the default) */
    VMIO_UNDO_SHMEM,      /* name: the group's; bytes: the old size (0: none) */
    VMIO_UNDO_TAG,        /* id/name: the old tag (id 0: none) */
    VMIO_UNDO_POOL,       /* name: the pool; existed 0: destroy it, else
                             set back to set + sched */
};

struct vmio_undo_entry {
    enum vmio_undo_kind kind;
    char vm[256];
    unsigned vcpu;
    unsigned value;              /* weight, cap */
    uint64_t bytes;
    uint32_t id;
    int existed;
    struct vmio_cpuset set;      /* pins, memory nodes, the pool's CPUs */
    char name[VMIO_GROUP_NAME_MAX + 8];
    char sched[16];
    /* Not a change of its own: put back what a setter may do on the side
     * (Xen moves a domain into its group's pool to pin it there). */
    int guard;
};

struct vmio_undo {
    struct vmio_undo_entry *e;
    size_t n, cap;
};

/* Room for one more entry, filled by the caller: NULL (-ENOMEM under api
 * set) when there is none; the change must then not be made. */
struct vmio_undo_entry *vmio_undo_reserve(const char *api, struct vmio_undo *u);
/* The change of the entry just reserved was not made after all. */
void vmio_undo_cancel(struct vmio_undo *u);
/* Changes in the log (guards not counted). */
size_t vmio_undo_changes(const struct vmio_undo *u);
/* Put back every change, newest first, and keep going past a failure:
 * first the VMs' pool moves (a domain back in its old pool before its
 * pins and scheduler parameters, which a move resets), then an existing
 * pool's CPUs (before pins onto them), then the rest, and a pool apply
 * created last (it must be empty).
 * Returns how many could not be undone; the first such failure is
 * described in why (vm, what, reason). The log is left empty. */
size_t vmio_undo_run(struct vmio_group_conn *c, struct vmio_undo *u, char *why, size_t whylen);
void vmio_undo_free(struct vmio_undo *u);

#endif
