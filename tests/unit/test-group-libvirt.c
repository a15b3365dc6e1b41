/* VM groups on libvirt's real test driver (no daemon), loaded with the
 * host XMLs of data/group/: the HPC paper's 2 sockets x 4 cores node and a
 * 4-node NUMA host. Every change apply makes is read back with libvirt's
 * own calls (vCPU and emulator pinning, NUMA parameters, metadata, the
 * persistent XML) through the connection the library used: with the test
 * driver, each connection to a custom host XML has its own state.
 * Group definitions persist in a scratch state directory. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <sys/stat.h>

#include <vmio/group.h>

#include "group/backend.h"
#include "test-common.h"

#ifndef GROUP_DATA
#error GROUP_DATA must name tests/unit/data/group
#endif

static char dir[256];

static void quiet(void *o, virErrorPtr e)
{
    (void)o;
    (void)e;
}

static void setup(void)
{
    virSetErrorFunc(NULL, quiet);
    test_mkdtemp(dir, sizeof dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

static vmio_group_conn *conn_open(const char *host)
{
    char uri[512];
    snprintf(uri, sizeof uri, "test://%s/%s", GROUP_DATA, host);
    struct vmio_group_connect_opts o = { .struct_size = sizeof o, .uri = uri, .state_dir = dir };
    vmio_group_conn *c = NULL;
    ck_assert_vmio_ok(vmio_group_connect(&o, &c));
    ck_assert_str_eq(vmio_group_backend_name(c), "libvirt");
    ck_assert_str_eq(vmio_group_hypervisor(c), "Test");
    return c;
}

/* The libvirt connection behind c (backend.h). */
static virConnectPtr lvconn(vmio_group_conn *c)
{
    virConnectPtr v = vmio_group_libvirt_conn(c);
    ck_assert_ptr_nonnull(v);
    return v;
}

static virDomainPtr dom(vmio_group_conn *c, const char *name)
{
    virDomainPtr d = virDomainLookupByName(lvconn(c), name);
    ck_assert_msg(d != NULL, "domain %s", name);
    return d;
}

/* vCPU v of vm: its CPU set as a bit mask (8 or 16 host CPUs). */
static unsigned pin_of(vmio_group_conn *c, const char *vm, int v)
{
    virDomainPtr d = dom(c, vm);
    unsigned char maps[64][2];
    memset(maps, 0, sizeof maps);
    virDomainInfo info;
    ck_assert_int_eq(virDomainGetInfo(d, &info), 0);
    ck_assert_int_lt(v, (int)info.nrVirtCpu);
    ck_assert_int_ge(virDomainGetVcpuPinInfo(d, (int)info.nrVirtCpu, &maps[0][0], 2, 0), 1);
    virDomainFree(d);
    return maps[v][0] | (unsigned)maps[v][1] << 8;
}

static unsigned emu_of(vmio_group_conn *c, const char *vm)
{
    virDomainPtr d = dom(c, vm);
    unsigned char map[2] = { 0 };
    ck_assert_int_eq(virDomainGetEmulatorPinInfo(d, map, 2, 0), 1);
    virDomainFree(d);
    return map[0] | (unsigned)map[1] << 8;
}

static unsigned nvcpus(vmio_group_conn *c, const char *vm)
{
    virDomainPtr d = dom(c, vm);
    virDomainInfo info;
    ck_assert_int_eq(virDomainGetInfo(d, &info), 0);
    virDomainFree(d);
    return info.nrVirtCpu;
}

static char *meta_of(vmio_group_conn *c, const char *vm)
{
    virDomainPtr d = dom(c, vm);
    char *m = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT,
                                   "https://libvmio.org/xmlns/group/1", 0);
    virDomainFree(d);
    return m;
}

static char *xml_of(vmio_group_conn *c, const char *vm)
{
    virDomainPtr d = dom(c, vm);
    char *x = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
    virDomainFree(d);
    ck_assert(x != NULL);
    return x;
}

static char *nodeset_of(vmio_group_conn *c, const char *vm)
{
    virDomainPtr d = dom(c, vm);
    virTypedParameter p[8];
    int n = 8;
    ck_assert_int_eq(virDomainGetNumaParameters(d, p, &n, 0), 0);
    char *out = NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].field, VIR_DOMAIN_NUMA_NODESET))
            out = strdup(p[i].value.s ? p[i].value.s : "");
    virTypedParamsClear(p, n);
    virDomainFree(d);
    ck_assert(out != NULL);
    return out;
}

static int popcount(unsigned x)
{
    return __builtin_popcount(x);
}

/* Changes of one kind for one VM in a report. */
static int report_has(const vmio_group_report *r, const char *vm, const char *what)
{
    int n = 0;
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        if ((!vm || (ch->vm && !strcmp(ch->vm, vm))) && !strncmp(ch->what, what, strlen(what)))
            n++;
    }
    return n;
}

static vmio_group *make_group(vmio_group_conn *c, const char *name, const char *const *vms,
                              const struct vmio_group_policy *p)
{
    vmio_group *g = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, name, &g));
    for (size_t i = 0; vms[i]; i++)
        ck_assert_vmio_ok(vmio_group_add(g, vms[i]));
    if (p)
        ck_assert_vmio_ok(vmio_group_set_policy(g, p));
    return g;
}

START_TEST(test_registry_persists)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    vmio_group *a = NULL, *b = NULL, *x = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, "alpha", &a));
    ck_assert_vmio_ok(vmio_group_create(c, "beta", &b));
    uint32_t ida = vmio_group_id(a), idb = vmio_group_id(b);
    ck_assert_uint_ne(ida, idb);
    ck_assert_vmio_err(vmio_group_create(c, "alpha", &x), EEXIST, "vmio_group_create");
    ck_assert_vmio_err(vmio_group_create(c, "123", &x), EINVAL, "vmio_group_create");
    ck_assert_vmio_err(vmio_group_create(c, "bad name", &x), EINVAL, "vmio_group_create");
    ck_assert_vmio_ok(vmio_group_add(b, "web1"));
    ck_assert_vmio_ok(vmio_group_add(b, "db1"));
    vmio_group_close(a);
    vmio_group_close(b);
    vmio_group_disconnect(c);

    /* a new connection (the test driver starts afresh): same groups */
    c = conn_open("hpc-2s4c.xml");
    char **names = NULL;
    size_t n = 0;
    ck_assert_vmio_ok(vmio_group_list(c, &names, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(names[0], "alpha");
    ck_assert_str_eq(names[1], "beta");
    vmio_group_list_free(names, n);
    char idtext[16];
    snprintf(idtext, sizeof idtext, "%u", idb);
    ck_assert_vmio_ok(vmio_group_open(c, idtext, &b));
    ck_assert_str_eq(vmio_group_name(b), "beta");
    ck_assert_uint_eq(vmio_group_member_count(b), 2);
    ck_assert_str_eq(vmio_group_member(b, 0), "web1");
    ck_assert_str_eq(vmio_group_member(b, 1), "db1");
    ck_assert_ptr_null(vmio_group_member(b, 2));
    ck_assert_vmio_err(vmio_group_open(c, "gamma", &x), ENOENT, "vmio_group_open");
    ck_assert_vmio_err(vmio_group_open(c, "999", &x), ENOENT, "vmio_group_open");

    /* ids are never reused */
    ck_assert_vmio_ok(vmio_group_open(c, "alpha", &a));
    ck_assert_vmio_ok(vmio_group_destroy(a));
    vmio_group *g = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, "gamma", &g));
    ck_assert_uint_gt(vmio_group_id(g), idb);
    ck_assert_uint_ne(vmio_group_id(g), ida);
    vmio_group_close(g);
    vmio_group_close(b);
    vmio_group_disconnect(c);
}
END_TEST

START_TEST(test_membership_errors)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    vmio_group *a = NULL, *b = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, "a", &a));
    ck_assert_vmio_ok(vmio_group_create(c, "b", &b));
    ck_assert_vmio_err_msg(vmio_group_add(a, "nosuchvm"), ENOENT, "vmio_group_add", "nosuchvm");
    ck_assert_vmio_ok(vmio_group_add(a, "web1"));
    ck_assert_vmio_ok(vmio_group_add(a, "web1")); /* again: no-op */
    ck_assert_uint_eq(vmio_group_member_count(a), 1);
    ck_assert_vmio_err_msg(vmio_group_add(b, "web1"), EBUSY, "vmio_group_add", "'a'");
    ck_assert_vmio_err(vmio_group_remove(b, "web1"), ENOENT, "vmio_group_remove");
    /* a's handle sees a member added through another handle of a; leaving
     * a group never applied leaves the VM's own pinning alone */
    virDomainPtr d = dom(c, "web2");
    unsigned char cpu3 = 0x08;
    ck_assert_int_eq(virDomainPinVcpuFlags(d, 1, &cpu3, 1, 0), 0);
    virDomainFree(d);
    vmio_group *a2 = NULL;
    ck_assert_vmio_ok(vmio_group_open(c, "a", &a2));
    ck_assert_vmio_ok(vmio_group_add(a2, "web2"));
    ck_assert_vmio_ok(vmio_group_remove(a, "web2"));
    ck_assert_uint_eq(vmio_group_member_count(a), 1);
    ck_assert_uint_eq(pin_of(c, "web2", 1), 0x08u);
    vmio_group_close(a2);
    vmio_group_close(a);
    vmio_group_close(b);
    vmio_group_disconnect(c);
}
END_TEST

START_TEST(test_capabilities)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    uint64_t caps = 0;
    ck_assert_vmio_ok(vmio_group_capabilities(c, &caps));
    ck_assert(caps & VMIO_GROUP_CAP_PIN_STRICT);
    ck_assert(caps & VMIO_GROUP_CAP_METADATA);
    ck_assert(!(caps & VMIO_GROUP_CAP_LIVE));
    ck_assert(!(caps & VMIO_GROUP_CAP_COSCHEDULE));
    ck_assert(!(caps & VMIO_GROUP_CAP_POOL_SCHEDULER));
    ck_assert_str_eq(vmio_group_cap_note(c, VMIO_GROUP_CAP_LIVE),
                     "libvirt test driver: no live changes to a real VM");
    for (unsigned i = 0; i < VMIO_GROUP_CAP_COUNT; i++) {
        ck_assert_ptr_nonnull(vmio_group_cap_name(1ull << i));
        ck_assert_ptr_nonnull(vmio_group_cap_note(c, 1ull << i));
    }
    ck_assert_ptr_null(vmio_group_cap_name(1ull << VMIO_GROUP_CAP_COUNT));
    ck_assert_ptr_null(vmio_group_cap_name(3));

    vmio_group *g = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, "pool", &g));
    struct vmio_group_policy p = { .struct_size = sizeof p, .dedicated = 1,
                                   .scheduler = "credit2" };
    ck_assert_vmio_err_msg(vmio_group_set_policy(g, &p), ENOTSUP, "vmio_group_set_policy",
                           "pool-scheduler");
    struct vmio_group_policy q = { .struct_size = sizeof q, .pin = VMIO_GROUP_PIN_NONE,
                                   .housekeeping = "0" };
    ck_assert_vmio_err(vmio_group_set_policy(g, &q), EINVAL, "vmio_group_set_policy");
    struct vmio_group_policy s = { .struct_size = sizeof s, .shmem_bytes = 3 << 20 };
    ck_assert_vmio_err(vmio_group_set_policy(g, &s), EINVAL, "vmio_group_set_policy");
    /* nothing stored by the refused calls */
    struct vmio_group_policy got = { .struct_size = sizeof got };
    ck_assert_vmio_ok(vmio_group_get_policy(g, &got));
    ck_assert_int_eq(got.dedicated, 0);
    ck_assert_ptr_null(got.scheduler);
    vmio_group_close(g);
    vmio_group_disconnect(c);

    struct vmio_group_connect_opts o = { .struct_size = sizeof o, .backend = "hyperv" };
    ck_assert_vmio_err(vmio_group_connect(&o, &c), EINVAL, "vmio_group_connect");
}
END_TEST

/* Strict pinning on the HPC node: each vCPU on its own CPU, the whole
 * group on one socket, the housekeeping CPU untouched, weight and cap
 * split by vCPU count, metadata on every member; then idempotence. */
START_TEST(test_apply_strict)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    const char *vms[] = { "web1", "web2", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_SOCKET, .housekeeping = "0",
                                   .weight = 900, .cap = 150, .shmem_bytes = 64 << 20 };
    vmio_group *g = make_group(c, "web", vms, &p);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_gt(vmio_group_report_count(r), 0);
    ck_assert_int_eq(report_has(r, "web1", "vcpupin"), 2);
    /* the test driver pins the current definition only: said once */
    int said = 0;
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        said += strstr(vmio_group_report_warning(r, i), "vCPU pinning") != NULL;
    ck_assert_int_eq(said, 1);
    ck_assert_int_eq(report_has(r, "web2", "metadata"), 1);
    const char *cpus = vmio_group_report_cpus(r);
    ck_assert_ptr_nonnull(cpus);
    ck_assert_msg(strncmp(cpus, "group ", 6) == 0 && strstr(cpus, "; web1 ") &&
                      strstr(cpus, "; web2 "), "placement text '%s'", cpus);
    vmio_group_report_free(r);

    unsigned used = 0;
    for (int m = 0; vms[m]; m++)
        for (unsigned v = 0; v < nvcpus(c, vms[m]); v++) {
            unsigned pin = pin_of(c, vms[m], (int)v);
            ck_assert_msg(popcount(pin) == 1, "%s vCPU %u pinned to %#x", vms[m], v, pin);
            ck_assert_msg(!(pin & used), "CPU %#x given twice", pin);
            ck_assert_msg(!(pin & 1u), "housekeeping CPU 0 given to %s", vms[m]);
            used |= pin;
            ck_assert_uint_eq(emu_of(c, vms[m]), 1u); /* emulator on housekeeping */
        }
    /* 4 vCPUs, socket 0 has 3 free CPUs: all on socket 1 (CPUs 4-7) */
    ck_assert_uint_eq(used, 0xf0u);
    char *m = meta_of(c, "web1");
    ck_assert_ptr_nonnull(m);
    char want[64];
    snprintf(want, sizeof want, "id=\"%u\"", vmio_group_id(g));
    ck_assert_msg(strstr(m, want) && strstr(m, "name=\"web\""), "metadata %s", m);
    free(m);
    /* the test driver keeps no scheduler parameters: read the definition */
    for (int i = 0; vms[i]; i++) {
        char *x = xml_of(c, vms[i]);
        ck_assert_msg(strstr(x, "<shares>450</shares>"), "weight not split: %s", x);
        ck_assert_msg(strstr(x, "<global_quota>75000</global_quota>"), "cap not split: %s", x);
        ck_assert_msg(strstr(x, "<shmem name='vmio-web'>") ||
                          strstr(x, "<shmem name=\"vmio-web\">"),
                      "no shmem: %s", x);
        free(x);
    }
    /* other VMs untouched */
    ck_assert_uint_eq(pin_of(c, "db1", 0), 0xffu);

    /* idempotent */
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    for (size_t i = 0; i < vmio_group_report_count(r); i++) {
        const struct vmio_group_change *ch = vmio_group_report_change(r, i);
        ck_abort_msg("second apply changed %s %s: '%s' -> '%s'", ch->vm, ch->what, ch->before,
                     ch->after);
    }
    vmio_group_report_free(r);

    /* remove undoes what apply set on that VM */
    ck_assert_vmio_ok(vmio_group_remove(g, "web2"));
    ck_assert_uint_eq(vmio_group_member_count(g), 1);
    for (unsigned v = 0; v < 2; v++)
        ck_assert_uint_eq(pin_of(c, "web2", (int)v), 0xffu);
    ck_assert_uint_eq(emu_of(c, "web2"), 0xffu);
    ck_assert_ptr_null(meta_of(c, "web2"));
    char *x = xml_of(c, "web2");
    /* web2 had no weight and no cap before: none again */
    ck_assert_msg(!strstr(x, "<shares>") && !strstr(x, "global_quota") &&
                      !strstr(x, "vmio-web"), "remove left: %s", x);
    free(x);
    ck_assert_ptr_nonnull(m = meta_of(c, "web1"));
    free(m);

    /* destroy undoes the rest and forgets the group */
    char path[512];
    snprintf(path, sizeof path, "%s/%u.group", dir, vmio_group_id(g));
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_vmio_ok(vmio_group_destroy(g));
    ck_assert_int_eq(stat(path, &sb), -1);
    ck_assert_uint_eq(pin_of(c, "web1", 0), 0xffu);
    ck_assert_ptr_null(meta_of(c, "web1"));
    ck_assert_vmio_err(vmio_group_open(c, "web", &g), ENOENT, "vmio_group_open");
    vmio_group_disconnect(c);
}
END_TEST

START_TEST(test_apply_dry_run)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    const char *vms[] = { "db1", "batch1", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_LOOSE,
                                   .locality = VMIO_GROUP_NEAR_ANY, .weight = 700 };
    vmio_group *g = make_group(c, "batch", vms, &p);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &r));
    ck_assert_uint_gt(vmio_group_report_count(r), 0);
    ck_assert_int_eq(report_has(r, "db1", "weight"), 1);
    ck_assert_int_eq(report_has(r, "db1", "metadata"), 1);
    size_t planned = vmio_group_report_count(r);
    vmio_group_report_free(r);
    /* nothing changed */
    ck_assert_ptr_null(meta_of(c, "db1"));
    ck_assert_uint_eq(pin_of(c, "db1", 3), 0xffu);
    char *x = xml_of(c, "db1");
    ck_assert_ptr_null(strstr(x, "<shares>"));
    free(x);
    /* the real apply makes exactly the planned changes */
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_eq(vmio_group_report_count(r), planned);
    vmio_group_report_free(r);
    /* loose: every vCPU of both on the group's set of 7 CPUs */
    unsigned set = pin_of(c, "db1", 0);
    ck_assert_int_eq(popcount(set), 7);
    for (unsigned v = 0; v < 3; v++)
        ck_assert_uint_eq(pin_of(c, "batch1", (int)v), set);
    /* weight 700 split 4:3 */
    x = xml_of(c, "db1");
    ck_assert_msg(strstr(x, "<shares>400</shares>"), "%s", x);
    free(x);
    x = xml_of(c, "batch1");
    ck_assert_msg(strstr(x, "<shares>300</shares>"), "%s", x);
    free(x);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

/* Dedicated CPUs on libvirt: other VMs are pinned off the group's CPUs,
 * and given them back when the group goes. A second dedicated group
 * never gets the first one's CPUs. */
START_TEST(test_dedicated)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    const char *vms[] = { "db1", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_SOCKET, .dedicated = 1 };
    vmio_group *g = make_group(c, "hpc", vms, &p);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_int_ge(report_has(r, "idle1", "vcpupin"), 1);
    vmio_group_report_free(r);
    unsigned mine = 0;
    for (int v = 0; v < 4; v++)
        mine |= pin_of(c, "db1", v);
    ck_assert_int_eq(popcount(mine), 4);
    ck_assert(mine == 0x0fu || mine == 0xf0u);
    const char *others[] = { "web1", "web2", "batch1", "batch2", "idle1" };
    for (size_t i = 0; i < 5; i++)
        for (unsigned v = 0; v < nvcpus(c, others[i]); v++)
            ck_assert_msg(!(pin_of(c, others[i], (int)v) & mine), "%s on the group's CPUs",
                          others[i]);
    ck_assert_uint_eq(emu_of(c, "idle1") & mine, 0);
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_eq(vmio_group_report_count(r), 0);
    vmio_group_report_free(r);

    const char *vms2[] = { "web1", NULL };
    vmio_group *g2 = make_group(c, "hpc2", vms2, &p);
    ck_assert_vmio_ok(vmio_group_apply(g2, 0, &r));
    vmio_group_report_free(r);
    unsigned theirs = 0;
    for (int v = 0; v < 2; v++)
        theirs |= pin_of(c, "web1", v);
    ck_assert_uint_eq(theirs & mine, 0);
    ck_assert_int_eq(popcount(theirs), 2);
    /* the rest run on the 2 CPUs left */
    ck_assert_uint_eq(pin_of(c, "idle1", 0), 0xffu & ~mine & ~theirs);
    /* a third dedicated group would leave them nowhere: refused, and
     * nothing changed */
    const char *vms3[] = { "web2", NULL };
    vmio_group *g3 = make_group(c, "hpc3", vms3, &p);
    ck_assert_vmio_err_msg(vmio_group_apply(g3, 0, &r), ENOSPC, "vmio_group_apply",
                           "no CPU would be left");
    ck_assert_uint_eq(pin_of(c, "web2", 0), 0xffu & ~mine & ~theirs);
    ck_assert_ptr_null(meta_of(c, "web2"));
    ck_assert_vmio_ok(vmio_group_destroy(g3));
    ck_assert_vmio_ok(vmio_group_destroy(g2));

    ck_assert_vmio_ok(vmio_group_destroy(g));
    ck_assert_uint_eq(pin_of(c, "idle1", 0), 0xffu);
    ck_assert_uint_eq(pin_of(c, "batch1", 2), 0xffu);
    ck_assert_uint_eq(pin_of(c, "db1", 0), 0xffu);
    vmio_group_disconnect(c);
}
END_TEST

/* Four NUMA nodes: a group that fits one node gets it, memory included;
 * a member that disappeared is a warning. */
START_TEST(test_numa_node)
{
    vmio_group_conn *c = conn_open("numa-4node.xml");
    const char *vms[] = { "n1", "n2", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_NODE };
    vmio_group *g = make_group(c, "numa", vms, &p);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_int_eq(report_has(r, "n1", "numatune"), 1);
    vmio_group_report_free(r);
    unsigned used = 0;
    for (int m = 0; vms[m]; m++)
        for (int v = 0; v < 2; v++)
            used |= pin_of(c, vms[m], v);
    ck_assert_int_eq(popcount(used), 4);
    int node = __builtin_ctz(used) / 4;
    ck_assert_uint_eq(used, 0xfu << (4 * node));
    char want[8];
    snprintf(want, sizeof want, "%d", node);
    for (int m = 0; vms[m]; m++) {
        char *ns = nodeset_of(c, vms[m]);
        ck_assert_str_eq(ns, want);
        free(ns);
    }
    /* 7 vCPUs do not fit one 4-CPU node: two nodes, memory on both, and
     * a warning that says so */
    const char *big[] = { "n3", "n4", NULL };
    vmio_group *g2 = make_group(c, "big", big, &p);
    ck_assert_vmio_ok(vmio_group_apply(g2, 0, &r));
    ck_assert_uint_ge(vmio_group_report_warning_count(r), 1);
    vmio_group_report_free(r);
    unsigned bigset = 0;
    for (int v = 0; v < 4; v++)
        bigset |= pin_of(c, "n3", v);
    for (int v = 0; v < 3; v++)
        bigset |= pin_of(c, "n4", v);
    ck_assert_int_eq(popcount(bigset), 7); /* shared groups may overlap "numa": not dedicated */
    char *ns = nodeset_of(c, "n4");
    ck_assert_msg(strchr(ns, ',') || strchr(ns, '-'), "nodeset '%s' is one node", ns);
    free(ns);
    vmio_group_close(g2);

    /* a member libvirt no longer knows is a warning */
    virDomainPtr d = dom(c, "n2");
    ck_assert_int_eq(virDomainDestroy(d), 0);
    ck_assert_int_eq(virDomainUndefine(d), 0);
    virDomainFree(d);
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_ge(vmio_group_report_warning_count(r), 1);
    int found = 0;
    for (size_t i = 0; i < vmio_group_report_warning_count(r); i++)
        found |= strstr(vmio_group_report_warning(r, i), "n2") != NULL;
    ck_assert(found);
    vmio_group_report_free(r);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

START_TEST(test_corrupted_state)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    vmio_group *g = NULL;
    ck_assert_vmio_ok(vmio_group_create(c, "good", &g));
    char path[512];
    snprintf(path, sizeof path, "%s/%u.group", dir, vmio_group_id(g));
    vmio_group_close(g);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("vmio-group 1\nid 1\nname good\nbackend libvirt\nweight lots\n", f);
    fclose(f);
    ck_assert_vmio_err_msg(vmio_group_open(c, "good", &g), EINVAL, "vmio_group_open",
                           ".group:5: weight");
    char **names;
    size_t n;
    ck_assert_vmio_err_msg(vmio_group_list(c, &names, &n), EINVAL, "vmio_group_list", path);
    f = fopen(path, "w");
    fputs("vmio-group 1\nid 1\nname good\nbackend libvirt\ncolour blue\n", f);
    fclose(f);
    ck_assert_vmio_err_msg(vmio_group_open(c, "good", &g), EINVAL, "vmio_group_open",
                           "unknown key 'colour'");
    /* a group of the other backend is not opened through this one */
    f = fopen(path, "w");
    fputs("vmio-group 1\nid 1\nname good\nbackend xen\n", f);
    fclose(f);
    ck_assert_vmio_err_msg(vmio_group_open(c, "good", &g), EINVAL, "vmio_group_open",
                           "belongs to the xen backend");
    vmio_group_disconnect(c);
}
END_TEST

/* test:///default: every connection of the process shares one driver
 * state, so here the changes are read back through a connection of the
 * test's own, independent of the library's; and the topology comes from
 * the capabilities XML (2 cells of 8 CPUs). The state directory comes from
 * $VMIO_GROUP_STATE_DIR. */
START_TEST(test_default_driver_independent_readback)
{
    virConnectPtr mine = virConnectOpen("test:///default");
    ck_assert_ptr_nonnull(mine);
    const char peer_xml[] = "<domain type='test'><name>peer</name><memory>1048576</memory>"
                            "<vcpu>2</vcpu><os><type>hvm</type></os></domain>";
    virDomainPtr peer = virDomainDefineXML(mine, peer_xml);
    ck_assert_ptr_nonnull(peer);
    ck_assert_int_eq(virDomainCreate(peer), 0);

    ck_assert_int_eq(setenv("VMIO_GROUP_STATE_DIR", dir, 1), 0);
    struct vmio_group_connect_opts o = { .struct_size = sizeof o, .uri = "test:///default" };
    vmio_group_conn *c = NULL;
    ck_assert_vmio_ok(vmio_group_connect(&o, &c));
    const char *vms[] = { "test", "peer", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_NODE, .housekeeping = "0,8" };
    vmio_group *g = make_group(c, "shared", vms, &p);
    char path[512];
    snprintf(path, sizeof path, "%s/%u.group", dir, vmio_group_id(g));
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    vmio_group_report_free(r);
    vmio_group_close(g);
    vmio_group_disconnect(c);

    unsigned used = 0;
    for (int m = 0; vms[m]; m++) {
        virDomainPtr d = virDomainLookupByName(mine, vms[m]);
        ck_assert_ptr_nonnull(d);
        virDomainInfo info;
        ck_assert_int_eq(virDomainGetInfo(d, &info), 0);
        unsigned char maps[16][2];
        memset(maps, 0, sizeof maps);
        ck_assert_int_ge(virDomainGetVcpuPinInfo(d, (int)info.nrVirtCpu, &maps[0][0], 2, 0), 1);
        for (unsigned v = 0; v < info.nrVirtCpu; v++) {
            unsigned pin = maps[v][0] | (unsigned)maps[v][1] << 8;
            ck_assert_int_eq(popcount(pin), 1);
            ck_assert(!(pin & used) && !(pin & 0x101u));
            used |= pin;
        }
        char *meta = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT,
                                          "https://libvmio.org/xmlns/group/1", 0);
        ck_assert_msg(meta && strstr(meta, "name=\"shared\""), "metadata %s", meta);
        free(meta);
        virDomainFree(d);
    }
    /* one NUMA cell: CPUs 1-7 or 9-15 */
    ck_assert(!(used & 0xff00u) || !(used & 0x00ffu));

    /* a new library connection finds everything in place */
    ck_assert_vmio_ok(vmio_group_connect(&o, &c));
    ck_assert_vmio_ok(vmio_group_open(c, "shared", &g));
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_eq(vmio_group_report_count(r), 0);
    vmio_group_report_free(r);
    ck_assert_vmio_ok(vmio_group_destroy(g));
    vmio_group_disconnect(c);
    char *meta = virDomainGetMetadata(peer, VIR_DOMAIN_METADATA_ELEMENT,
                                      "https://libvmio.org/xmlns/group/1", 0);
    ck_assert_ptr_null(meta);
    unsetenv("VMIO_GROUP_STATE_DIR");
    virDomainFree(peer);
    virConnectClose(mine);
}
END_TEST

/* The host topology can come from an hwloc XML instead of libvirt (to plan
 * for another host): here one that says CPUs 0-3 and 4-7 are sockets. */
START_TEST(test_topology_override)
{
    char uri[512], topo[512];
    snprintf(uri, sizeof uri, "test://%s/hpc-2s4c.xml", GROUP_DATA);
    snprintf(topo, sizeof topo, "%s/topo-2s4c.xml", GROUP_DATA);
    struct vmio_group_connect_opts o = { .struct_size = sizeof o, .uri = uri, .state_dir = dir,
                                         .topology_xml = topo };
    vmio_group_conn *c = NULL;
    ck_assert_vmio_ok(vmio_group_connect(&o, &c));
    const char *vms[] = { "batch1", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_SOCKET, .housekeeping = "4" };
    vmio_group *g = make_group(c, "planned", vms, &p);
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_ptr_nonnull(vmio_group_report_cpus(r));
    vmio_group_report_free(r);
    unsigned used = 0;
    for (int v = 0; v < 3; v++)
        used |= pin_of(c, "batch1", v);
    ck_assert_int_eq(popcount(used), 3);
    /* socket 1 lost CPU 4 to housekeeping: socket 0 */
    ck_assert_uint_eq(used & 0xf0u, 0);
    vmio_group_close(g);
    vmio_group_disconnect(c);
    o.topology_xml = "/nonexistent/topology.xml";
    ck_assert_vmio_ok(vmio_group_connect(&o, &c));
    ck_assert_vmio_ok(vmio_group_open(c, "planned", &g));
    ck_assert_int_lt(vmio_group_apply(g, 0, &r), 0);
    ck_assert(strncmp(vmio_errmsg(), "vmio_group_apply: ", 18) == 0);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

/* remove puts back the weight and cap a VM had before the group changed
 * them (kept in the state file, so another process does it too), not a
 * default: cgroup v2 hosts weigh 100 where v1 hosts weigh 1024. */
START_TEST(test_remove_restores_weight)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    char *x = xml_of(c, "batch1");
    char *dev = strstr(x, "<devices>");
    ck_assert_ptr_nonnull(dev);
    const char *tune = "<cputune><shares>100</shares><global_period>100000</global_period>"
                       "<global_quota>250000</global_quota></cputune>";
    char *y = malloc(strlen(x) + strlen(tune) + 1);
    size_t head = (size_t)(dev - x);
    memcpy(y, x, head);
    strcpy(y + head, tune);
    strcat(y, dev);
    virDomainPtr d = virDomainDefineXML(lvconn(c), y);
    ck_assert_ptr_nonnull(d);
    virDomainFree(d);
    free(x);
    free(y);

    const char *vms[] = { "batch1", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_LOOSE };
    vmio_group *g = make_group(c, "batch", vms, &p);
    /* nothing is kept while the group changes neither */
    ck_assert_vmio_ok(vmio_group_apply(g, 0, NULL));
    char path[512], text[4096] = "";
    snprintf(path, sizeof path, "%s/%u.group", dir, vmio_group_id(g));
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    ck_assert_msg(!strstr(text, "\nsaved "), "%s", text);
    p.weight = 700;
    p.cap = 90;
    ck_assert_vmio_ok(vmio_group_set_policy(g, &p));
    ck_assert_vmio_ok(vmio_group_apply(g, 0, NULL));
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    ck_assert_msg(strstr(text, "\nsaved 100 250 batch1\n"), "%s", text);
    x = xml_of(c, "batch1");
    ck_assert_msg(strstr(x, "<shares>700</shares>") && strstr(x, "<global_quota>90000<"),
                  "apply: %s", x);
    free(x);
    vmio_group_close(g);
    /* another handle on the group: what batch1 had comes from the file */
    ck_assert_vmio_ok(vmio_group_open(c, "batch", &g));
    ck_assert_vmio_ok(vmio_group_remove(g, "batch1"));
    x = xml_of(c, "batch1");
    ck_assert_msg(strstr(x, "<shares>100</shares>") && strstr(x, "<global_quota>250000<"),
                  "remove: %s", x);
    free(x);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

/* Every domain's live and persistent XML, normalized where an undone
 * change is the same state in other words: a pin to every host CPU
 * (0-7) is no pin, an empty <cputune/> or <metadata/> none, and a <numatune> block is
 * cut out (a first NUMA binding is undone by binding to every node;
 * checked separately). */
static void normalize(char *x, char **out, size_t *len)
{
    for (char *line = strtok(x, "\n"); line; line = strtok(NULL, "\n")) {
        if ((strstr(line, "<vcpupin ") || strstr(line, "<emulatorpin ")) &&
            strstr(line, "cpuset='0-7'"))
            continue;
        if (strstr(line, "<numatune>") || strstr(line, "<memory mode=") ||
            strstr(line, "</numatune>") || strstr(line, "<metadata/>"))
            continue;
        size_t l = strlen(line);
        *out = realloc(*out, *len + l + 2);
        memcpy(*out + *len, line, l);
        (*out)[*len + l] = '\n';
        *len += l + 1;
        (*out)[*len] = '\0';
    }
    /* an emptied <cputune> */
    char *e;
    while ((e = strstr(*out, "  <cputune>\n  </cputune>\n")) != NULL) {
        size_t cut = strlen("  <cputune>\n  </cputune>\n");
        memmove(e, e + cut, strlen(e + cut) + 1);
        *len -= cut;
    }
}

static char *host_state(vmio_group_conn *c)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(lvconn(c), &doms, 0);
    ck_assert_int_gt(n, 0);
    size_t len = 0;
    char *out = calloc(1, 1);
    for (int i = 0; i < n; i++) {
        for (int inactive = 0; inactive < 2; inactive++) {
            char *x = virDomainGetXMLDesc(doms[i], inactive ? VIR_DOMAIN_XML_INACTIVE : 0);
            ck_assert(x != NULL);
            normalize(x, &out, &len);
            free(x);
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    return out;
}

/* Fail the kth change of apply for every k: each time the error names the
 * failure and how many changes were undone, and every domain is back as
 * it was (live and persistent XML, read through libvirt). */
static void check_rollback(vmio_group_conn *c, vmio_group *g, const char *const *members)
{
    vmio_group_report *r = NULL;
    ck_assert_vmio_ok(vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &r));
    size_t n = vmio_group_report_count(r);
    vmio_group_report_free(r);
    ck_assert_uint_ge(n, 5);
    char *before = host_state(c);
    for (unsigned k = 1; k <= n; k++) {
        vmio_group_test_fail_change(k);
        int rc = vmio_group_apply(g, 0, &r);
        ck_assert_int_eq(rc, -EIO);
        const char *m = vmio_errmsg();
        char want[96];
        snprintf(want, sizeof want, "vmio_group_apply: injected failure of change %u", k);
        ck_assert_msg(strncmp(m, want, strlen(want)) == 0, "k=%u: %s", k, m);
        if (k > 1) {
            snprintf(want, sizeof want, "(the %u change%s made before it %s undone)", k - 1,
                     k == 2 ? "" : "s", k == 2 ? "was" : "were");
            ck_assert_msg(strstr(m, want) != NULL, "k=%u: %s", k, m);
        }
        char *after = host_state(c);
        ck_assert_msg(strcmp(before, after) == 0, "change %u of %zu: not all undone", k, n);
        free(after);
        for (size_t i = 0; members[i]; i++) {
            char *ns = nodeset_of(c, members[i]);
            ck_assert_msg(!*ns || !strcmp(ns, "0-1"), "%s: nodeset %s", members[i], ns);
            free(ns);
        }
    }
    vmio_group_test_fail_change(0);
    ck_assert_vmio_ok(vmio_group_apply(g, 0, &r));
    ck_assert_uint_eq(vmio_group_report_count(r), n);
    vmio_group_report_free(r);
    char *after = host_state(c);
    ck_assert_msg(strcmp(before, after) != 0, "apply changed nothing");
    free(after);
    free(before);
}

/* An apply that fails half-way puts back what it had changed. */
START_TEST(test_apply_rollback)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    const char *vms[] = { "web1", "web2", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_SOCKET, .housekeeping = "0",
                                   .weight = 900, .cap = 150, .shmem_bytes = 64 << 20 };
    vmio_group *g = make_group(c, "web", vms, &p);
    check_rollback(c, g, vms);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

/* The same with dedicated CPUs: the other domains pinned off the group's
 * CPUs are put back too. */
START_TEST(test_apply_rollback_dedicated)
{
    vmio_group_conn *c = conn_open("hpc-2s4c.xml");
    const char *vms[] = { "db1", NULL };
    struct vmio_group_policy p = { .struct_size = sizeof p, .pin = VMIO_GROUP_PIN_STRICT,
                                   .locality = VMIO_GROUP_NEAR_SOCKET, .dedicated = 1,
                                   .weight = 500 };
    vmio_group *g = make_group(c, "hpc", vms, &p);
    check_rollback(c, g, vms);
    vmio_group_close(g);
    vmio_group_disconnect(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("group-libvirt");
    TCase *t = tcase_create("test-driver");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 30);
    tcase_add_test(t, test_registry_persists);
    tcase_add_test(t, test_membership_errors);
    tcase_add_test(t, test_capabilities);
    tcase_add_test(t, test_apply_strict);
    tcase_add_test(t, test_apply_dry_run);
    tcase_add_test(t, test_dedicated);
    tcase_add_test(t, test_numa_node);
    tcase_add_test(t, test_corrupted_state);
    tcase_add_test(t, test_default_driver_independent_readback);
    tcase_add_test(t, test_topology_override);
    tcase_add_test(t, test_apply_rollback);
    tcase_add_test(t, test_remove_restores_weight);
    tcase_add_test(t, test_apply_rollback_dedicated);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(suite());
}
