/* xen-group-rollback: a failed vmio_group_apply on the "xen" backend puts
 * back what it had changed (libvmio/group/undo.c). Links the library's
 * internal objects for the one test hook that makes the nth change fail
 * (vmio_group_test_fail_change); tests/xen/guest/30-group.sh compares what
 * xl says before and after, independently of libvmio.
 *
 *   xen-group-rollback count STATE_DIR VM1 VM2
 *       group "rollback" with VM1 and VM2, dedicated CPUs (a credit
 *       cpupool of 2 CPUs off housekeeping CPU 0), strict pinning, weight
 *       1024 and cap 100; prints how many changes a dry run reports.
 *   xen-group-rollback fail K STATE_DIR
 *       apply with the Kth change failing: exit 0 when apply failed with
 *       EIO and said that the changes before it were undone.
 *   xen-group-rollback destroy STATE_DIR
 *       forget the group (its members are left as they are). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/group.h>

#include "group/backend.h"

static vmio_group_conn *connect_xen(const char *dir)
{
    struct vmio_group_connect_opts o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "xen";
    o.state_dir = dir;
    vmio_group_conn *c = NULL;
    if (vmio_group_connect(&o, &c) < 0) {
        fprintf(stderr, "connect: %s\n", vmio_errmsg());
        exit(1);
    }
    return c;
}

static int count(const char *dir, const char *a, const char *b)
{
    vmio_group_conn *c = connect_xen(dir);
    vmio_group *g = NULL;
    struct vmio_group_policy p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.dedicated = 1;
    p.ncpus = 2;
    p.pin = VMIO_GROUP_PIN_STRICT;
    p.housekeeping = "0";
    p.weight = 1024;
    p.cap = 100;
    vmio_group_report *r = NULL;
    if (vmio_group_create(c, "rollback", &g) < 0 || vmio_group_add(g, a) < 0 ||
        vmio_group_add(g, b) < 0 || vmio_group_set_policy(g, &p) < 0 ||
        vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &r) < 0) {
        fprintf(stderr, "count: %s\n", vmio_errmsg());
        return 1;
    }
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        fprintf(stderr, "  %s: %s: '%s' -> '%s'\n", ch->vm ? ch->vm : "group", ch->what,
                ch->before, ch->after);
    }
    printf("%zu\n", vmio_group_report_count(r));
    vmio_group_report_free(r);
    vmio_group_close(g);
    vmio_group_disconnect(c);
    return 0;
}

static int fail(unsigned k, const char *dir)
{
    vmio_group_conn *c = connect_xen(dir);
    vmio_group *g = NULL;
    if (vmio_group_open(c, "rollback", &g) < 0) {
        fprintf(stderr, "open: %s\n", vmio_errmsg());
        return 1;
    }
    vmio_group_test_fail_change(k);
    int r = vmio_group_apply(g, 0, NULL);
    const char *m = vmio_errmsg();
    printf("apply with change %u failing -> %d: %s\n", k, r, m ? m : "");
    int ok = r == -EIO && m && strstr(m, "injected failure") &&
             (k == 1 || strstr(m, "undone)") != NULL);
    vmio_group_close(g);
    vmio_group_disconnect(c);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "count"))
        return count(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "fail"))
        return fail((unsigned)strtoul(argv[2], NULL, 10), argv[3]);
    fprintf(stderr, "usage: xen-group-rollback count DIR VM1 VM2 | fail K DIR\n");
    return 2;
}
