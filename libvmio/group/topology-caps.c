/* Host topology from libvirt's capabilities XML (virConnectGetCapabilities):
 * <capabilities><host><topology><cells><cell id='N'><memory unit='KiB'>
 * and <cpus><cpu id socket_id core_id siblings/>. The text comes from a
 * daemon, possibly remote, so parsing is strict: no network, no entity
 * expansion, bounded size, every number range-checked, duplicates refused.
 * libvirt's core_id is per socket; cores are renumbered host-wide here,
 * and sockets densely, in increasing order of their ids. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/internal.h"
#include "group/topology.h"

#define CAPS_MAX_BYTES (16u << 20)

static int is_elem(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is_elem(c, name))
            return c;
    return NULL;
}

/* A decimal number in [0, max] with nothing around it. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int int_attr(const char *api, xmlNode *n, const char *name, int max, int *out)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    uint64_t x;
    int r = parse_u64((const char *)v, (uint64_t)max, &x);
    if (r < 0) {
        r = vmio_set_error(api, EINVAL, "capabilities: <%s> line %ld: %s='%.32s' is not a number "
                           "in 0-%d", (const char *)n->name, xmlGetLineNo(n), name,
                           v ? (const char *)v : "(missing)", max);
        xmlFree(v);
        return r;
    }
    xmlFree(v);
    *out = (int)x;
    return 0;
}

static const struct {
    const char *name;
    uint64_t mult;
} units[] = {
    { "b", 1 },           { "bytes", 1 },
    { "KB", 1000 },       { "k", 1024 },          { "KiB", 1024 },
    { "MB", 1000000 },    { "M", 1 << 20 },       { "MiB", 1 << 20 },
    { "GB", 1000000000 }, { "G", 1 << 30 },       { "GiB", 1 << 30 },
    { "TB", 1000000000000ull }, { "T", 1ull << 40 }, { "TiB", 1ull << 40 },
};

static int memory_bytes(const char *api, xmlNode *m, uint64_t *out)
{
    xmlChar *unit = xmlGetProp(m, (const xmlChar *)"unit");
    uint64_t mult = 0;
    if (!unit) {
        mult = 1024; /* libvirt's default unit */
    } else {
        for (size_t i = 0; i < VMIO_ARRAY_SIZE(units); i++)
            if (strcmp((const char *)unit, units[i].name) == 0)
                mult = units[i].mult;
    }
    if (!mult) {
        int r = vmio_set_error(api, EINVAL, "capabilities: <memory> line %ld: unknown unit '%.16s'",
                               xmlGetLineNo(m), (const char *)unit);
        xmlFree(unit);
        return r;
    }
    xmlFree(unit);
    xmlChar *text = xmlNodeGetContent(m);
    uint64_t v;
    int ok = parse_u64((const char *)text, UINT64_MAX / mult, &v) == 0;
    xmlFree(text);
    if (!ok)
        return vmio_set_error(api, EINVAL, "capabilities: <memory> line %ld: bad amount",
                              xmlGetLineNo(m));
    *out = v * mult;
    return 0;
}

/* Raw ids as libvirt gives them, before renumbering. */
struct raw_cpu {
    int id, socket, core, node;
};

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_pair(const void *a, const void *b)
{
    const int *x = a, *y = b;
    if (x[0] != y[0])
        return (x[0] > y[0]) - (x[0] < y[0]);
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Index of key in the sorted, deduplicated array. */
static int rank(const int *sorted, size_t n, const int *key, size_t width)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = width == 1 ? cmp_int(&sorted[mid], key) : cmp_pair(&sorted[mid * 2], key);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static size_t dedup(int *a, size_t n, size_t width)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || memcmp(&a[(k - 1) * width], &a[i * width], width * sizeof(int)) != 0)
            memmove(&a[k++ * width], &a[i * width], width * sizeof(int));
    return k;
}

static int renumber(const char *api, const struct raw_cpu *raw, size_t n, int nnodes,
                    const uint64_t *mem, struct vmio_topo *t)
{
    int *socks = malloc(n * sizeof(int));
    int *cores = malloc(n * 2 * sizeof(int));
    struct vmio_topo res;
    memset(&res, 0, sizeof res);
    res.cpus = calloc(n, sizeof *res.cpus);
    res.node_mem = calloc((size_t)nnodes, sizeof *res.node_mem);
    int r = 0;
    if (!socks || !cores || !res.cpus || !res.node_mem) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        socks[i] = raw[i].socket;
        cores[2 * i] = raw[i].socket;
        cores[2 * i + 1] = raw[i].core;
    }
    qsort(socks, n, sizeof(int), cmp_int);
    qsort(cores, n, 2 * sizeof(int), cmp_pair);
    size_t nsock = dedup(socks, n, 1), ncore = dedup(cores, n, 2);
    for (size_t i = 0; i < n; i++) {
        int pair[2] = { raw[i].socket, raw[i].core };
        res.cpus[i].id = raw[i].id;
        res.cpus[i].node = raw[i].node;
        res.cpus[i].socket = rank(socks, nsock, &raw[i].socket, 1);
        res.cpus[i].core = rank(cores, ncore, pair, 2);
    }
    memcpy(res.node_mem, mem, (size_t)nnodes * sizeof *mem);
    res.ncpus = n;
    res.nnodes = nnodes;
    r = vmio_topo_finish(api, &res);
    if (r == 0) {
        *t = res;
        memset(&res, 0, sizeof res);
    }
out:
    free(socks);
    free(cores);
    vmio_topo_free(&res);
    return r;
}

static int parse_cpu(const char *api, xmlNode *c, int node, struct raw_cpu *out)
{
    int r;
    if ((r = int_attr(api, c, "id", VMIO_CPUSET_MAX - 1, &out->id)) < 0 ||
        (r = int_attr(api, c, "socket_id", 1 << 30, &out->socket)) < 0 ||
        (r = int_attr(api, c, "core_id", 1 << 30, &out->core)) < 0)
        return r;
    out->node = node;
    xmlChar *sib = xmlGetProp(c, (const xmlChar *)"siblings");
    if (sib) {
        struct vmio_cpuset s;
        r = vmio_cpuset_parse((const char *)sib, &s);
        xmlFree(sib);
        if (r < 0)
            return vmio_set_error(api, EINVAL, "capabilities: <cpu id='%d'>: bad siblings list",
                                  out->id);
        if (!vmio_cpuset_test(&s, (unsigned)out->id))
            return vmio_set_error(api, EINVAL,
                                  "capabilities: <cpu id='%d'>: siblings do not include it",
                                  out->id);
    }
    return 0;
}

static int parse_cells(const char *api, xmlNode *cells, struct vmio_topo *t)
{
    struct raw_cpu *raw = calloc(VMIO_CPUSET_MAX, sizeof *raw);
    uint64_t *mem = calloc(VMIO_CPUSET_MAX, sizeof *mem);
    struct vmio_cpuset seen_cell, seen_cpu;
    vmio_cpuset_zero(&seen_cell);
    vmio_cpuset_zero(&seen_cpu);
    size_t n = 0;
    int maxnode = -1, r = 0;
    if (!raw || !mem) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (xmlNode *cell = cells->children; cell; cell = cell->next) {
        if (!is_elem(cell, "cell"))
            continue;
        int id;
        if ((r = int_attr(api, cell, "id", VMIO_CPUSET_MAX - 1, &id)) < 0)
            goto out;
        if (vmio_cpuset_test(&seen_cell, (unsigned)id)) {
            r = vmio_set_error(api, EINVAL, "capabilities: cell %d is listed twice", id);
            goto out;
        }
        vmio_cpuset_set(&seen_cell, (unsigned)id);
        if (id > maxnode)
            maxnode = id;
        xmlNode *m = child(cell, "memory");
        if (m && (r = memory_bytes(api, m, &mem[id])) < 0)
            goto out;
        xmlNode *cpus = child(cell, "cpus");
        for (xmlNode *c = cpus ? cpus->children : NULL; c; c = c->next) {
            if (!is_elem(c, "cpu"))
                continue;
            if (n == VMIO_CPUSET_MAX) {
                r = vmio_set_error(api, EINVAL, "capabilities: more than %d CPUs",
                                   VMIO_CPUSET_MAX);
                goto out;
            }
            if ((r = parse_cpu(api, c, id, &raw[n])) < 0)
                goto out;
            if (vmio_cpuset_test(&seen_cpu, (unsigned)raw[n].id)) {
                r = vmio_set_error(api, EINVAL, "capabilities: CPU %d is listed twice",
                                   raw[n].id);
                goto out;
            }
            vmio_cpuset_set(&seen_cpu, (unsigned)raw[n].id);
            n++;
        }
    }
    if (maxnode < 0 || n == 0) {
        r = vmio_set_error(api, EINVAL, "capabilities: the host topology lists no %s",
                           maxnode < 0 ? "cell" : "CPU");
        goto out;
    }
    r = renumber(api, raw, n, maxnode + 1, mem, t);
out:
    free(raw);
    free(mem);
    return r;
}

int vmio_topo_from_caps_xml(const char *api, const char *caps_xml, struct vmio_topo *t)
{
    VMIO_CHECK_ARG(api, caps_xml != NULL && t != NULL, EINVAL);
    memset(t, 0, sizeof *t);
    size_t len = strnlen(caps_xml, CAPS_MAX_BYTES + 1);
    if (len > CAPS_MAX_BYTES)
        return vmio_set_error(api, EINVAL, "capabilities XML is larger than %u bytes",
                              CAPS_MAX_BYTES);
    /* No NOENT (entities stay unexpanded), no DTD loading, no network. */
    xmlDoc *doc = xmlReadMemory(caps_xml, (int)len, "capabilities.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return vmio_set_error(api, EINVAL, "capabilities XML is not well-formed");
    xmlNode *root = xmlDocGetRootElement(doc);
    int r;
    if (doc->intSubset || doc->extSubset) {
        /* libvirt never writes one; a DTD is how entity bombs get in. */
        r = vmio_set_error(api, EINVAL, "capabilities XML must not have a DOCTYPE");
    } else if (!root || !is_elem(root, "capabilities")) {
        r = vmio_set_error(api, EINVAL, "capabilities XML: root element is not <capabilities>");
    } else {
        xmlNode *cells = child(child(child(root, "host"), "topology"), "cells");
        if (!cells)
            r = vmio_set_error(api, EINVAL,
                               "capabilities XML has no <host><topology><cells> (libvirt "
                               "does not know this host's NUMA topology)");
        else {
            struct vmio_topo res;
            memset(&res, 0, sizeof res);
            r = parse_cells(api, cells, &res);
            if (r == 0)
                *t = res;
        }
    }
    xmlFreeDoc(doc);
    return r;
}
