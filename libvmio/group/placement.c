/* Group placement (vmio_place, group/topology.h): which host CPUs a VM
 * group gets and where each vCPU may run. Pure and deterministic: the same
 * topology and request always give the same result, and nothing here does
 * I/O.
 *
 * Candidates are the host's CPUs minus housekeeping and minus CPUs taken
 * by other groups. The group's CPUs are chosen top-down: the locality
 * domain (socket or NUMA node) with the most free candidates that holds
 * the whole group, else the fewest domains, fullest first (with a
 * warning; strict groups then take from each domain what whole members
 * need, and nodes of one socket are preferred when spreading over nodes);
 * the same rule one level down (node inside socket, socket inside node);
 * and inside a domain one CPU per physical core before any SMT sibling,
 * fully free cores first. NEAR_PCI fills the device's local CPUs, then
 * its node, then its socket, then the rest (strict groups: each member
 * whole on the socket whose free CPUs are nearest the device). NEAR_ANY
 * still packs into the fewest sockets: inter-socket latency is about twice the
 * intra-socket one on the nodes HPC groups run on.
 *
 * Strict pinning gives every vCPU its own CPU: members are packed
 * largest first, each onto the (socket, node) slice, else the socket,
 * that fits it most tightly, its vCPUs taking consecutive CPUs of that
 * slice; a member is split only when no socket can hold it. Loose (and
 * no) pinning gives every vCPU the group's whole set. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/topology.h"

#include <vmio/group.h>

#define MAX_VCPUS 65536u

enum lvl { LVL_SOCKET, LVL_NODE };

struct ctx {
    const char *api;
    const struct vmio_topo *topo;
    short idx[VMIO_CPUSET_MAX]; /* CPU id -> index in topo->cpus, -1: none */
    struct vmio_cpuset cand;
    char **warnings;
    size_t nwarnings;
    int oom;
};

VMIO_PRINTF(2, 3) static void warn(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(c->warnings, (c->nwarnings + 1) * sizeof *w);
    char *s = strdup(buf);
    if (!w || !s) {
        free(s);
        if (w)
            c->warnings = w;
        c->oom = 1;
        return;
    }
    c->warnings = w;
    c->warnings[c->nwarnings++] = s;
}

static const struct vmio_topo_cpu *cpu_of(const struct ctx *c, int id)
{
    return &c->topo->cpus[c->idx[id]];
}

static int key_of(const struct ctx *c, int id, enum lvl l)
{
    const struct vmio_topo_cpu *p = cpu_of(c, id);
    return l == LVL_SOCKET ? p->socket : p->node;
}

static const char *lvl_name(enum lvl l)
{
    return l == LVL_SOCKET ? "socket" : "node";
}

/* Distinct values of a level in s, with their counts, sorted by count
 * descending then value ascending: the fill order. Returns how many. */
struct dom {
    int key;
    unsigned count;
    int socket;      /* for nodes: the socket they are on */
    unsigned sfree;  /* for nodes: free CPUs of that socket */
};

static int cmp_dom(const void *a, const void *b)
{
    const struct dom *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->key > y->key) - (x->key < y->key);
}

static size_t domains(const struct ctx *c, const struct vmio_cpuset *s, enum lvl l,
                      struct dom *d)
{
    size_t n = 0;
    for (int id = vmio_cpuset_next(s, 0); id >= 0; id = vmio_cpuset_next(s, (unsigned)id + 1)) {
        int k = key_of(c, id, l);
        size_t i = 0;
        while (i < n && d[i].key != k)
            i++;
        if (i == n)
            d[n++] = (struct dom){ k, 0, cpu_of(c, id)->socket, 0 };
        d[i].count++;
    }
    qsort(d, n, sizeof *d, cmp_dom);
    return n;
}

static void restrict_to(const struct ctx *c, const struct vmio_cpuset *s, enum lvl l, int key,
                        struct vmio_cpuset *out)
{
    vmio_cpuset_zero(out);
    for (int id = vmio_cpuset_next(s, 0); id >= 0; id = vmio_cpuset_next(s, (unsigned)id + 1))
        if (key_of(c, id, l) == key)
            vmio_cpuset_set(out, (unsigned)id);
}

/* The CPUs of s in preference order: one per physical core (cores whose
 * every thread is a candidate first, then by lowest CPU), then the second
 * thread of each core, and so on. Returns how many (= count(s)) or
 * -ENOMEM. */
struct core_ent {
    int core, first, full;
};

static int cmp_core(const void *a, const void *b)
{
    const struct core_ent *x = a, *y = b;
    if (x->full != y->full)
        return y->full - x->full;
    return (x->first > y->first) - (x->first < y->first);
}

static int core_order(const struct ctx *c, const struct vmio_cpuset *s, int *out)
{
    struct core_ent *ce = malloc(VMIO_CPUSET_MAX * sizeof *ce);
    size_t nc = 0;
    int n = 0;
    if (!ce)
        return -ENOMEM;
    for (int id = vmio_cpuset_next(s, 0); id >= 0; id = vmio_cpuset_next(s, (unsigned)id + 1)) {
        int core = cpu_of(c, id)->core;
        size_t i = 0;
        while (i < nc && ce[i].core != core)
            i++;
        if (i == nc)
            ce[nc++] = (struct core_ent){ core, id, 1 };
    }
    /* A core sharing threads with housekeeping or another group is a
     * worse home than a core of our own. */
    for (size_t t = 0; t < c->topo->ncpus; t++) {
        const struct vmio_topo_cpu *p = &c->topo->cpus[t];
        if (vmio_cpuset_test(&c->cand, (unsigned)p->id))
            continue;
        for (size_t i = 0; i < nc; i++)
            if (ce[i].core == p->core)
                ce[i].full = 0;
    }
    qsort(ce, nc, sizeof *ce, cmp_core);
    struct vmio_cpuset left = *s;
    while (!vmio_cpuset_empty(&left)) {
        for (size_t i = 0; i < nc; i++) {
            /* The lowest remaining thread of this core. */
            for (int id = vmio_cpuset_next(&left, 0); id >= 0;
                 id = vmio_cpuset_next(&left, (unsigned)id + 1)) {
                if (cpu_of(c, id)->core == ce[i].core) {
                    out[n++] = id;
                    vmio_cpuset_clear(&left, (unsigned)id);
                    break;
                }
            }
        }
    }
    free(ce);
    return n;
}

/* Spread over several top-level domains, for the warning. */
struct spread {
    unsigned largest;
    size_t nused;
    int used[64];
};

/* Choose want CPUs of s into out, level by level. */
static int cmp_dom_by_socket(const void *a, const void *b)
{
    const struct dom *x = a, *y = b;
    if (x->sfree != y->sfree)
        return x->sfree < y->sfree ? 1 : -1;
    if (x->socket != y->socket)
        return (x->socket > y->socket) - (x->socket < y->socket);
    return cmp_dom(a, b);
}

static size_t doms_needed(const struct dom *d, size_t nd, unsigned want)
{
    size_t k = 0;
    unsigned have = 0;
    while (k < nd && have < want)
        have += d[k++].count;
    return k;
}

/* Spreading over NUMA nodes: among the ways that use the fewest nodes,
 * prefer nodes of the same socket (the fullest socket's nodes first). */
static void prefer_one_socket(struct dom *d, size_t nd, unsigned want)
{
    struct dom *alt = malloc(nd * sizeof *alt);
    if (!alt)
        return; /* the plain order is still a valid answer */
    for (size_t i = 0; i < nd; i++) {
        alt[i] = d[i];
        alt[i].sfree = 0;
        for (size_t j = 0; j < nd; j++)
            if (d[j].socket == d[i].socket)
                alt[i].sfree += d[j].count;
    }
    qsort(alt, nd, sizeof *alt, cmp_dom_by_socket);
    if (doms_needed(alt, nd, want) <= doms_needed(d, nd, want))
        memcpy(d, alt, nd * sizeof *d);
    free(alt);
}

static int choose(struct ctx *c, const struct vmio_cpuset *s, unsigned want, const enum lvl *lv,
                  int nl, struct vmio_cpuset *out, struct spread *sp)
{
    if (want == 0)
        return 0;
    if (nl == 0) {
        int *order = malloc(VMIO_CPUSET_MAX * sizeof *order);
        if (!order)
            return -ENOMEM;
        int n = core_order(c, s, order);
        for (int i = 0; i < n && (unsigned)i < want; i++)
            vmio_cpuset_set(out, (unsigned)order[i]);
        free(order);
        return n < 0 ? n : 0;
    }
    struct dom *d = malloc(VMIO_CPUSET_MAX * sizeof *d);
    if (!d)
        return -ENOMEM;
    size_t nd = domains(c, s, lv[0], d);
    struct vmio_cpuset sub;
    int r = 0;
    if (nd && d[0].count >= want) {
        restrict_to(c, s, lv[0], d[0].key, &sub);
        r = choose(c, &sub, want, lv + 1, nl - 1, out, NULL);
    } else {
        unsigned left = want;
        if (sp)
            sp->largest = nd ? d[0].count : 0;
        if (lv[0] == LVL_NODE)
            prefer_one_socket(d, nd, want);
        for (size_t i = 0; i < nd && left && r == 0; i++) {
            unsigned take = VMIO_MIN(d[i].count, left);
            restrict_to(c, s, lv[0], d[i].key, &sub);
            r = choose(c, &sub, take, lv + 1, nl - 1, out, NULL);
            left -= take;
            if (sp && sp->nused < VMIO_ARRAY_SIZE(sp->used))
                sp->used[sp->nused++] = d[i].key;
        }
    }
    free(d);
    return r;
}

struct mref {
    size_t m;
    unsigned n;
};

static int cmp_mref(const void *a, const void *b)
{
    const struct mref *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return (x->m > y->m) - (x->m < y->m);
}

/* Strict groups that need several domains: pack the members whole into
 * the domains' free CPUs (largest member first, tightest domain that
 * holds it) and take from each domain what its members need, so that no
 * member straddles two sockets. Used only when it needs no more domains
 * than filling the fullest first; returns 1 to fall back to that. */
static int choose_whole_members(struct ctx *c, const struct vmio_place_request *req,
                                unsigned want, const enum lvl *lv, struct vmio_cpuset *out,
                                struct spread *sp)
{
    struct dom *d = malloc(VMIO_CPUSET_MAX * sizeof *d);
    unsigned *left = malloc(VMIO_CPUSET_MAX * sizeof *left);
    unsigned *need = calloc(VMIO_CPUSET_MAX, sizeof *need);
    struct mref *order = malloc((req->nmembers ? req->nmembers : 1) * sizeof *order);
    int r = -ENOMEM;
    if (!d || !left || !need || !order)
        goto out;
    r = 1;
    size_t nd = domains(c, &c->cand, lv[0], d);
    if (nd == 0 || d[0].count >= want || req->nmembers == 0)
        goto out;
    unsigned greedy = 0, have = 0;
    while (greedy < nd && have < want)
        have += d[greedy++].count;
    for (size_t i = 0; i < nd; i++)
        left[i] = d[i].count;
    for (size_t m = 0; m < req->nmembers; m++)
        order[m] = (struct mref){ m, req->members[m].nvcpus };
    qsort(order, req->nmembers, sizeof *order, cmp_mref);
    for (size_t i = 0; i < req->nmembers; i++) {
        size_t best = nd;
        for (size_t j = 0; j < nd; j++)
            if (left[j] >= order[i].n && (best == nd || left[j] < left[best]))
                best = j;
        if (best == nd)
            goto out;
        left[best] -= order[i].n;
        need[best] += order[i].n;
    }
    unsigned used = 0;
    for (size_t j = 0; j < nd; j++)
        used += need[j] > 0;
    if (used > greedy)
        goto out;
    sp->largest = d[0].count;
    struct vmio_cpuset sub;
    for (size_t j = 0; j < nd; j++) {
        if (!need[j])
            continue;
        restrict_to(c, &c->cand, lv[0], d[j].key, &sub);
        if ((r = choose(c, &sub, need[j], lv + 1, 1, out, NULL)) < 0)
            goto out;
        if (sp->nused < VMIO_ARRAY_SIZE(sp->used))
            sp->used[sp->nused++] = d[j].key;
    }
    r = 0;
out:
    free(d);
    free(left);
    free(need);
    free(order);
    return r;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void list_ints(const int *v, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++) {
        int k = snprintf(buf + o, len - o, "%s%d", i ? "," : "", v[i]);
        if (k < 0)
            break;
        o += (size_t)k;
    }
}

/* ---- strict: vCPUs onto the chosen CPUs ------------------------------- */

struct bin {
    int socket, node;
    size_t start, len, next; /* a slice of the ordered CPU list */
};

static size_t bin_free(const struct bin *b)
{
    return b->len - b->next;
}

static size_t socket_free(const struct bin *b, size_t nb, int socket)
{
    size_t f = 0;
    for (size_t i = 0; i < nb; i++)
        if (b[i].socket == socket)
            f += bin_free(&b[i]);
    return f;
}

/* The chosen CPUs ordered socket by socket, node by node (fullest first),
 * cores before siblings inside each; one bin per (socket, node) slice. */
static int order_chosen(struct ctx *c, const struct vmio_cpuset *chosen, int *list,
                        struct bin *bins, size_t *nbins)
{
    struct dom *socks = malloc(VMIO_CPUSET_MAX * sizeof *socks);
    struct dom *nodes = malloc(VMIO_CPUSET_MAX * sizeof *nodes);
    if (!socks || !nodes) {
        free(socks);
        free(nodes);
        return -ENOMEM;
    }
    size_t n = 0, nb = 0;
    size_t ns = domains(c, chosen, LVL_SOCKET, socks);
    for (size_t i = 0; i < ns; i++) {
        struct vmio_cpuset s, sn;
        restrict_to(c, chosen, LVL_SOCKET, socks[i].key, &s);
        size_t nn = domains(c, &s, LVL_NODE, nodes);
        for (size_t j = 0; j < nn; j++) {
            restrict_to(c, &s, LVL_NODE, nodes[j].key, &sn);
            int k = core_order(c, &sn, list + n);
            if (k < 0) {
                free(socks);
                free(nodes);
                return k;
            }
            bins[nb++] = (struct bin){ socks[i].key, nodes[j].key, n, (size_t)k, 0 };
            n += (size_t)k;
        }
    }
    free(socks);
    free(nodes);
    *nbins = nb;
    return 0;
}

/* Takes n CPUs for one member: from one slice if one holds it, else from
 * one socket, else from the emptiest sockets' fullest slices. */
static void take_for_member(struct bin *b, size_t nb, const int *list, unsigned n, int *got,
                            int *split_socks, size_t *nsplit)
{
    size_t best = nb;
    for (size_t i = 0; i < nb; i++)
        if (bin_free(&b[i]) >= n && (best == nb || bin_free(&b[i]) < bin_free(&b[best])))
            best = i;
    unsigned k = 0;
    *nsplit = 0;
    if (best < nb) {
        while (k < n)
            got[k++] = list[b[best].start + b[best].next++];
        split_socks[(*nsplit)++] = b[best].socket;
        return;
    }
    int bsock = -1;
    size_t bfree = 0;
    for (size_t i = 0; i < nb; i++) {
        size_t f = socket_free(b, nb, b[i].socket);
        if (f >= n && (bsock < 0 || f < bfree)) {
            bsock = b[i].socket;
            bfree = f;
        }
    }
    while (k < n) {
        /* The socket to draw from: the one that fits, else the freest. */
        int sock = bsock;
        if (sock < 0) {
            size_t most = 0;
            for (size_t i = 0; i < nb; i++) {
                size_t f = socket_free(b, nb, b[i].socket);
                if (f > most) {
                    most = f;
                    sock = b[i].socket;
                }
            }
        }
        size_t bi = nb;
        for (size_t i = 0; i < nb; i++)
            if (b[i].socket == sock && bin_free(&b[i]) &&
                (bi == nb || bin_free(&b[i]) > bin_free(&b[bi])))
                bi = i;
        if (bi == nb)
            break; /* cannot happen: the caller checked the total */
        if (*nsplit == 0 || split_socks[*nsplit - 1] != sock)
            split_socks[(*nsplit)++] = sock;
        while (k < n && bin_free(&b[bi]))
            got[k++] = list[b[bi].start + b[bi].next++];
    }
}

static int assign_strict(struct ctx *c, const struct vmio_place_request *req,
                         const struct vmio_cpuset *chosen, struct vmio_place_result *res)
{
    int *list = malloc(VMIO_CPUSET_MAX * sizeof *list);
    int *got = malloc(VMIO_CPUSET_MAX * sizeof *got);
    int *socks = malloc(VMIO_CPUSET_MAX * sizeof *socks);
    struct bin *bins = malloc(VMIO_CPUSET_MAX * sizeof *bins);
    struct mref *order = malloc(req->nmembers * sizeof *order);
    int r = -ENOMEM;
    if (!list || !got || !socks || !bins || !order)
        goto out;
    size_t nb;
    if ((r = order_chosen(c, chosen, list, bins, &nb)) < 0)
        goto out;
    for (size_t m = 0; m < req->nmembers; m++)
        order[m] = (struct mref){ m, req->members[m].nvcpus };
    qsort(order, req->nmembers, sizeof *order, cmp_mref);
    for (size_t i = 0; i < req->nmembers; i++) {
        size_t m = order[i].m, nsplit;
        unsigned n = order[i].n;
        take_for_member(bins, nb, list, n, got, socks, &nsplit);
        for (unsigned v = 0; v < n; v++)
            vmio_cpuset_set(&res->vcpu[m][v], (unsigned)got[v]);
        if (nsplit > 1) {
            char l[128];
            list_ints(socks, nsplit, l, sizeof l);
            warn(c, "member %s: its %u vCPUs do not fit the free CPUs of one socket: split "
                 "over sockets %s", req->members[m].name ? req->members[m].name : "(unnamed)",
                 n, l);
        }
    }
    r = 0;
out:
    free(list);
    free(got);
    free(socks);
    free(bins);
    free(order);
    return r;
}

/* ---- entry ------------------------------------------------------------ */

void vmio_place_result_free(struct vmio_place_result *r)
{
    if (!r)
        return;
    if (r->vcpu)
        for (size_t m = 0; m < r->nmembers; m++)
            free(r->vcpu[m]);
    free(r->vcpu);
    for (size_t i = 0; i < r->nwarnings; i++)
        free(r->warnings[i]);
    free(r->warnings);
    memset(r, 0, sizeof *r);
}

static int check_request(const char *api, const struct vmio_place_request *req,
                         uint64_t *total)
{
    VMIO_CHECK_ARG(api, req->topo != NULL && req->topo->ncpus > 0 && req->topo->cpus, EINVAL);
    VMIO_CHECK_ARG(api, req->nmembers == 0 || req->members != NULL, EINVAL);
    if (req->pin != VMIO_PLACE_PIN_NONE && req->pin != VMIO_PLACE_PIN_STRICT &&
        req->pin != VMIO_PLACE_PIN_LOOSE)
        return vmio_set_error(api, EINVAL, "unknown pinning mode %d", req->pin);
    if (req->locality < VMIO_GROUP_NEAR_ANY || req->locality > VMIO_GROUP_NEAR_PCI)
        return vmio_set_error(api, EINVAL, "unknown locality %d", req->locality);
    *total = 0;
    for (size_t m = 0; m < req->nmembers; m++) {
        if (req->members[m].nvcpus == 0)
            return vmio_set_error(api, EINVAL, "member %s has no vCPU",
                                  req->members[m].name ? req->members[m].name : "(unnamed)");
        *total += req->members[m].nvcpus;
        if (*total > MAX_VCPUS)
            return vmio_set_error(api, EINVAL, "group has more than %u vCPUs", MAX_VCPUS);
    }
    if (*total == 0 && req->ncpus == 0)
        return vmio_set_error(api, EINVAL, "nothing to place: no member and no CPU count");
    if (req->locality == VMIO_GROUP_NEAR_PCI && vmio_cpuset_empty(&req->near))
        return vmio_set_error(api, EINVAL, "NEAR_PCI placement without the device's CPUs");
    return 0;
}

/* The CPUs of s on the same level key as any CPU of near. */
static void same_domain(const struct ctx *c, const struct vmio_cpuset *near, enum lvl l,
                        struct vmio_cpuset *out)
{
    vmio_cpuset_zero(out);
    for (size_t i = 0; i < c->topo->ncpus; i++) {
        const struct vmio_topo_cpu *p = &c->topo->cpus[i];
        for (int id = vmio_cpuset_next(near, 0); id >= 0;
             id = vmio_cpuset_next(near, (unsigned)id + 1)) {
            if (c->idx[id] >= 0 && key_of(c, id, l) == (l == LVL_SOCKET ? p->socket : p->node)) {
                vmio_cpuset_set(out, (unsigned)p->id);
                break;
            }
        }
    }
}

/* NEAR_PCI, strict: each member whole on one socket, the socket whose
 * best free CPUs are nearest the device (tiers: local, same node, same
 * socket, the rest), the tightest on a tie. Returns 1 when some member
 * fits no socket, to fall back to filling the tiers in order. */
static int pci_whole_members(struct ctx *c, const struct vmio_place_request *req,
                             const struct vmio_cpuset *tier, struct vmio_cpuset *out)
{
    static const enum lvl by_node[] = { LVL_NODE };
    struct dom *socks = malloc(VMIO_CPUSET_MAX * sizeof *socks);
    struct mref *order = malloc(req->nmembers * sizeof *order);
    int r = -ENOMEM;
    if (!socks || !order)
        goto out;
    size_t ns = domains(c, &c->cand, LVL_SOCKET, socks);
    for (size_t m = 0; m < req->nmembers; m++)
        order[m] = (struct mref){ m, req->members[m].nvcpus };
    qsort(order, req->nmembers, sizeof *order, cmp_mref);
    struct vmio_cpuset acc, sub, in_sock;
    vmio_cpuset_zero(&acc);
    for (size_t i = 0; i < req->nmembers; i++) {
        unsigned n = order[i].n;
        size_t best = ns;
        unsigned best_cost = 0, best_free = 0;
        for (size_t k = 0; k < ns; k++) {
            restrict_to(c, &c->cand, LVL_SOCKET, socks[k].key, &in_sock);
            vmio_cpuset_andnot(&in_sock, &acc);
            unsigned f = vmio_cpuset_count(&in_sock), left = n, cost = 0;
            if (f < n)
                continue;
            for (unsigned t = 0; t < 4 && left; t++) {
                sub = tier[t];
                vmio_cpuset_and(&sub, &in_sock);
                unsigned take = VMIO_MIN(vmio_cpuset_count(&sub), left);
                cost += take * t;
                left -= take;
            }
            if (best == ns || cost < best_cost || (cost == best_cost && f < best_free)) {
                best = k;
                best_cost = cost;
                best_free = f;
            }
        }
        if (best == ns) {
            r = 1;
            goto out;
        }
        restrict_to(c, &c->cand, LVL_SOCKET, socks[best].key, &in_sock);
        unsigned left = n;
        for (unsigned t = 0; t < 4 && left; t++) {
            sub = tier[t];
            vmio_cpuset_and(&sub, &in_sock);
            vmio_cpuset_andnot(&sub, &acc);
            unsigned take = VMIO_MIN(vmio_cpuset_count(&sub), left);
            if ((r = choose(c, &sub, take, by_node, 1, &acc, NULL)) < 0)
                goto out;
            left -= take;
        }
    }
    vmio_cpuset_or(out, &acc);
    r = 0;
out:
    free(socks);
    free(order);
    return r;
}

static int choose_pci(struct ctx *c, const struct vmio_place_request *req, unsigned want,
                      unsigned total, struct vmio_cpuset *chosen)
{
    static const enum lvl lv[] = { LVL_SOCKET, LVL_NODE };
    struct vmio_cpuset tier[4], seen;
    tier[0] = req->near;
    same_domain(c, &req->near, LVL_NODE, &tier[1]);
    same_domain(c, &req->near, LVL_SOCKET, &tier[2]);
    tier[3] = c->cand;
    vmio_cpuset_zero(&seen);
    for (int t = 0; t < 4; t++) {
        vmio_cpuset_and(&tier[t], &c->cand);
        vmio_cpuset_andnot(&tier[t], &seen);
        vmio_cpuset_or(&seen, &tier[t]);
    }
    unsigned local = vmio_cpuset_count(&tier[0]);
    int r = 1;
    if (req->pin == VMIO_PLACE_PIN_STRICT && want == total && req->nmembers)
        r = pci_whole_members(c, req, tier, chosen);
    if (r < 0)
        return r;
    for (int t = 0, left = (int)want; r == 1 && t < 4; t++) {
        unsigned take = VMIO_MIN(vmio_cpuset_count(&tier[t]), (unsigned)left);
        int e = choose(c, &tier[t], take, lv, 2, chosen, NULL);
        if (e < 0)
            return e;
        left -= (int)take;
    }
    struct vmio_cpuset far = *chosen;
    vmio_cpuset_andnot(&far, &req->near);
    if (!vmio_cpuset_empty(&far)) {
        char l[256];
        vmio_cpuset_format(&far, l, sizeof l);
        warn(c, "group needs %u CPUs, %u free CPUs are local to the PCI device: %u placed "
             "further away (CPUs %s)%s", want, local, vmio_cpuset_count(&far), l,
             local >= want ? ", to keep each member on one socket" : "");
    }
    return 0;
}

int vmio_place(const char *api, const struct vmio_place_request *req,
               struct vmio_place_result *out)
{
    VMIO_CHECK_ARG(api, req != NULL && out != NULL, EINVAL);
    uint64_t total = 0;
    int r = check_request(api, req, &total);
    if (r < 0)
        return r;
    struct ctx *c = calloc(1, sizeof *c);
    if (!c)
        return vmio_set_error(api, ENOMEM, "out of memory");
    c->api = api;
    c->topo = req->topo;
    memset(c->idx, 0xff, sizeof c->idx);
    struct vmio_cpuset host;
    vmio_cpuset_zero(&host);
    for (size_t i = 0; i < c->topo->ncpus; i++) {
        int id = c->topo->cpus[i].id;
        if (id < 0 || id >= VMIO_CPUSET_MAX) {
            free(c);
            return vmio_set_error(api, EINVAL, "topology CPU %d out of range", id);
        }
        c->idx[id] = (short)i;
        vmio_cpuset_set(&host, (unsigned)id);
    }
    struct vmio_place_result res;
    memset(&res, 0, sizeof res);
    struct vmio_cpuset extra = req->housekeeping;
    vmio_cpuset_andnot(&extra, &host);
    if (!vmio_cpuset_empty(&extra)) {
        char l[64];
        vmio_cpuset_format(&extra, l, sizeof l);
        r = vmio_set_error(api, EINVAL, "housekeeping CPUs %s are not on this host", l);
        goto fail;
    }
    c->cand = host;
    vmio_cpuset_andnot(&c->cand, &req->housekeeping);
    vmio_cpuset_andnot(&c->cand, &req->taken);
    unsigned ncand = vmio_cpuset_count(&c->cand);
    struct vmio_cpuset hk = req->housekeeping, tk = req->taken;
    vmio_cpuset_and(&tk, &host);
    unsigned nhk = vmio_cpuset_count(&hk), ntk = vmio_cpuset_count(&tk);
    unsigned want = req->ncpus ? req->ncpus : (unsigned)total;
    if (req->pin == VMIO_PLACE_PIN_STRICT) {
        if (want < total) {
            r = vmio_set_error(api, ENOSPC,
                               "strict pinning needs one CPU per vCPU: the group has %llu "
                               "vCPUs but asks for %u CPUs",
                               (unsigned long long)total, want);
            goto fail;
        }
        if (ncand < total) {
            r = vmio_set_error(api, ENOSPC,
                               "strict pinning needs %llu CPUs (one per vCPU), only %u are "
                               "free (host %zu, housekeeping %u, taken by other groups %u)",
                               (unsigned long long)total, ncand, c->topo->ncpus, nhk, ntk);
            goto fail;
        }
    } else if (ncand == 0) {
        r = vmio_set_error(api, ENOSPC,
                           "no CPU is free for the group (host %zu, housekeeping %u, taken "
                           "by other groups %u)",
                           c->topo->ncpus, nhk, ntk);
        goto fail;
    }
    if (want > ncand) {
        if (req->pin == VMIO_PLACE_PIN_STRICT)
            warn(c, "group asks for %u CPUs, %u are free: it gets %u", want, ncand, ncand);
        else
            warn(c, "group wants %u CPUs, only %u are free: its vCPUs will share them", want,
                 ncand);
        want = ncand;
    }

    struct vmio_cpuset chosen;
    vmio_cpuset_zero(&chosen);
    if (req->locality == VMIO_GROUP_NEAR_PCI) {
        r = choose_pci(c, req, want, (unsigned)total, &chosen);
    } else {
        static const enum lvl by_socket[] = { LVL_SOCKET, LVL_NODE };
        static const enum lvl by_node[] = { LVL_NODE, LVL_SOCKET };
        const enum lvl *lv = req->locality == VMIO_GROUP_NEAR_NODE ? by_node : by_socket;
        struct spread sp;
        memset(&sp, 0, sizeof sp);
        r = 1;
        if (req->pin == VMIO_PLACE_PIN_STRICT && want == total)
            r = choose_whole_members(c, req, want, lv, &chosen, &sp);
        if (r == 1)
            r = choose(c, &c->cand, want, lv, 2, &chosen, &sp);
        if (r == 0 && sp.nused > 1 && req->locality != VMIO_GROUP_NEAR_ANY) {
            char l[256];
            qsort(sp.used, sp.nused, sizeof sp.used[0], cmp_int);
            list_ints(sp.used, sp.nused, l, sizeof l);
            warn(c, "group needs %u CPUs, largest %s has %u free: spread over %ss %s", want,
                 lvl_name(lv[0]), sp.largest, lvl_name(lv[0]), l);
        }
    }
    if (r < 0) {
        r = vmio_set_error(api, -r, "out of memory");
        goto fail;
    }
    res.cpus = chosen;
    for (int id = vmio_cpuset_next(&chosen, 0); id >= 0;
         id = vmio_cpuset_next(&chosen, (unsigned)id + 1))
        vmio_cpuset_set(&res.nodes, (unsigned)cpu_of(c, id)->node);
    res.emulator = vmio_cpuset_empty(&req->housekeeping) ? chosen : req->housekeeping;

    /* Memory: warn when the chosen nodes are known to be too small. */
    uint64_t need = 0, have = 0;
    int known = 1;
    for (size_t m = 0; m < req->nmembers; m++)
        need += req->members[m].mem_bytes;
    for (int n = vmio_cpuset_next(&res.nodes, 0); n >= 0;
         n = vmio_cpuset_next(&res.nodes, (unsigned)n + 1)) {
        uint64_t b = req->topo->node_mem ? req->topo->node_mem[n] : 0;
        known = known && b;
        have += b;
    }
    if (known && need > have) {
        char l[256];
        vmio_cpuset_format(&res.nodes, l, sizeof l);
        warn(c, "group needs %llu MiB of memory, its node(s) %s have %llu MiB",
             (unsigned long long)(need >> 20), l, (unsigned long long)(have >> 20));
    }

    res.nmembers = req->nmembers;
    res.vcpu = calloc(req->nmembers ? req->nmembers : 1, sizeof *res.vcpu);
    if (!res.vcpu) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t m = 0; m < req->nmembers; m++) {
        res.vcpu[m] = calloc(req->members[m].nvcpus, sizeof **res.vcpu);
        if (!res.vcpu[m]) {
            r = vmio_set_error(api, ENOMEM, "out of memory");
            goto fail;
        }
        if (req->pin != VMIO_PLACE_PIN_STRICT)
            for (unsigned v = 0; v < req->members[m].nvcpus; v++)
                res.vcpu[m][v] = chosen;
    }
    if (req->pin == VMIO_PLACE_PIN_STRICT && (r = assign_strict(c, req, &chosen, &res)) < 0) {
        r = vmio_set_error(api, -r, "out of memory");
        goto fail;
    }
    if (c->oom) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto fail;
    }
    res.warnings = c->warnings;
    res.nwarnings = c->nwarnings;
    free(c);
    *out = res;
    return 0;
fail:
    for (size_t i = 0; i < c->nwarnings; i++)
        free(c->warnings[i]);
    free(c->warnings);
    free(c);
    vmio_place_result_free(&res);
    return r;
}
