/* vmio_spawn: argv without a shell, captured output, stdin, extra
 * environment, exit statuses, timeouts that kill the whole process group,
 * and vmio_spawn_check's error messages carrying the tool's stderr. */
#include "test-common.h"

#include "core/internal.h"
#include "core/spawn.h"

START_TEST(test_capture)
{
    struct vmio_spawn_result r;
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    ck_assert_int_eq(vmio_spawn("t", argv, NULL, NULL, 5000, &r), 0);
    ck_assert_int_eq(r.status, 3);
    ck_assert_int_eq(r.timed_out, 0);
    ck_assert_str_eq(r.out, "out\n");
    ck_assert_str_eq(r.err, "err\n");
    ck_assert_uint_eq(r.out_len, 4);
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_no_shell)
{
    /* Metacharacters reach the program as plain bytes. */
    struct vmio_spawn_result r;
    const char *argv[] = {"printf", "%s|", "a;b", "$(x)", "*", NULL};
    ck_assert_int_eq(vmio_spawn("t", argv, NULL, NULL, 5000, &r), 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "a;b|$(x)|*|");
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_stdin_and_env)
{
    struct vmio_spawn_result r;
    const char *argv[] = {"sh", "-c", "cat; printf %s \"$VMIO_T\"", NULL};
    const char *env[] = {"VMIO_T=value", NULL};
    ck_assert_int_eq(vmio_spawn("t", argv, env, "input\n", 5000, &r), 0);
    ck_assert_str_eq(r.out, "input\nvalue");
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_large_output)
{
    struct vmio_spawn_result r;
    const char *argv[] = {"head", "-c", "3000000", "/dev/zero", NULL};
    ck_assert_int_eq(vmio_spawn("t", argv, NULL, NULL, 10000, &r), 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.out_len, 3000000);
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_timeout_kills_group)
{
    struct vmio_spawn_result r;
    /* The grandchild holds stdout open; the group kill must end it too. */
    const char *argv[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
    uint64_t t0 = vmio_now_ns();
    ck_assert_int_eq(vmio_spawn("t", argv, NULL, NULL, 300, &r), 0);
    ck_assert_int_eq(r.timed_out, 1);
    ck_assert_int_eq(r.status, 128 + 9);
    ck_assert_msg(vmio_now_ns() - t0 < 5000000000ull, "took too long");
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_not_found)
{
    struct vmio_spawn_result r;
    const char *argv[] = {"vmio-no-such-tool", NULL};
    ck_assert_vmio_err_msg(vmio_spawn("t_api", argv, NULL, NULL, 5000, &r), ENOENT, "t_api",
                           "vmio-no-such-tool");
}
END_TEST

START_TEST(test_check_messages)
{
    const char *fail[] = {"sh", "-c", "echo '  first line' >&2; echo 'volume group not found' >&2; exit 5", NULL};
    ck_assert_vmio_err_msg(vmio_spawn_check("t_api", fail, 5000, NULL), EIO, "t_api",
                           "exit status 5");
    ck_assert_msg(strstr(vmio_errmsg(), "volume group not found") != NULL, "%s", vmio_errmsg());
    ck_assert_msg(strstr(vmio_errmsg(), "first line; volume") != NULL, "%s", vmio_errmsg());

    const char *slow[] = {"sleep", "10", NULL};
    ck_assert_vmio_err_msg(vmio_spawn_check("t_api", slow, 200, NULL), ETIMEDOUT, "t_api",
                           "sleep 10 timed out");

    struct vmio_spawn_result r;
    const char *ok[] = {"echo", "fine", NULL};
    ck_assert_int_eq(vmio_spawn_check("t_api", ok, 5000, &r), 0);
    ck_assert_str_eq(r.out, "fine\n");
    vmio_spawn_result_free(&r);
}
END_TEST

START_TEST(test_no_fd_leak)
{
    /* The child sees only 0, 1 and 2. */
    struct vmio_spawn_result r;
    const char *argv[] = {"sh", "-c", "ls /proc/self/fd | wc -l", NULL};
    ck_assert_int_eq(vmio_spawn("t", argv, NULL, NULL, 5000, &r), 0);
    /* ls's own directory fd makes 4, plus the shell's pipe to wc... count
     * only what must not be there: more than a handful means a leak. */
    ck_assert_msg(atoi(r.out) <= 5, "child has %s fds", r.out);
    vmio_spawn_result_free(&r);
}
END_TEST

static Suite *spawn_suite(void)
{
    Suite *s = suite_create("spawn");
    TCase *tc = tcase_create("spawn");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_capture);
    tcase_add_test(tc, test_no_shell);
    tcase_add_test(tc, test_stdin_and_env);
    tcase_add_test(tc, test_large_output);
    tcase_add_test(tc, test_timeout_kills_group);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_check_messages);
    tcase_add_test(tc, test_no_fd_leak);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(spawn_suite());
}
