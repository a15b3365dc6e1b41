/* xen-group-test: the "xen" VM-group backend (libvmio/group/backend-xen.c)
 * through the public API (include/vmio/group.h), on live domains in dom0.
 * tests/xen/guest/30-group.sh runs it and reads the result back with xl.
 *
 *   xen-group-test setup STATE_DIR VM1 VM2
 *       connection, capabilities and their notes; errors (a VM Xen does
 *       not know, group shared memory, a pool scheduler without dedicated
 *       CPUs); group "apitest" with VM1 and VM2 in Pool-0 (no cpupool:
 *       moving CPUs between pools is left to 30-group.sh), strict pinning
 *       off housekeeping CPU 0, weight 600, cap 100: a dry run reports the
 *       changes and makes none (a second dry run reports the same), apply
 *       makes exactly those, a second apply changes nothing. The group is
 *       left applied.
 *   xen-group-test teardown STATE_DIR
 *       the group is destroyed (pins, weight and cap undone) and cannot be
 *       opened again.
 * Prints "ok: ..." or "FAILED: ..." per check; exit status 0 when all
 * passed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/group.h>

static int fails;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok)
        fails++;
}

/* r must be -err and the message must start with api. */
static void check_err(int r, int err, const char *api, const char *what)
{
    const char *m = vmio_errmsg();
    printf("  %s -> %d (%s)\n", what, r, m ? m : "");
    check(r == -err && m && strncmp(m, api, strlen(api)) == 0, what);
}

static vmio_group_conn *connect_xen(const char *dir)
{
    struct vmio_group_connect_opts o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "xen";
    o.state_dir = dir;
    vmio_group_conn *c = NULL;
    int r = vmio_group_connect(&o, &c);
    if (r < 0)
        printf("  %s\n", vmio_errmsg());
    check(r == 0, "connect to the xen backend");
    return r == 0 ? c : NULL;
}

static void print_report(const char *title, const vmio_group_report *r)
{
    printf("  %s: %zu change(s)\n", title, vmio_group_report_count(r));
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        printf("    %s: %s: '%s' -> '%s'\n", ch->vm ? ch->vm : "group", ch->what, ch->before,
               ch->after);
    }
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        printf("    warning: %s\n", vmio_group_report_warning(r, i));
    const char *cpus = vmio_group_report_cpus(r);
    printf("    placement: %s\n", cpus ? cpus : "(none)");
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* The same changes (vm, what, before, after) in the same order. */
static int same_report(const vmio_group_report *a, const vmio_group_report *b)
{
    if (vmio_group_report_count(a) != vmio_group_report_count(b))
        return 0;
    for (size_t i = 0; i < vmio_group_report_count(a); i++) {
        const struct vmio_group_change *x = vmio_group_report_change(a, i);
        const struct vmio_group_change *y = vmio_group_report_change(b, i);
        if (!same_str(x->vm, y->vm) || !same_str(x->what, y->what) ||
            !same_str(x->before, y->before) || !same_str(x->after, y->after))
            return 0;
    }
    return 1;
}

static int has_change(const vmio_group_report *r, const char *vm, const char *what)
{
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        if (same_str(ch->vm, vm) && ch->what && strncmp(ch->what, what, strlen(what)) == 0)
            return 1;
    }
    return 0;
}

static void caps(vmio_group_conn *c)
{
    check(strcmp(vmio_group_backend_name(c), "xen") == 0, "backend name is xen");
    check(strcmp(vmio_group_hypervisor(c), "Xen") == 0, "hypervisor is Xen");
    uint64_t m = 0;
    int r = vmio_group_capabilities(c, &m);
    const uint64_t want = VMIO_GROUP_CAP_DEDICATED_CPUS | VMIO_GROUP_CAP_POOL_SCHEDULER |
                          VMIO_GROUP_CAP_WEIGHT | VMIO_GROUP_CAP_CAP | VMIO_GROUP_CAP_PIN_STRICT |
                          VMIO_GROUP_CAP_PIN_LOOSE | VMIO_GROUP_CAP_METADATA | VMIO_GROUP_CAP_LIVE;
    printf("  capabilities 0x%" PRIx64 "\n", m);
    check(r == 0 && m == want, "capabilities: pools, scheduler, weight, cap, pinning, metadata, live");
    int notes = 1;
    for (unsigned b = 0; b < VMIO_GROUP_CAP_COUNT; b++) {
        const char *n = vmio_group_cap_note(c, 1ull << b);
        printf("  %-16s %-3s %s\n", vmio_group_cap_name(1ull << b), (m >> b) & 1 ? "yes" : "no",
               n ? n : "(null)");
        notes &= n != NULL && strlen(n) > 20;
    }
    check(notes, "every capability has a note");
    check(strstr(vmio_group_cap_note(c, VMIO_GROUP_CAP_COSCHEDULE), "gang") != NULL,
          "coschedule note: no gang scheduling in credit");
    check(strstr(vmio_group_cap_note(c, VMIO_GROUP_CAP_EMULATOR_PIN), "emulator") != NULL,
          "emulator-pin note: PV/PVH have no emulator threads");
    check(strstr(vmio_group_cap_note(c, VMIO_GROUP_CAP_SHARED_MEMORY), "Grant") != NULL,
          "shared-memory note: grant tables need guest drivers");
}

static int setup(const char *dir, const char *vm1, const char *vm2)
{
    vmio_group_conn *c = connect_xen(dir);
    if (!c)
        return 1;
    caps(c);

    vmio_group *g = NULL;
    int r = vmio_group_create(c, "apitest", &g);
    check(r == 0, "create group apitest");
    if (r < 0) {
        printf("  %s\n", vmio_errmsg());
        vmio_group_disconnect(c);
        return 1;
    }
    check_err(vmio_group_add(g, "no-such-domain"), ENOENT, "vmio_group_add",
              "adding a domain Xen does not know is -ENOENT");
    check(vmio_group_add(g, vm1) == 0 && vmio_group_add(g, vm2) == 0, "add both domains");
    check(vmio_group_member_count(g) == 2, "two members");

    struct vmio_group_policy p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.pin = VMIO_GROUP_PIN_STRICT;
    p.dedicated = 1;
    p.shmem_bytes = 1 << 20;
    check_err(vmio_group_set_policy(g, &p), ENOTSUP, "vmio_group_set_policy",
              "group shared memory is -ENOTSUP on xen");
    p.shmem_bytes = 0;
    p.dedicated = 0;
    p.scheduler = "credit2";
    check_err(vmio_group_set_policy(g, &p), EINVAL, "vmio_group_set_policy",
              "a pool scheduler without dedicated CPUs is -EINVAL");
    p.scheduler = NULL;
    p.housekeeping = "0";
    p.weight = 600;
    p.cap = 100;
    r = vmio_group_set_policy(g, &p);
    if (r < 0)
        printf("  %s\n", vmio_errmsg());
    check(r == 0, "policy: strict, weight 600, cap 100, housekeeping 0, no pool");

    vmio_group_report *d1 = NULL, *d2 = NULL, *a1 = NULL, *a2 = NULL;
    r = vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &d1);
    check(r == 0, "dry run");
    if (r == 0) {
        print_report("dry run", d1);
        check(!has_change(d1, NULL, "cpupool") && !has_change(d1, vm1, "cpupool"),
              "dry run: no cpupool without dedicated CPUs");
        check(has_change(d1, vm1, "vcpupin 0") && has_change(d1, vm2, "vcpupin 0"),
              "dry run: both domains are pinned");
        check(has_change(d1, vm1, "weight") && has_change(d1, vm1, "cap") &&
                  has_change(d1, vm1, "metadata"),
              "dry run: weight, cap and metadata");
    }
    r = vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &d2);
    check(r == 0 && d1 && same_report(d1, d2), "a second dry run reports the same: nothing changed");
    r = vmio_group_apply(g, 0, &a1);
    if (r < 0)
        printf("  %s\n", vmio_errmsg());
    check(r == 0, "apply");
    if (r == 0) {
        print_report("apply", a1);
        check(d1 && same_report(d1, a1), "apply made exactly the changes the dry run reported");
    }
    r = vmio_group_apply(g, 0, &a2);
    if (r == 0)
        print_report("second apply", a2);
    check(r == 0 && vmio_group_report_count(a2) == 0, "second apply changes nothing");
    vmio_group_report_free(d1);
    vmio_group_report_free(d2);
    vmio_group_report_free(a1);
    vmio_group_report_free(a2);
    vmio_group_close(g);
    vmio_group_disconnect(c);
    return fails ? 1 : 0;
}

static int teardown(const char *dir)
{
    vmio_group_conn *c = connect_xen(dir);
    if (!c)
        return 1;
    vmio_group *g = NULL;
    int r = vmio_group_open(c, "apitest", &g);
    check(r == 0, "open group apitest");
    if (r < 0) {
        vmio_group_disconnect(c);
        return 1;
    }
    struct vmio_group_policy p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    r = vmio_group_get_policy(g, &p);
    check(r == 0 && p.weight == 600 && p.cap == 100 && p.pin == VMIO_GROUP_PIN_STRICT,
          "the stored policy is read back");
    r = vmio_group_destroy(g);
    if (r < 0)
        printf("  %s\n", vmio_errmsg());
    check(r == 0, "destroy group apitest");
    check_err(vmio_group_open(c, "apitest", &g), ENOENT, "vmio_group_open",
              "a destroyed group cannot be opened");
    vmio_group_disconnect(c);
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "setup") == 0)
        return setup(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "teardown") == 0)
        return teardown(argv[2]);
    fprintf(stderr, "usage: xen-group-test setup STATE_DIR VM1 VM2 | teardown STATE_DIR\n");
    return 2;
}
