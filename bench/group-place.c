/* Placement quality of VM groups (libvmio/group/placement.c) on the test
 * topologies of tests/unit/data/group, against a naive baseline: vCPU k of
 * the group on the k-th CPU in number order (what pinning by hand with
 * `xl vcpu-pin dom v v`, or a script over `virsh vcpupin`, gives), which
 * skips CPUs taken by other groups but knows nothing of sockets, SMT or
 * housekeeping. Strict 1:1 pinning, NEAR_SOCKET (NEAR_PCI for the HCA
 * topology), every group shape on three hosts: empty ("-"), housekeeping
 * CPU 0 ("hk"), and housekeeping CPU 0 with another group already pinned
 * on CPUs 1 and 5 ("busy").
 *
 * Columns: CPUs used; sockets spanned / fewest possible; members split
 * over sockets; vCPUs on housekeeping CPUs (must be 0); cores running two
 * of the group's vCPUs while a wholly free core of the same socket was
 * left unused (must be 0); vCPUs off the HCA's local CPUs (NEAR_PCI);
 * mean placement time.
 *
 *   build-dir/bench/group-place [DATA_DIR]   (default: the source tree's) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "group/topology.h"

#include <vmio/group.h>

struct quality {
    unsigned cpus, sockets, min_sockets, split, hk_viol, smt_viol, far;
};

static unsigned socket_count(const struct vmio_topo *t, const struct vmio_cpuset *s)
{
    struct vmio_cpuset socks;
    vmio_cpuset_zero(&socks);
    for (size_t i = 0; i < t->ncpus; i++)
        if (vmio_cpuset_test(s, (unsigned)t->cpus[i].id))
            vmio_cpuset_set(&socks, (unsigned)t->cpus[i].socket);
    return vmio_cpuset_count(&socks);
}

/* Fewest sockets whose free CPUs hold want. */
static unsigned min_sockets(const struct vmio_topo *t, const struct vmio_cpuset *cand,
                            unsigned want)
{
    unsigned freec[VMIO_CPUSET_MAX] = { 0 };
    for (size_t i = 0; i < t->ncpus; i++)
        if (vmio_cpuset_test(cand, (unsigned)t->cpus[i].id))
            freec[t->cpus[i].socket]++;
    unsigned n = 0, have = 0;
    while (have < want) {
        int best = -1;
        for (int s = 0; s < t->nsockets; s++)
            if (freec[s] && (best < 0 || freec[s] > freec[best]))
                best = s;
        if (best < 0)
            break;
        have += freec[best];
        freec[best] = 0;
        n++;
    }
    return n;
}

static void measure(const struct vmio_topo *t, const struct vmio_place_request *q,
                    int *const *vcpu_cpu, struct quality *out)
{
    struct vmio_cpuset used, cand;
    vmio_cpuset_zero(&used);
    vmio_cpuset_zero(&cand);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < t->ncpus; i++)
        vmio_cpuset_set(&cand, (unsigned)t->cpus[i].id);
    vmio_cpuset_andnot(&cand, &q->housekeeping);
    vmio_cpuset_andnot(&cand, &q->taken);
    unsigned total = 0;
    for (size_t m = 0; m < q->nmembers; m++) {
        struct vmio_cpuset ms;
        vmio_cpuset_zero(&ms);
        for (unsigned v = 0; v < q->members[m].nvcpus; v++) {
            int c = vcpu_cpu[m][v];
            vmio_cpuset_set(&ms, (unsigned)c);
            vmio_cpuset_set(&used, (unsigned)c);
            out->hk_viol += (unsigned)vmio_cpuset_test(&q->housekeeping, (unsigned)c);
            out->far += q->locality == VMIO_GROUP_NEAR_PCI &&
                        !vmio_cpuset_test(&q->near, (unsigned)c);
        }
        out->split += socket_count(t, &ms) > 1;
        total += q->members[m].nvcpus;
    }
    out->cpus = vmio_cpuset_count(&used);
    out->sockets = socket_count(t, &used);
    out->min_sockets = min_sockets(t, &cand, total);
    /* cores doubled up while a free core of the same socket stayed idle */
    for (size_t i = 0; i < t->ncpus; i++) {
        const struct vmio_topo_cpu *p = &t->cpus[i];
        unsigned n = 0;
        int lowest = 1;
        for (size_t j = 0; j < t->ncpus; j++)
            if (t->cpus[j].core == p->core) {
                n += (unsigned)vmio_cpuset_test(&used, (unsigned)t->cpus[j].id);
                if (t->cpus[j].id < p->id)
                    lowest = 0;
            }
        if (n < 2 || !lowest)
            continue;
        int idle_core = 0;
        for (size_t j = 0; j < t->ncpus && !idle_core; j++) {
            const struct vmio_topo_cpu *o = &t->cpus[j];
            if (o->socket != p->socket)
                continue;
            int all_free = 1, any_used = 0;
            for (size_t k = 0; k < t->ncpus; k++)
                if (t->cpus[k].core == o->core) {
                    all_free &= vmio_cpuset_test(&cand, (unsigned)t->cpus[k].id);
                    any_used |= vmio_cpuset_test(&used, (unsigned)t->cpus[k].id);
                }
            idle_core = all_free && !any_used;
        }
        out->smt_viol += (unsigned)idle_core;
    }
}

static const char *far_col(const struct vmio_place_request *q, unsigned far)
{
    static char buf[2][16];
    static int k;
    if (q->locality != VMIO_GROUP_NEAR_PCI)
        return "-";
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%u", far);
    return buf[k];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : GROUP_DATA;
    static const struct {
        const char *file, *label, *pci;
    } topos[] = {
        { "topo-2s4c.xml", "2s x 4c (HPC node)", NULL },
        { "topo-4node.xml", "2s x 2 nodes x 4c", NULL },
        { "topo-smt.xml", "1s x 4c x 2t", NULL },
        { "topo-2s4c2t.xml", "2s x 4c x 2t (Linux numbering)", NULL },
        { "topo-2s4c-ib.xml", "2s x 4c, HCA on s1 (NEAR_PCI)", "0000:81:00.0" },
    };
    static const unsigned shapes[][2] = { { 2, 2 }, { 3, 2 }, { 4, 2 }, { 2, 4 } };
    unsigned bad = 0;
    printf("%-42s | %-37s | %s\n", "", "libvmio (strict)", "naive first-fit");
    printf("%-31s %-5s %-4s | %-4s %-6s %-5s %-3s %-3s %-3s %-6s | %-4s %-6s %-5s %-3s %-3s %s\n",
           "topology", "shape", "host", "cpus", "socks", "split", "hk!", "smt", "far", "us",
           "cpus", "socks", "split", "hk!", "smt", "far");
    for (size_t ti = 0; ti < VMIO_ARRAY_SIZE(topos); ti++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, topos[ti].file);
        struct vmio_topo t;
        if (vmio_topo_from_hwloc_xml("group-place", path, &t) < 0) {
            fprintf(stderr, "group-place: %s\n", vmio_errmsg());
            return 1;
        }
        struct vmio_cpuset near;
        vmio_cpuset_zero(&near);
        if (topos[ti].pci) {
            int node;
            if (vmio_topo_pci_locality("group-place", path, NULL, topos[ti].pci, &near, &node) <
                0) {
                fprintf(stderr, "group-place: %s\n", vmio_errmsg());
                return 1;
            }
        }
        for (size_t si = 0; si < VMIO_ARRAY_SIZE(shapes); si++)
            for (int hk = 0; hk < 3; hk++) {
                struct vmio_place_member mem[8];
                memset(mem, 0, sizeof mem);
                for (unsigned m = 0; m < shapes[si][0]; m++) {
                    mem[m].name = "vm";
                    mem[m].nvcpus = shapes[si][1];
                }
                struct vmio_place_request q;
                memset(&q, 0, sizeof q);
                q.topo = &t;
                q.pin = VMIO_PLACE_PIN_STRICT;
                q.locality = topos[ti].pci ? VMIO_GROUP_NEAR_PCI : VMIO_GROUP_NEAR_SOCKET;
                q.near = near;
                q.nmembers = shapes[si][0];
                q.members = mem;
                if (hk)
                    vmio_cpuset_set(&q.housekeeping, 0);
                if (hk == 2) {
                    vmio_cpuset_set(&q.taken, 1);
                    vmio_cpuset_set(&q.taken, 5);
                }
                char shape[16];
                snprintf(shape, sizeof shape, "%ux%u", shapes[si][0], shapes[si][1]);
                printf("%-31s %-5s %-4s | ", topos[ti].label, shape,
                       hk == 2 ? "busy" : hk ? "hk" : "-");

                struct vmio_place_result res;
                const int reps = 2000;
                double t0 = now_s();
                int r = 0;
                for (int k = 0; k < reps && r == 0; k++) {
                    r = vmio_place("group-place", &q, &res);
                    if (r == 0 && k + 1 < reps)
                        vmio_place_result_free(&res);
                }
                double us = (now_s() - t0) / reps * 1e6;
                int store[8][8], *rows[8];
                for (int m = 0; m < 8; m++)
                    rows[m] = store[m];
                if (r < 0) {
                    printf("%-37.37s | ", vmio_errmsg() + strlen("group-place: "));
                } else {
                    for (size_t m = 0; m < q.nmembers; m++)
                        for (unsigned v = 0; v < mem[m].nvcpus; v++)
                            store[m][v] = vmio_cpuset_next(&res.vcpu[m][v], 0);
                    struct quality qa;
                    measure(&t, &q, rows, &qa);
                    char socks[16];
                    snprintf(socks, sizeof socks, "%u/%u", qa.sockets, qa.min_sockets);
                    printf("%-4u %-6s %-5u %-3u %-3u %-3s %-6.1f | ", qa.cpus, socks, qa.split,
                           qa.hk_viol, qa.smt_viol, far_col(&q, qa.far), us);
                    bad += qa.hk_viol + qa.smt_viol;
                    vmio_place_result_free(&res);
                }
                /* naive: k-th vCPU of the group on the k-th CPU not taken */
                size_t k = 0;
                int fits = 1;
                for (size_t m = 0; m < q.nmembers; m++)
                    for (unsigned v = 0; v < mem[m].nvcpus; v++) {
                        while (k < t.ncpus && vmio_cpuset_test(&q.taken, (unsigned)t.cpus[k].id))
                            k++;
                        fits &= k < t.ncpus;
                        store[m][v] = k < t.ncpus ? t.cpus[k++].id : t.cpus[0].id;
                    }
                if (!fits) {
                    printf("(does not fit)\n");
                    continue;
                }
                struct quality qn;
                measure(&t, &q, rows, &qn);
                char socks[16];
                snprintf(socks, sizeof socks, "%u/%u", qn.sockets, qn.min_sockets);
                printf("%-4u %-6s %-5u %-3u %-3u %s\n", qn.cpus, socks, qn.split, qn.hk_viol,
                       qn.smt_viol, far_col(&q, qn.far));
            }
        vmio_topo_free(&t);
    }
    if (bad) {
        printf("group-place: %u housekeeping/SMT violations by libvmio\n", bad);
        return 1;
    }
    return 0;
}
