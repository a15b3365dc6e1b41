/* The error convention through the public API (shared library): negative
 * errno returns, the per-thread message with the API's prefix, EFAULT for
 * NULL arguments, feature discovery, versions and the log callback. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include <vmio/vmio.h>

#include "test-common.h"

START_TEST(test_cleared_after_success)
{
    char dir[256], path[300];
    vmio_file *f = NULL;
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/img", dir);

    ck_assert_vmio_err(vmio_open("", 0, &f), EINVAL, "vmio_open");
    ck_assert_ptr_null(f);
    ck_assert_vmio_ok(vmio_open(path, VMIO_O_CREATE, &f));
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(vmio_errmsg(), "");
    ck_assert_int_eq(vmio_errno(), 0);

    /* A failure in a later call, then a success again. */
    char buf[1];
    ck_assert_vmio_err(vmio_pread(f, buf, 1, 0), EINVAL, "vmio_pread");
    uint64_t size = 1;
    ck_assert_vmio_ok(vmio_get_size(f, &size));
    ck_assert(size == 0);
    ck_assert_str_eq(vmio_errmsg(), "");
    ck_assert_int_eq(vmio_errno(), 0);
    ck_assert_int_eq(vmio_close(f), 0);
    test_rmtree(dir);
}
END_TEST

START_TEST(test_open_bad_uris)
{
    static const char *const bad[] = {
        "", "vmio://user@host/e/p", "vmio://h:0/e/p", "vmio://h:65536/e/p", "vmio://h:x/e",
        "file:///tmp/x#frag", "file:///tmp/%zz", "file:///tmp/a%00b", "/tmp/ctl\nx",
        "vmio://[::1/e/p",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vmio_file *f = (vmio_file *)0x1;    /* must stay untouched */
        int r = vmio_open(bad[i], 0, &f);
        ck_assert_msg(r == -EINVAL, "'%s' gave %d (%s)", bad[i], r, vmio_errmsg());
        ck_assert_vmio_err(r, EINVAL, "vmio_open");
        ck_assert_ptr_eq(f, (vmio_file *)0x1);
    }
}
END_TEST

START_TEST(test_open_unsupported_scheme)
{
    vmio_file *f = NULL;
    ck_assert_vmio_err_msg(vmio_open("nosuch://h/x", 0, &f), EPROTONOSUPPORT, "vmio_open",
                           "nosuch");
    ck_assert_ptr_null(f);
    /* gfarm:// is not built in this configuration. */
    if (!vmio_supports(VMIO_FEATURE_GFARM)) {
        int r = vmio_open("gfarm://meta/home/u/img", 0, &f);
        ck_assert_int_lt(r, 0);
        ck_assert_int_eq(vmio_errno(), -r);
        ck_assert(strncmp(vmio_errmsg(), "vmio_open: ", 11) == 0);
        ck_assert_ptr_null(f);
    }
}
END_TEST

START_TEST(test_open_bad_args)
{
    vmio_file *f = NULL;
    ck_assert_vmio_err(vmio_open(NULL, 0, &f), EFAULT, "vmio_open");
    ck_assert_vmio_err(vmio_open("/tmp/x", 0, NULL), EFAULT, "vmio_open");
    ck_assert_vmio_err(vmio_open_ex(NULL, 0, NULL, &f), EFAULT, "vmio_open");
    ck_assert_vmio_err_msg(vmio_open("/tmp/x", 0x100, &f), EINVAL, "vmio_open", "flags");

    struct vmio_open_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = 4;
    ck_assert_vmio_err_msg(vmio_open_ex("/tmp/x", 0, &o, &f), EINVAL, "vmio_open",
                           "struct_size");
    o.struct_size = sizeof o;
    o.flags_reserved = 1;
    ck_assert_vmio_err_msg(vmio_open_ex("/tmp/x", 0, &o, &f), EINVAL, "vmio_open",
                           "reserved");
    /* Unknown options for file://. */
    ck_assert_vmio_err_msg(vmio_open("file:///tmp/x?bogus=1", 0, &f), EINVAL, "vmio_open",
                           "bogus");
    /* file:// cannot name another host. */
    ck_assert_vmio_err_msg(vmio_open("file://otherhost/tmp/x", 0, &f), EINVAL, "vmio_open",
                           "otherhost");
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_open_missing_and_dir)
{
    char dir[256], path[300];
    vmio_file *f = NULL;
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/does-not-exist", dir);
    ck_assert_vmio_err_msg(vmio_open(path, 0, &f), ENOENT, "vmio_open", "does-not-exist");
    ck_assert_vmio_err(vmio_open(dir, 0, &f), EISDIR, "vmio_open");
    /* EXCL on an existing file. */
    snprintf(path, sizeof path, "%s/img", dir);
    ck_assert_vmio_ok(vmio_open(path, VMIO_O_CREATE, &f));
    vmio_close(f);
    f = NULL;
    ck_assert_vmio_err(vmio_open(path, VMIO_O_CREATE | VMIO_O_EXCL, &f), EEXIST, "vmio_open");
    ck_assert_ptr_null(f);
    test_rmtree(dir);
}
END_TEST

START_TEST(test_null_handles)
{
    char buf[8];
    uint64_t u64;
    int type;
    unsigned caps;
    struct iovec iov = { buf, sizeof buf };
    struct vmio_file_stats st = { .struct_size = sizeof st };

    ck_assert_vmio_err(vmio_pread(NULL, buf, 1, 0), EFAULT, "vmio_pread");
    ck_assert_vmio_err(vmio_pwrite(NULL, buf, 1, 0, 0), EFAULT, "vmio_pwrite");
    ck_assert_vmio_err(vmio_preadv(NULL, &iov, 1, 0), EFAULT, "vmio_preadv");
    ck_assert_vmio_err(vmio_pwritev(NULL, &iov, 1, 0, 0), EFAULT, "vmio_pwritev");
    ck_assert_vmio_err(vmio_flush(NULL), EFAULT, "vmio_flush");
    ck_assert_vmio_err(vmio_discard(NULL, 0, 1), EFAULT, "vmio_discard");
    ck_assert_vmio_err(vmio_discard(NULL, 0, 0), EFAULT, "vmio_discard");
    ck_assert_vmio_err(vmio_write_zeroes(NULL, 0, 1, 0), EFAULT, "vmio_write_zeroes");
    ck_assert_vmio_err(vmio_write_zeroes(NULL, 0, 0, 0), EFAULT, "vmio_write_zeroes");
    ck_assert_vmio_err(vmio_get_size(NULL, &u64), EFAULT, "vmio_get_size");
    ck_assert_vmio_err(vmio_truncate(NULL, 0), EFAULT, "vmio_truncate");
    ck_assert_vmio_err(vmio_block_status(NULL, 0, 1, &u64, &type), EFAULT,
                       "vmio_block_status");
    ck_assert_vmio_err(vmio_get_caps(NULL, &caps), EFAULT, "vmio_get_caps");
    ck_assert_vmio_err(vmio_get_stats(NULL, &st), EFAULT, "vmio_get_stats");
    ck_assert_vmio_err(vmio_aio_fd(NULL), EFAULT, "vmio_aio_fd");
    ck_assert_vmio_err(vmio_aio_run_completions(NULL), EFAULT, "vmio_aio_run_completions");
    ck_assert_vmio_err(vmio_aio_in_flight(NULL), EFAULT, "vmio_aio_in_flight");
    ck_assert_vmio_err(vmio_aio_flush(NULL, NULL, NULL), EFAULT, "vmio_aio_flush");
    ck_assert_vmio_err(vmio_aio_preadv(NULL, &iov, 1, 0, NULL, NULL), EFAULT,
                       "vmio_aio_preadv");
    ck_assert_vmio_err(vmio_aio_pwritev(NULL, &iov, 1, 0, 0, NULL, NULL), EFAULT,
                       "vmio_aio_pwritev");
    ck_assert_str_eq(vmio_backend_name(NULL), "");
    ck_assert_int_eq(vmio_close(NULL), 0);
    vmio_server_free(NULL);
}
END_TEST

START_TEST(test_null_out_params)
{
    char dir[256], path[300];
    vmio_file *f;
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/img", dir);
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = 4096 };
    ck_assert_vmio_ok(vmio_open_ex(path, VMIO_O_CREATE, &o, &f));
    uint64_t u64;
    int type;
    ck_assert_vmio_err(vmio_get_size(f, NULL), EFAULT, "vmio_get_size");
    ck_assert_vmio_err(vmio_get_caps(f, NULL), EFAULT, "vmio_get_caps");
    ck_assert_vmio_err(vmio_get_stats(f, NULL), EFAULT, "vmio_get_stats");
    ck_assert_vmio_err(vmio_block_status(f, 0, 1, NULL, &type), EFAULT, "vmio_block_status");
    ck_assert_vmio_err(vmio_block_status(f, 0, 1, &u64, NULL), EFAULT, "vmio_block_status");
    ck_assert_vmio_err(vmio_pread(f, NULL, 1, 0), EFAULT, "vmio_pread");
    ck_assert_vmio_err(vmio_pwrite(f, NULL, 1, 0, 0), EFAULT, "vmio_pwrite");
    ck_assert_vmio_err(vmio_preadv(f, NULL, 1, 0), EFAULT, "vmio_preadv");
    ck_assert_vmio_err(vmio_preadv(f, NULL, -1, 0), EINVAL, "vmio_preadv");
    ck_assert_vmio_err(vmio_aio_flush(f, NULL, NULL), EFAULT, "vmio_aio_flush");
    /* A struct_size the library cannot fill. */
    struct vmio_file_stats st;
    memset(&st, 0, sizeof st);
    ck_assert_vmio_err(vmio_get_stats(f, &st), EINVAL, "vmio_get_stats");
    /* Request flags that do not apply. */
    char b[16] = { 0 };
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 16, 0, 0x80), EINVAL, "vmio_pwrite", "flags");
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 16, 0, VMIO_REQ_MAY_TRIM), EINVAL, "vmio_pwrite",
                           "flags");
    ck_assert_vmio_err(vmio_block_status(f, 0, 0, &u64, &type), EINVAL, "vmio_block_status");
    vmio_close(f);
    test_rmtree(dir);
}
END_TEST

/* ---- per-thread messages --------------------------------------------- */

struct thr_result {
    int ret, err;
    char msg[256];
    pthread_barrier_t *barrier;
};

static void *thread_fail(void *arg)
{
    struct thr_result *t = arg;
    vmio_file *f;
    /* Both threads fail differently, then look at the message only after
     * the other one failed too. */
    t->ret = vmio_open("vmio://h:99999/x", 0, &f);
    pthread_barrier_wait(t->barrier);
    pthread_barrier_wait(t->barrier);
    t->err = vmio_errno();
    snprintf(t->msg, sizeof t->msg, "%s", vmio_errmsg());
    return NULL;
}

START_TEST(test_per_thread)
{
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, 2);
    struct thr_result t = { .barrier = &b };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_fail, &t), 0);
    pthread_barrier_wait(&b);
    /* The other thread failed with EINVAL; this one fails with EFAULT. */
    ck_assert_vmio_err(vmio_flush(NULL), EFAULT, "vmio_flush");
    pthread_barrier_wait(&b);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&b);

    ck_assert_int_eq(t.ret, -EINVAL);
    ck_assert_int_eq(t.err, EINVAL);
    ck_assert_msg(strncmp(t.msg, "vmio_open: ", 11) == 0, "thread message '%s'", t.msg);
    ck_assert_ptr_nonnull(strstr(t.msg, "port"));
    /* Ours is untouched by the other thread's failure. */
    ck_assert_vmio_err(-EFAULT, EFAULT, "vmio_flush");
}
END_TEST

/* A thread that never failed has an empty message (never NULL). */
static void *thread_clean(void *arg)
{
    int *ok = arg;
    *ok = vmio_errno() == 0 && vmio_errmsg() != NULL && strcmp(vmio_errmsg(), "") == 0;
    return NULL;
}

START_TEST(test_new_thread_clean)
{
    ck_assert_vmio_err(vmio_flush(NULL), EFAULT, "vmio_flush");
    int ok = 0;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_clean, &ok), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(ok, 1);
}
END_TEST

/* ---- features and versions -------------------------------------------- */

START_TEST(test_supports)
{
    static const struct { int f; const char *name; int always; } feats[] = {
        { VMIO_FEATURE_FILE, "file", 1 }, { VMIO_FEATURE_REMOTE, "remote", 1 },
        { VMIO_FEATURE_SERVER, "server", 1 }, { VMIO_FEATURE_RDMA, "rdma", 0 },
        { VMIO_FEATURE_GFARM, "gfarm", 0 }, { VMIO_FEATURE_LIBVIRT, "libvirt", 0 },
        { VMIO_FEATURE_XEN, "xen", 0 }, { VMIO_FEATURE_CUDA, "cuda", 0 },
        { VMIO_FEATURE_HWLOC, "hwloc", 0 },
        { VMIO_FEATURE_MEMLEND_MANAGER, "memlend-manager", 0 },
        { VMIO_FEATURE_MEMLEND_BORROWER, "memlend-borrower", 0 },
    };
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++) {
        int r = vmio_supports(feats[i].f);
        ck_assert_msg(r == 0 || r == 1, "feature %d: %d", feats[i].f, r);
        if (feats[i].always)
            ck_assert_int_eq(r, 1);
        ck_assert_str_eq(vmio_feature_name(feats[i].f), feats[i].name);
    }
    static const int unknown[] = { 0, -1, 12, 1000 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_vmio_err_msg(vmio_supports(unknown[i]), EINVAL, "vmio_supports", "unknown");
        ck_assert_ptr_null(vmio_feature_name(unknown[i]));
    }
}
END_TEST

START_TEST(test_versions)
{
    uint32_t v = vmio_version_number();
    ck_assert_uint_eq(v, VMIO_VERSION_NUMBER);
    ck_assert_uint_eq(v >> 16, VMIO_VERSION_MAJOR);
    ck_assert_uint_eq((v >> 8) & 0xff, VMIO_VERSION_MINOR);
    ck_assert_uint_eq(v & 0xff, VMIO_VERSION_MICRO);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", VMIO_VERSION_MAJOR, VMIO_VERSION_MINOR,
             VMIO_VERSION_MICRO);
    ck_assert_ptr_nonnull(vmio_version_string());
    ck_assert_str_eq(vmio_version_string(), expect);
}
END_TEST

/* ---- log callback ------------------------------------------------------ */

struct log_capture {
    pthread_mutex_t lock;
    int calls;
    int last_level;
    char last[512];
};

static void log_fn(void *opaque, int level, const char *msg)
{
    struct log_capture *c = opaque;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    c->last_level = level;
    snprintf(c->last, sizeof c->last, "%s", msg);
    pthread_mutex_unlock(&c->lock);
}

START_TEST(test_log_callback)
{
    struct log_capture c = { .lock = PTHREAD_MUTEX_INITIALIZER };
    vmio_file *f;

    vmio_set_log(log_fn, &c, VMIO_LOG_DEBUG);
    ck_assert_vmio_err(vmio_open("vmio://h:0/x", 0, &f), EINVAL, "vmio_open");
    ck_assert_int_gt(c.calls, 0);
    ck_assert_int_ge(c.last_level, VMIO_LOG_ERROR);
    ck_assert_int_le(c.last_level, VMIO_LOG_DEBUG);
    /* The log sees what the caller sees. */
    ck_assert_ptr_nonnull(strstr(c.last, "port"));

    /* Levels above max_level are not delivered. */
    int before = c.calls;
    vmio_set_log(log_fn, &c, VMIO_LOG_ERROR - 1);
    ck_assert_vmio_err(vmio_open("vmio://h:0/x", 0, &f), EINVAL, "vmio_open");
    ck_assert_int_eq(c.calls, before);

    /* Removing the callback stops delivery. */
    vmio_set_log(log_fn, &c, VMIO_LOG_DEBUG);
    ck_assert_vmio_err(vmio_open("", 0, &f), EINVAL, "vmio_open");
    ck_assert_int_gt(c.calls, before);
    before = c.calls;
    vmio_set_log(NULL, NULL, VMIO_LOG_DEBUG);
    ck_assert_vmio_err(vmio_open("", 0, &f), EINVAL, "vmio_open");
    ck_assert_vmio_err(vmio_flush(NULL), EFAULT, "vmio_flush");
    ck_assert_int_eq(c.calls, before);
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("convention");
    tcase_add_test(tc, test_cleared_after_success);
    tcase_add_test(tc, test_open_bad_uris);
    tcase_add_test(tc, test_open_unsupported_scheme);
    tcase_add_test(tc, test_open_bad_args);
    tcase_add_test(tc, test_open_missing_and_dir);
    tcase_add_test(tc, test_null_handles);
    tcase_add_test(tc, test_null_out_params);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_add_test(tc, test_per_thread);
    tcase_add_test(tc, test_new_thread_clean);
    suite_add_tcase(s, tc);
    tc = tcase_create("discovery");
    tcase_add_test(tc, test_supports);
    tcase_add_test(tc, test_versions);
    tcase_add_test(tc, test_log_callback);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(errors_suite());
}
