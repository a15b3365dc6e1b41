/* Unit tests of the borrower's drivers: lvm's JSON reports (fixtures under
 * data/memlend-lvm/ captured from real lvm 2.03 output) parsed into PVs,
 * segments and VGs, the walk from an LV down to its PVs, and the sysfs
 * lookup of an iSCSI disk on a fake sysfs tree built in a temp dir. With
 * VMIO_TEST_ISCSI_IQN / VMIO_TEST_ISCSI_LUN / VMIO_TEST_ISCSI_DISK (and
 * VMIO_TEST_LVM_VG) set, the same lookups run against the real /sys and
 * lvm: tests/vm/guest/30-memlend.sh does that inside the guest. */
#include <sys/stat.h>

#include "memlend/iscsi.h"
#include "memlend/lvm.h"
#include "test-common.h"

#ifndef MEMLEND_LVM_DATA
#error "MEMLEND_LVM_DATA (the fixture dir) must be defined"
#endif

static char *slurp(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", MEMLEND_LVM_DATA, name);
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

START_TEST(test_pvs_tags)
{
    char *j = slurp("pvs.json");
    struct vmio_ml_pv *pv;
    size_t n;
    ck_assert_int_eq(vmio_ml_lvm_parse_pvs("t", j, &pv, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(pv[0].name, "/dev/loop0");
    ck_assert_str_eq(pv[0].vg, "bfixvg");
    ck_assert_uint_eq(pv[0].lease, 0);
    ck_assert_str_eq(pv[0].lender, "");
    ck_assert_uint_eq(pv[0].size, 62914560);
    ck_assert_int_eq(pv[0].missing, 0);
    ck_assert_str_eq(pv[1].name, "/dev/loop1");
    ck_assert_uint_eq(pv[1].lease, 7);
    ck_assert_str_eq(pv[1].lender, "hostb");
    ck_assert_str_eq(pv[1].uuid, "aaSqx1-W0go-wWQf-2g4Q-tM3X-skz3-R5OIFf");
    ck_assert_uint_eq(pv[2].lease, 8);
    ck_assert_str_eq(pv[2].lender, "hostc");
    ck_assert_uint_eq(pv[0].free, 37748736);
    free(pv);
    free(j);
}
END_TEST

START_TEST(test_pvs_missing)
{
    char *j = slurp("pvs-missing.json");
    struct vmio_ml_pv *pv;
    size_t n;
    ck_assert_int_eq(vmio_ml_lvm_parse_pvs("t", j, &pv, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(pv[2].name, "[unknown]");
    ck_assert_int_eq(pv[2].missing, 1);
    ck_assert_uint_eq(pv[2].lease, 7);
    ck_assert_uint_eq(pv[2].free, 50331648);
    ck_assert_int_eq(pv[1].missing, 0);
    ck_assert_uint_eq(pv[1].lease, 8);
    ck_assert_str_eq(pv[1].lender, "hostc");
    free(pv);
    free(j);
}
END_TEST

START_TEST(test_vgs)
{
    char *j = slurp("vgs.json");
    struct vmio_ml_vg *vg;
    size_t n;
    ck_assert_int_eq(vmio_ml_lvm_parse_vgs("t", j, &vg, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(vg[0].name, "bfixvg");
    ck_assert_uint_eq(vg[0].extent_size, 4194304);
    ck_assert_uint_eq(vg[0].missing_pvs, 1);
    ck_assert_uint_eq(vg[0].free, 150994944);
    free(vg);
    free(j);
}
END_TEST

START_TEST(test_lvs_linear)
{
    char *j = slurp("lvs-linear.json");
    struct vmio_ml_seg *s;
    size_t n;
    ck_assert_int_eq(vmio_ml_lvm_parse_lvs("t", j, &s, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(s[1].lv, "swap");
    ck_assert_str_eq(s[1].dev, "/dev/loop0");
    ck_assert_int_eq(s[1].dev_is_lv, 0);
    ck_assert_uint_eq(s[1].pe_first, 0);
    ck_assert_uint_eq(s[1].pe_last, 3);
    ck_assert_uint_eq(s[2].pe_last, 2);
    ck_assert_uint_eq(s[2].lv_size, 29360128);
    char pvs[4][256];
    ck_assert_int_eq(vmio_ml_lvm_lv_pvs(s, n, "bfixvg", "swap", pvs, 4), 2);
    ck_assert_str_eq(pvs[0], "/dev/loop0");
    ck_assert_str_eq(pvs[1], "/dev/loop1");
    /* The byte counts add up to the LV's size. */
    uint64_t a = vmio_ml_lvm_lv_bytes_on(s, n, "bfixvg", "swap", "/dev/loop0", 4194304);
    uint64_t b = vmio_ml_lvm_lv_bytes_on(s, n, "bfixvg", "swap", "/dev/loop1", 4194304);
    ck_assert_uint_eq(a, 16777216);
    ck_assert_uint_eq(b, 12582912);
    ck_assert_uint_eq(a + b, s[2].lv_size);
    ck_assert_uint_eq(vmio_ml_lvm_lv_bytes_on(s, n, "bfixvg", "other", "/dev/loop1", 4194304), 0);
    ck_assert_int_eq(vmio_ml_lvm_raid_images(s, n, "bfixvg", "swap"), 0);
    ck_assert_int_eq(vmio_ml_lvm_lv_pvs(s, n, "bfixvg", "nosuch", pvs, 4), 0);
    free(s);
    free(j);
}
END_TEST

/* raid1 as the guest's lvm reports it: images and metadata sub-LVs. */
START_TEST(test_lvs_raid1)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lvs-raid1.json", MEMLEND_LVM_DATA);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "fixture %s missing", path);
    char *j = slurp("lvs-raid1.json");
    struct vmio_ml_seg *s;
    size_t n;
    ck_assert_int_eq(vmio_ml_lvm_parse_lvs("t", j, &s, &n), 0);
    ck_assert_int_eq(vmio_ml_lvm_raid_images(s, n, "vg0", "swap"), 2);
    char pvs[8][256];
    int np = vmio_ml_lvm_lv_pvs(s, n, "vg0", "swap", pvs, 8);
    ck_assert_int_eq(np, 2);
    ck_assert_str_ne(pvs[0], pvs[1]);
    for (int i = 0; i < np; i++)
        ck_assert_msg(pvs[i][0] == '/', "leaf %s is not a PV", pvs[i]);
    ck_assert_str_eq(pvs[0], "/dev/loop0");
    ck_assert_str_eq(pvs[1], "/dev/sda");
    /* Each leg holds the whole LV (16 extents of 4 MiB). */
    ck_assert_uint_eq(vmio_ml_lvm_lv_bytes_on(s, n, "vg0", "swap", "/dev/sda", 4194304), 67108864);
    ck_assert_uint_eq(vmio_ml_lvm_lv_bytes_on(s, n, "vg0", "swap", "/dev/loop0", 4194304),
                      67108864);
    int found_sync = 0, hidden = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s[i].lv, "swap")) {
            ck_assert_int_eq(s[i].dev_is_lv, 1);
            ck_assert_int_eq(s[i].hidden, 0);
            found_sync |= s[i].sync_known && s[i].sync_percent == 100.0;
        } else {
            ck_assert_int_eq(s[i].dev_is_lv, 0);
            hidden += s[i].hidden;
        }
        if (!strcmp(s[i].lv, "swap_rmeta_1")) {
            ck_assert_str_eq(s[i].dev, "/dev/sda");
            ck_assert_uint_eq(s[i].pe_first, 0);
            ck_assert_uint_eq(s[i].pe_last, 0);
        }
    }
    ck_assert_int_eq(found_sync, 1);
    ck_assert_int_eq(hidden, 4);
    free(s);
    free(j);
}
END_TEST

START_TEST(test_reject)
{
    struct vmio_ml_pv *pv;
    struct vmio_ml_seg *s;
    size_t n;
    ck_assert_vmio_err(vmio_ml_lvm_parse_pvs("t", "{\"report\": [", &pv, &n), EINVAL, "t");
    ck_assert_vmio_err_msg(vmio_ml_lvm_parse_pvs("t", "{\"report\": []}", &pv, &n), EINVAL, "t",
                           "report[0].pv");
    ck_assert_vmio_err_msg(vmio_ml_lvm_parse_pvs("t", "{\"report\": [{\"pv\": [{\"pv_name\":"
                                                 "\"/dev/x\"}]}]}", &pv, &n),
                           EINVAL, "t", "vg_name");
    const char *badnum = "{\"report\": [{\"pv\": [{\"pv_name\":\"/dev/x\", \"vg_name\":\"v\","
                         "\"pv_uuid\":\"u\", \"pv_size\":\"12x\", \"pv_free\":\"0\", "
                         "\"pv_tags\":\"\", \"pv_missing\":\"\"}]}]}";
    ck_assert_vmio_err_msg(vmio_ml_lvm_parse_pvs("t", badnum, &pv, &n), EINVAL, "t", "bad values");
    const char *baddev = "{\"report\": [{\"lv\": [{\"vg_name\":\"v\", \"lv_name\":\"l\", "
                         "\"lv_attr\":\"-wi-a-----\", \"segtype\":\"linear\", \"lv_size\":\"1\","
                         " \"seg_size\":\"1\", \"devices\":\"/dev/x\", \"seg_pe_ranges\":\"/dev/x:0-0\"}]}]}";
    ck_assert_vmio_err_msg(vmio_ml_lvm_parse_lvs("t", baddev, &s, &n), EINVAL, "t", "devices");
    const char *badrange = "{\"report\": [{\"lv\": [{\"vg_name\":\"v\", \"lv_name\":\"l\", "
                           "\"lv_attr\":\"-wi-a-----\", \"segtype\":\"linear\", \"lv_size\":\"1\","
                           " \"seg_size\":\"1\", \"devices\":\"/dev/x(0)\", \"seg_pe_ranges\":\"/dev/x:0\"}]}]}";
    ck_assert_vmio_err(vmio_ml_lvm_parse_lvs("t", badrange, &s, &n), EINVAL, "t");
}
END_TEST

/* ---- sysfs ---------------------------------------------------------------- */

static void mkpath(const char *root, const char *rel)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    for (char *c = p + strlen(root) + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

static void put(const char *root, const char *rel, const char *content)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(content, fp);
    fclose(fp);
}

static void link_to(const char *root, const char *rel, const char *target)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    ck_assert_int_eq(symlink(target, p), 0);
}

/* Two sessions as the kernel lays them out: host2/session1 (target A, LUNs
 * 0 and 1) and host3/session2 (target B, LUN 1), and a local disk vda. */
static void fake_sysfs(char *root, size_t n)
{
    test_mkdtemp(root, n);
    mkpath(root, "class/iscsi_session");
    mkpath(root, "class/block");
    mkpath(root, "devices/platform/host2/session1/iscsi_session/session1");
    put(root, "devices/platform/host2/session1/iscsi_session/session1/targetname",
        "iqn.2026-12.org.vmio:a.lease1\n");
    mkpath(root, "devices/platform/host2/session1/target2:0:0/2:0:0:0");
    mkpath(root, "devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb");
    mkpath(root, "devices/platform/host3/session2/iscsi_session/session2");
    put(root, "devices/platform/host3/session2/iscsi_session/session2/targetname",
        "iqn.2026-12.org.vmio:b.lease2\n");
    mkpath(root, "devices/platform/host3/session2/target3:0:0/3:0:0:1/block/sdc");
    mkpath(root, "devices/pci0000:00/0000:00:04.0/virtio1/block/vda");
    link_to(root, "class/iscsi_session/session1",
            "../../devices/platform/host2/session1/iscsi_session/session1");
    link_to(root, "class/iscsi_session/session2",
            "../../devices/platform/host3/session2/iscsi_session/session2");
    link_to(root, "class/block/sdb", "../../devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb");
    link_to(root, "class/block/sdc", "../../devices/platform/host3/session2/target3:0:0/3:0:0:1/block/sdc");
    link_to(root, "class/block/vda", "../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda");
}

START_TEST(test_sysfs_find)
{
    char root[256], name[64];
    fake_sysfs(root, sizeof root);
    ck_assert_int_eq(vmio_ml_iscsi_find_disk("t", root, "iqn.2026-12.org.vmio:b.lease2", 1, name,
                                             sizeof name), 0);
    ck_assert_str_eq(name, "sdc");
    ck_assert_int_eq(vmio_ml_iscsi_find_disk("t", root, "iqn.2026-12.org.vmio:a.lease1", 1, name,
                                             sizeof name), 0);
    ck_assert_str_eq(name, "sdb");
    /* LUN 0 of A has no block device (tgt's controller LUN). */
    ck_assert_vmio_err_msg(vmio_ml_iscsi_find_disk("t", root, "iqn.2026-12.org.vmio:a.lease1", 0,
                                                   name, sizeof name), ENOENT, "t", "session found");
    ck_assert_vmio_err_msg(vmio_ml_iscsi_find_disk("t", root, "iqn.2026-12.org.vmio:c.lease3", 1,
                                                   name, sizeof name), ENOENT, "t", "no session");
    /* A prefix of a target name is not that target. */
    ck_assert_vmio_err(vmio_ml_iscsi_find_disk("t", root, "iqn.2026-12.org.vmio:a.lease", 1, name,
                                               sizeof name), ENOENT, "t");
    char dev[64];
    ck_assert_vmio_err(vmio_ml_iscsi_wait_disk("t", root, "iqn.2026-12.org.vmio:c.lease3", 1, 300,
                                               dev, sizeof dev), ETIMEDOUT, "t");
    test_rmtree(root);
}
END_TEST

START_TEST(test_sysfs_reverse)
{
    char root[256], iqn[224];
    uint32_t lun = 99;
    fake_sysfs(root, sizeof root);
    ck_assert_int_eq(vmio_ml_iscsi_disk_target("t", root, "/dev/sdc", iqn, sizeof iqn, &lun), 0);
    ck_assert_str_eq(iqn, "iqn.2026-12.org.vmio:b.lease2");
    ck_assert_uint_eq(lun, 1);
    ck_assert_int_eq(vmio_ml_iscsi_disk_target("t", root, "sdb", iqn, sizeof iqn, &lun), 0);
    ck_assert_str_eq(iqn, "iqn.2026-12.org.vmio:a.lease1");
    ck_assert_vmio_err_msg(vmio_ml_iscsi_disk_target("t", root, "/dev/vda", iqn, sizeof iqn, &lun),
                           ENOENT, "t", "not an iSCSI disk");
    ck_assert_vmio_err(vmio_ml_iscsi_disk_target("t", root, "/dev/sdz", iqn, sizeof iqn, &lun),
                       ENOENT, "t");
    test_rmtree(root);
}
END_TEST

/* The public borrower API's argument checks and an lvm failure surfaced
 * with the tool's name (whether lvm is installed or not). */
START_TEST(test_borrower_errors)
{
    struct vmio_memlend_borrower_options o;
    vmio_memlend_borrower *b = NULL;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.manager = "127.0.0.1:1";
    ck_assert_vmio_err_msg(vmio_memlend_borrower_new(&o, &b), EINVAL,
                           "vmio_memlend_borrower_new", "secret");
    o.manager = NULL;
    o.name = "test-borrower";
    ck_assert_int_eq(vmio_memlend_borrower_new(&o, &b), 0);
    uint64_t ids[2];
    ck_assert_vmio_err(vmio_memlend_swap_attach(b, "vg0", "swap", 0, 0x80, ids), EINVAL,
                       "vmio_memlend_swap_attach");
    int rc = vmio_memlend_swap_attach(b, "vmio-test-no-such-vg", "swap", 0, 0, ids);
    ck_assert_msg(rc < 0, "attach to a missing VG succeeded");
    ck_assert_msg(strstr(vmio_errmsg(), "vmio_memlend_swap_attach: lvm") == vmio_errmsg(),
                  "message '%s'", vmio_errmsg());
    vmio_memlend_borrower_free(b);
}
END_TEST

/* The real thing, when the guest script says what to expect. */
START_TEST(test_real_system)
{
    const char *iqn = getenv("VMIO_TEST_ISCSI_IQN");
    const char *disk = getenv("VMIO_TEST_ISCSI_DISK");
    const char *lun_s = getenv("VMIO_TEST_ISCSI_LUN");
    const char *vg = getenv("VMIO_TEST_LVM_VG");
    if (iqn && disk && lun_s) {
        char dev[64], back[224];
        uint32_t lun;
        ck_assert_int_eq(vmio_ml_iscsi_wait_disk("t", NULL, iqn, (uint32_t)atoi(lun_s), 10000,
                                                 dev, sizeof dev), 0);
        ck_assert_str_eq(dev, disk);
        ck_assert_int_eq(vmio_ml_iscsi_disk_target("t", NULL, disk, back, sizeof back, &lun), 0);
        ck_assert_str_eq(back, iqn);
        ck_assert_uint_eq(lun, (uint32_t)atoi(lun_s));
    }
    if (vg) {
        struct vmio_ml_pv *pv;
        struct vmio_ml_seg *s;
        struct vmio_ml_vg v;
        size_t n, ns;
        ck_assert_msg(vmio_ml_lvm_pvs("t", vg, 60000, &pv, &n) == 0, "%s", vmio_errmsg());
        ck_assert_uint_ge(n, 1);
        free(pv);
        ck_assert_msg(vmio_ml_lvm_lvs("t", vg, 60000, &s, &ns) == 0, "%s", vmio_errmsg());
        ck_assert_uint_ge(ns, 1);
        free(s);
        ck_assert_msg(vmio_ml_lvm_vg("t", vg, 60000, &v) == 0, "%s", vmio_errmsg());
        ck_assert_str_eq(v.name, vg);
    }
}
END_TEST

static Suite *memlend_lvm_suite(void)
{
    Suite *s = suite_create("memlend-lvm");
    TCase *tc = tcase_create("lvm-json");
    tcase_add_test(tc, test_pvs_tags);
    tcase_add_test(tc, test_pvs_missing);
    tcase_add_test(tc, test_vgs);
    tcase_add_test(tc, test_lvs_linear);
    tcase_add_test(tc, test_lvs_raid1);
    tcase_add_test(tc, test_reject);
    tcase_add_test(tc, test_borrower_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("sysfs");
    tcase_add_test(tc, test_sysfs_find);
    tcase_add_test(tc, test_sysfs_reverse);
    tcase_add_test(tc, test_real_system);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(memlend_lvm_suite());
}
