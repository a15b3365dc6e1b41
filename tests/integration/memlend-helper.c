/* vmio-test-memlend: a scripted memory-lending client for the integration
 * tests, over the public API only.
 *
 *   lend ADDR SECRET NAME PORTAL BYTES    register as a lender; answer
 *        PROVISION with iqn.2026-12.org.vmio:NAME.leaseID LUN 1 and
 *        RELEASED with unexported; heartbeat every third of the lease;
 *        prints "registered" once registered; exits 0 when the manager
 *        goes away
 *   borrow ADDR SECRET NAME BYTES         request, report attached, print
 *        "lease ID LENDER TARGET_IQN LUN"
 *   request ADDR SECRET NAME BYTES        request, print "lease ID" and exit
 *        without reporting attached (as an `attach` that died)
 *   release ADDR SECRET NAME ID           release a lease
 *
 * Exit status 1 with the library's message on stderr on failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmio/memlend.h>

static int fail(const char *what)
{
    fprintf(stderr, "vmio-test-memlend: %s: %s\n", what, vmio_errmsg());
    return 1;
}

/* A failed call after connecting: say why, then disconnect (nothing may
 * leak under LeakSanitizer, whose stack scan would otherwise decide by
 * chance). */
static int fail_close(vmio_memlend_client *c, const char *what)
{
    fail(what);
    vmio_memlend_disconnect(c);
    return 1;
}

static vmio_memlend_client *conn(char **argv, int role)
{
    vmio_memlend_client *c;
    if (vmio_memlend_connect(argv[2], argv[3], role, argv[4], 10000, &c) < 0) {
        fail("connect");
        exit(1);
    }
    return c;
}

static int lend(char **argv)
{
    vmio_memlend_client *c = conn(argv, VMIO_MEMLEND_ROLE_LENDER);
    uint64_t bytes = strtoull(argv[6], NULL, 0);
    if (vmio_memlend_register(c, argv[5], bytes) < 0)
        return fail_close(c, "register");
    printf("registered\n");
    fflush(stdout);
    time_t last = time(NULL);
    for (;;) {
        int every = vmio_memlend_lease_seconds(c) / 3;
        if (every < 1)
            every = 1;
        if (time(NULL) - last >= every) {
            if (vmio_memlend_heartbeat(c, bytes) < 0)
                break;
            last = time(NULL);
        }
        struct vmio_memlend_notice n;
        int r = vmio_memlend_next_notice(c, 200, &n);
        if (r == -ETIMEDOUT)
            continue;
        if (r < 0)
            break;
        if (n.type == VMIO_MEMLEND_NOTICE_PROVISION) {
            char iqn[224];
            snprintf(iqn, sizeof iqn, "iqn.2026-12.org.vmio:%s.lease%" PRIu64, argv[4],
                     n.lease.id);
            if (vmio_memlend_provided(c, n.lease.id, iqn, 1, 0) < 0)
                fail("provided");
        } else if (n.type == VMIO_MEMLEND_NOTICE_RELEASED) {
            if (vmio_memlend_unexported(c, n.lease.id) < 0)
                fail("unexported");
        }
    }
    fprintf(stderr, "vmio-test-memlend: manager gone: %s\n", vmio_errmsg());
    vmio_memlend_disconnect(c);
    return 0;
}

static int borrow(char **argv, int attach)
{
    vmio_memlend_client *c = conn(argv, VMIO_MEMLEND_ROLE_BORROWER);
    struct vmio_memlend_lease l;
    if (vmio_memlend_request(c, strtoull(argv[5], NULL, 0), &l) < 0)
        return fail_close(c, "request");
    if (!attach) {
        printf("lease %" PRIu64 "\n", l.id);
        vmio_memlend_disconnect(c);
        return 0;
    }
    if (vmio_memlend_attached(c, l.id) < 0)
        return fail_close(c, "attached");
    printf("lease %" PRIu64 " %s %s %u\n", l.id, l.lender, l.target_iqn, l.lun);
    vmio_memlend_disconnect(c);
    return 0;
}

static int release(char **argv)
{
    vmio_memlend_client *c = conn(argv, VMIO_MEMLEND_ROLE_BORROWER);
    if (vmio_memlend_release(c, strtoull(argv[5], NULL, 10)) < 0)
        return fail_close(c, "release");
    vmio_memlend_disconnect(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "lend") == 0)
        return lend(argv);
    if (argc == 6 && strcmp(argv[1], "borrow") == 0)
        return borrow(argv, 1);
    if (argc == 6 && strcmp(argv[1], "request") == 0)
        return borrow(argv, 0);
    if (argc == 6 && strcmp(argv[1], "release") == 0)
        return release(argv);
    fprintf(stderr, "usage: vmio-test-memlend lend|borrow|request|release ADDR SECRET NAME ...\n");
    return 2;
}
