/* Host topologies and group placement (libvmio/group/topology*.c,
 * placement.c) on real hwloc XML topologies (tests/unit/data/group/topo-*,
 * exported by hwloc from synthetic descriptions; topo-2s4c-ib.xml adds a
 * PCI tree with a ConnectX HCA under package 1) and hand-written libvirt
 * capabilities XML of the same machines.
 *
 * Every placement goes through check_invariants(): CPUs only from the
 * candidates (never housekeeping, never taken), strict = one distinct CPU
 * per vCPU, loose = the group's set everywhere, nodes and emulator as
 * documented, SMT siblings only once every core of their slice is used.
 * The cases then assert the policy: one socket when the group fits, the
 * spill warning, ENOSPC, NEAR_PCI on the HCA's socket. */
#include "test-common.h"

#include <dirent.h>

#include "core/internal.h"
#include "group/topology.h"

#include <vmio/group.h>

#define API "test"

static char *slurp(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", GROUP_DATA, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static struct vmio_topo load_xml(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", GROUP_DATA, name);
    struct vmio_topo t;
    int r = vmio_topo_from_hwloc_xml(API, path, &t);
    ck_assert_msg(r == 0, "%s: %s", name, vmio_errmsg());
    return t;
}

static struct vmio_cpuset cs(const char *text)
{
    struct vmio_cpuset s;
    ck_assert_msg(vmio_cpuset_parse(text, &s) == 0, "%s", vmio_errmsg());
    return s;
}

static const char *fmt(const struct vmio_cpuset *s)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    vmio_cpuset_format(s, buf[k], sizeof buf[k]);
    return buf[k];
}

static const struct vmio_topo_cpu *tcpu(const struct vmio_topo *t, int id)
{
    for (size_t i = 0; i < t->ncpus; i++)
        if (t->cpus[i].id == id)
            return &t->cpus[i];
    ck_abort_msg("CPU %d not in topology", id);
    return NULL;
}

/* A request: members given as "2x4" (2 members of 4 vCPUs) or "4,2,2". */
struct req {
    struct vmio_place_request r;
    struct vmio_place_member m[64];
    char names[64][16];
};

static void mkreq(struct req *q, const struct vmio_topo *t, int pin, int loc,
                  const char *shape, const char *hk, const char *taken)
{
    memset(q, 0, sizeof *q);
    q->r.topo = t;
    q->r.pin = pin;
    q->r.locality = loc;
    q->r.members = q->m;
    unsigned a, b;
    if (sscanf(shape, "%ux%u", &a, &b) == 2 && strchr(shape, 'x')) {
        for (unsigned i = 0; i < a; i++)
            q->m[i].nvcpus = b;
        q->r.nmembers = a;
    } else {
        const char *p = shape;
        while (*p) {
            q->m[q->r.nmembers++].nvcpus = (unsigned)strtoul(p, (char **)&p, 10);
            if (*p == ',')
                p++;
        }
    }
    for (size_t i = 0; i < q->r.nmembers; i++) {
        snprintf(q->names[i], sizeof q->names[i], "vm%zu", i);
        q->m[i].name = q->names[i];
    }
    q->r.housekeeping = cs(hk ? hk : "");
    q->r.taken = cs(taken ? taken : "");
}

static void check_invariants(const struct vmio_place_request *q,
                             const struct vmio_place_result *res)
{
    const struct vmio_topo *t = q->topo;
    struct vmio_cpuset host, cand, nodes, seen;
    vmio_cpuset_zero(&host);
    vmio_cpuset_zero(&nodes);
    vmio_cpuset_zero(&seen);
    for (size_t i = 0; i < t->ncpus; i++)
        vmio_cpuset_set(&host, (unsigned)t->cpus[i].id);
    cand = host;
    vmio_cpuset_andnot(&cand, &q->housekeeping);
    vmio_cpuset_andnot(&cand, &q->taken);
    struct vmio_cpuset bad = res->cpus;
    vmio_cpuset_andnot(&bad, &cand);
    ck_assert_msg(vmio_cpuset_empty(&bad), "group CPUs %s include non-candidates %s",
                  fmt(&res->cpus), fmt(&bad));
    unsigned total = 0;
    for (size_t m = 0; m < q->nmembers; m++)
        total += q->members[m].nvcpus;
    unsigned want = q->ncpus ? q->ncpus : total;
    ck_assert_uint_eq(vmio_cpuset_count(&res->cpus), VMIO_MIN(want, vmio_cpuset_count(&cand)));
    ck_assert_uint_eq(res->nmembers, q->nmembers);
    for (size_t m = 0; m < q->nmembers; m++)
        for (unsigned v = 0; v < q->members[m].nvcpus; v++) {
            const struct vmio_cpuset *s = &res->vcpu[m][v];
            if (q->pin == VMIO_PLACE_PIN_STRICT) {
                ck_assert_uint_eq(vmio_cpuset_count(s), 1);
                int c = vmio_cpuset_next(s, 0);
                ck_assert_msg(vmio_cpuset_test(&res->cpus, (unsigned)c),
                              "vCPU %zu/%u on CPU %d outside the group", m, v, c);
                ck_assert_msg(!vmio_cpuset_test(&seen, (unsigned)c),
                              "CPU %d given to two vCPUs", c);
                vmio_cpuset_set(&seen, (unsigned)c);
            } else {
                ck_assert(vmio_cpuset_equal(s, &res->cpus));
            }
        }
    for (int c = vmio_cpuset_next(&res->cpus, 0); c >= 0;
         c = vmio_cpuset_next(&res->cpus, (unsigned)c + 1))
        vmio_cpuset_set(&nodes, (unsigned)tcpu(t, c)->node);
    ck_assert_str_eq(fmt(&res->nodes), fmt(&nodes));
    ck_assert(vmio_cpuset_equal(&res->emulator, vmio_cpuset_empty(&q->housekeeping)
                                                    ? &res->cpus
                                                    : &q->housekeeping));
    /* SMT: a core gives a second thread only when, on the same socket and
     * node, no fully free core is left unused. */
    for (int c = vmio_cpuset_next(&res->cpus, 0); c >= 0;
         c = vmio_cpuset_next(&res->cpus, (unsigned)c + 1)) {
        const struct vmio_topo_cpu *p = tcpu(t, c);
        int shares = 0;
        for (size_t i = 0; i < t->ncpus; i++)
            if (t->cpus[i].core == p->core && t->cpus[i].id != c &&
                vmio_cpuset_test(&res->cpus, (unsigned)t->cpus[i].id))
                shares = 1;
        if (!shares)
            continue;
        for (size_t i = 0; i < t->ncpus; i++) {
            const struct vmio_topo_cpu *o = &t->cpus[i];
            if (o->socket != p->socket || o->node != p->node)
                continue;
            int core_free = 1, core_used = 0;
            for (size_t j = 0; j < t->ncpus; j++)
                if (t->cpus[j].core == o->core) {
                    core_free &= vmio_cpuset_test(&cand, (unsigned)t->cpus[j].id);
                    core_used |= vmio_cpuset_test(&res->cpus, (unsigned)t->cpus[j].id);
                }
            ck_assert_msg(!(core_free && !core_used),
                          "CPU %d shares its core while core %d is free (group %s, "
                          "housekeeping %s, taken %s, locality %d)",
                          c, o->core, fmt(&res->cpus), fmt(&q->housekeeping), fmt(&q->taken),
                          q->locality);
        }
    }
}

static int place(struct req *q, struct vmio_place_result *res)
{
    memset(res, 0, sizeof *res);
    int r = vmio_place(API, &q->r, res);
    if (r == 0)
        check_invariants(&q->r, res);
    return r;
}

static int sockets_of(const struct vmio_topo *t, const struct vmio_cpuset *s, char *out,
                      size_t len)
{
    struct vmio_cpuset socks;
    vmio_cpuset_zero(&socks);
    for (int c = vmio_cpuset_next(s, 0); c >= 0; c = vmio_cpuset_next(s, (unsigned)c + 1))
        vmio_cpuset_set(&socks, (unsigned)tcpu(t, c)->socket);
    if (out)
        vmio_cpuset_format(&socks, out, len);
    return (int)vmio_cpuset_count(&socks);
}

static struct vmio_cpuset member_set(const struct vmio_place_result *res, const struct req *q,
                                     size_t m)
{
    struct vmio_cpuset s;
    vmio_cpuset_zero(&s);
    for (unsigned v = 0; v < q->m[m].nvcpus; v++)
        vmio_cpuset_or(&s, &res->vcpu[m][v]);
    return s;
}

static int has_warning(const struct vmio_place_result *res, const char *needle)
{
    for (size_t i = 0; i < res->nwarnings; i++)
        if (strstr(res->warnings[i], needle))
            return 1;
    return 0;
}

/* ---- topologies --------------------------------------------------------- */

START_TEST(hwloc_xml_hpc_node)
{
    struct vmio_topo t = load_xml("topo-2s4c.xml");
    ck_assert_uint_eq(t.ncpus, 8);
    ck_assert_int_eq(t.nsockets, 2);
    ck_assert_int_eq(t.nnodes, 1);
    ck_assert_uint_eq(t.node_mem[0], 48ull << 30);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(t.cpus[i].id, i);
        ck_assert_int_eq(t.cpus[i].socket, i / 4);
        ck_assert_int_eq(t.cpus[i].core, i);
    }
    /* the synthetic description gives the same topology */
    struct vmio_topo s;
    ck_assert_vmio_ok(vmio_topo_from_synthetic(API, "[numa(memory=48GiB)] package:2 core:4 pu:1", &s));
    ck_assert_uint_eq(s.ncpus, t.ncpus);
    ck_assert_int_eq(memcmp(s.cpus, t.cpus, t.ncpus * sizeof *t.cpus), 0);
    vmio_topo_free(&s);
    vmio_topo_free(&t);
    vmio_topo_free(&t); /* freeing twice is harmless: the struct is zeroed */
    vmio_topo_free(NULL);
}
END_TEST

START_TEST(hwloc_xml_numa_and_smt)
{
    struct vmio_topo t = load_xml("topo-4node.xml");
    ck_assert_uint_eq(t.ncpus, 16);
    ck_assert_int_eq(t.nnodes, 4);
    ck_assert_int_eq(t.nsockets, 2);
    for (int i = 0; i < 16; i++) {
        ck_assert_int_eq(t.cpus[i].node, i / 4);
        ck_assert_int_eq(t.cpus[i].socket, i / 8);
        ck_assert_uint_eq(t.node_mem[i / 4], 12ull << 30);
    }
    vmio_topo_free(&t);
    t = load_xml("topo-2s4c2t.xml"); /* Linux numbering: siblings n, n+8 */
    ck_assert_uint_eq(t.ncpus, 16);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(tcpu(&t, i)->core, tcpu(&t, i + 8)->core);
        ck_assert_int_eq(tcpu(&t, i)->socket, i / 4);
    }
    vmio_topo_free(&t);
}
END_TEST

START_TEST(hwloc_errors)
{
    struct vmio_topo t;
    memset(&t, 0xa5, sizeof t);
    ck_assert_vmio_err(vmio_topo_from_hwloc_xml(API, GROUP_DATA "/missing.xml", &t), ENOENT,
                       API);
    ck_assert_ptr_null(t.cpus); /* zeroed first */
    ck_assert_vmio_err(vmio_topo_from_hwloc_xml(API, GROUP_DATA "/caps-2s4c.xml", &t), EINVAL,
                       API);
    ck_assert_vmio_err_msg(vmio_topo_from_synthetic(API, "package:2 bogus:3", &t), EINVAL, API,
                           "synthetic");
    ck_assert_vmio_err(vmio_topo_from_synthetic(API, NULL, &t), EINVAL, API);
}
END_TEST

START_TEST(host_topology)
{
    struct vmio_topo t;
    ck_assert_vmio_ok(vmio_topo_from_host(API, &t));
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(t.ncpus, (size_t)online);
    ck_assert_int_ge(t.nsockets, 1);
    vmio_topo_free(&t);
}
END_TEST

static void topo_equal_cpus(const struct vmio_topo *a, const struct vmio_topo *b)
{
    ck_assert_uint_eq(a->ncpus, b->ncpus);
    ck_assert_int_eq(a->nnodes, b->nnodes);
    ck_assert_int_eq(a->nsockets, b->nsockets);
    ck_assert_int_eq(memcmp(a->cpus, b->cpus, a->ncpus * sizeof *a->cpus), 0);
}

static void topo_equal(const struct vmio_topo *a, const struct vmio_topo *b)
{
    ck_assert_uint_eq(a->ncpus, b->ncpus);
    ck_assert_int_eq(a->nnodes, b->nnodes);
    ck_assert_int_eq(a->nsockets, b->nsockets);
    for (size_t i = 0; i < a->ncpus; i++) {
        ck_assert_int_eq(a->cpus[i].id, b->cpus[i].id);
        ck_assert_int_eq(a->cpus[i].core, b->cpus[i].core);
        ck_assert_int_eq(a->cpus[i].socket, b->cpus[i].socket);
        ck_assert_int_eq(a->cpus[i].node, b->cpus[i].node);
    }
    for (int n = 0; n < a->nnodes; n++)
        ck_assert_uint_eq(a->node_mem[n], b->node_mem[n]);
}

START_TEST(caps_equals_hwloc)
{
    static const char *const pairs[][2] = {
        { "caps-2s4c.xml", "topo-2s4c.xml" },
        { "caps-2s4c2t.xml", "topo-2s4c2t.xml" },
    };
    for (size_t i = 0; i < 2; i++) {
        struct vmio_topo c, h = load_xml(pairs[i][1]);
        ck_assert_vmio_ok(vmio_topo_from_caps_xml(API, slurp(pairs[i][0]), &c));
        topo_equal(&c, &h);
        vmio_topo_free(&c);
        vmio_topo_free(&h);
    }
}
END_TEST

/* The real thing: libvirt's own test driver (test:///default, in-process
 * in virsh) describes a 2-cell, 2 x 8-core host; hwloc's synthetic
 * description of the same machine must give the same topology. */
START_TEST(caps_from_libvirt_test_driver)
{
    if (access("/usr/bin/virsh", X_OK) != 0) {
        printf("caps_from_libvirt_test_driver: virsh (libvirt-clients) not installed, not run\n");
        return;
    }
    FILE *p = popen("/usr/bin/virsh -q -c test:///default capabilities 2>/dev/null", "r");
    ck_assert(p != NULL);
    static char xml[1 << 18];
    size_t n = fread(xml, 1, sizeof xml - 1, p);
    xml[n] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    struct vmio_topo c, h;
    ck_assert_vmio_ok(vmio_topo_from_caps_xml(API, xml, &c));
    ck_assert_vmio_ok(
        vmio_topo_from_synthetic(API, "package:2 [numa(memory=2GiB)] core:8 pu:1", &h));
    topo_equal_cpus(&c, &h);
    /* each cell's <memory unit='KiB'>, found by a plain text scan */
    const char *m = xml;
    for (int cell = 0; cell < c.nnodes; cell++) {
        m = strstr(m, "<memory unit='KiB'>");
        ck_assert_ptr_nonnull(m);
        m += strlen("<memory unit='KiB'>");
        ck_assert_uint_eq(c.node_mem[cell], strtoull(m, NULL, 10) * 1024);
    }
    vmio_topo_free(&c);
    vmio_topo_free(&h);
}
END_TEST

static void caps_bad(const char *xml, const char *needle)
{
    struct vmio_topo t;
    memset(&t, 0xa5, sizeof t);
    int r = vmio_topo_from_caps_xml(API, xml, &t);
    ck_assert_vmio_err_msg(r, EINVAL, API, needle);
    ck_assert_ptr_null(t.cpus);
}

#define CELL(body)                                                                   \
    "<capabilities><host><topology><cells num='1'><cell id='0'>" body "</cell></cells>" \
    "</topology></host></capabilities>"

START_TEST(caps_rejects)
{
    caps_bad("", "well-formed");
    caps_bad("<capabilities><host>", "well-formed");
    caps_bad("<domain/>", "root element");
    caps_bad("<capabilities><host/></capabilities>", "<host><topology><cells>");
    caps_bad("<capabilities><host><topology><cells/></topology></host></capabilities>",
             "no cell");
    caps_bad(CELL("<memory unit='KiB'>1024</memory>"), "no CPU");
    caps_bad(CELL("<cpus><cpu id='0' socket_id='0' core_id='0'/><cpu id='0' socket_id='0' "
                  "core_id='1'/></cpus>"),
             "listed twice");
    caps_bad(CELL("<cpus><cpu id='-1' socket_id='0' core_id='0'/></cpus>"), "id='-1'");
    caps_bad(CELL("<cpus><cpu id='1024' socket_id='0' core_id='0'/></cpus>"), "0-1023");
    caps_bad(CELL("<cpus><cpu id='1' core_id='0'/></cpus>"), "socket_id='(missing)'");
    caps_bad(CELL("<cpus><cpu id='1' socket_id='0' core_id='0x1'/></cpus>"), "core_id");
    caps_bad(CELL("<cpus><cpu id='1' socket_id='0' core_id='0' siblings='2'/></cpus>"),
             "do not include");
    caps_bad(CELL("<cpus><cpu id='1' socket_id='0' core_id='0' siblings='1,,2'/></cpus>"),
             "bad siblings");
    caps_bad(CELL("<memory unit='parsecs'>1</memory><cpus><cpu id='0' socket_id='0' "
                  "core_id='0'/></cpus>"),
             "unknown unit");
    caps_bad(CELL("<memory unit='TiB'>99999999999</memory><cpus><cpu id='0' socket_id='0' "
                  "core_id='0'/></cpus>"),
             "bad amount");
    caps_bad("<capabilities><host><topology><cells><cell id='0'><cpus><cpu id='0' "
             "socket_id='0' core_id='0'/></cpus></cell><cell id='0'/></cells></topology>"
             "</host></capabilities>",
             "cell 0 is listed twice");
    /* entities: no DTD at all, so neither external files nor expansion bombs */
    caps_bad("<?xml version='1.0'?><!DOCTYPE c [<!ENTITY x SYSTEM 'file:///etc/hostname'>]>"
             "<capabilities><host><topology><cells><cell id='0'><cpus><cpu id='&x;' "
             "socket_id='0' core_id='0'/></cpus></cell></cells></topology></host>"
             "</capabilities>",
             ""); /* external entity in an attribute: not well-formed */
    caps_bad("<?xml version='1.0'?><!DOCTYPE capabilities [<!ENTITY e SYSTEM "
             "'file:///etc/hostname'>]><capabilities><host><topology><cells><cell id='0'>"
             "<memory>&e;</memory><cpus><cpu id='0' socket_id='0' core_id='0'/></cpus>"
             "</cell></cells></topology></host></capabilities>",
             "DOCTYPE");
    caps_bad("<?xml version='1.0'?><!DOCTYPE c [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b "
             "'&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>"
             "]><capabilities>&c;</capabilities>",
             ""); /* refused by the parser or by the DOCTYPE check */
    caps_bad(CELL("<cpus><cpu id='&undeclared;' socket_id='0' core_id='0'/></cpus>"),
             "well-formed");
    ck_assert_vmio_err(vmio_topo_from_caps_xml(API, NULL, NULL), EINVAL, API);
}
END_TEST

START_TEST(caps_units_and_sparse_ids)
{
    /* memory-only node 1, sockets 3 and 7, CPUs numbered sparsely */
    const char *xml =
        "<capabilities><host><topology><cells num='2'>"
        "<cell id='0'><memory unit='MiB'>2048</memory><cpus num='3'>"
        "<cpu id='9' socket_id='7' core_id='5' siblings='9'/>"
        "<cpu id='2' socket_id='3' core_id='5' siblings='2,4'/>"
        "<cpu id='4' socket_id='3' core_id='5' siblings='2,4'/>"
        "</cpus></cell><cell id='1'><memory>1024</memory></cell>"
        "</cells></topology></host></capabilities>";
    struct vmio_topo t;
    ck_assert_vmio_ok(vmio_topo_from_caps_xml(API, xml, &t));
    ck_assert_uint_eq(t.ncpus, 3);
    ck_assert_int_eq(t.nnodes, 2);
    ck_assert_int_eq(t.nsockets, 2);
    ck_assert_uint_eq(t.node_mem[0], 2048ull << 20);
    ck_assert_uint_eq(t.node_mem[1], 1024ull << 10);
    ck_assert_int_eq(t.cpus[0].id, 2);
    ck_assert_int_eq(t.cpus[0].socket, 0);
    ck_assert_int_eq(t.cpus[1].core, t.cpus[0].core); /* 2 and 4 are siblings */
    ck_assert_int_eq(t.cpus[2].id, 9);
    ck_assert_int_eq(t.cpus[2].socket, 1);
    ck_assert_int_ne(t.cpus[2].core, t.cpus[0].core); /* core 5 of another socket */
    vmio_topo_free(&t);
}
END_TEST

START_TEST(pci_locality_hwloc)
{
    const char *xml = GROUP_DATA "/topo-2s4c-ib.xml";
    struct vmio_cpuset c;
    int node = 42;
    ck_assert_vmio_ok(vmio_topo_pci_locality(API, xml, NULL, "0000:81:00.0", &c, &node));
    ck_assert_str_eq(fmt(&c), "4-7");
    ck_assert_int_eq(node, 1);
    ck_assert_vmio_ok(vmio_topo_pci_locality(API, xml, NULL, "0000:02:00.0", &c, &node));
    ck_assert_str_eq(fmt(&c), "0-3");
    ck_assert_int_eq(node, 0);
    node = 42;
    ck_assert_vmio_err_msg(vmio_topo_pci_locality(API, xml, NULL, "0000:03:00.0", &c, &node),
                           ENOENT, API, "0000:03:00.0");
    ck_assert_int_eq(node, 42);
    ck_assert_vmio_err(vmio_topo_pci_locality(API, xml, NULL, "../../etc", &c, &node), EINVAL,
                       API);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

START_TEST(pci_locality_sysfs)
{
    char root[512], dir[900], path[1000];
    test_mkdtemp(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/bus/pci/devices/0000:81:00.0", root);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/local_cpulist", dir);
    write_file(path, "8-15,24-31\n");
    snprintf(path, sizeof path, "%s/numa_node", dir);
    write_file(path, "1\n");
    struct vmio_cpuset c;
    int node;
    ck_assert_vmio_ok(vmio_topo_pci_locality(API, NULL, root, "0000:81:00.0", &c, &node));
    ck_assert_str_eq(fmt(&c), "8-15,24-31");
    ck_assert_int_eq(node, 1);
    write_file(path, "-1\n"); /* no NUMA affinity */
    ck_assert_vmio_ok(vmio_topo_pci_locality(API, NULL, root, "0000:81:00.0", &c, &node));
    ck_assert_int_eq(node, -1);
    write_file(path, "one\n");
    ck_assert_vmio_err_msg(vmio_topo_pci_locality(API, NULL, root, "0000:81:00.0", &c, &node),
                           EINVAL, API, "NUMA node");
    snprintf(path, sizeof path, "%s/local_cpulist", dir);
    write_file(path, "8-x\n");
    ck_assert_vmio_err_msg(vmio_topo_pci_locality(API, NULL, root, "0000:81:00.0", &c, &node),
                           EINVAL, API, "bad CPU list");
    ck_assert_vmio_err(vmio_topo_pci_locality(API, NULL, root, "0000:82:00.0", &c, &node),
                       ENOENT, API);
    test_rmtree(root);

    /* the real /sys: every PCI device's locality is a subset of the CPUs */
    struct vmio_topo host;
    ck_assert_vmio_ok(vmio_topo_from_host(API, &host));
    struct vmio_cpuset possible;
    FILE *pf = fopen("/sys/devices/system/cpu/possible", "r");
    char pl[4096] = "";
    if (pf) {
        if (!fgets(pl, sizeof pl, pf))
            pl[0] = '\0';
        fclose(pf);
    }
    possible = cs(pl);
    for (size_t i = 0; i < host.ncpus; i++)
        ck_assert(vmio_cpuset_test(&possible, (unsigned)host.cpus[i].id));
    DIR *d = opendir("/sys/bus/pci/devices");
    int seen = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int r = vmio_topo_pci_locality(API, NULL, NULL, e->d_name, &c, &node);
        ck_assert_msg(r == 0, "%s: %s", e->d_name, vmio_errmsg());
        vmio_cpuset_andnot(&c, &possible);
        ck_assert_msg(vmio_cpuset_empty(&c), "%s lists CPUs %s that are not possible",
                      e->d_name, fmt(&c));
        ck_assert_int_ge(node, -1);
        ck_assert_int_lt(node, host.nnodes);
        seen++;
    }
    if (d)
        closedir(d);
    vmio_topo_free(&host);
    printf("pci_locality_sysfs: %d PCI devices of this host checked\n", seen);
}
END_TEST

/* ---- placement ---------------------------------------------------------- */

START_TEST(hpc_node_fits_one_socket)
{
    struct vmio_topo t = load_xml("topo-2s4c.xml");
    struct req q;
    struct vmio_place_result res;
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-3");
    ck_assert_uint_eq(res.nwarnings, 0);
    ck_assert_str_eq(fmt(&res.emulator), "0-3");
    for (size_t m = 0; m < 2; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        ck_assert_int_eq(sockets_of(&t, &s, NULL, 0), 1);
    }
    /* each member's vCPUs are consecutive CPUs */
    ck_assert_int_eq(vmio_cpuset_next(&res.vcpu[0][1], 0),
                     vmio_cpuset_next(&res.vcpu[0][0], 0) + 1);
    vmio_place_result_free(&res);

    /* housekeeping CPU 0: socket 1 now has the most free CPUs */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", "0", NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "4-7");
    ck_assert_str_eq(fmt(&res.emulator), "0");
    vmio_place_result_free(&res);

    /* and a 3-vCPU group goes to socket 0 beside it when socket 1 is busier */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "3", "0", "4-5");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "1-3");
    vmio_place_result_free(&res);

    /* same input, same output */
    struct vmio_place_result again;
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_ANY, "3,1,2", "0", "5");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_vmio_ok(place(&q, &again));
    for (size_t m = 0; m < 3; m++)
        for (unsigned v = 0; v < q.m[m].nvcpus; v++)
            ck_assert(vmio_cpuset_equal(&res.vcpu[m][v], &again.vcpu[m][v]));
    vmio_place_result_free(&res);
    vmio_place_result_free(&again);
    vmio_topo_free(&t);
}
END_TEST

START_TEST(hpc_node_spill_and_enospc)
{
    struct vmio_topo t = load_xml("topo-2s4c.xml");
    struct req q;
    struct vmio_place_result res;
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "3x2", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_uint_eq(vmio_cpuset_count(&res.cpus), 6);
    ck_assert_msg(has_warning(&res, "group needs 6 CPUs, largest socket has 4 free: spread "
                                    "over sockets 0,1"),
                  "warning: %s", res.nwarnings ? res.warnings[0] : "(none)");
    for (size_t m = 0; m < 3; m++) { /* 2+2 on one socket, 2 on the other: none split */
        struct vmio_cpuset s = member_set(&res, &q, m);
        ck_assert_int_eq(sockets_of(&t, &s, NULL, 0), 1);
    }
    vmio_place_result_free(&res);

    /* two sockets needed, 2 and 3 CPUs free: each member stays whole
     * (fullest-first would have taken 3+1 and split one) */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", "0", "1,5");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "2-4,6");
    for (size_t m = 0; m < 2; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        ck_assert_int_eq(sockets_of(&t, &s, NULL, 0), 1);
    }
    ck_assert(has_warning(&res, "largest socket has 3 free: spread over sockets 0,1"));
    ck_assert(!has_warning(&res, "member"));
    vmio_place_result_free(&res);

    /* a member larger than any socket is split, and says so */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "6", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert(has_warning(&res, "member vm0"));
    vmio_place_result_free(&res);

    /* strict 1:1 with 8 vCPUs but 7 CPUs left */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x4", "0", NULL);
    memset(&res, 0x5a, sizeof res);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), ENOSPC, API,
                           "strict pinning needs 8 CPUs (one per vCPU), only 7 are free");
    /* strict with fewer CPUs asked for than vCPUs */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", NULL, NULL);
    q.r.ncpus = 3;
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), ENOSPC, API, "one CPU per vCPU");
    /* loose shares: 8 vCPUs on 4 CPUs of one socket */
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_SOCKET, "4x2", NULL, NULL);
    q.r.ncpus = 4;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-3");
    vmio_place_result_free(&res);
    /* loose with more vCPUs than free CPUs: shares, warns */
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_ANY, "2x4", "0", "4-6");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "1-3,7");
    ck_assert(has_warning(&res, "only 4 are free"));
    vmio_place_result_free(&res);
    /* nothing left at all */
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_ANY, "1", "0", "1-7");
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), ENOSPC, API, "no CPU is free");
    vmio_topo_free(&t);
}
END_TEST

START_TEST(near_any_is_compact)
{
    struct vmio_topo t = load_xml("topo-2s4c.xml");
    struct req q;
    struct vmio_place_result res;
    /* first-fit would take 1-4 across both sockets */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_ANY, "2x2", NULL, "0");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "4-7");
    ck_assert_uint_eq(res.nwarnings, 0);
    vmio_place_result_free(&res);
    vmio_topo_free(&t);
}
END_TEST

START_TEST(four_nodes)
{
    struct vmio_topo t = load_xml("topo-4node.xml");
    struct req q;
    struct vmio_place_result res;
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_NODE, "1x4", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-3");
    ck_assert_str_eq(fmt(&res.nodes), "0");
    vmio_place_result_free(&res);

    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_NODE, "2x3", "0", NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_uint_eq(vmio_cpuset_count(&res.nodes), 2);
    /* members whole: one on node 0's 3 free CPUs, one on node 1, same socket */
    ck_assert_msg(has_warning(&res, "largest node has 4 free: spread over nodes 0,1"), "%s",
                  res.nwarnings ? res.warnings[0] : "(none)");
    ck_assert_int_eq(sockets_of(&t, &res.cpus, NULL, 0), 1);
    vmio_place_result_free(&res);

    /* spreading over nodes: two nodes of one socket rather than nodes 0
     * and 2 (the plain fullest-first pick) across sockets */
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_NODE, "1x6", NULL, "4-5");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "8-13");
    ck_assert_str_eq(fmt(&res.nodes), "2-3");
    ck_assert(has_warning(&res, "spread over nodes 2,3"));
    vmio_place_result_free(&res);

    /* a socket holds 8: two 4-vCPU members, one node each */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x4", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-7");
    ck_assert_str_eq(fmt(&res.nodes), "0-1");
    for (size_t m = 0; m < 2; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        struct vmio_cpuset n;
        vmio_cpuset_zero(&n);
        for (int c = vmio_cpuset_next(&s, 0); c >= 0; c = vmio_cpuset_next(&s, (unsigned)c + 1))
            vmio_cpuset_set(&n, (unsigned)tcpu(&t, c)->node);
        ck_assert_uint_eq(vmio_cpuset_count(&n), 1);
    }
    vmio_place_result_free(&res);

    /* socket 1 has more free CPUs; inside it node 3 holds the group */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "1x4", NULL, "0-1,8");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "12-15");
    ck_assert_str_eq(fmt(&res.nodes), "3");
    vmio_place_result_free(&res);

    /* memory: 2 x 8 GiB does not fit one 12 GiB node */
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_NODE, "2x2", NULL, NULL);
    q.m[0].mem_bytes = q.m[1].mem_bytes = 8ull << 30;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert(has_warning(&res, "16384 MiB of memory"));
    vmio_place_result_free(&res);
    vmio_topo_free(&t);
}
END_TEST

START_TEST(smt_siblings_last)
{
    struct vmio_topo t = load_xml("topo-smt.xml"); /* 1 x 4 cores x 2 threads: 0,1 siblings */
    struct req q;
    struct vmio_place_result res;
    for (unsigned k = 1; k <= 8; k++) {
        char shape[8];
        snprintf(shape, sizeof shape, "%u", k);
        mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, shape, NULL, NULL);
        ck_assert_vmio_ok(place(&q, &res));
        struct vmio_cpuset cores;
        vmio_cpuset_zero(&cores);
        for (int c = vmio_cpuset_next(&res.cpus, 0); c >= 0;
             c = vmio_cpuset_next(&res.cpus, (unsigned)c + 1))
            vmio_cpuset_set(&cores, (unsigned)tcpu(&t, c)->core);
        ck_assert_uint_eq(vmio_cpuset_count(&cores), VMIO_MIN(k, 4));
        vmio_place_result_free(&res);
    }
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0,2,4,6");
    vmio_place_result_free(&res);
    /* housekeeping 0: cores of our own first, core 0's other thread last */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "3", "0", NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "2,4,6");
    vmio_place_result_free(&res);
    vmio_topo_free(&t);

    t = load_xml("topo-2s4c2t.xml"); /* Linux numbering: 0-7 first threads */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "2x2", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-3");
    vmio_place_result_free(&res);
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "3x2", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-3,8-9");
    ck_assert_uint_eq(res.nwarnings, 0);
    vmio_place_result_free(&res);
    vmio_topo_free(&t);
}
END_TEST

START_TEST(near_pci_hca)
{
    const char *xml = GROUP_DATA "/topo-2s4c-ib.xml";
    struct vmio_topo t = load_xml("topo-2s4c-ib.xml");
    struct req q;
    struct vmio_place_result res;
    struct vmio_cpuset near;
    int node;
    ck_assert_vmio_ok(vmio_topo_pci_locality(API, xml, NULL, "0000:81:00.0", &near, &node));
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_PCI, "2x2", NULL, NULL);
    q.r.near = near;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "4-7"); /* the HCA's socket, not first-fit 0-3 */
    ck_assert_str_eq(fmt(&res.nodes), "1");
    ck_assert_uint_eq(res.nwarnings, 0);
    vmio_place_result_free(&res);

    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_PCI, "1x2", "0", "4");
    q.r.near = near;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "5-6");
    vmio_place_result_free(&res);

    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_PCI, "3x2", NULL, NULL);
    q.r.near = near;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "0-1,4-7");
    ck_assert_msg(has_warning(&res, "4 free CPUs are local to the PCI device: 2 placed further "
                                    "away (CPUs 0-1)"),
                  "%s", res.nwarnings ? res.warnings[0] : "(none)");
    /* two members fill the HCA's socket, the third is whole on socket 0 */
    int on0 = 0;
    for (size_t m = 0; m < 3; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        char l[16];
        ck_assert_int_eq(sockets_of(&t, &s, l, sizeof l), 1);
        on0 += strcmp(l, "0") == 0;
    }
    ck_assert_int_eq(on0, 1);
    vmio_place_result_free(&res);

    /* 3 free CPUs by the HCA and two 2-vCPU members: one member there,
     * the other whole on socket 0 rather than split across sockets */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_PCI, "2x2", "0", "1,5");
    q.r.near = near;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "2-4,6");
    for (size_t m = 0; m < 2; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        ck_assert_int_eq(sockets_of(&t, &s, NULL, 0), 1);
    }
    ck_assert(has_warning(&res, "3 free CPUs are local to the PCI device: 2 placed further "
                                "away (CPUs 2-3)"));
    vmio_place_result_free(&res);

    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_PCI, "1x2", NULL, NULL);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), EINVAL, API, "device's CPUs");
    vmio_topo_free(&t);
}
END_TEST

START_TEST(bad_requests)
{
    struct vmio_topo t = load_xml("topo-2s4c.xml");
    struct req q;
    struct vmio_place_result res;
    mkreq(&q, &t, 7, VMIO_GROUP_NEAR_ANY, "1", NULL, NULL);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), EINVAL, API, "pinning mode");
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, 9, "1", NULL, NULL);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), EINVAL, API, "locality");
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_ANY, "1", "0,8", NULL);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), EINVAL, API,
                           "housekeeping CPUs 8 are not on this host");
    mkreq(&q, &t, VMIO_PLACE_PIN_LOOSE, VMIO_GROUP_NEAR_ANY, "2,0", NULL, NULL);
    ck_assert_vmio_err_msg(vmio_place(API, &q.r, &res), EINVAL, API, "vm1 has no vCPU");
    ck_assert_vmio_err(vmio_place(API, NULL, &res), EINVAL, API);
    /* a group without members still gets its CPUs (a pool for later VMs) */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "", "0", NULL);
    q.r.ncpus = 3;
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_str_eq(fmt(&res.cpus), "4-6");
    vmio_place_result_free(&res);
    vmio_place_result_free(NULL);
    vmio_topo_free(&t);
}
END_TEST

static uint64_t rng = 0x243f6a8885a308d3ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Random shapes, housekeeping and taken CPUs on every topology: the
 * invariants hold, or the answer is ENOSPC exactly when strict 1:1 cannot
 * fit; and a group that fits a socket gets one. */
START_TEST(random_requests)
{
    static const char *const topos[] = { "topo-2s4c.xml", "topo-4node.xml", "topo-smt.xml",
                                         "topo-2s4c2t.xml", "topo-2s4c-ib.xml" };
    for (size_t ti = 0; ti < 5; ti++) {
        struct vmio_topo t = load_xml(topos[ti]);
        for (int iter = 0; iter < 400; iter++) {
            struct req q;
            char shape[64] = "";
            unsigned nm = 1 + rnd(4);
            for (unsigned m = 0; m < nm; m++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%u",
                         m ? "," : "", 1 + rnd(4));
            int pin = 1 + (int)rnd(3), loc = (int)rnd(4);
            mkreq(&q, &t, pin, loc, shape, NULL, NULL);
            for (size_t i = 0; i < t.ncpus; i++) {
                unsigned r = rnd(10);
                if (r == 0)
                    vmio_cpuset_set(&q.r.housekeeping, (unsigned)t.cpus[i].id);
                else if (r < 3)
                    vmio_cpuset_set(&q.r.taken, (unsigned)t.cpus[i].id);
            }
            /* a device is local to a socket (or a node) */
            int dev_sock = (int)rnd((unsigned)t.nsockets);
            for (size_t i = 0; i < t.ncpus; i++)
                if (t.cpus[i].socket == dev_sock)
                    vmio_cpuset_set(&q.r.near, (unsigned)t.cpus[i].id);
            struct vmio_cpuset cand;
            vmio_cpuset_zero(&cand);
            for (size_t i = 0; i < t.ncpus; i++)
                vmio_cpuset_set(&cand, (unsigned)t.cpus[i].id);
            vmio_cpuset_andnot(&cand, &q.r.housekeeping);
            vmio_cpuset_andnot(&cand, &q.r.taken);
            unsigned total = 0;
            for (size_t m = 0; m < q.r.nmembers; m++)
                total += q.m[m].nvcpus;
            struct vmio_place_result res;
            int r = place(&q, &res);
            unsigned ncand = vmio_cpuset_count(&cand);
            if (pin == VMIO_PLACE_PIN_STRICT ? ncand < total : ncand == 0) {
                ck_assert_vmio_err(r, ENOSPC, API);
                continue;
            }
            ck_assert_msg(r == 0, "%s on %s: %s", shape, topos[ti], vmio_errmsg());
            if (loc == VMIO_GROUP_NEAR_SOCKET || loc == VMIO_GROUP_NEAR_ANY) {
                unsigned best = 0;
                for (int s = 0; s < t.nsockets; s++) {
                    unsigned n = 0;
                    for (size_t i = 0; i < t.ncpus; i++)
                        n += t.cpus[i].socket == s &&
                             vmio_cpuset_test(&cand, (unsigned)t.cpus[i].id);
                    best = VMIO_MAX(best, n);
                }
                if (total <= best)
                    ck_assert_int_eq(sockets_of(&t, &res.cpus, NULL, 0), 1);
            }
            vmio_place_result_free(&res);
        }
        vmio_topo_free(&t);
    }
}
END_TEST

/* A big box (4 sockets x 2 nodes x 16 cores x 2 threads, Linux-style
 * numbering from hwloc's indexes) with 8 members of 16 vCPUs: every member
 * whole on one node, the group on the fewest sockets, no SMT sibling. */
START_TEST(big_box)
{
    char desc[4096];
    int o = snprintf(desc, sizeof desc, "package:4 [numa(memory=64GiB)] core:16 pu:2(indexes=");
    ck_assert_int_gt(o, 0);
    /* numa per package; PU os indexes: thread t of global core k is k + 64 t */
    for (int k = 0; k < 64; k++)
        for (int th = 0; th < 2; th++)
            o += snprintf(desc + o, sizeof desc - (size_t)o, "%s%d", k || th ? "," : "",
                          k + 64 * th);
    snprintf(desc + o, sizeof desc - (size_t)o, ")");
    struct vmio_topo t;
    ck_assert_vmio_ok(vmio_topo_from_synthetic(API, desc, &t));
    ck_assert_uint_eq(t.ncpus, 128);
    ck_assert_int_eq(t.nsockets, 4);
    ck_assert_int_eq(t.nnodes, 4);
    struct req q;
    struct vmio_place_result res;
    /* 48 vCPUs need two of the 32-CPU sockets; members stay whole */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "4x12", "0,64", "16-19");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_int_eq(sockets_of(&t, &res.cpus, NULL, 0), 2);
    ck_assert(has_warning(&res, "spread over sockets"));
    for (size_t m = 0; m < 4; m++) {
        struct vmio_cpuset s = member_set(&res, &q, m);
        ck_assert_int_eq(sockets_of(&t, &s, NULL, 0), 1);
    }
    vmio_place_result_free(&res);
    /* 16 vCPUs on one socket's 16 cores: first threads only (ids < 64),
     * and not on socket 0 (housekeeping) */
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_SOCKET, "4x4", "0,64", "16-19");
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_int_eq(sockets_of(&t, &res.cpus, NULL, 0), 1);
    ck_assert_int_ge(vmio_cpuset_next(&res.cpus, 0), 32);
    ck_assert_int_eq(vmio_cpuset_next(&res.cpus, 64), -1);
    vmio_place_result_free(&res);
    mkreq(&q, &t, VMIO_PLACE_PIN_STRICT, VMIO_GROUP_NEAR_ANY, "2x14", NULL, NULL);
    ck_assert_vmio_ok(place(&q, &res));
    ck_assert_int_eq(sockets_of(&t, &res.cpus, NULL, 0), 1); /* 28 fit one socket */
    vmio_place_result_free(&res);
    vmio_topo_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("group-place");
    TCase *tc = tcase_create("topology");
    tcase_add_test(tc, hwloc_xml_hpc_node);
    tcase_add_test(tc, hwloc_xml_numa_and_smt);
    tcase_add_test(tc, hwloc_errors);
    tcase_add_test(tc, host_topology);
    tcase_add_test(tc, caps_equals_hwloc);
    tcase_add_test(tc, caps_from_libvirt_test_driver);
    tcase_add_test(tc, caps_rejects);
    tcase_add_test(tc, caps_units_and_sparse_ids);
    tcase_add_test(tc, pci_locality_hwloc);
    tcase_add_test(tc, pci_locality_sysfs);
    suite_add_tcase(s, tc);
    tc = tcase_create("placement");
    tcase_add_test(tc, hpc_node_fits_one_socket);
    tcase_add_test(tc, hpc_node_spill_and_enospc);
    tcase_add_test(tc, near_any_is_compact);
    tcase_add_test(tc, four_nodes);
    tcase_add_test(tc, smt_siblings_last);
    tcase_add_test(tc, near_pci_hca);
    tcase_add_test(tc, bad_requests);
    tcase_add_test(tc, random_requests);
    tcase_add_test(tc, big_box);
    suite_add_tcase(s, tc);
    return test_run(s);
}
