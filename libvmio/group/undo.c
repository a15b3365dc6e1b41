/* The undo log of vmio_group_apply (see undo.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/undo.h"

struct vmio_undo_entry *vmio_undo_reserve(const char *api, struct vmio_undo *u)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        struct vmio_undo_entry *e = realloc(u->e, cap * sizeof *e);
        if (!e) {
            vmio_set_error(api, ENOMEM, "out of memory");
            return NULL;
        }
        u->e = e;
        u->cap = cap;
    }
    struct vmio_undo_entry *e = &u->e[u->n++];
    memset(e, 0, sizeof *e);
    return e;
}

void vmio_undo_cancel(struct vmio_undo *u)
{
    if (u->n > 0)
        u->n--;
}

static const char *kind_name(enum vmio_undo_kind k)
{
    switch (k) {
    case VMIO_UNDO_VCPU_PIN: return "vcpupin";
    case VMIO_UNDO_EMULATOR_PIN: return "emulatorpin";
    case VMIO_UNDO_WEIGHT: return "weight";
    case VMIO_UNDO_CAP: return "cap";
    case VMIO_UNDO_MEM_NODES: return "numatune";
    case VMIO_UNDO_POOL_MOVE: return "cpupool";
    case VMIO_UNDO_SHMEM: return "shmem";
    case VMIO_UNDO_TAG: return "metadata";
    case VMIO_UNDO_POOL: return "cpupool";
    }
    return "change";
}

static int undo_one(struct vmio_group_conn *c, const struct vmio_undo_entry *e)
{
    const struct vmio_group_backend *be = c->be;
    switch (e->kind) {
    case VMIO_UNDO_VCPU_PIN:
        return be->set_vcpu_pin(c, e->vm, e->vcpu, &e->set);
    case VMIO_UNDO_EMULATOR_PIN:
        return be->set_emulator_pin(c, e->vm, &e->set);
    case VMIO_UNDO_WEIGHT:
        return be->set_weight(c, e->vm, e->value);
    case VMIO_UNDO_CAP:
        return be->set_cap(c, e->vm, e->value);
    case VMIO_UNDO_MEM_NODES:
        return be->set_mem_nodes(c, e->vm, &e->set);
    case VMIO_UNDO_POOL_MOVE:
        return be->pool_move(c, e->vm, e->name[0] ? e->name : NULL);
    case VMIO_UNDO_SHMEM:
        return be->set_shmem(c, e->vm, e->name, e->bytes);
    case VMIO_UNDO_TAG:
        return be->set_tag(c, e->vm, e->id, e->name);
    case VMIO_UNDO_POOL:
        if (!e->existed)
            return be->pool_destroy(c, e->name, 0, NULL);
        return be->pool_ensure(c, e->name, &e->set, e->sched[0] ? e->sched : NULL, 0, NULL);
    }
    return -EINVAL;
}

/* 0: domains back to their pools; 1: an existing pool back to its CPUs
 * (before pins onto them); 2: the rest; 3: a pool apply created, once
 * empty. */
static int undo_pass(const struct vmio_undo_entry *e)
{
    if (e->kind == VMIO_UNDO_POOL_MOVE)
        return 0;
    if (e->kind == VMIO_UNDO_POOL)
        return e->existed ? 1 : 3;
    return 2;
}

size_t vmio_undo_changes(const struct vmio_undo *u)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n; i++)
        n += !u->e[i].guard;
    return n;
}

size_t vmio_undo_run(struct vmio_group_conn *c, struct vmio_undo *u, char *why, size_t whylen)
{
    size_t left = 0;
    if (whylen)
        why[0] = '\0';
    for (int pass = 0; pass < 4; pass++) {
        for (size_t i = u->n; i-- > 0;) {
            const struct vmio_undo_entry *e = &u->e[i];
            if (undo_pass(e) != pass || undo_one(c, e) == 0)
                continue;
            if (left++ == 0 && whylen) {
                const char *m = vmio_errmsg();
                const char *colon = m ? strstr(m, ": ") : NULL;
                snprintf(why, whylen, "%s %s%s: %s", e->vm[0] ? e->vm : e->name,
                         kind_name(e->kind), e->kind == VMIO_UNDO_POOL ? " (pool)" : "",
                         colon ? colon + 2 : (m ? m : "failed"));
            }
        }
    }
    u->n = 0;
    return left;
}

void vmio_undo_free(struct vmio_undo *u)
{
    free(u->e);
    u->e = NULL;
    u->n = u->cap = 0;
}
