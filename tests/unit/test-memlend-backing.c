/* The lender's lease files (libvmio/memlend/backing.c) on a real tmpfs
 * (needs root for the mount; exits 77 otherwise): create/size, resident
 * bytes as data is written, refusal to free a file that someone still
 * holds open (the target), freeing once closed, listing, and reuse of a
 * tmpfs mounted by a previous run. */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "test-common.h"

#include "memlend/backing.h"

static char dir[256];

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
}

static void teardown(void)
{
    char p[320];
    snprintf(p, sizeof p, "%s/mem", dir);
    umount2(p, MNT_DETACH);
    test_rmtree(dir);
}

START_TEST(lifecycle)
{
    struct vmio_ml_backing b;
    ck_assert_vmio_ok(vmio_ml_backing_open("t", dir, 0, &b));
    struct statfs sf;
    ck_assert_int_eq(statfs(b.dir, &sf), 0);
    ck_assert_uint_eq((unsigned long)sf.f_type, 0x01021994ul); /* tmpfs */

    ck_assert_vmio_ok(vmio_ml_backing_create("t", &b, 7, 8 << 20));
    ck_assert_vmio_err(vmio_ml_backing_create("t", &b, 7, 8 << 20), EEXIST, "t");
    char p[512];
    ck_assert_int_eq(vmio_ml_backing_path(&b, 7, p, sizeof p), 0);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_size, 8 << 20);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(vmio_ml_backing_resident(&b, 7), 0); /* sparse until written */

    /* A writer (the target) fills 3 MiB. */
    int fd = open(p, O_RDWR);
    ck_assert_int_ge(fd, 0);
    static char buf[1 << 20];
    memset(buf, 0xa5, sizeof buf);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pwrite(fd, buf, sizeof buf, (off_t)i << 20), sizeof buf);
    ck_assert_int_eq(vmio_ml_backing_resident(&b, 7), 3 << 20);

    /* Still open elsewhere: not freed, file kept. */
    uint64_t freed = 99;
    ck_assert_vmio_err_msg(vmio_ml_backing_free("t", &b, 7, &freed), EBUSY, "t", "still open");
    ck_assert_uint_eq(freed, 99);
    ck_assert_int_eq(access(p, F_OK), 0);
    close(fd);
    ck_assert_vmio_ok(vmio_ml_backing_free("t", &b, 7, &freed));
    ck_assert_uint_eq(freed, 3 << 20);
    ck_assert_int_ne(access(p, F_OK), 0);
    ck_assert_vmio_err(vmio_ml_backing_free("t", &b, 7, &freed), ENOENT, "t");

    /* Listing, and a second open reuses the mount with its files. */
    ck_assert_vmio_ok(vmio_ml_backing_create("t", &b, 12, 4096));
    ck_assert_vmio_ok(vmio_ml_backing_create("t", &b, 5, 4096));
    struct vmio_ml_backing b2;
    ck_assert_vmio_ok(vmio_ml_backing_open("t", dir, 0, &b2));
    uint64_t *ids;
    size_t n;
    ck_assert_vmio_ok(vmio_ml_backing_list("t", &b2, &ids, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert(ids[0] + ids[1] == 17 && (ids[0] == 5 || ids[0] == 12));
    free(ids);
    /* A ramfs wanted where a tmpfs is: refused. */
    struct vmio_ml_backing b3;
    ck_assert_vmio_err_msg(vmio_ml_backing_open("t", dir, 1, &b3), EEXIST, "t", "tmpfs");
    /* Close unmounts only when empty. */
    vmio_ml_backing_close(&b2);
    ck_assert_int_eq(statfs(b.dir, &sf), 0);
    ck_assert_uint_eq((unsigned long)sf.f_type, 0x01021994ul);
    ck_assert_vmio_ok(vmio_ml_backing_free("t", &b, 12, &freed));
    ck_assert_vmio_ok(vmio_ml_backing_free("t", &b, 5, &freed));
    vmio_ml_backing_close(&b);
    ck_assert_int_eq(statfs(b.dir, &sf), 0);
    ck_assert_uint_ne((unsigned long)sf.f_type, 0x01021994ul);
}
END_TEST

START_TEST(ramfs)
{
    struct vmio_ml_backing b;
    ck_assert_vmio_ok(vmio_ml_backing_open("t", dir, 1, &b));
    struct statfs sf;
    ck_assert_int_eq(statfs(b.dir, &sf), 0);
    ck_assert_uint_eq((unsigned long)sf.f_type, 0x858458f6ul); /* ramfs */
    ck_assert_vmio_ok(vmio_ml_backing_create("t", &b, 1, 1 << 20));
    uint64_t freed;
    ck_assert_vmio_ok(vmio_ml_backing_free("t", &b, 1, &freed));
    vmio_ml_backing_close(&b);
}
END_TEST

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: mounting tmpfs needs root\n");
        return 77;
    }
    Suite *s = suite_create("memlend-backing");
    TCase *tc = tcase_create("backing");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lifecycle);
    tcase_add_test(tc, ramfs);
    suite_add_tcase(s, tc);
    return test_run(s);
}
