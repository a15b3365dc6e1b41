/* InfiniBand passthrough (vmio_hostdev_*): domain XML edits round-tripped
 * through libvirt's own parser (the test:/// driver defines what we
 * produce and gives back its canonical XML), the error paths of the XML
 * edit, the sysfs listing on a fixture tree built here (an HCA PF with two
 * VFs on NUMA node 1, CPUs 4-7, a RoCE NIC, a plain NIC) and on this
 * machine's real /sys, and, through a libvirt group connection to a
 * test:/// host that declares the HCA as node devices
 * (data/group/ib-node.xml), the listing, attach/detach with NUMA
 * placement, dry run, and the host detach the test driver refuses. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <vmio/group.h>

#include "group/backend.h"
#include "group/hostdev.h"
#include "test-common.h"

#ifndef GROUP_DATA
#error GROUP_DATA must name tests/unit/data/group
#endif

static void quiet(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* libvirt's canonical persistent XML of dom after defining xml. */
static char *define_and_read(virConnectPtr c, const char *xml, const char *name)
{
    virDomainPtr d = virDomainDefineXML(c, xml);
    ck_assert_msg(d != NULL, "libvirt refused our XML: %s\n%s",
                  virGetLastErrorMessage(), xml);
    virDomainFree(d);
    d = virDomainLookupByName(c, name);
    ck_assert_ptr_nonnull(d);
    char *out = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
    ck_assert_ptr_nonnull(out);
    virDomainFree(d);
    return out;
}

static char *libvirt_xml(virConnectPtr c, const char *name)
{
    virDomainPtr d = virDomainLookupByName(c, name);
    ck_assert_ptr_nonnull(d);
    char *out = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
    ck_assert_ptr_nonnull(out);
    virDomainFree(d);
    return out;
}

static struct vmio_hostdev dev_at(const char *pci, int node, const char *cpus)
{
    struct vmio_hostdev d;
    memset(&d, 0, sizeof d);
    snprintf(d.pci, sizeof d.pci, "%s", pci);
    d.numa_node = node;
    snprintf(d.local_cpus, sizeof d.local_cpus, "%s", cpus);
    return d;
}

/* ---- PCI addresses ------------------------------------------------------ */

START_TEST(pci_addresses)
{
    struct vmio_pci_addr a;
    char buf[32];
    ck_assert_int_eq(vmio_hostdev_pci_parse("0000:81:00.1", &a), 0);
    ck_assert_uint_eq(a.bus, 0x81);
    ck_assert_uint_eq(a.function, 1);
    ck_assert_int_eq(vmio_hostdev_pci_parse("81:1f.7", &a), 0);
    vmio_hostdev_pci_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "0000:81:1f.7");
    ck_assert_int_eq(vmio_hostdev_pci_parse("pci_0001_af_03_2", &a), 0);
    vmio_hostdev_pci_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "0001:af:03.2");
    vmio_hostdev_pci_nodedev_name(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "pci_0001_af_03_2");
    static const char *const bad[] = { "", "81", "81:00", "0000:81:00.8", "0000:81:20.0",
                                       "0000:181:00.0", "x:81:00.0", "0000:81:00.0 ",
                                       "00000:81:00.0:1", "pci_0000:81:00.0", ":00.0" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(vmio_hostdev_pci_parse(bad[i], &a) == -EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

/* ---- domain XML, through libvirt's parser ------------------------------ */

static virConnectPtr tconn;

static void xml_setup(void)
{
    virSetErrorFunc(NULL, quiet);
    tconn = virConnectOpen("test:///default");
    ck_assert_ptr_nonnull(tconn);
}

static void xml_teardown(void)
{
    virConnectClose(tconn);
}

START_TEST(round_trip_plain)
{
    char *x0 = libvirt_xml(tconn, "test");
    ck_assert_int_eq(count_of(x0, "<hostdev"), 0);
    struct vmio_hostdev d = dev_at("0000:81:00.1", -1, "");
    char *x1;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(x0, &d, VMIO_HOSTDEV_MANAGED, &x1));
    char *x1c = define_and_read(tconn, x1, "test");
    ck_assert_int_eq(count_of(x1c, "<hostdev mode='subsystem' type='pci' managed='yes'>"), 1);
    ck_assert_ptr_nonnull(strstr(x1c, "<driver name='vfio'/>"));
    ck_assert_ptr_nonnull(
        strstr(x1c, "<address domain='0x0000' bus='0x81' slot='0x00' function='0x1'/>"));
    /* Without NUMA information nothing else moves. */
    ck_assert_ptr_null(strstr(x1c, "<numatune>"));
    ck_assert_ptr_null(strstr(x1c, "cpuset="));
    char *x2;
    ck_assert_vmio_ok(vmio_hostdev_xml_detach(x1c, "0000:81:00.1", &x2));
    char *x2c = define_and_read(tconn, x2, "test");
    ck_assert_str_eq(x2c, x0); /* exactly what libvirt had before */
    free(x0), free(x1), free(x1c), free(x2), free(x2c);
}
END_TEST

/* A Xen domain gets the device through pciback: libvirt's libxl driver
 * takes <driver name='xen'/> and no other. */
START_TEST(xen_driver)
{
    char *x0 = libvirt_xml(tconn, "test");
    char *t = strstr(x0, "<domain type='test'");
    ck_assert_ptr_nonnull(t);
    char *xen = malloc(strlen(x0) + 1);
    size_t head = (size_t)(t - x0);
    memcpy(xen, x0, head);
    sprintf(xen + head, "<domain type='xen'%s", t + strlen("<domain type='test'"));
    struct vmio_hostdev d = dev_at("0000:81:00.1", -1, "");
    char *x1;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(xen, &d, VMIO_HOSTDEV_MANAGED, &x1));
    ck_assert_int_eq(count_of(x1, "<driver name=\"xen\"/>"), 1);
    ck_assert_ptr_null(strstr(x1, "vfio"));
    struct vmio_pci_addr a;
    ck_assert_int_eq(vmio_hostdev_pci_parse("0000:81:00.1", &a), 0);
    char *dx = vmio_hostdev_xml_device(&a, VMIO_HOSTDEV_MANAGED, vmio_hostdev_driver(1));
    char *dv = vmio_hostdev_xml_device(&a, VMIO_HOSTDEV_MANAGED, vmio_hostdev_driver(0));
    ck_assert_ptr_nonnull(strstr(dx, "<driver name=\"xen\"/>"));
    ck_assert_ptr_nonnull(strstr(dv, "<driver name=\"vfio\"/>"));
    free(x0), free(xen), free(x1), free(dx), free(dv);
}
END_TEST

START_TEST(round_trip_numa)
{
    char *x0 = libvirt_xml(tconn, "test");
    struct vmio_hostdev d = dev_at("81:00.2", 1, "7,4-6");
    char *x1;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(x0, &d, 0, &x1));
    char *x1c = define_and_read(tconn, x1, "test");
    ck_assert_ptr_nonnull(strstr(x1c, "managed='no'"));
    ck_assert_ptr_nonnull(strstr(x1c, "<vcpu placement='static' cpuset='4-7'>"));
    ck_assert_ptr_nonnull(strstr(x1c, "<memory mode='strict' nodeset='1'/>"));
    ck_assert_ptr_nonnull(strstr(x1c, "function='0x2'"));

    /* A second device on node 0 moves the placement; the report says
     * from where. */
    struct vmio_hostdev d0 = dev_at("0000:02:00.0", 0, "0-3");
    struct vmio_hostdev_edit e;
    char *x2;
    ck_assert_vmio_ok(vmio_hostdev_xml_edit("t", x1c, &d0, NULL, VMIO_HOSTDEV_MANAGED, 1, &x2, &e));
    ck_assert(e.hostdev_changed && e.cpuset_changed && e.nodeset_changed);
    ck_assert_str_eq(e.cpuset_before, "4-7");
    ck_assert_str_eq(e.cpuset_after, "0-3");
    ck_assert_str_eq(e.nodeset_before, "1");
    ck_assert_str_eq(e.nodeset_after, "0");
    char *x2c = define_and_read(tconn, x2, "test");
    ck_assert_int_eq(count_of(x2c, "<hostdev "), 2);
    ck_assert_int_eq(count_of(x2c, "<numatune>"), 1);

    /* Detach removes that device only: the other and the placement stay. */
    char *x3;
    ck_assert_vmio_ok(vmio_hostdev_xml_detach(x2c, "0000:81:00.2", &x3));
    char *x3c = define_and_read(tconn, x3, "test");
    ck_assert_int_eq(count_of(x3c, "<hostdev "), 1);
    ck_assert_ptr_nonnull(strstr(x3c, "bus='0x02'"));
    ck_assert_ptr_null(strstr(x3c, "bus='0x81'"));
    ck_assert_ptr_nonnull(strstr(x3c, "cpuset='0-3'"));
    ck_assert_ptr_nonnull(strstr(x3c, "nodeset='0'"));
    free(x0), free(x1), free(x1c), free(x2), free(x2c), free(x3), free(x3c);
}
END_TEST

START_TEST(no_duplicate)
{
    char *x0 = libvirt_xml(tconn, "test");
    struct vmio_hostdev d = dev_at("0000:81:00.1", 1, "4-7");
    char *x1, *x2, *x3;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(x0, &d, VMIO_HOSTDEV_MANAGED, &x1));
    char *x1c = define_and_read(tconn, x1, "test");
    struct vmio_hostdev_edit e;
    ck_assert_vmio_ok(vmio_hostdev_xml_edit("t", x1c, &d, NULL, VMIO_HOSTDEV_MANAGED, 1, &x2, &e));
    ck_assert(!e.hostdev_changed && !e.cpuset_changed && !e.nodeset_changed);
    ck_assert_int_eq(count_of(x2, "<hostdev "), 1);
    /* The same address written differently is the same device. */
    d = dev_at("81:00.1", 1, "4-7");
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(x2, &d, VMIO_HOSTDEV_MANAGED, &x3));
    ck_assert_int_eq(count_of(x3, "<hostdev "), 1);
    free(x0), free(x1), free(x1c), free(x2), free(x3);
}
END_TEST

START_TEST(errors)
{
    char *x0 = libvirt_xml(tconn, "test");
    char *out = (char *)"untouched";
    struct vmio_hostdev d = dev_at("0000:81:00.1", -1, "");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_detach(x0, "0000:81:00.1", &out), ENOENT,
                           "vmio_hostdev_xml_detach", "no PCI hostdev 0000:81:00.1");
    ck_assert_str_eq(out, "untouched");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_attach("<domain><devices></domain>", &d, 0, &out),
                           EINVAL, "vmio_hostdev_xml_attach", "malformed domain XML");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_detach("", "0000:81:00.1", &out), EINVAL,
                           "vmio_hostdev_xml_detach", "malformed domain XML");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_attach("<network><name>n</name></network>", &d, 0,
                                                   &out),
                           EINVAL, "vmio_hostdev_xml_attach", "not a libvirt domain XML");
    struct vmio_hostdev bad = dev_at("81-00-1", -1, "");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_attach(x0, &bad, 0, &out), EINVAL,
                           "vmio_hostdev_xml_attach", "bad PCI address");
    bad = dev_at("0000:81:00.1", 1, "4-x");
    ck_assert_vmio_err_msg(vmio_hostdev_xml_attach(x0, &bad, 0, &out), EINVAL,
                           "vmio_hostdev_xml_attach", "bad local CPU list");
    ck_assert_vmio_err(vmio_hostdev_xml_attach(x0, &d, 0x80, &out), EINVAL,
                       "vmio_hostdev_xml_attach");
    ck_assert_vmio_err(vmio_hostdev_xml_attach(NULL, &d, 0, &out), EFAULT,
                       "vmio_hostdev_xml_attach");
    ck_assert_vmio_err(vmio_hostdev_xml_attach(x0, NULL, 0, &out), EFAULT,
                       "vmio_hostdev_xml_attach");
    ck_assert_vmio_err(vmio_hostdev_xml_detach(x0, NULL, &out), EFAULT,
                       "vmio_hostdev_xml_detach");
    /* An external entity is neither fetched nor expanded. */
    const char *xxe = "<!DOCTYPE domain [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
                      "<domain type='test'><name>&e;</name><devices/></domain>";
    char *x;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(xxe, &d, 0, &x));
    ck_assert_ptr_null(strstr(x, "root:"));
    free(x);
    ck_assert_str_eq(out, "untouched");
    free(x0);
}
END_TEST

START_TEST(minimal_domain)
{
    /* No <devices>, no <vcpu>: both are created and libvirt takes it. */
    const char *x0 = "<domain type='test'><name>mini</name>"
                     "<memory unit='KiB'>65536</memory><os><type>hvm</type></os></domain>";
    struct vmio_hostdev d = dev_at("0000:81:00.1", 1, "4-7");
    char *x1;
    ck_assert_vmio_ok(vmio_hostdev_xml_attach(x0, &d, VMIO_HOSTDEV_MANAGED, &x1));
    char *x1c = define_and_read(tconn, x1, "mini");
    ck_assert_int_eq(count_of(x1c, "<hostdev "), 1);
    ck_assert_ptr_nonnull(strstr(x1c, "cpuset='4-7'"));
    ck_assert_ptr_nonnull(strstr(x1c, "nodeset='1'"));
    free(x1), free(x1c);
}
END_TEST

/* ---- sysfs ------------------------------------------------------------- */

static void put(const char *root, const char *rel, const char *content)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(content, f);
    fclose(f);
}

static void mkdirs(const char *root, const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void link_to(const char *root, const char *rel, const char *target)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    ck_assert_msg(symlink(target, path) == 0, "%s: %s", path, strerror(errno));
}

/* One PCI function under bus/pci/devices/. */
static void pci_dev(const char *root, const char *addr, const char *cls, const char *vendor,
                    const char *device, const char *driver, const char *node, const char *cpus)
{
    char d[128], rel[256];
    snprintf(d, sizeof d, "bus/pci/devices/%s", addr);
    mkdirs(root, d);
    struct { const char *name, *value; } attrs[] = {
        { "class", cls }, { "vendor", vendor }, { "device", device },
        { "numa_node", node }, { "local_cpulist", cpus },
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        snprintf(rel, sizeof rel, "%s/%s", d, attrs[i].name);
        char v[64];
        snprintf(v, sizeof v, "%s\n", attrs[i].value);
        put(root, rel, v);
    }
    if (driver) {
        char t[128];
        snprintf(rel, sizeof rel, "%s/driver", d);
        snprintf(t, sizeof t, "../../../../bus/pci/drivers/%s", driver);
        link_to(root, rel, t);
    }
}

/* The fixture: tests/unit/data/group/sysfs-ib as it would look on a
 * ConnectX-5 host, built in a scratch directory. */
static void build_sysfs(const char *root)
{
    /* PF 0000:81:00.0 with mlx5_0, SR-IOV 2 of 8 VFs, node 1, CPUs 4-7 */
    pci_dev(root, "0000:81:00.0", "0x020700", "0x15b3", "0x1017", "mlx5_core", "1", "4-7");
    put(root, "bus/pci/devices/0000:81:00.0/sriov_totalvfs", "8\n");
    put(root, "bus/pci/devices/0000:81:00.0/sriov_numvfs", "2\n");
    mkdirs(root, "bus/pci/devices/0000:81:00.0/infiniband/mlx5_0");
    link_to(root, "bus/pci/devices/0000:81:00.0/virtfn0", "../0000:81:00.1");
    link_to(root, "bus/pci/devices/0000:81:00.0/virtfn1", "../0000:81:00.2");
    /* VF 1 on mlx5_core (an RDMA device of its own), VF 2 on vfio-pci */
    pci_dev(root, "0000:81:00.1", "0x020700", "0x15b3", "0x1018", "mlx5_core", "1", "4-7");
    mkdirs(root, "bus/pci/devices/0000:81:00.1/infiniband/mlx5_1");
    link_to(root, "bus/pci/devices/0000:81:00.1/physfn", "../0000:81:00.0");
    pci_dev(root, "0000:81:00.2", "0x020700", "0x15b3", "0x1018", "vfio-pci", "1", "4-7");
    link_to(root, "bus/pci/devices/0000:81:00.2/physfn", "../0000:81:00.0");
    /* a RoCE NIC (Ethernet class with an RDMA device) and its VF without
     * one, a plain NIC, an NVMe drive */
    pci_dev(root, "0000:02:00.0", "0x020000", "0x15b3", "0x1019", "mlx5_core", "0", "0-3");
    mkdirs(root, "bus/pci/devices/0000:02:00.0/infiniband/mlx5_2");
    pci_dev(root, "0000:02:00.1", "0x020000", "0x15b3", "0x101a", NULL, "0", "0-3");
    link_to(root, "bus/pci/devices/0000:02:00.1/physfn", "../0000:02:00.0");
    pci_dev(root, "0000:00:03.0", "0x020000", "0x8086", "0x100e", "e1000", "-1", "0-7");
    pci_dev(root, "0000:00:04.0", "0x010802", "0x144d", "0xa808", "nvme", "0", "0-3");
}

START_TEST(sysfs_fixture)
{
    char root[256];
    test_mkdtemp(root, sizeof root);
    build_sysfs(root);
    struct vmio_hostdev *d = NULL;
    size_t n = 99;
    ck_assert_vmio_ok(vmio_hostdev_list(NULL, root, &d, &n));
    ck_assert_uint_eq(n, 5);
    static const char *const want[] = { "0000:02:00.0", "0000:02:00.1", "0000:81:00.0",
                                        "0000:81:00.1", "0000:81:00.2" };
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(d[i].pci, want[i]);
    const struct vmio_hostdev *pf = &d[2], *vf1 = &d[3], *vf2 = &d[4], *roce = &d[0];
    ck_assert_str_eq(pf->name, "mlx5_0");
    ck_assert_str_eq(pf->driver, "mlx5_core");
    ck_assert_uint_eq(pf->vendor, 0x15b3);
    ck_assert_uint_eq(pf->device, 0x1017);
    ck_assert_int_eq(pf->is_vf, 0);
    ck_assert_str_eq(pf->pf, "");
    ck_assert_int_eq(pf->numa_node, 1);
    ck_assert_str_eq(pf->local_cpus, "4-7");
    ck_assert_int_eq(pf->total_vfs, 8);
    ck_assert_int_eq(pf->num_vfs, 2);
    ck_assert_int_eq(vf1->is_vf, 1);
    ck_assert_str_eq(vf1->pf, "0000:81:00.0");
    ck_assert_str_eq(vf1->name, "mlx5_1");
    ck_assert_uint_eq(vf1->device, 0x1018);
    ck_assert_int_eq(vf2->is_vf, 1);
    ck_assert_str_eq(vf2->driver, "vfio-pci");
    ck_assert_str_eq(vf2->name, "");
    ck_assert_int_eq(vf2->numa_node, 1);
    ck_assert_str_eq(roce->name, "mlx5_2");
    ck_assert_int_eq(roce->numa_node, 0);
    ck_assert_int_eq(d[1].is_vf, 1);  /* the RoCE VF, driverless */
    ck_assert_str_eq(d[1].driver, "");
    free(d);

    /* No PCI bus at all: an error naming the path, outputs untouched. */
    char empty[300];
    snprintf(empty, sizeof empty, "%s/none", root);
    d = (struct vmio_hostdev *)&n;
    ck_assert_vmio_err_msg(vmio_hostdev_list(NULL, empty, &d, &n), ENOENT, "vmio_hostdev_list",
                           "/none/bus/pci/devices");
    ck_assert_ptr_eq(d, (struct vmio_hostdev *)&n);
    ck_assert_vmio_err(vmio_hostdev_list(NULL, root, NULL, &n), EFAULT, "vmio_hostdev_list");
    test_rmtree(root);
}
END_TEST

static long class_of(const char *addr)
{
    char path[PATH_MAX], buf[32];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/class", addr);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long c = fgets(buf, sizeof buf, f) ? strtol(buf, NULL, 16) : -1;
    fclose(f);
    return c;
}

START_TEST(sysfs_real)
{
    struct vmio_hostdev *d = NULL;
    size_t n = 0;
    ck_assert_vmio_ok(vmio_hostdev_list(NULL, NULL, &d, &n));
    /* Whatever this machine has: every device listed is an HCA or a NIC
     * of this sysfs, and every InfiniBand-class function is listed. */
    for (size_t i = 0; i < n; i++) {
        long c = class_of(d[i].pci);
        ck_assert_msg((c >> 8) == 0x0207 || (c >> 8) == 0x0200, "%s has class %lx", d[i].pci, c);
    }
    DIR *dir = opendir("/sys/bus/pci/devices");
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    size_t ib = 0;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.' || (class_of(de->d_name) >> 8) != 0x0207)
            continue;
        ib++;
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= strcmp(d[i].pci, de->d_name) == 0;
        ck_assert_msg(found, "InfiniBand function %s not listed", de->d_name);
    }
    closedir(dir);
    fprintf(stderr, "this host: %zu HCA/RoCE functions listed, %zu of InfiniBand class\n", n, ib);
    free(d);
}
END_TEST

/* ---- libvirt node devices and domains (test:/// with ib-node.xml) ----- */

static vmio_group_conn *gconn;
static char state_dir[256];

static void lv_setup(void)
{
    virSetErrorFunc(NULL, quiet);
    test_mkdtemp(state_dir, sizeof state_dir);
    struct vmio_group_connect_opts o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "libvirt";
    o.uri = "test://" GROUP_DATA "/ib-node.xml";
    o.state_dir = state_dir;
    o.topology_xml = GROUP_DATA "/topo-2s4c-ib.xml";
    ck_assert_vmio_ok(vmio_group_connect(&o, &gconn));
}

static void lv_teardown(void)
{
    vmio_group_disconnect(gconn);
    test_rmtree(state_dir);
}

/* The group connection's own virConnectPtr: the test driver's state is
 * per connection, so changes are read back through it. */
static virConnectPtr vc(void)
{
    virConnectPtr c = vmio_group_libvirt_conn(gconn);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(libvirt_list)
{
    char root[256];
    test_mkdtemp(root, sizeof root);
    mkdirs(root, "bus/pci/devices");  /* an empty sysfs: libvirt alone */
    struct vmio_hostdev *d = NULL;
    size_t n = 0;
    ck_assert_vmio_ok(vmio_hostdev_list(gconn, root, &d, &n));
    ck_assert_uint_eq(n, 3); /* the PF and its 2 VFs; not the Intel NIC */
    ck_assert_str_eq(d[0].pci, "0000:81:00.0");
    ck_assert_str_eq(d[0].name, "pci_0000_81_00_0");
    ck_assert_int_eq(d[0].numa_node, 1);
    ck_assert_int_eq(d[0].total_vfs, 8);
    ck_assert_int_eq(d[0].num_vfs, 2);
    ck_assert_uint_eq(d[0].vendor, 0x15b3);
    ck_assert_str_eq(d[0].local_cpus, "4-7"); /* node 1 of the topology */
    ck_assert_int_eq(d[1].is_vf, 1);
    ck_assert_str_eq(d[1].pf, "0000:81:00.0");
    ck_assert_str_eq(d[2].pci, "0000:81:00.2");
    free(d);

    /* sysfs and libvirt agree on an address: one entry, sysfs's name. */
    build_sysfs(root);
    ck_assert_vmio_ok(vmio_hostdev_list(gconn, root, &d, &n));
    ck_assert_uint_eq(n, 5);
    ck_assert_str_eq(d[2].name, "mlx5_0");
    ck_assert_str_eq(d[2].driver, "mlx5_core");
    ck_assert_str_eq(d[2].local_cpus, "4-7");
    ck_assert_int_eq(d[4].numa_node, 1);
    free(d);
    test_rmtree(root);
}
END_TEST

START_TEST(libvirt_attach_detach)
{
    virConnectPtr c = vc();
    char *before = libvirt_xml(c, "rank0");

    /* Dry run: the report has the new XML; libvirt keeps the old. */
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_hostdev_attach(gconn, "rank0", "0000:81:00.1",
                                          VMIO_GROUP_DRY_RUN, &r));
    const char *newxml = NULL;
    int saw_hostdev = 0;
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        if (strcmp(ch->what, "domain xml") == 0)
            newxml = ch->after;
        if (strcmp(ch->what, "hostdev") == 0 && strcmp(ch->after, "0000:81:00.1") == 0)
            saw_hostdev = 1;
    }
    ck_assert(saw_hostdev);
    ck_assert_ptr_nonnull(newxml);
    ck_assert_ptr_nonnull(strstr(newxml, "<hostdev mode=\"subsystem\" type=\"pci\""));
    int migr = 0;
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        migr |= strstr(vmio_group_report_warning(r, i), "blocks live migration") != NULL;
    ck_assert(migr);
    vmio_group_report_free(r);
    char *still = libvirt_xml(c, "rank0");
    ck_assert_str_eq(still, before);
    free(still);

    /* For real: persistent definition; the test driver cannot hot-plug,
     * which is a warning, not an error. */
    r = NULL;
    ck_assert_vmio_ok(vmio_hostdev_attach(gconn, "rank0", "0000:81:00.1", 0, &r));
    char *after = libvirt_xml(c, "rank0");
    ck_assert_int_eq(count_of(after, "<hostdev mode='subsystem' type='pci' managed='yes'>"), 1);
    ck_assert_ptr_nonnull(strstr(after, "function='0x1'"));
    ck_assert_ptr_nonnull(strstr(after, "<vcpu placement='static' cpuset='4-7'>"));
    ck_assert_ptr_nonnull(strstr(after, "<memory mode='strict' nodeset='1'/>"));
    migr = 0;
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        migr |= strstr(vmio_group_report_warning(r, i), "blocks live migration") != NULL;
    ck_assert(migr);
    vmio_group_report_free(r);
    free(after);

    /* Again: nothing added twice. */
    ck_assert_vmio_ok(vmio_hostdev_attach(gconn, "rank0", "0000:81:00.1", 0, NULL));
    after = libvirt_xml(c, "rank0");
    ck_assert_int_eq(count_of(after, "<hostdev "), 1);
    free(after);

    ck_assert_vmio_ok(vmio_hostdev_detach(gconn, "rank0", "0000:81:00.1", 0, NULL));
    after = libvirt_xml(c, "rank0");
    ck_assert_int_eq(count_of(after, "<hostdev "), 0);
    ck_assert_ptr_nonnull(strstr(after, "cpuset='4-7'")); /* placement stays */
    free(after);
    ck_assert_vmio_err_msg(vmio_hostdev_detach(gconn, "rank0", "0000:81:00.1", 0, NULL), ENOENT,
                           "vmio_hostdev_detach", "no PCI hostdev 0000:81:00.1");
    free(before);
}
END_TEST

START_TEST(libvirt_inactive_domain)
{
    /* A defined, stopped domain: only its definition changes, and there
     * is nothing to hot-plug (no warning about it). */
    virConnectPtr c = vc();
    virDomainPtr d = virDomainDefineXML(c, "<domain type='test'><name>cold</name>"
                                           "<memory unit='KiB'>1048576</memory><vcpu>2</vcpu>"
                                           "<os><type>hvm</type></os></domain>");
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(virDomainIsActive(d), 0);
    virDomainFree(d);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_hostdev_attach(gconn, "cold", "81:00.2", 0, &r));
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        ck_assert_ptr_null(strstr(vmio_group_report_warning(r, i), "running domain"));
    vmio_group_report_free(r);
    char *x = libvirt_xml(c, "cold");
    ck_assert_ptr_nonnull(strstr(x, "function='0x2'"));
    ck_assert_ptr_nonnull(strstr(x, "cpuset='4-7'"));
    free(x);
    ck_assert_vmio_ok(vmio_hostdev_detach(gconn, "cold", "0000:81:00.2", 0, NULL));
    x = libvirt_xml(c, "cold");
    ck_assert_ptr_null(strstr(x, "<hostdev"));
    free(x);
}
END_TEST

START_TEST(libvirt_errors)
{
    ck_assert_vmio_err_msg(vmio_hostdev_attach(gconn, "nosuchvm", "0000:81:00.1", 0, NULL),
                           ENOENT, "vmio_hostdev_attach", "nosuchvm");
    ck_assert_vmio_err_msg(vmio_hostdev_attach(gconn, "rank0", "0000:99:00.0", 0, NULL), ENOENT,
                           "vmio_hostdev_attach", "no PCI device 0000:99:00.0");
    ck_assert_vmio_err_msg(vmio_hostdev_attach(gconn, "rank0", "nonsense", 0, NULL), EINVAL,
                           "vmio_hostdev_attach", "bad PCI address");
    ck_assert_vmio_err(vmio_hostdev_attach(gconn, "rank0", "0000:81:00.1", 0x2, NULL), EINVAL,
                       "vmio_hostdev_attach");
    ck_assert_vmio_err(vmio_hostdev_attach(NULL, "rank0", "0000:81:00.1", 0, NULL), EFAULT,
                       "vmio_hostdev_attach");
    /* The test driver has no node-device detach: a clear -ENOTSUP. */
    ck_assert_vmio_err_msg(vmio_hostdev_host_detach(gconn, "0000:81:00.1"), ENOTSUP,
                           "vmio_hostdev_host_detach", "cannot detach host devices");
    ck_assert_vmio_err_msg(vmio_hostdev_host_reattach(gconn, "0000:81:00.1"), ENOTSUP,
                           "vmio_hostdev_host_reattach", "cannot reattach host devices");
    ck_assert_vmio_err_msg(vmio_hostdev_host_detach(gconn, "0000:99:00.0"), ENOENT,
                           "vmio_hostdev_host_detach", "pci_0000_99_00_0");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("group-hostdev");
    TCase *tc = tcase_create("pci");
    tcase_add_test(tc, pci_addresses);
    suite_add_tcase(s, tc);
    tc = tcase_create("xml");
    tcase_add_checked_fixture(tc, xml_setup, xml_teardown);
    tcase_add_test(tc, round_trip_plain);
    tcase_add_test(tc, xen_driver);
    tcase_add_test(tc, round_trip_numa);
    tcase_add_test(tc, no_duplicate);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, minimal_domain);
    suite_add_tcase(s, tc);
    tc = tcase_create("sysfs");
    tcase_add_test(tc, sysfs_fixture);
    tcase_add_test(tc, sysfs_real);
    suite_add_tcase(s, tc);
    tc = tcase_create("libvirt");
    tcase_add_checked_fixture(tc, lv_setup, lv_teardown);
    tcase_add_test(tc, libvirt_list);
    tcase_add_test(tc, libvirt_attach_detach);
    tcase_add_test(tc, libvirt_inactive_domain);
    tcase_add_test(tc, libvirt_errors);
    suite_add_tcase(s, tc);
    return test_run(s);
}
