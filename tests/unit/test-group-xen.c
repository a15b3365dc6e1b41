/* The "xen" VM-group backend (libvmio/group/backend-xen.c) where there is
 * no Xen: connecting fails with the library's error convention and says
 * why, and leaks nothing. On a Xen dom0 it exits 77: the backend's real
 * tests run there (tests/xen/guest/30-group.sh). */
#include <unistd.h>

#include "test-common.h"

#include <vmio/group.h>

START_TEST(connect_off_xen)
{
    struct vmio_group_connect_opts o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "xen";
    o.state_dir = "/nonexistent/vmio-groups";
    vmio_group_conn *c = (vmio_group_conn *)&o; /* must stay untouched */
    int r = vmio_group_connect(&o, &c);
    const char *m = vmio_errmsg();
    ck_assert_msg(r < 0, "connected to Xen where there is none");
    ck_assert_int_eq(vmio_errno(), -r);
    ck_assert_msg(strncmp(m, "vmio_group_connect: backend 'xen': ", 35) == 0, "message '%s'", m);
    ck_assert_msg(strstr(m, "libxenctrl") != NULL, "message '%s' does not say what failed", m);
    ck_assert_ptr_eq(c, (vmio_group_conn *)&o);
}
END_TEST

int main(void)
{
    if (access("/dev/xen/privcmd", F_OK) == 0 || access("/proc/xen/privcmd", F_OK) == 0) {
        printf("SKIP: this is a Xen host: the backend is tested in dom0 by tests/xen\n");
        return 77;
    }
    Suite *s = suite_create("group-xen");
    TCase *tc = tcase_create("xen");
    tcase_add_test(tc, connect_off_xen);
    suite_add_tcase(s, tc);
    return test_run(s);
}
