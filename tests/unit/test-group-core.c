/* VM-group core without a hypervisor: the state files (format, strict
 * parser and its error messages, atomic save, ids allocated by concurrent
 * processes under the flock and never reused), the report, and the
 * argument checks of the public entry points. */
#include <sys/stat.h>
#include <sys/wait.h>

#include <vmio/group.h>

#include "config.h"
#include "group/state.h"
#include "test-common.h"

#define API "vmio_group_open"

static char dir[256];

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

static int parse(const char *text, struct vmio_group_state *st)
{
    return vmio_group_state_parse(API, "x.group", text, strlen(text), st);
}

START_TEST(test_names)
{
    ck_assert(vmio_group_name_valid("web"));
    ck_assert(vmio_group_name_valid("a.b-c_9"));
    ck_assert(vmio_group_name_valid("1a"));
    ck_assert(!vmio_group_name_valid("12"));
    ck_assert(!vmio_group_name_valid(""));
    ck_assert(!vmio_group_name_valid("a b"));
    ck_assert(!vmio_group_name_valid("a/b"));
    char longname[70];
    memset(longname, 'x', 65);
    longname[65] = '\0';
    ck_assert(!vmio_group_name_valid(longname));
    longname[64] = '\0';
    ck_assert(vmio_group_name_valid(longname));
    ck_assert(vmio_group_vm_name_valid("my vm"));
    ck_assert(!vmio_group_vm_name_valid(" lead"));
    ck_assert(!vmio_group_vm_name_valid("tab\there"));
}
END_TEST

START_TEST(test_roundtrip)
{
    struct vmio_group_state st = { .id = 42, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_PCI, .dedicated = 1, .ncpus = 6,
                                   .weight = 512, .cap = 250, .shmem_bytes = 1 << 26 };
    strcpy(st.name, "hpc");
    strcpy(st.backend, "xen");
    strcpy(st.pci, "0000:81:00.0");
    strcpy(st.housekeeping, "0,8");
    strcpy(st.scheduler, "credit2");
    vmio_cpuset_parse("2-7", &st.placed);
    ck_assert_int_eq(vmio_group_state_add_member(&st, "vm a"), 0);
    ck_assert_int_eq(vmio_group_state_add_member(&st, "vm-b"), 0);
    ck_assert_int_eq(vmio_group_state_save_before(&st, "vm a", 100, 250), 1);
    ck_assert_int_eq(vmio_group_state_save_before(&st, "vm a", 7, 7), 0); /* kept */
    char *text = NULL;
    ck_assert_vmio_ok(vmio_group_state_format(API, &st, &text));
    struct vmio_group_state back;
    ck_assert_vmio_ok(parse(text, &back));
    char *text2 = NULL;
    ck_assert_vmio_ok(vmio_group_state_format(API, &back, &text2));
    ck_assert_str_eq(text, text2);
    ck_assert_uint_eq(back.id, 42);
    ck_assert_str_eq(back.name, "hpc");
    ck_assert_int_eq(back.pin, VMIO_GROUP_PIN_STRICT);
    ck_assert_int_eq(back.locality, VMIO_GROUP_NEAR_PCI);
    ck_assert_str_eq(back.pci, "0000:81:00.0");
    ck_assert_uint_eq(back.shmem_bytes, 1 << 26);
    ck_assert(vmio_cpuset_equal(&back.placed, &st.placed));
    ck_assert_uint_eq(back.nmembers, 2);
    ck_assert_str_eq(back.members[0], "vm a");
    const struct vmio_group_saved *sv = vmio_group_state_saved(&back, "vm a");
    ck_assert_ptr_nonnull(sv);
    ck_assert_uint_eq(sv->weight, 100);
    ck_assert_uint_eq(sv->cap, 250);
    ck_assert_ptr_null(vmio_group_state_saved(&back, "vm-b"));
    vmio_group_state_forget(&back, "vm a");
    ck_assert_ptr_null(vmio_group_state_saved(&back, "vm a"));
    free(text);
    free(text2);
    vmio_group_state_clear(&st);
    vmio_group_state_clear(&back);

    /* comments and blank lines are allowed */
    ck_assert_vmio_ok(parse("# kept by libvmio\n\nvmio-group 1\nid 1\nname a\n"
                            "backend libvirt\n", &back));
    ck_assert_int_eq(back.pin, VMIO_GROUP_PIN_AUTO);
    vmio_group_state_clear(&back);
}
END_TEST

/* Each bad file fails with EINVAL and a message naming the file, the
 * line and the problem; the output struct stays empty. */
START_TEST(test_parse_errors)
{
    static const struct {
        const char *text, *needle;
    } bad[] = {
        { "", "empty" },
        { "hello\n", "x.group:1: not a group state file" },
        { "vmio-group 2\nid 1\n", "expected 'vmio-group 1'" },
        { "vmio-group 1\nid 1\nname a\n", "key 'backend' missing" },
        { "vmio-group 1\nid 0\nname a\nbackend xen\n", "x.group:2: id '0'" },
        { "vmio-group 1\nid 4294967295\nname a\nbackend xen\n", "x.group:2: id" },
        { "vmio-group 1\nid 01\nname a\nbackend xen\n", "x.group:2: id" },
        { "vmio-group 1\nid 1\nid 2\nname a\nbackend xen\n", "x.group:3: key 'id' given twice" },
        { "vmio-group 1\nid 1\nname 12\nbackend xen\n", "invalid group name" },
        { "vmio-group 1\nid 1\nname a\nbackend kvm\n", "unknown backend" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\npin tight\n", "x.group:5: pin must be" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nweight -1\n", "x.group:5: weight" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nweight 99999999999\n", "weight" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nhousekeeping 0-\n", "housekeeping" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nplaced 5000\n", "placed" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\npci 81:00.0\n", "invalid PCI" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nlocality pci\n", "without a pci line" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nmember a\nmember a\n", "listed twice" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\ncolour red\n", "x.group:5: unknown key" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nsaved 100\n", "expected 'saved WEIGHT" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nsaved 100 x vm\n", "x.group:5: saved" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nsaved 1 2 vm\nsaved 3 4 vm\n",
          "x.group:6: saved values of 'vm' given twice" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nsaved 1 2  vm\n", "invalid VM name" },
        { "vmio-group 1\nid 1\nname a\nbackend xen\nshmem\n", "expected 'key value'" },
        { "vmio-group 1\nid 1\nname a\r\nbackend xen\n", "x.group:3: control character" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vmio_group_state st;
        memset(&st, 0x5a, sizeof st);
        int r = parse(bad[i].text, &st);
        ck_assert_msg(r == -EINVAL, "case %zu: %d", i, r);
        ck_assert_msg(strstr(vmio_errmsg(), bad[i].needle), "case %zu: '%s' lacks '%s'", i,
                      vmio_errmsg(), bad[i].needle);
        ck_assert_msg(strncmp(vmio_errmsg(), API ": ", strlen(API) + 2) == 0, "%s",
                      vmio_errmsg());
        ck_assert_ptr_null(st.members);
        ck_assert_uint_eq(st.nmembers, 0);
        ck_assert_ptr_null(st.saved);
    }
    struct vmio_group_state st;
    const char nul[] = "vmio-group 1\nid 1\0x";
    ck_assert_vmio_err_msg(vmio_group_state_parse(API, "x.group", nul, sizeof nul, &st), EINVAL,
                           API, "NUL");
}
END_TEST

START_TEST(test_files)
{
    struct vmio_group_state st = { 0 }, back;
    int lk = vmio_group_state_lock(API, dir);
    ck_assert_int_ge(lk, 0);
    ck_assert_vmio_ok(vmio_group_state_alloc_id(API, dir, &st.id));
    ck_assert_uint_eq(st.id, 1);
    strcpy(st.name, "one");
    strcpy(st.backend, "libvirt");
    ck_assert_vmio_ok(vmio_group_state_save(API, dir, &st));
    vmio_group_state_unlock(lk);
    ck_assert_vmio_ok(vmio_group_state_load(API, dir, 1, &back));
    ck_assert_str_eq(back.name, "one");
    vmio_group_state_clear(&back);
    ck_assert_vmio_err(vmio_group_state_load(API, dir, 2, &back), ENOENT, API);

    /* a file renamed to another id is refused */
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/1.group", dir);
    snprintf(b, sizeof b, "%s/7.group", dir);
    ck_assert_int_eq(rename(a, b), 0);
    ck_assert_vmio_err_msg(vmio_group_state_load(API, dir, 7, &back), EINVAL, API,
                           "holds id 1");
    struct vmio_group_state *all;
    size_t n;
    ck_assert_vmio_err(vmio_group_state_load_all(API, dir, &all, &n), EINVAL, API);
    ck_assert_int_eq(rename(b, a), 0);
    /* no temporary file left behind; other files ignored */
    snprintf(b, sizeof b, "%s/notes.txt", dir);
    FILE *f = fopen(b, "w");
    fputs("x", f);
    fclose(f);
    ck_assert_vmio_ok(vmio_group_state_load_all(API, dir, &all, &n));
    ck_assert_uint_eq(n, 1);
    vmio_group_state_free_all(all, n);

    /* a corrupted counter is an error, not id 1 again */
    snprintf(b, sizeof b, "%s/next-id", dir);
    f = fopen(b, "w");
    fputs("garbage\n", f);
    fclose(f);
    uint32_t id;
    ck_assert_vmio_err_msg(vmio_group_state_alloc_id(API, dir, &id), EINVAL, API, "counter");
    /* a lost counter restarts after the highest id present */
    unlink(b);
    ck_assert_vmio_ok(vmio_group_state_alloc_id(API, dir, &id));
    ck_assert_uint_eq(id, 2);
    ck_assert_vmio_ok(vmio_group_state_remove(API, dir, 1));
    ck_assert_vmio_ok(vmio_group_state_alloc_id(API, dir, &id));
    ck_assert_uint_eq(id, 3);
}
END_TEST

/* Four processes each allocate 25 ids at once: 100 distinct ids. */
START_TEST(test_ids_concurrent)
{
    enum { PROCS = 4, EACH = 25 };
    int pipes[PROCS][2];
    for (int p = 0; p < PROCS; p++) {
        ck_assert_int_eq(pipe(pipes[p]), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            for (int i = 0; i < EACH; i++) {
                uint32_t id = 0;
                int lk = vmio_group_state_lock(API, dir);
                if (lk < 0 || vmio_group_state_alloc_id(API, dir, &id) < 0)
                    _exit(1);
                vmio_group_state_unlock(lk);
                if (write(pipes[p][1], &id, sizeof id) != sizeof id)
                    _exit(1);
            }
            _exit(0);
        }
        close(pipes[p][1]);
    }
    unsigned char seen[PROCS * EACH + 2] = { 0 };
    for (int p = 0; p < PROCS; p++) {
        uint32_t id;
        int got = 0;
        while (read(pipes[p][0], &id, sizeof id) == sizeof id) {
            ck_assert_uint_ge(id, 1);
            ck_assert_uint_le(id, PROCS * EACH);
            ck_assert_msg(!seen[id], "id %u allocated twice", id);
            seen[id] = 1;
            got++;
        }
        ck_assert_int_eq(got, EACH);
        close(pipes[p][0]);
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        ck_assert_int_gt(wait(&status), 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}
END_TEST

START_TEST(test_report)
{
    struct vmio_group_report *r = vmio_group_report_new();
    ck_assert_ptr_nonnull(r);
    vmio_group_report_add(r, "vm1", "vcpupin 0", "0-7", "4");
    vmio_group_report_add(r, NULL, "cpupool", "", "vmio-hpc");
    for (int i = 0; i < 3; i++)
        vmio_group_report_warn(r, "driver %s refused live", "Test");
    vmio_group_report_warn(r, "member %d gone", 7);
    vmio_group_report_set_cpus(r, "group 4-7; vm1 4");
    ck_assert_uint_eq(vmio_group_report_count(r), 2);
    const struct vmio_group_change *c = vmio_group_report_change(r, 0);
    ck_assert_str_eq(c->vm, "vm1");
    ck_assert_str_eq(c->what, "vcpupin 0");
    ck_assert_str_eq(c->before, "0-7");
    ck_assert_str_eq(c->after, "4");
    ck_assert_ptr_null(vmio_group_report_change(r, 1)->vm);
    ck_assert_ptr_null(vmio_group_report_change(r, 2));
    ck_assert_uint_eq(vmio_group_report_warning_count(r), 2);
    ck_assert_str_eq(vmio_group_report_warning(r, 0), "driver Test refused live");
    ck_assert_str_eq(vmio_group_report_warning(r, 1), "member 7 gone");
    ck_assert_str_eq(vmio_group_report_cpus(r), "group 4-7; vm1 4");
    ck_assert(!vmio_group_report_failed(r));
    vmio_group_report_free(r);
    vmio_group_report_free(NULL);
    ck_assert_uint_eq(vmio_group_report_count(NULL), 0);
    ck_assert_ptr_null(vmio_group_report_cpus(NULL));
}
END_TEST

START_TEST(test_public_args)
{
    vmio_group_conn *c = NULL;
    ck_assert_vmio_err(vmio_group_connect(NULL, NULL), EFAULT, "vmio_group_connect");
    struct vmio_group_connect_opts o = { .struct_size = 0 };
    ck_assert_vmio_err(vmio_group_connect(&o, &c), EINVAL, "vmio_group_connect");
    o.struct_size = sizeof o;
    o.backend = "vmware";
    ck_assert_vmio_err_msg(vmio_group_connect(&o, &c), EINVAL, "vmio_group_connect", "vmware");
    ck_assert_ptr_null(c);
#if !VMIO_BUILT_LIBVIRT
    /* the stand-in backend of a build without libvirt says why */
    o.backend = NULL;
    o.state_dir = dir;
    ck_assert_vmio_err_msg(vmio_group_connect(&o, &c), ENOTSUP, "vmio_group_connect",
                           "built without libvirt");
    ck_assert_ptr_null(c);
#endif
    ck_assert_vmio_err(vmio_group_open(NULL, "x", NULL), EFAULT, "vmio_group_open");
    ck_assert_vmio_err(vmio_group_apply(NULL, 0, NULL), EFAULT, "vmio_group_apply");
    ck_assert_str_eq(vmio_group_cap_name(VMIO_GROUP_CAP_DEDICATED_CPUS), "dedicated-cpus");
    ck_assert_str_eq(vmio_group_cap_name(VMIO_GROUP_CAP_COSCHEDULE), "coschedule");
    ck_assert_ptr_null(vmio_group_cap_note(NULL, VMIO_GROUP_CAP_LIVE));
    vmio_group_disconnect(NULL);
    vmio_group_close(NULL);
    ck_assert_uint_eq(vmio_group_id(NULL), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("group-core");
    TCase *t = tcase_create("state");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_names);
    tcase_add_test(t, test_roundtrip);
    tcase_add_test(t, test_parse_errors);
    tcase_add_test(t, test_files);
    tcase_add_test(t, test_ids_concurrent);
    tcase_add_test(t, test_report);
    tcase_add_test(t, test_public_args);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(suite());
}
