/* The lender's parsers on fixture files: /proc/meminfo and
 * /proc/pressure/memory (libvmio/memlend/watch.c, through the sampler with
 * overridden paths), and `tgtadm --op show` (target-tgt.c): accepted
 * real-world texts, and every malformation rejected with -EINVAL/-EPROTO
 * and a message. */
#include "test-common.h"

#include "memlend/target.h"
#include "memlend/watch.h"

static const char *MEMINFO =
    "MemTotal:       24683784 kB\n"
    "MemFree:        20001000 kB\n"
    "MemAvailable:   24172912 kB\n"
    "Buffers:          123456 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n";

static const char *PSI =
    "some avg10=12.34 avg60=5.00 avg300=0.10 total=123456789\n"
    "full avg10=0.50 avg60=0.00 avg300=0.00 total=42\n";

static char dir[256];

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

START_TEST(meminfo_ok)
{
    uint64_t t, a;
    ck_assert_vmio_ok(vmio_ml_parse_meminfo("t", MEMINFO, &t, &a));
    ck_assert_uint_eq(t, 24683784ull * 1024);
    ck_assert_uint_eq(a, 24172912ull * 1024);
}
END_TEST

START_TEST(meminfo_bad)
{
    static const char *const bad[] = {
        "MemTotal: 100 kB\n",                                   /* no MemAvailable */
        "MemAvailable: 100 kB\n",                               /* no MemTotal */
        "MemTotal: 100 kB\nMemAvailable: 200 kB\n",             /* avail > total */
        "MemTotal: 100 MB\nMemAvailable: 20 kB\n",              /* unit */
        "MemTotal: 100 kB\nMemAvailable: -2 kB\n",              /* sign */
        "MemTotal: 100 kB\nMemAvailable: 2 kB junk\n",          /* trailing */
        "MemTotal: 100 kB\nMemAvailable: 2 kB\nMemTotal: 100 kB\n", /* repeated */
        "MemTotal: 99999999999999999999999 kB\nMemAvailable: 2 kB\n", /* overflow */
        "MemTotal: 18014398509481984 kB\nMemAvailable: 2 kB\n", /* bytes overflow */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t t = 7, a = 7;
        ck_assert_vmio_err_msg(vmio_ml_parse_meminfo("t", bad[i], &t, &a), EINVAL, "t",
                               "meminfo");
        ck_assert_uint_eq(t, 7); /* not written on failure */
    }
}
END_TEST

START_TEST(psi_ok)
{
    struct vmio_ml_mem_sample s;
    memset(&s, 0, sizeof s);
    ck_assert_vmio_ok(vmio_ml_parse_psi("t", PSI, &s));
    ck_assert_uint_eq(s.psi_valid, 1);
    ck_assert_uint_eq(s.psi_some_avg10_x100, 1234);
    ck_assert_uint_eq(s.psi_full_avg10_x100, 50);
    ck_assert_uint_eq(s.psi_some_total_us, 123456789);
    ck_assert_uint_eq(s.psi_full_total_us, 42);
    /* Kernels before 5.x have no "full" line for some resources. */
    memset(&s, 0, sizeof s);
    ck_assert_vmio_ok(vmio_ml_parse_psi(
        "t", "some avg10=100.00 avg60=0.00 avg300=0.00 total=0\n", &s));
    ck_assert_uint_eq(s.psi_some_avg10_x100, 10000);
}
END_TEST

START_TEST(psi_bad)
{
    static const char *const bad[] = {
        "full avg10=0.50 avg60=0.00 avg300=0.00 total=42\n",            /* no some */
        "some avg10=1.5 avg60=0.00 avg300=0.00 total=1\n",              /* 1 decimal */
        "some avg10=101.00 avg60=0.00 avg300=0.00 total=1\n",           /* > 100 % */
        "some avg10=1.00 avg60=0.00 total=1\n",                         /* missing field */
        "some avg10=1.00 avg60=0.00 avg300=0.00 total=1 x\n",           /* trailing */
        ("some avg10=1.00 avg60=0.00 avg300=0.00 total=1\nsome avg10=1.00 avg60=0.00 "
         "avg300=0.00 total=1\n"),                                      /* repeated */
        "some avg10=1.00 avg60=0.00 avg300=0.00 total=1\nhalf x\n",     /* unknown line */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vmio_ml_mem_sample s;
        memset(&s, 0, sizeof s);
        ck_assert_vmio_err_msg(vmio_ml_parse_psi("t", bad[i], &s), EINVAL, "t",
                               "memory pressure");
        ck_assert_uint_eq(s.psi_valid, 0);
    }
}
END_TEST

START_TEST(sampler_on_fixtures)
{
    char mi[512], psi[512];
    write_file("meminfo", MEMINFO);
    write_file("psi", PSI);
    snprintf(mi, sizeof mi, "%s/meminfo", dir);
    snprintf(psi, sizeof psi, "%s/psi", dir);
    struct vmio_ml_watch_cfg cfg = {mi, psi, NULL};
    struct vmio_ml_watch *w;
    struct vmio_ml_mem_sample s;
    ck_assert_vmio_ok(vmio_ml_watch_new("t", &cfg, &w));
    ck_assert_vmio_ok(vmio_ml_watch_sample("t", w, &s));
    ck_assert_uint_eq(s.mem_available, 24172912ull * 1024);
    ck_assert_uint_eq(s.psi_valid, 1);
    ck_assert_uint_eq(s.psi_some_avg10_x100, 1234);
    ck_assert_uint_gt(s.t_ns, 0);
    /* The file changes between samples: the new values are read. */
    write_file("meminfo", "MemTotal: 1000 kB\nMemAvailable: 10 kB\n");
    write_file("psi", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n");
    ck_assert_vmio_ok(vmio_ml_watch_sample("t", w, &s));
    ck_assert_uint_eq(s.mem_available, 10240);
    ck_assert_uint_eq(s.psi_some_avg10_x100, 0);
    /* Malformed: an error, the message names the line. */
    write_file("meminfo", "MemTotal: 1000 kB\nMemAvailable: ten kB\n");
    ck_assert_vmio_err_msg(vmio_ml_watch_sample("t", w, &s), EINVAL, "t", "line 2");
    vmio_ml_watch_free(w);

    /* No PSI in the kernel (file missing): sampled without it. */
    write_file("meminfo", MEMINFO);
    char nopsi[512];
    snprintf(nopsi, sizeof nopsi, "%s/no-such-psi", dir);
    struct vmio_ml_watch_cfg c2 = {mi, nopsi, NULL};
    ck_assert_vmio_ok(vmio_ml_watch_new("t", &c2, &w));
    ck_assert_vmio_ok(vmio_ml_watch_sample("t", w, &s));
    ck_assert_uint_eq(s.psi_valid, 0);
    vmio_ml_watch_free(w);
    /* A missing meminfo is an error at creation. */
    struct vmio_ml_watch_cfg c3 = {nopsi, "", NULL};
    ck_assert_vmio_err_msg(vmio_ml_watch_new("t", &c3, &w), ENOENT, "t", "no-such-psi");
}
END_TEST

START_TEST(real_proc)
{
    /* This machine's own files parse (the format is what we think). */
    struct vmio_ml_watch *w;
    struct vmio_ml_mem_sample s;
    ck_assert_vmio_ok(vmio_ml_watch_new("t", NULL, &w));
    ck_assert_vmio_ok(vmio_ml_watch_sample("t", w, &s));
    ck_assert_uint_gt(s.mem_total, 0);
    ck_assert_uint_le(s.mem_available, s.mem_total);
    vmio_ml_watch_free(w);
}
END_TEST

START_TEST(libvirt_guests)
{
    /* libvirt's built-in test driver: one running guest with statistics
     * (or, in a build without libvirt, a clear -ENOTSUP). */
    struct vmio_ml_watch_cfg cfg = {NULL, NULL, "test:///default"};
    struct vmio_ml_watch *w;
    int r = vmio_ml_watch_new("t", &cfg, &w);
    if (r == -ENOTSUP) {
        ck_assert_vmio_err_msg(r, ENOTSUP, "t", "built without libvirt");
        return;
    }
    ck_assert_vmio_ok(r);
    struct vmio_ml_mem_sample s;
    ck_assert_vmio_ok(vmio_ml_watch_sample("t", w, &s));
    ck_assert_uint_eq(s.guests, 1);
    ck_assert_uint_eq(s.guests_swapping, 0);
    vmio_ml_watch_free(w);
    /* An unreachable libvirt is an error with libvirt's reason. */
    cfg.libvirt_uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
    ck_assert_vmio_err_msg(vmio_ml_watch_new("t", &cfg, &w), EIO, "t", "libvirt");
}
END_TEST

/* Captured from tgtd 1.0.85 with one initiator logged in to target 1. */
static const char *TGT_SHOW =
    "Target 1: iqn.2026-12.org.vmio:h1.lease7\n"
    "    System information:\n"
    "        Driver: iscsi\n"
    "        State: ready\n"
    "    I_T nexus information:\n"
    "        I_T nexus: 2\n"
    "            Initiator: iqn.2010-11.libiscsi:iscsi-perf alias: none\n"
    "            Connection: 0\n"
    "                IP Address: 127.0.0.1\n"
    "    LUN information:\n"
    "        LUN: 0\n"
    "            Type: controller\n"
    "            SCSI ID: IET     00010000\n"
    "            Size: 0 MB, Block size: 1\n"
    "            Backing store type: null\n"
    "            Backing store path: None\n"
    "            Backing store flags: \n"
    "        LUN: 1\n"
    "            Type: disk\n"
    "            Size: 17 MB, Block size: 512\n"
    "            Backing store type: rdwr\n"
    "            Backing store path: /var/lib/vmio-memlend/mem/lease-7\n"
    "            Backing store flags: \n"
    "    Account information:\n"
    "        vmio-abc\n"
    "    ACL information:\n"
    "        ALL\n"
    "Target 3: iqn.2001-04.com.example:other\n"
    "    System information:\n"
    "        Driver: iscsi\n"
    "        State: ready\n"
    "    I_T nexus information:\n"
    "    LUN information:\n"
    "        LUN: 0\n"
    "            Type: controller\n"
    "            Backing store path: None\n"
    "    Account information:\n"
    "    ACL information:\n";

START_TEST(tgt_show_ok)
{
    struct vmio_ml_target_entry *e;
    uint32_t *tids;
    size_t n;
    ck_assert_vmio_ok(vmio_ml_tgt_parse_show("t", TGT_SHOW, &e, &tids, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(e[0].iqn, "iqn.2026-12.org.vmio:h1.lease7");
    ck_assert_uint_eq(tids[0], 1);
    ck_assert_uint_eq(e[0].sessions, 1);
    ck_assert_uint_eq(e[0].lun, 1);
    ck_assert_str_eq(e[0].backing, "/var/lib/vmio-memlend/mem/lease-7");
    ck_assert_str_eq(e[1].iqn, "iqn.2001-04.com.example:other");
    ck_assert_uint_eq(tids[1], 3);
    ck_assert_uint_eq(e[1].sessions, 0);
    ck_assert_str_eq(e[1].backing, "");
    free(e);
    free(tids);
    ck_assert_vmio_ok(vmio_ml_tgt_parse_show("t", "", &e, NULL, &n));
    ck_assert_uint_eq(n, 0);
    free(e);
}
END_TEST

START_TEST(tgt_show_bad)
{
    static const char *const bad[] = {
        "Target x: iqn.a\n",
        "Target 1 iqn.a\n",
        "Target 1: \n",
        "    System information:\n",                          /* before any target */
        "Target 1: iqn.a\n    Unknown section:\n",
        "Target 1: iqn.a\n        Driver: iscsi\n",           /* no section */
        "Target 1: iqn.a\n    I_T nexus information:\n        I_T nexus: two\n",
        "Target 1: iqn.a\n    LUN information:\n        LUN: -1\n",
        "Target 1: iqn.a\n    LUN information:\n            Backing store path: /x\n",
        "Target 1: iqn.a\n  odd indent\n",
        "tgtadm: can't send the request to the tgt daemon, Transport endpoint is not connected\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vmio_ml_target_entry *e = NULL;
        size_t n = 99;
        ck_assert_vmio_err_msg(vmio_ml_tgt_parse_show("t", bad[i], &e, NULL, &n), EPROTO, "t",
                               "tgtadm --op show");
        ck_assert_uint_eq(n, 99);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlend-watch");
    TCase *tc = tcase_create("parsers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, meminfo_ok);
    tcase_add_test(tc, meminfo_bad);
    tcase_add_test(tc, psi_ok);
    tcase_add_test(tc, psi_bad);
    tcase_add_test(tc, sampler_on_fixtures);
    tcase_add_test(tc, real_proc);
    tcase_add_test(tc, libvirt_guests);
    tcase_add_test(tc, tgt_show_ok);
    tcase_add_test(tc, tgt_show_bad);
    suite_add_tcase(s, tc);
    return test_run(s);
}
