/* VM groups, the public entry points of <vmio/group.h> (all but
 * vmio_hostdev_*): the connection to a backend, the groups kept in the
 * state directory (state.c), policy validation against the backend's
 * capabilities, and vmio_group_apply(): placement (placement.c) then, for
 * each member, a diff of what the backend reports against what the policy
 * wants, one report line and one setter call per difference.
 *
 * Dedicated CPUs: where the backend has pools (Xen cpupools) the group's
 * CPUs become its pool. Where it has none (libvirt: KVM, libxl, test),
 * exclusivity is emulated by pinning: the members' vCPUs are pinned inside
 * the group's CPUs, and every other VM's vCPUs and emulator threads are
 * pinned off them. That keeps other VMs' work off those CPUs as long as
 * nobody re-pins them and no VM is started later outside libvmio (a new VM
 * runs anywhere until the next apply); it does not keep host processes
 * or kernel threads off them (that needs a cgroup cpuset partition or
 * isolcpus on the host). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/group.h>

#include "core/internal.h"
#include "group/backend.h"
#include "group/state.h"
#include "group/undo.h"

#define DEFAULT_STATE_DIR "/var/lib/vmio/groups"

struct vmio_group {
    struct vmio_group_conn *conn;
    struct vmio_group_state st;
};

/* ---- connection ------------------------------------------------------- */

VMIO_API int vmio_group_connect(const struct vmio_group_connect_opts *opts, vmio_group_conn **out)
{
    static const char api[] = "vmio_group_connect";
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    VMIO_CHECK_ARG(api, !opts || opts->struct_size >= sizeof(size_t), EINVAL);
    struct vmio_group_connect_opts o = { 0 };
    if (opts)
        memcpy(&o, opts, VMIO_MIN(opts->struct_size, sizeof o));
    const struct vmio_group_backend *be;
    if (!o.backend || strcmp(o.backend, "libvirt") == 0)
        be = &vmio_group_backend_libvirt;
    else if (strcmp(o.backend, "xen") == 0)
        be = &vmio_group_backend_xen;
    else
        return vmio_set_error(api, EINVAL, "unknown backend '%s' (libvirt or xen)", o.backend);

    const char *dir = o.state_dir;
    if (!dir || !*dir)
        dir = getenv("VMIO_GROUP_STATE_DIR");
    if (!dir || !*dir)
        dir = DEFAULT_STATE_DIR;
    struct vmio_group_conn *c = calloc(1, sizeof *c);
    if (!c)
        return vmio_set_error(api, ENOMEM, "out of memory");
    c->be = be;
    c->default_pin = VMIO_GROUP_PIN_LOOSE;
    c->state_dir = strdup(dir);
    c->topology_xml = o.topology_xml ? strdup(o.topology_xml) : NULL;
    if (!c->state_dir || (o.topology_xml && !c->topology_xml)) {
        free(c->state_dir);
        free(c->topology_xml);
        free(c);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    int r = be->open(c, &o);
    if (r < 0) {
        r = vmio_error_reprefix(api, r);
        free(c->state_dir);
        free(c->topology_xml);
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

VMIO_API void vmio_group_disconnect(vmio_group_conn *conn)
{
    if (!conn)
        return;
    if (conn->be->close)
        conn->be->close(conn);
    free(conn->state_dir);
    free(conn->topology_xml);
    free(conn);
}

VMIO_API const char *vmio_group_backend_name(vmio_group_conn *conn)
{
    return conn ? conn->be->name : NULL;
}

VMIO_API const char *vmio_group_hypervisor(vmio_group_conn *conn)
{
    return conn ? conn->hypervisor : NULL;
}

static uint64_t caps_of(struct vmio_group_conn *c)
{
    return c->be->capabilities ? c->be->capabilities(c) : 0;
}

/* A setter exists and this connection's driver supports what it sets (the
 * libvirt backend has every setter; libvirt's Xen driver, for one, has no
 * emulator threads and no NUMA memory binding). */
#define CAN(c, setter, cap) ((c)->be->setter && (caps_of(c) & VMIO_GROUP_CAP_##cap))

VMIO_API int vmio_group_capabilities(vmio_group_conn *conn, uint64_t *caps)
{
    static const char api[] = "vmio_group_capabilities";
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, caps != NULL, EFAULT);
    *caps = caps_of(conn);
    return 0;
}

static const char *const cap_names[VMIO_GROUP_CAP_COUNT] = {
    "dedicated-cpus", "pool-scheduler", "weight", "cap", "pin-strict", "pin-loose",
    "numa-memory", "emulator-pin", "shared-memory", "metadata", "hostdev", "live", "coschedule",
};

VMIO_API const char *vmio_group_cap_name(uint64_t cap)
{
    for (unsigned i = 0; i < VMIO_GROUP_CAP_COUNT; i++)
        if (cap == (1ull << i))
            return cap_names[i];
    return NULL;
}

VMIO_API const char *vmio_group_cap_note(vmio_group_conn *conn, uint64_t cap)
{
    if (!conn || !vmio_group_cap_name(cap))
        return NULL;
    const char *n = conn->be->cap_note ? conn->be->cap_note(conn, cap) : NULL;
    if (n)
        return n;
    return (caps_of(conn) & cap) ? "supported" : "not supported by this backend";
}

/* ---- groups ----------------------------------------------------------- */

static int group_new(struct vmio_group_conn *c, struct vmio_group_state *st, vmio_group **out)
{
    struct vmio_group *g = calloc(1, sizeof *g);
    if (!g) {
        vmio_group_state_clear(st);
        return -ENOMEM;
    }
    g->conn = c;
    g->st = *st;
    memset(st, 0, sizeof *st);
    *out = g;
    return 0;
}

VMIO_API int vmio_group_create(vmio_group_conn *conn, const char *name, vmio_group **out)
{
    static const char api[] = "vmio_group_create";
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, name != NULL, EFAULT);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    if (!vmio_group_name_valid(name))
        return vmio_set_error(api, EINVAL,
                              "invalid group name '%.80s' (1-64 of A-Z a-z 0-9 _ . -, "
                              "not all digits)", name);
    int lk = vmio_group_state_lock(api, conn->state_dir);
    if (lk < 0)
        return lk;
    struct vmio_group_state *all = NULL, st = { 0 };
    size_t n = 0;
    int r = vmio_group_state_load_all(api, conn->state_dir, &all, &n);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].name, name) == 0) {
            r = vmio_set_error(api, EEXIST, "group '%s' exists (id %" PRIu32 ")", name,
                               all[i].id);
            goto out;
        }
    if ((r = vmio_group_state_alloc_id(api, conn->state_dir, &st.id)) < 0)
        goto out;
    snprintf(st.name, sizeof st.name, "%s", name);
    snprintf(st.backend, sizeof st.backend, "%s", conn->be->name);
    st.pin = VMIO_GROUP_PIN_AUTO;
    if ((r = vmio_group_state_save(api, conn->state_dir, &st)) < 0)
        goto out;
    if ((r = group_new(conn, &st, out)) < 0)
        r = vmio_set_error(api, ENOMEM, "out of memory");
out:
    vmio_group_state_clear(&st);
    vmio_group_state_free_all(all, n);
    vmio_group_state_unlock(lk);
    return r;
}

/* The state of the group named or numbered key, from dir. */
static int find_group(const char *api, const char *dir, const char *key,
                      struct vmio_group_state *st)
{
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    int r = vmio_group_state_load_all(api, dir, &all, &n);
    if (r < 0)
        return r;
    int numeric = key[0] >= '1' && key[0] <= '9' && strspn(key, "0123456789") == strlen(key);
    r = vmio_set_error(api, ENOENT, "no group '%.80s'", key);
    for (size_t i = 0; i < n; i++) {
        char idtext[16];
        snprintf(idtext, sizeof idtext, "%" PRIu32, all[i].id);
        if (strcmp(all[i].name, key) == 0 || (numeric && strcmp(idtext, key) == 0)) {
            *st = all[i];
            memset(&all[i], 0, sizeof all[i]);
            r = 0;
            break;
        }
    }
    vmio_group_state_free_all(all, n);
    return r;
}

VMIO_API int vmio_group_open(vmio_group_conn *conn, const char *name_or_id, vmio_group **out)
{
    static const char api[] = "vmio_group_open";
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, name_or_id != NULL, EFAULT);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    struct vmio_group_state st;
    int r = find_group(api, conn->state_dir, name_or_id, &st);
    if (r < 0)
        return r;
    if (strcmp(st.backend, conn->be->name) != 0) {
        r = vmio_set_error(api, EINVAL, "group '%s' belongs to the %s backend, not %s", st.name,
                           st.backend, conn->be->name);
        vmio_group_state_clear(&st);
        return r;
    }
    if (group_new(conn, &st, out) < 0)
        return vmio_set_error(api, ENOMEM, "out of memory");
    return 0;
}

VMIO_API int vmio_group_list(vmio_group_conn *conn, char ***names, size_t *count)
{
    static const char api[] = "vmio_group_list";
    VMIO_CHECK_ARG(api, conn != NULL, EFAULT);
    VMIO_CHECK_ARG(api, names != NULL && count != NULL, EFAULT);
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    int r = vmio_group_state_load_all(api, conn->state_dir, &all, &n);
    if (r < 0)
        return r;
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        vmio_group_state_free_all(all, n);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(all[i].name))) {
            vmio_group_list_free(v, i);
            vmio_group_state_free_all(all, n);
            return vmio_set_error(api, ENOMEM, "out of memory");
        }
    vmio_group_state_free_all(all, n);
    *names = v;
    *count = n;
    return 0;
}

VMIO_API void vmio_group_list_free(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

VMIO_API void vmio_group_close(vmio_group *g)
{
    if (!g)
        return;
    vmio_group_state_clear(&g->st);
    free(g);
}

VMIO_API uint32_t vmio_group_id(const vmio_group *g)
{
    return g ? g->st.id : 0;
}

VMIO_API const char *vmio_group_name(const vmio_group *g)
{
    return g ? g->st.name : NULL;
}

VMIO_API size_t vmio_group_member_count(const vmio_group *g)
{
    return g ? g->st.nmembers : 0;
}

VMIO_API const char *vmio_group_member(const vmio_group *g, size_t i)
{
    return g && i < g->st.nmembers ? g->st.members[i] : NULL;
}

/* Lock the state directory and reload g's own state from it, so that
 * concurrent processes editing the same group see each other's changes.
 * Returns the lock fd. */
static int lock_reload(const char *api, struct vmio_group *g)
{
    int lk = vmio_group_state_lock(api, g->conn->state_dir);
    if (lk < 0)
        return lk;
    struct vmio_group_state st;
    int r = vmio_group_state_load(api, g->conn->state_dir, g->st.id, &st);
    if (r < 0) {
        if (r == -ENOENT)
            r = vmio_set_error(api, ENOENT, "group '%s' (id %" PRIu32 ") no longer exists",
                               g->st.name, g->st.id);
        vmio_group_state_unlock(lk);
        return r;
    }
    vmio_group_state_clear(&g->st);
    g->st = st;
    return lk;
}

static int member_index(const struct vmio_group_state *st, const char *vm)
{
    for (size_t i = 0; i < st->nmembers; i++)
        if (strcmp(st->members[i], vm) == 0)
            return (int)i;
    return -1;
}

VMIO_API int vmio_group_add(vmio_group *g, const char *vm)
{
    static const char api[] = "vmio_group_add";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    VMIO_CHECK_ARG(api, vm != NULL, EFAULT);
    if (!vmio_group_vm_name_valid(vm))
        return vmio_set_error(api, EINVAL, "invalid VM name '%.80s'", vm);
    struct vmio_group_conn *c = g->conn;
    struct vmio_group_vm *cur = calloc(1, sizeof *cur);
    if (!cur)
        return vmio_set_error(api, ENOMEM, "out of memory");
    int r = c->be->vm_get(c, vm, cur);
    if (r < 0) {
        free(cur);
        return vmio_error_reprefix(api, r);
    }
    int lk = lock_reload(api, g);
    if (lk < 0) {
        free(cur);
        return lk;
    }
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    if ((r = vmio_group_state_load_all(api, c->state_dir, &all, &n)) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (all[i].id != g->st.id && member_index(&all[i], vm) >= 0) {
            r = vmio_set_error(api, EBUSY, "VM '%s' is in group '%s' (id %" PRIu32 ")", vm,
                               all[i].name, all[i].id);
            goto out;
        }
    if (cur->tag_id && cur->tag_id != g->st.id) {
        r = vmio_set_error(api, EBUSY,
                           "VM '%s' carries the metadata of group '%s' (id %" PRIu32
                           "): remove it from that group first",
                           vm, cur->tag_name, cur->tag_id);
        goto out;
    }
    if (member_index(&g->st, vm) >= 0)
        goto out; /* already a member: nothing to do */
    if (g->st.nmembers >= VMIO_GROUP_MAX_MEMBERS) {
        r = vmio_set_error(api, ENOSPC, "group '%s' has %u members, the most a group can have",
                           g->st.name, VMIO_GROUP_MAX_MEMBERS);
        goto out;
    }
    if (vmio_group_state_add_member(&g->st, vm) < 0) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    r = vmio_group_state_save(api, c->state_dir, &g->st);
out:
    vmio_group_state_free_all(all, n);
    vmio_group_state_unlock(lk);
    free(cur);
    return r;
}

/* ---- undo ------------------------------------------------------------- */

static int get_topology(const char *api, struct vmio_group_conn *c, struct vmio_topo *t)
{
    int r;
    if (c->topology_xml)
        r = vmio_topo_from_hwloc_xml(api, c->topology_xml, t);
    else if (c->be->topology)
        r = c->be->topology(c, t);
    else
        r = vmio_set_error(api, ENOTSUP, "backend %s cannot describe the host's CPUs",
                           c->be->name);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    if (t->ncpus == 0) {
        vmio_topo_free(t);
        return vmio_set_error(api, EINVAL, "the host topology has no CPUs");
    }
    return 0;
}

static void topo_cpus(const struct vmio_topo *t, struct vmio_cpuset *s)
{
    vmio_cpuset_zero(s);
    for (size_t i = 0; i < t->ncpus; i++)
        if (t->cpus[i].id >= 0 && t->cpus[i].id < VMIO_CPUSET_MAX)
            vmio_cpuset_set(s, (unsigned)t->cpus[i].id);
}

static void topo_nodes(const struct vmio_topo *t, struct vmio_cpuset *s)
{
    vmio_cpuset_zero(s);
    for (int i = 0; i < t->nnodes && i < VMIO_CPUSET_MAX; i++)
        vmio_cpuset_set(s, (unsigned)i);
}

static void fmt_set(const struct vmio_cpuset *s, char *buf, size_t len)
{
    if (vmio_cpuset_format(s, buf, len) >= (int)len && len > 4)
        strcpy(buf + len - 4, "...");
}

/* One change: report it, and unless dry run, make it. A setter's failure
 * is returned with the API's prefix. */
#define CHANGE(call)                                                                   \
    do {                                                                               \
        if (!dry) {                                                                    \
            int cr_ = (call);                                                          \
            if (cr_ < 0)                                                               \
                return vmio_error_reprefix(api, cr_);                                  \
        }                                                                              \
    } while (0)

/* Put one VM back to how it was before it joined: every vCPU and the
 * emulator on all CPUs (less those dedicated to other groups), the
 * default weight, no cap, memory on all nodes, no shared memory, no pool,
 * no tag. Only what the group's policy set is undone. */
static int undo_member(const char *api, struct vmio_group_conn *c,
                       const struct vmio_group_state *st, const char *vm,
                       const struct vmio_topo *topo, const struct vmio_cpuset *taken, int dry,
                       struct vmio_group_report *rep)
{
    const struct vmio_group_backend *be = c->be;
    struct vmio_group_vm *cur = calloc(1, sizeof *cur);
    if (!cur)
        return vmio_set_error(api, ENOMEM, "out of memory");
    int r = be->vm_get(c, vm, cur);
    if (r == -ENOENT) {
        vmio_group_report_warn(rep, "%s: not found by the backend; nothing to undo", vm);
        free(cur);
        return 0;
    }
    if (r < 0) {
        free(cur);
        return vmio_error_reprefix(api, r);
    }
    r = 0;
    /* never applied (no placement recorded): only the tag can be ours */
    int applied = !vmio_cpuset_empty(&st->placed);
    struct vmio_cpuset all, nodes;
    topo_cpus(topo, &all);
    vmio_cpuset_andnot(&all, taken);
    topo_nodes(topo, &nodes);
    char b1[512], b2[512], what[32];
    fmt_set(&all, b2, sizeof b2);
    if (applied && st->pin != VMIO_GROUP_PIN_NONE && be->set_vcpu_pin) {
        for (unsigned v = 0; v < cur->nvcpus && v < VMIO_GROUP_MAX_VCPUS && r == 0; v++) {
            if (vmio_cpuset_equal(&cur->vcpu_pin[v], &all))
                continue;
            fmt_set(&cur->vcpu_pin[v], b1, sizeof b1);
            snprintf(what, sizeof what, "vcpupin %u", v);
            vmio_group_report_add(rep, vm, what, b1, b2);
            if (!dry && (r = be->set_vcpu_pin(c, vm, v, &all)) < 0)
                r = vmio_error_reprefix(api, r);
        }
        if (r == 0 && CAN(c, set_emulator_pin, EMULATOR_PIN) &&
            !vmio_cpuset_empty(&cur->emulator_pin) &&
            !vmio_cpuset_equal(&cur->emulator_pin, &all)) {
            fmt_set(&cur->emulator_pin, b1, sizeof b1);
            vmio_group_report_add(rep, vm, "emulatorpin", b1, b2);
            if (!dry && (r = be->set_emulator_pin(c, vm, &all)) < 0)
                r = vmio_error_reprefix(api, r);
        }
    }
    /* weight and cap: what the VM had before the group (state file), else
     * the backend's default weight and no cap */
    const struct vmio_group_saved *sv = vmio_group_state_saved(st, vm);
    unsigned wback = sv ? sv->weight : be->default_weight, cback = sv ? sv->cap : 0;
    if (r == 0 && applied && st->weight && be->set_weight && cur->weight != wback) {
        snprintf(b1, sizeof b1, "%u", cur->weight);
        snprintf(b2, sizeof b2, "%u", wback);
        vmio_group_report_add(rep, vm, "weight", b1, wback ? b2 : "");
        if (!dry && (r = be->set_weight(c, vm, wback)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0 && applied && st->cap && be->set_cap && cur->cap != cback) {
        snprintf(b1, sizeof b1, "%u", cur->cap);
        snprintf(b2, sizeof b2, "%u", cback);
        vmio_group_report_add(rep, vm, "cap", b1, b2);
        if (!dry && (r = be->set_cap(c, vm, cback)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0 && applied && st->locality != VMIO_GROUP_NEAR_ANY &&
        CAN(c, set_mem_nodes, NUMA_MEMORY) &&
        !vmio_cpuset_empty(&cur->mem_nodes) && !vmio_cpuset_equal(&cur->mem_nodes, &nodes)) {
        fmt_set(&cur->mem_nodes, b1, sizeof b1);
        fmt_set(&nodes, b2, sizeof b2);
        vmio_group_report_add(rep, vm, "numatune", b1, b2);
        if (!dry && (r = be->set_mem_nodes(c, vm, &nodes)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0 && applied && cur->shmem_bytes && CAN(c, set_shmem, SHARED_MEMORY)) {
        snprintf(b1, sizeof b1, "%" PRIu64, cur->shmem_bytes);
        vmio_group_report_add(rep, vm, "shmem", b1, "");
        if (!dry && (r = be->set_shmem(c, vm, st->name, 0)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0 && cur->pool[0] && be->pool_move) {
        vmio_group_report_add(rep, vm, "cpupool", cur->pool, "");
        if (!dry && (r = be->pool_move(c, vm, NULL)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0 && cur->tag_id == st->id && be->set_tag) {
        snprintf(b1, sizeof b1, "%" PRIu32 ":%s", cur->tag_id, cur->tag_name);
        vmio_group_report_add(rep, vm, "metadata", b1, "");
        if (!dry && (r = be->set_tag(c, vm, 0, NULL)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    free(cur);
    return r;
}

/* CPUs dedicated to the groups of dir other than self. */
static void taken_by_others(const struct vmio_group_state *all, size_t n, uint32_t self,
                            struct vmio_cpuset *taken)
{
    vmio_cpuset_zero(taken);
    for (size_t i = 0; i < n; i++)
        if (all[i].id != self && all[i].dedicated)
            vmio_cpuset_or(taken, &all[i].placed);
}

/* Non-members pinned off a dedicated group's CPUs by apply get them back
 * when the group goes: any pin that misses exactly the group's CPUs (and
 * those of other dedicated groups) is widened to all free CPUs. */
static int release_dedicated(const char *api, struct vmio_group_conn *c,
                             const struct vmio_group_state *st, const struct vmio_topo *topo,
                             const struct vmio_cpuset *taken, struct vmio_group_report *rep)
{
    const struct vmio_group_backend *be = c->be;
    if (!st->dedicated || be->pool_ensure || !be->vm_list || vmio_cpuset_empty(&st->placed))
        return 0;
    char **names = NULL;
    size_t n = 0;
    int r = be->vm_list(c, &names, &n);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    struct vmio_cpuset all, off;
    topo_cpus(topo, &all);
    vmio_cpuset_andnot(&all, taken);
    off = all;
    vmio_cpuset_andnot(&off, &st->placed);
    struct vmio_group_vm *cur = calloc(1, sizeof *cur);
    if (!cur)
        r = vmio_set_error(api, ENOMEM, "out of memory");
    char b1[512], b2[512], what[32];
    fmt_set(&all, b2, sizeof b2);
    for (size_t i = 0; i < n && r == 0; i++) {
        if (member_index(st, names[i]) >= 0)
            continue;
        if (be->vm_get(c, names[i], cur) < 0)
            continue; /* went away meanwhile */
        for (unsigned v = 0; v < cur->nvcpus && v < VMIO_GROUP_MAX_VCPUS && r == 0; v++) {
            if (!vmio_cpuset_equal(&cur->vcpu_pin[v], &off))
                continue;
            fmt_set(&cur->vcpu_pin[v], b1, sizeof b1);
            snprintf(what, sizeof what, "vcpupin %u", v);
            vmio_group_report_add(rep, names[i], what, b1, b2);
            if ((r = be->set_vcpu_pin(c, names[i], v, &all)) < 0)
                r = vmio_error_reprefix(api, r);
        }
        if (r == 0 && CAN(c, set_emulator_pin, EMULATOR_PIN) &&
            vmio_cpuset_equal(&cur->emulator_pin, &off)) {
            fmt_set(&cur->emulator_pin, b1, sizeof b1);
            vmio_group_report_add(rep, names[i], "emulatorpin", b1, b2);
            if ((r = be->set_emulator_pin(c, names[i], &all)) < 0)
                r = vmio_error_reprefix(api, r);
        }
    }
    free(cur);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

VMIO_API int vmio_group_remove(vmio_group *g, const char *vm)
{
    static const char api[] = "vmio_group_remove";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    VMIO_CHECK_ARG(api, vm != NULL, EFAULT);
    struct vmio_group_conn *c = g->conn;
    int lk = lock_reload(api, g);
    if (lk < 0)
        return lk;
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    struct vmio_topo topo = { 0 };
    struct vmio_cpuset taken;
    int idx = member_index(&g->st, vm), r;
    if (idx < 0) {
        r = vmio_set_error(api, ENOENT, "VM '%.80s' is not in group '%s'", vm, g->st.name);
        goto out;
    }
    if ((r = vmio_group_state_load_all(api, c->state_dir, &all, &n)) < 0)
        goto out;
    if ((r = get_topology(api, c, &topo)) < 0)
        goto out;
    taken_by_others(all, n, g->st.id, &taken);
    c->report = NULL;
    if ((r = undo_member(api, c, &g->st, vm, &topo, &taken, 0, NULL)) < 0)
        goto out;
    vmio_group_state_forget(&g->st, vm);
    free(g->st.members[idx]);
    memmove(&g->st.members[idx], &g->st.members[idx + 1],
            (g->st.nmembers - (size_t)idx - 1) * sizeof *g->st.members);
    g->st.nmembers--;
    r = vmio_group_state_save(api, c->state_dir, &g->st);
out:
    vmio_topo_free(&topo);
    vmio_group_state_free_all(all, n);
    vmio_group_state_unlock(lk);
    return r;
}

VMIO_API int vmio_group_destroy(vmio_group *g)
{
    static const char api[] = "vmio_group_destroy";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    struct vmio_group_conn *c = g->conn;
    int lk = lock_reload(api, g);
    if (lk < 0) {
        vmio_group_close(g);
        return lk;
    }
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    struct vmio_topo topo = { 0 };
    struct vmio_cpuset taken;
    int r = vmio_group_state_load_all(api, c->state_dir, &all, &n);
    if (r == 0)
        r = get_topology(api, c, &topo);
    if (r < 0)
        goto out;
    taken_by_others(all, n, g->st.id, &taken);
    c->report = NULL;
    for (size_t i = 0; i < g->st.nmembers && r == 0; i++)
        r = undo_member(api, c, &g->st, g->st.members[i], &topo, &taken, 0, NULL);
    if (r == 0)
        r = release_dedicated(api, c, &g->st, &topo, &taken, NULL);
    if (r == 0 && g->st.dedicated && c->be->pool_destroy) {
        char pool[VMIO_GROUP_NAME_MAX + 8];
        snprintf(pool, sizeof pool, "vmio-%s", g->st.name);
        if ((r = c->be->pool_destroy(c, pool, 0, NULL)) < 0)
            r = vmio_error_reprefix(api, r);
    }
    if (r == 0)
        r = vmio_group_state_remove(api, c->state_dir, g->st.id);
out:
    vmio_topo_free(&topo);
    vmio_group_state_free_all(all, n);
    vmio_group_state_unlock(lk);
    vmio_group_close(g);
    return r;
}

/* ---- policy ----------------------------------------------------------- */

static int need_cap(const char *api, struct vmio_group_conn *c, uint64_t cap, const char *why)
{
    if (caps_of(c) & cap)
        return 0;
    return vmio_set_error(api, ENOTSUP, "%s needs the '%s' capability, which the %s backend (%s) "
                          "lacks: %s", why, vmio_group_cap_name(cap), c->be->name,
                          c->hypervisor[0] ? c->hypervisor : "?", vmio_group_cap_note(c, cap));
}

/* What the policy asks of the backend, checked before anything changes. */
static int validate(const char *api, struct vmio_group_conn *c, const struct vmio_group_state *p)
{
    int r = 0;
    int pin = p->pin == VMIO_GROUP_PIN_AUTO ? c->default_pin : p->pin;
    if (pin == VMIO_GROUP_PIN_STRICT)
        r = need_cap(api, c, VMIO_GROUP_CAP_PIN_STRICT, "strict pinning");
    else if (pin == VMIO_GROUP_PIN_LOOSE)
        r = need_cap(api, c, VMIO_GROUP_CAP_PIN_LOOSE, "loose pinning");
    if (r == 0 && p->dedicated)
        r = need_cap(api, c, VMIO_GROUP_CAP_DEDICATED_CPUS, "dedicated CPUs");
    if (r == 0 && p->dedicated && pin == VMIO_GROUP_PIN_NONE && !c->be->pool_ensure)
        r = vmio_set_error(api, EINVAL, "dedicated CPUs without a pool need pinning (pin none)");
    if (r == 0 && p->scheduler[0]) {
        if (!p->dedicated)
            r = vmio_set_error(api, EINVAL, "a pool scheduler needs dedicated CPUs");
        else
            r = need_cap(api, c, VMIO_GROUP_CAP_POOL_SCHEDULER, "a pool scheduler");
    }
    if (r == 0 && p->housekeeping[0] && pin == VMIO_GROUP_PIN_NONE)
        r = vmio_set_error(api, EINVAL, "housekeeping CPUs need pinning (pin none)");
    if (r == 0 && p->weight)
        r = need_cap(api, c, VMIO_GROUP_CAP_WEIGHT, "a group weight");
    if (r == 0 && p->cap)
        r = need_cap(api, c, VMIO_GROUP_CAP_CAP, "a group cap");
    if (r == 0 && p->shmem_bytes)
        r = need_cap(api, c, VMIO_GROUP_CAP_SHARED_MEMORY, "group shared memory");
    return r;
}

VMIO_API int vmio_group_set_policy(vmio_group *g, const struct vmio_group_policy *policy)
{
    static const char api[] = "vmio_group_set_policy";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    VMIO_CHECK_ARG(api, policy != NULL, EFAULT);
    VMIO_CHECK_ARG(api, policy->struct_size >= sizeof(size_t), EINVAL);
    struct vmio_group_policy p = { 0 };
    memcpy(&p, policy, VMIO_MIN(policy->struct_size, sizeof p));
    if (p.pin < VMIO_GROUP_PIN_AUTO || p.pin > VMIO_GROUP_PIN_LOOSE)
        return vmio_set_error(api, EINVAL, "unknown pin mode %d", p.pin);
    if (p.locality < VMIO_GROUP_NEAR_ANY || p.locality > VMIO_GROUP_NEAR_PCI)
        return vmio_set_error(api, EINVAL, "unknown locality %d", p.locality);
    if (p.locality == VMIO_GROUP_NEAR_PCI && (!p.pci || !*p.pci))
        return vmio_set_error(api, EINVAL, "locality near a PCI device needs policy->pci");
    if (p.ncpus > VMIO_CPUSET_MAX || p.weight > 1000000 || p.cap > 100u * VMIO_CPUSET_MAX ||
        p.shmem_bytes > (1ull << 50))
        return vmio_set_error(api, EINVAL, "ncpus, weight, cap or shmem_bytes out of range");
    if (p.shmem_bytes && (p.shmem_bytes < (1u << 20) || (p.shmem_bytes & (p.shmem_bytes - 1))))
        return vmio_set_error(api, EINVAL, "shared memory must be a power of two of at least "
                              "1 MiB (ivshmem), not %" PRIu64 " bytes", p.shmem_bytes);

    /* Through the state file's own parser: what is stored reads back. */
    struct vmio_group_state np = g->st;
    np.members = NULL;
    np.nmembers = 0;
    np.saved = NULL;
    np.nsaved = 0;
    np.pin = p.pin;
    np.locality = p.locality;
    np.dedicated = p.dedicated ? 1 : 0;
    np.ncpus = p.ncpus;
    np.weight = p.weight;
    np.cap = p.cap;
    np.shmem_bytes = p.shmem_bytes;
    np.pci[0] = np.housekeeping[0] = np.scheduler[0] = '\0';
    if (p.pci && *p.pci) {
        if (strlen(p.pci) >= sizeof np.pci)
            return vmio_set_error(api, EINVAL, "invalid PCI address '%.40s'", p.pci);
        snprintf(np.pci, sizeof np.pci, "%s", p.pci);
    }
    if (p.housekeeping && *p.housekeeping) {
        struct vmio_cpuset hk;
        if (strlen(p.housekeeping) >= sizeof np.housekeeping ||
            vmio_cpuset_parse(p.housekeeping, &hk) < 0)
            return vmio_set_error(api, EINVAL, "housekeeping '%.40s' is not a CPU list",
                                  p.housekeeping);
        vmio_cpuset_format(&hk, np.housekeeping, sizeof np.housekeeping);
    }
    if (p.scheduler && *p.scheduler) {
        if (strlen(p.scheduler) >= sizeof np.scheduler)
            return vmio_set_error(api, EINVAL, "invalid scheduler '%.40s'", p.scheduler);
        snprintf(np.scheduler, sizeof np.scheduler, "%s", p.scheduler);
    }
    char *text = NULL;
    struct vmio_group_state chk;
    int r = vmio_group_state_format(api, &np, &text);
    if (r < 0)
        return r;
    r = vmio_group_state_parse(api, "policy", text, strlen(text), &chk);
    free(text);
    if (r < 0)
        return r;
    vmio_group_state_clear(&chk);
    if ((r = validate(api, g->conn, &np)) < 0)
        return r;

    int lk = lock_reload(api, g);
    if (lk < 0)
        return lk;
    np.members = g->st.members;
    np.nmembers = g->st.nmembers;
    np.saved = g->st.saved;
    np.nsaved = g->st.nsaved;
    np.placed = g->st.placed;
    g->st = np;
    r = vmio_group_state_save(api, g->conn->state_dir, &g->st);
    vmio_group_state_unlock(lk);
    return r;
}

VMIO_API int vmio_group_get_policy(vmio_group *g, struct vmio_group_policy *policy)
{
    static const char api[] = "vmio_group_get_policy";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    VMIO_CHECK_ARG(api, policy != NULL, EFAULT);
    VMIO_CHECK_ARG(api, policy->struct_size >= sizeof(size_t), EINVAL);
    struct vmio_group_policy p = { 0 };
    p.struct_size = policy->struct_size;
    p.pin = g->st.pin;
    p.locality = g->st.locality;
    p.pci = g->st.pci[0] ? g->st.pci : NULL;
    p.dedicated = g->st.dedicated;
    p.ncpus = g->st.ncpus;
    p.housekeeping = g->st.housekeeping[0] ? g->st.housekeeping : NULL;
    p.weight = g->st.weight;
    p.cap = g->st.cap;
    p.scheduler = g->st.scheduler[0] ? g->st.scheduler : NULL;
    p.shmem_bytes = g->st.shmem_bytes;
    memcpy(policy, &p, VMIO_MIN(policy->struct_size, sizeof p));
    return 0;
}

/* ---- apply ------------------------------------------------------------ */

struct apply_ctx {
    const char *api;
    struct vmio_group_conn *c;
    const struct vmio_group_state *st;
    struct vmio_group_report *rep;
    int dry;
    int pin;
    struct vmio_cpuset all_nodes;   /* "no binding", to undo a first one */
    struct vmio_undo undo;
    struct vmio_group_state *mst;   /* = st, to keep what members had */
    int mst_changed;
};

/* Tests: the nth change of the next applies fails (EIO), counted from 1. */
static unsigned fail_change_at, changes_made;

void vmio_group_test_fail_change(unsigned n)
{
    fail_change_at = n;
    changes_made = 0;
}

/* Before each change: 0, or the injected failure (tests). */
static int injected(struct apply_ctx *a)
{
    if (fail_change_at && ++changes_made == fail_change_at)
        return vmio_set_error(a->api, EIO, "injected failure of change %u", fail_change_at);
    return 0;
}

/* After a change whose undo entry was reserved (filled by the caller from
 * the VM's current state) and which returned r: a change that could not
 * be made leaves the log again. */
static int change_made(struct apply_ctx *a, int r)
{
    if (r < 0) {
        vmio_undo_cancel(&a->undo);
        return vmio_error_reprefix(a->api, r);
    }
    return 0;
}

/* Reserve an undo entry of kind for vm, or return from the caller. */
#define UNDO_ENTRY(u, k, vmname)                                                       \
    struct vmio_undo_entry *u = vmio_undo_reserve(api, &a->undo);                      \
    if (!u)                                                                            \
        return -ENOMEM;                                                                \
    u->kind = (k);                                                                     \
    snprintf(u->vm, sizeof u->vm, "%s", (vmname))

/* Make one change of apply unless dry run: UNDO_ENTRY first, then this. */
#define MAKE(u, call)                                                                  \
    do {                                                                               \
        if (dry) {                                                                     \
            vmio_undo_cancel(&a->undo);                                                \
        } else {                                                                       \
            int mr_ = injected(a);                                                     \
            mr_ = change_made(a, mr_ < 0 ? mr_ : (call));                              \
            if (mr_ < 0)                                                               \
                return mr_;                                                            \
        }                                                                              \
    } while (0)

static int diff_set(struct apply_ctx *a, const char *vm, const char *what,
                    const struct vmio_cpuset *cur, const struct vmio_cpuset *want, int *changed)
{
    *changed = 0;
    if (vmio_cpuset_equal(cur, want))
        return 0;
    char b1[512], b2[512];
    fmt_set(cur, b1, sizeof b1);
    fmt_set(want, b2, sizeof b2);
    vmio_group_report_add(a->rep, vm, what, b1, b2);
    *changed = 1;
    return 0;
}

/* Before the group first changes a member's weight or cap: what it had,
 * to put back at remove (kept in the state file; not replaced later). */
static int keep_before(struct apply_ctx *a, const struct vmio_group_vm *cur)
{
    if (a->dry)
        return 0;
    int s = vmio_group_state_save_before(a->mst, cur->name, cur->weight, cur->cap);
    if (s < 0)
        return vmio_set_error(a->api, ENOMEM, "out of memory");
    a->mst_changed |= s;
    return 0;
}

static int apply_member(struct apply_ctx *a, const struct vmio_group_vm *cur,
                        const struct vmio_place_result *res, size_t m, unsigned total_vcpus)
{
    const char *api = a->api;
    struct vmio_group_conn *c = a->c;
    const struct vmio_group_backend *be = c->be;
    const struct vmio_group_state *st = a->st;
    const char *vm = cur->name;
    int dry = a->dry, ch;
    char b1[512], b2[512], what[32];

    char pool[VMIO_GROUP_NAME_MAX + 8];
    snprintf(pool, sizeof pool, "vmio-%s", st->name);
    if (!dry && st->dedicated && be->pool_move && strcmp(cur->pool, pool) != 0) {
        /* pinning it into the pool's CPUs may move it there (Xen) */
        UNDO_ENTRY(u, VMIO_UNDO_POOL_MOVE, vm);
        snprintf(u->name, sizeof u->name, "%s", cur->pool);
        u->guard = 1;
    }
    if (a->pin != VMIO_GROUP_PIN_NONE) {
        for (unsigned v = 0; v < cur->nvcpus && v < VMIO_GROUP_MAX_VCPUS; v++) {
            snprintf(what, sizeof what, "vcpupin %u", v);
            diff_set(a, vm, what, &cur->vcpu_pin[v], &res->vcpu[m][v], &ch);
            if (ch) {
                UNDO_ENTRY(u, VMIO_UNDO_VCPU_PIN, vm);
                u->vcpu = v;
                u->set = cur->vcpu_pin[v];
                MAKE(u, be->set_vcpu_pin(c, vm, v, &res->vcpu[m][v]));
            }
        }
        if (CAN(c, set_emulator_pin, EMULATOR_PIN) && !vmio_cpuset_empty(&res->emulator)) {
            diff_set(a, vm, "emulatorpin", &cur->emulator_pin, &res->emulator, &ch);
            if (ch) {
                UNDO_ENTRY(u, VMIO_UNDO_EMULATOR_PIN, vm);
                u->set = cur->emulator_pin;
                MAKE(u, be->set_emulator_pin(c, vm, &res->emulator));
            }
        } else if (st->housekeeping[0] && m == 0) {
            vmio_group_report_warn(a->rep, "the %s backend cannot pin emulator threads: "
                                   "housekeeping CPUs are only kept free of vCPUs", be->name);
        }
    }
    unsigned share = total_vcpus ? cur->nvcpus : 1, total = total_vcpus ? total_vcpus : 1;
    if (st->weight && be->set_weight) {
        unsigned w = (unsigned)VMIO_MAX(1ull, (uint64_t)st->weight * share / total);
        if (w != cur->weight) {
            if (keep_before(a, cur) < 0)
                return -ENOMEM;
            snprintf(b1, sizeof b1, "%u", cur->weight);
            snprintf(b2, sizeof b2, "%u", w);
            vmio_group_report_add(a->rep, vm, "weight", cur->weight ? b1 : "", b2);
            UNDO_ENTRY(u, VMIO_UNDO_WEIGHT, vm);
            u->value = cur->weight;
            MAKE(u, be->set_weight(c, vm, w));
        }
    }
    if (st->cap && be->set_cap) {
        unsigned w = (unsigned)VMIO_MAX(1ull, (uint64_t)st->cap * share / total);
        if (w != cur->cap) {
            if (keep_before(a, cur) < 0)
                return -ENOMEM;
            snprintf(b1, sizeof b1, "%u", cur->cap);
            snprintf(b2, sizeof b2, "%u", w);
            vmio_group_report_add(a->rep, vm, "cap", cur->cap ? b1 : "", b2);
            UNDO_ENTRY(u, VMIO_UNDO_CAP, vm);
            u->value = cur->cap;
            MAKE(u, be->set_cap(c, vm, w));
        }
    }
    if (st->locality != VMIO_GROUP_NEAR_ANY && !vmio_cpuset_empty(&res->nodes)) {
        if (CAN(c, set_mem_nodes, NUMA_MEMORY)) {
            diff_set(a, vm, "numatune", &cur->mem_nodes, &res->nodes, &ch);
            if (ch) {
                UNDO_ENTRY(u, VMIO_UNDO_MEM_NODES, vm);
                u->set = vmio_cpuset_empty(&cur->mem_nodes) ? a->all_nodes : cur->mem_nodes;
                MAKE(u, be->set_mem_nodes(c, vm, &res->nodes));
            }
        } else if (m == 0) {
            vmio_group_report_warn(a->rep, "the %s backend cannot bind memory to NUMA nodes: "
                                   "only the vCPUs are placed", be->name);
        }
    }
    if (st->dedicated && be->pool_move) {
        if (strcmp(cur->pool, pool) != 0) {
            vmio_group_report_add(a->rep, vm, "cpupool", cur->pool, pool);
            UNDO_ENTRY(u, VMIO_UNDO_POOL_MOVE, vm);
            snprintf(u->name, sizeof u->name, "%s", cur->pool);
            MAKE(u, be->pool_move(c, vm, pool));
        }
    }
    if (st->shmem_bytes && CAN(c, set_shmem, SHARED_MEMORY) &&
        cur->shmem_bytes != st->shmem_bytes) {
        snprintf(b1, sizeof b1, "%" PRIu64, cur->shmem_bytes);
        snprintf(b2, sizeof b2, "%" PRIu64, st->shmem_bytes);
        vmio_group_report_add(a->rep, vm, "shmem", cur->shmem_bytes ? b1 : "", b2);
        UNDO_ENTRY(u, VMIO_UNDO_SHMEM, vm);
        snprintf(u->name, sizeof u->name, "%s", st->name);
        u->bytes = cur->shmem_bytes;
        MAKE(u, be->set_shmem(c, vm, st->name, st->shmem_bytes));
    }
    if (be->set_tag && (cur->tag_id != st->id || strcmp(cur->tag_name, st->name) != 0)) {
        snprintf(b1, sizeof b1, "%" PRIu32 ":%s", cur->tag_id, cur->tag_name);
        snprintf(b2, sizeof b2, "%" PRIu32 ":%s", st->id, st->name);
        vmio_group_report_add(a->rep, vm, "metadata", cur->tag_id ? b1 : "", b2);
        UNDO_ENTRY(u, VMIO_UNDO_TAG, vm);
        u->id = cur->tag_id;
        snprintf(u->name, sizeof u->name, "%s", cur->tag_name);
        MAKE(u, be->set_tag(c, vm, st->id, st->name));
    }
    return 0;
}

/* Pin a VM outside the group (kind: vCPU or emulator), logged for undo. */
static int other_change(struct apply_ctx *a, enum vmio_undo_kind kind, const char *vm,
                        unsigned vcpu, const struct vmio_cpuset *had,
                        const struct vmio_cpuset *want)
{
    const char *api = a->api;
    const struct vmio_group_backend *be = a->c->be;
    UNDO_ENTRY(u, kind, vm);
    u->vcpu = vcpu;
    u->set = *had;
    int r = injected(a);
    if (r == 0)
        r = kind == VMIO_UNDO_VCPU_PIN ? be->set_vcpu_pin(a->c, vm, vcpu, want)
                                       : be->set_emulator_pin(a->c, vm, want);
    return change_made(a, r);
}

/* Dedicated CPUs without pools: every VM outside the group is pinned off
 * the group's CPUs (see the comment at the top of this file). */
static int keep_others_off(struct apply_ctx *a, const struct vmio_cpuset *group_cpus,
                           const struct vmio_cpuset *all, const struct vmio_cpuset *taken)
{
    const char *api = a->api;
    struct vmio_group_conn *c = a->c;
    const struct vmio_group_backend *be = c->be;
    if (!be->vm_list)
        return vmio_set_error(api, ENOTSUP, "the %s backend cannot list VMs: dedicated CPUs "
                              "cannot be kept free of other VMs", be->name);
    char **names = NULL;
    size_t n = 0;
    int r = be->vm_list(c, &names, &n);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    /* where a VM pinned only to the group's CPUs goes instead */
    struct vmio_cpuset rest = *all;
    vmio_cpuset_andnot(&rest, group_cpus);
    vmio_cpuset_andnot(&rest, taken);
    if (vmio_cpuset_empty(&rest)) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return vmio_set_error(api, ENOSPC, "dedicated CPUs: no CPU would be left for the VMs "
                              "outside dedicated groups");
    }
    struct vmio_group_vm *cur = calloc(1, sizeof *cur);
    if (!cur)
        r = vmio_set_error(api, ENOMEM, "out of memory");
    int dry = a->dry;
    char what[32];
    for (size_t i = 0; i < n && r == 0; i++) {
        if (member_index(a->st, names[i]) >= 0)
            continue;
        if (be->vm_get(c, names[i], cur) < 0)
            continue; /* went away meanwhile */
        for (unsigned v = 0; v < cur->nvcpus && v < VMIO_GROUP_MAX_VCPUS && r == 0; v++) {
            struct vmio_cpuset want = cur->vcpu_pin[v];
            vmio_cpuset_andnot(&want, group_cpus);
            if (vmio_cpuset_empty(&want))
                want = rest;
            int ch;
            snprintf(what, sizeof what, "vcpupin %u", v);
            diff_set(a, names[i], what, &cur->vcpu_pin[v], &want, &ch);
            if (ch && !dry)
                r = other_change(a, VMIO_UNDO_VCPU_PIN, names[i], v, &cur->vcpu_pin[v], &want);
        }
        if (r == 0 && CAN(c, set_emulator_pin, EMULATOR_PIN) &&
            !vmio_cpuset_empty(&cur->emulator_pin)) {
            struct vmio_cpuset want = cur->emulator_pin;
            vmio_cpuset_andnot(&want, group_cpus);
            if (vmio_cpuset_empty(&want))
                want = rest;
            int ch;
            diff_set(a, names[i], "emulatorpin", &cur->emulator_pin, &want, &ch);
            if (ch && !dry)
                r = other_change(a, VMIO_UNDO_EMULATOR_PIN, names[i], 0, &cur->emulator_pin,
                                 &want);
        }
    }
    free(cur);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return r;
}

/* A step of apply failed with r: put back what the earlier steps changed
 * and say so after the reason of the failure. */
static int roll_back(struct apply_ctx *a, int r)
{
    size_t made = vmio_undo_changes(&a->undo);
    if (a->undo.n == 0)
        return r;
    struct vmio_error_copy e;
    vmio_error_save(&e);
    char why[160];
    size_t left = vmio_undo_run(a->c, &a->undo, why, sizeof why);
    const char *m = strstr(e.msg, ": ");
    m = m ? m + 2 : e.msg;
    if (left == 0 && made == 0) {
        vmio_error_restore(&e);
        return r;
    }
    if (left == 0)
        return vmio_set_error(a->api, -r, "%.140s (the %zu change%s made before it %s undone)",
                              m, made, made == 1 ? "" : "s", made == 1 ? "was" : "were");
    return vmio_set_error(a->api, -r, "%.90s; undoing the changes made before it failed %zu "
                          "time%s, first %s", m, left, left == 1 ? "" : "s", why);
}

/* "group 4-7; web1 4,5; web2 6,7" */
static void placement_text(struct vmio_group_report *rep, const struct vmio_place_result *res,
                           struct vmio_group_vm *const *vms, size_t nvms, int pin)
{
    size_t cap = 64 + nvms * 300, len = 0;
    char *t = malloc(cap);
    if (!t) {
        vmio_group_report_set_cpus(rep, NULL);
        return;
    }
    char set[512];
    fmt_set(&res->cpus, set, sizeof set);
    len += (size_t)snprintf(t + len, cap - len, "group %s", set);
    for (size_t m = 0; pin != VMIO_GROUP_PIN_NONE && m < nvms && m < res->nmembers; m++) {
        struct vmio_cpuset u;
        vmio_cpuset_zero(&u);
        for (unsigned v = 0; v < vms[m]->nvcpus && v < VMIO_GROUP_MAX_VCPUS; v++)
            vmio_cpuset_or(&u, &res->vcpu[m][v]);
        fmt_set(&u, set, sizeof set);
        int w = snprintf(t + len, cap - len, "; %s %s", vms[m]->name, set);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
    vmio_group_report_set_cpus(rep, t);
    free(t);
}

VMIO_API int vmio_group_apply(vmio_group *g, unsigned flags, vmio_group_report **report)
{
    static const char api[] = "vmio_group_apply";
    VMIO_CHECK_ARG(api, g != NULL, EFAULT);
    VMIO_CHECK_ARG(api, (flags & ~VMIO_GROUP_DRY_RUN) == 0, EINVAL);
    struct vmio_group_conn *c = g->conn;
    const struct vmio_group_backend *be = c->be;
    int dry = (flags & VMIO_GROUP_DRY_RUN) != 0;
    struct vmio_group_report *rep = vmio_group_report_new();
    if (!rep)
        return vmio_set_error(api, ENOMEM, "out of memory");
    int lk = lock_reload(api, g);
    if (lk < 0) {
        vmio_group_report_free(rep);
        return lk;
    }
    struct vmio_group_state *all = NULL;
    size_t nall = 0, nvms = 0;
    struct vmio_topo topo = { 0 };
    struct vmio_place_result res = { 0 };
    struct vmio_group_vm **vms = NULL;
    struct vmio_place_member *pm = NULL;
    struct vmio_place_request req = { 0 };
    int placed = 0, r;
    const struct vmio_group_state *st = &g->st;
    struct apply_ctx a = { .api = api, .c = c, .st = st, .rep = rep, .dry = dry, .mst = &g->st };
    a.pin = st->pin == VMIO_GROUP_PIN_AUTO ? c->default_pin : st->pin;

    if ((r = validate(api, c, st)) < 0)
        goto out;
    if ((r = vmio_group_state_load_all(api, c->state_dir, &all, &nall)) < 0)
        goto out;
    if ((r = get_topology(api, c, &topo)) < 0)
        goto out;
    topo_nodes(&topo, &a.all_nodes);

    vms = calloc(st->nmembers ? st->nmembers : 1, sizeof *vms);
    pm = calloc(st->nmembers ? st->nmembers : 1, sizeof *pm);
    if (!vms || !pm) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    unsigned total_vcpus = 0;
    for (size_t i = 0; i < st->nmembers; i++) {
        struct vmio_group_vm *v = calloc(1, sizeof *v);
        if (!v) {
            r = vmio_set_error(api, ENOMEM, "out of memory");
            goto out;
        }
        r = be->vm_get(c, st->members[i], v);
        if (r == -ENOENT) {
            vmio_group_report_warn(rep, "member %s: not found by the backend; skipped",
                                   st->members[i]);
            free(v);
            r = 0;
            continue;
        }
        if (r < 0) {
            free(v);
            r = vmio_error_reprefix(api, r);
            goto out;
        }
        if (v->nvcpus > VMIO_GROUP_MAX_VCPUS) {
            vmio_group_report_warn(rep, "member %s: %u vCPUs, only the first %u are placed",
                                   v->name, v->nvcpus, VMIO_GROUP_MAX_VCPUS);
            v->nvcpus = VMIO_GROUP_MAX_VCPUS;
        }
        vms[nvms] = v;
        pm[nvms].name = v->name;
        pm[nvms].nvcpus = v->nvcpus;
        pm[nvms].mem_bytes = v->mem_bytes;
        total_vcpus += v->nvcpus;
        nvms++;
    }

    req.topo = &topo;
    req.pin = a.pin;
    req.locality = st->locality;
    req.ncpus = st->ncpus;
    req.nmembers = nvms;
    req.members = pm;
    if (st->housekeeping[0] && vmio_cpuset_parse(st->housekeeping, &req.housekeeping) < 0) {
        r = vmio_set_error(api, EINVAL, "housekeeping '%s' is not a CPU list", st->housekeeping);
        goto out;
    }
    taken_by_others(all, nall, st->id, &req.taken);
    if (st->locality == VMIO_GROUP_NEAR_PCI) {
        int node = -1;
        r = vmio_topo_pci_locality(api, c->topology_xml, NULL, st->pci, &req.near, &node);
        if (r < 0)
            goto out;
    }
    if (nvms == 0) {
        vmio_group_report_warn(rep, "group %s has no member the backend knows: nothing placed",
                               st->name);
        goto done;
    }
    if ((r = vmio_place(api, &req, &res)) < 0)
        goto out;
    placed = 1;
    for (size_t i = 0; i < res.nwarnings; i++)
        vmio_group_report_warn(rep, "%s", res.warnings[i]);
    placement_text(rep, &res, vms, nvms, a.pin);

    if (st->dedicated && !be->pool_ensure) {
        /* checked before any change: other VMs need somewhere to go */
        struct vmio_cpuset rest;
        topo_cpus(&topo, &rest);
        vmio_cpuset_andnot(&rest, &res.cpus);
        vmio_cpuset_andnot(&rest, &req.taken);
        if (vmio_cpuset_empty(&rest)) {
            r = vmio_set_error(api, ENOSPC, "dedicated CPUs: no CPU would be left for the VMs "
                               "outside dedicated groups");
            goto out;
        }
    }
    c->report = rep;
    if (st->dedicated && be->pool_ensure) {
        char pool[VMIO_GROUP_NAME_MAX + 8];
        snprintf(pool, sizeof pool, "vmio-%s", st->name);
        struct vmio_undo_entry *u = NULL;
        if (!dry && be->pool_get) {
            if (!(u = vmio_undo_reserve(api, &a.undo))) {
                r = -ENOMEM;
                goto out;
            }
            u->kind = VMIO_UNDO_POOL;
            snprintf(u->name, sizeof u->name, "%s", pool);
            r = be->pool_get(c, pool, &u->existed, &u->set, u->sched, sizeof u->sched);
            if (r < 0) {
                vmio_undo_cancel(&a.undo);
                r = vmio_error_reprefix(api, r);
                goto out;
            }
        }
        r = dry ? 0 : injected(&a);
        if (r == 0)
            r = be->pool_ensure(c, pool, &res.cpus, st->scheduler[0] ? st->scheduler : NULL,
                                dry, rep);
        if (r < 0) {
            /* pool_ensure takes several steps: whatever it did before
             * failing is undone like a whole change */
            if (u)
                u->guard = 1;
            r = vmio_error_reprefix(api, r);
            goto out;
        }
    }
    for (size_t m = 0; m < nvms; m++)
        if ((r = apply_member(&a, vms[m], &res, m, total_vcpus)) < 0)
            goto out;
    if (st->dedicated && !be->pool_ensure) {
        struct vmio_cpuset allcpus;
        topo_cpus(&topo, &allcpus);
        if ((r = keep_others_off(&a, &res.cpus, &allcpus, &req.taken)) < 0)
            goto out;
    }
    if (vmio_group_report_failed(rep)) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    if (!dry && (a.mst_changed || !vmio_cpuset_equal(&g->st.placed, &res.cpus))) {
        g->st.placed = res.cpus;
        if ((r = vmio_group_state_save(api, c->state_dir, &g->st)) < 0)
            goto out;
    }
done:
    if (vmio_group_report_failed(rep))
        r = vmio_set_error(api, ENOMEM, "out of memory");
out:
    if (r < 0)
        r = roll_back(&a, r);
    vmio_undo_free(&a.undo);
    c->report = NULL;
    if (placed)
        vmio_place_result_free(&res);
    for (size_t i = 0; i < nvms; i++)
        free(vms[i]);
    free(vms);
    free(pm);
    vmio_topo_free(&topo);
    vmio_group_state_free_all(all, nall);
    vmio_group_state_unlock(lk);
    if (r == 0 && report)
        *report = rep;
    else
        vmio_group_report_free(rep);
    return r;
}
