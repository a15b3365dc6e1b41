/* The borrower's LVM driver (lvm.h): JSON reports parsed with json-c, lvm
 * commands spawned with argv and a timeout. */
#include "memlend/lvm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/internal.h"
#include "core/spawn.h"

static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s) {
        *out = 0;
        return 0;
    }
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

/* The array report[0].<kind> of an lvm JSON report. */
static int report_rows(const char *api, const char *json, const char *kind,
                       struct json_object **root, struct json_object **rows)
{
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return vmio_set_error(api, ENOMEM, "out of memory");
    *root = json_tokener_parse_ex(tok, json, (int)strlen(json));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!*root || jerr != json_tokener_success)
        return vmio_set_error(api, EINVAL, "lvm report: invalid JSON (%s)",
                              json_tokener_error_desc(jerr));
    struct json_object *rep, *first;
    if (!json_object_object_get_ex(*root, "report", &rep) ||
        !json_object_is_type(rep, json_type_array) || json_object_array_length(rep) < 1 ||
        !(first = json_object_array_get_idx(rep, 0)) ||
        !json_object_object_get_ex(first, kind, rows) ||
        !json_object_is_type(*rows, json_type_array)) {
        json_object_put(*root);
        *root = NULL;
        return vmio_set_error(api, EINVAL, "lvm report: no report[0].%s array", kind);
    }
    return 0;
}

/* A string field of a row; NULL when absent or not a string. */
static const char *field(struct json_object *row, const char *name)
{
    struct json_object *v;
    if (!json_object_object_get_ex(row, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

#define NEED(row, name, var)                                                   \
    const char *var = field(row, name);                                       \
    if (!var) {                                                                \
        rc = vmio_set_error(api, EINVAL, "lvm report: row %zu lacks \"%s\"", i, name); \
        goto out;                                                              \
    }

static void tags_apply(const char *tags, struct vmio_ml_pv *pv)
{
    const char *p = tags;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t ll = strlen(VMIO_ML_TAG_LEASE), nl = strlen(VMIO_ML_TAG_LENDER);
        char buf[128];
        if (len < sizeof buf) {
            memcpy(buf, p, len);
            buf[len] = 0;
            uint64_t id;
            if (len > ll && !strncmp(buf, VMIO_ML_TAG_LEASE, ll) && parse_u64(buf + ll, &id) == 0)
                pv->lease = id;
            else if (len > nl && !strncmp(buf, VMIO_ML_TAG_LENDER, nl))
                copy_str(pv->lender, sizeof pv->lender, buf + nl);
        }
        p += len;
        if (*p == ',')
            p++;
    }
}

int vmio_ml_lvm_parse_pvs(const char *api, const char *json, struct vmio_ml_pv **out, size_t *n)
{
    struct json_object *root, *rows;
    *out = NULL;
    *n = 0;
    int rc = report_rows(api, json, "pv", &root, &rows);
    if (rc < 0)
        return rc;
    size_t cnt = json_object_array_length(rows);
    struct vmio_ml_pv *pvs = calloc(cnt ? cnt : 1, sizeof *pvs);
    if (!pvs) {
        rc = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cnt; i++) {
        struct json_object *row = json_object_array_get_idx(rows, i);
        struct vmio_ml_pv *pv = &pvs[i];
        NEED(row, "pv_name", name);
        NEED(row, "vg_name", vg);
        NEED(row, "pv_uuid", uuid);
        NEED(row, "pv_size", size);
        NEED(row, "pv_free", fr);
        NEED(row, "pv_tags", tags);
        NEED(row, "pv_missing", missing);
        if (copy_str(pv->name, sizeof pv->name, name) || copy_str(pv->vg, sizeof pv->vg, vg) ||
            copy_str(pv->uuid, sizeof pv->uuid, uuid) || parse_u64(size, &pv->size) ||
            parse_u64(fr, &pv->free)) {
            rc = vmio_set_error(api, EINVAL, "lvm report: bad values in PV row %zu (%s)", i, name);
            goto out;
        }
        pv->missing = strcmp(missing, "missing") == 0;
        tags_apply(tags, pv);
    }
    *out = pvs;
    *n = cnt;
    pvs = NULL;
out:
    free(pvs);
    json_object_put(root);
    return rc;
}

/* "/dev/loop0:0-3" or "swap_rimage_0:0-3": the range after the last ':'. */
static int parse_range(const char *s, uint64_t *a, uint64_t *b)
{
    const char *c = strrchr(s, ':');
    if (!c)
        return -1;
    char buf[64];
    if (copy_str(buf, sizeof buf, c + 1))
        return -1;
    char *d = strchr(buf, '-');
    if (!d)
        return -1;
    *d = 0;
    return parse_u64(buf, a) || parse_u64(d + 1, b) || !*buf || !d[1] ? -1 : 0;
}

static int strip_brackets(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = 0;
        return 1;
    }
    return 0;
}

int vmio_ml_lvm_parse_lvs(const char *api, const char *json, struct vmio_ml_seg **out, size_t *n)
{
    struct json_object *root, *rows;
    *out = NULL;
    *n = 0;
    int rc = report_rows(api, json, "lv", &root, &rows);
    if (rc < 0)
        return rc;
    size_t cnt = json_object_array_length(rows), used = 0, cap = cnt * 2 + 1;
    struct vmio_ml_seg *segs = calloc(cap, sizeof *segs);
    if (!segs) {
        rc = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cnt; i++) {
        struct json_object *row = json_object_array_get_idx(rows, i);
        NEED(row, "vg_name", vg);
        NEED(row, "lv_name", lv);
        NEED(row, "lv_attr", attr);
        NEED(row, "segtype", segtype);
        NEED(row, "lv_size", lvsize);
        NEED(row, "seg_size", segsize);
        NEED(row, "devices", devices);
        NEED(row, "seg_pe_ranges", ranges);
        const char *sync = field(row, "sync_percent");
        struct vmio_ml_seg base;
        memset(&base, 0, sizeof base);
        if (copy_str(base.vg, sizeof base.vg, vg) || copy_str(base.lv, sizeof base.lv, lv) ||
            copy_str(base.attr, sizeof base.attr, attr) ||
            copy_str(base.segtype, sizeof base.segtype, segtype) ||
            parse_u64(lvsize, &base.lv_size) || parse_u64(segsize, &base.seg_size)) {
            rc = vmio_set_error(api, EINVAL, "lvm report: bad values in LV row %zu (%s)", i, lv);
            goto out;
        }
        base.hidden = strip_brackets(base.lv);
        if (sync && *sync) {
            char *end;
            base.sync_percent = strtod(sync, &end);
            base.sync_known = *end == 0;
        }
        /* devices "a(0),b(0)" and seg_pe_ranges "a:0-3 b:0-3", same order. */
        const char *d = devices, *r = ranges;
        if (!*d) {  /* no devices (e.g. a virtual segment): keep the row */
            if (used == cap)
                goto grow;
            segs[used++] = base;
            continue;
        }
        while (*d) {
            const char *de = strchr(d, ',');
            size_t dl = de ? (size_t)(de - d) : strlen(d);
            struct vmio_ml_seg s = base;
            if (dl >= sizeof s.dev)
                goto bad_dev;
            memcpy(s.dev, d, dl);
            s.dev[dl] = 0;
            char *paren = strrchr(s.dev, '(');
            if (!paren || s.dev[strlen(s.dev) - 1] != ')')
                goto bad_dev;
            *paren = 0;
            strip_brackets(s.dev);
            s.dev_is_lv = s.dev[0] != '/' && strcmp(s.dev, "unknown") != 0;
            if (strcmp(s.dev, "unknown") == 0)
                copy_str(s.dev, sizeof s.dev, "[unknown]");
            while (*r == ' ')
                r++;
            const char *re = strchr(r, ' ');
            size_t rl = re ? (size_t)(re - r) : strlen(r);
            char rb[320];
            if (rl == 0 || rl >= sizeof rb)
                goto bad_dev;
            memcpy(rb, r, rl);
            rb[rl] = 0;
            if (parse_range(rb, &s.pe_first, &s.pe_last))
                goto bad_dev;
            r += rl;
            if (used == cap)
                goto grow;
            segs[used++] = s;
            d += dl;
            if (*d == ',')
                d++;
        }
        continue;
    bad_dev:
        rc = vmio_set_error(api, EINVAL, "lvm report: cannot parse devices \"%s\" / \"%s\" of %s",
                            devices, ranges, lv);
        goto out;
    grow:
        rc = vmio_set_error(api, EINVAL, "lvm report: too many devices in LV %s", lv);
        goto out;
    }
    *out = segs;
    *n = used;
    segs = NULL;
out:
    free(segs);
    json_object_put(root);
    return rc;
}

int vmio_ml_lvm_parse_vgs(const char *api, const char *json, struct vmio_ml_vg **out, size_t *n)
{
    struct json_object *root, *rows;
    *out = NULL;
    *n = 0;
    int rc = report_rows(api, json, "vg", &root, &rows);
    if (rc < 0)
        return rc;
    size_t cnt = json_object_array_length(rows);
    struct vmio_ml_vg *vgs = calloc(cnt ? cnt : 1, sizeof *vgs);
    if (!vgs) {
        rc = vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cnt; i++) {
        struct json_object *row = json_object_array_get_idx(rows, i);
        NEED(row, "vg_name", name);
        NEED(row, "vg_extent_size", ext);
        NEED(row, "vg_size", size);
        NEED(row, "vg_free", fr);
        NEED(row, "vg_missing_pv_count", miss);
        if (copy_str(vgs[i].name, sizeof vgs[i].name, name) ||
            parse_u64(ext, &vgs[i].extent_size) || parse_u64(size, &vgs[i].size) ||
            parse_u64(fr, &vgs[i].free) || parse_u64(miss, &vgs[i].missing_pvs) ||
            vgs[i].extent_size == 0) {
            rc = vmio_set_error(api, EINVAL, "lvm report: bad values in VG row %zu (%s)", i, name);
            goto out;
        }
    }
    *out = vgs;
    *n = cnt;
    vgs = NULL;
out:
    free(vgs);
    json_object_put(root);
    return rc;
}

/* Walk vg/lv down to its PVs; cb(pv, extents on it, ctx). depth bounds
 * the recursion (raid image -> pvmove -> PV is the deepest in practice). */
typedef void (*leaf_fn)(const struct vmio_ml_seg *s, void *ctx);

static void walk(const struct vmio_ml_seg *segs, size_t n, const char *vg, const char *lv,
                 int depth, leaf_fn fn, void *ctx)
{
    if (depth > 8)
        return;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(segs[i].vg, vg) || strcmp(segs[i].lv, lv) || !segs[i].dev[0])
            continue;
        if (segs[i].dev_is_lv)
            walk(segs, n, vg, segs[i].dev, depth + 1, fn, ctx);
        else
            fn(&segs[i], ctx);
    }
}

struct pv_collect {
    char (*pvs)[256];
    size_t max;
    size_t count;
    char seen[64][256];
    size_t nseen;
};

static void collect_pv(const struct vmio_ml_seg *s, void *ctx)
{
    struct pv_collect *c = ctx;
    for (size_t i = 0; i < c->nseen; i++)
        if (!strcmp(c->seen[i], s->dev))
            return;
    if (c->nseen < VMIO_ARRAY_SIZE(c->seen))
        copy_str(c->seen[c->nseen++], 256, s->dev);
    if (c->count < c->max)
        copy_str(c->pvs[c->count], 256, s->dev);
    c->count++;
}

int vmio_ml_lvm_lv_pvs(const struct vmio_ml_seg *segs, size_t n, const char *vg, const char *lv,
                       char (*pvs)[256], size_t max)
{
    struct pv_collect *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->pvs = pvs;
    c->max = max;
    walk(segs, n, vg, lv, 0, collect_pv, c);
    int count = (int)c->count;
    free(c);
    return count;
}

struct bytes_on {
    const char *pv;
    uint64_t extents;
};

static void count_on(const struct vmio_ml_seg *s, void *ctx)
{
    struct bytes_on *b = ctx;
    if (!strcmp(s->dev, b->pv))
        b->extents += s->pe_last - s->pe_first + 1;
}

uint64_t vmio_ml_lvm_lv_bytes_on(const struct vmio_ml_seg *segs, size_t n, const char *vg,
                                 const char *lv, const char *pv, uint64_t extent_size)
{
    struct bytes_on b = {pv, 0};
    walk(segs, n, vg, lv, 0, count_on, &b);
    return b.extents * extent_size;
}

int vmio_ml_lvm_raid_images(const struct vmio_ml_seg *segs, size_t n, const char *vg,
                            const char *lv)
{
    int images = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(segs[i].vg, vg) && !strcmp(segs[i].lv, lv) &&
            !strcmp(segs[i].segtype, "raid1"))
            images++;
    return images;
}

/* ---- running lvm --------------------------------------------------------- */

static int lvm_report(const char *api, const char *const argv[], uint32_t timeout_ms,
                      char **out)
{
    struct vmio_spawn_result r;
    int rc = vmio_spawn_check(api, argv, timeout_ms, &r);
    if (rc == 0) {
        *out = r.out;
        r.out = NULL;
    }
    vmio_spawn_result_free(&r);
    return rc;
}

int vmio_ml_lvm_pvs(const char *api, const char *vg, uint32_t timeout_ms,
                    struct vmio_ml_pv **out, size_t *n)
{
    const char *argv[] = {"lvm", "pvs", "--reportformat", "json", "--units", "b",
                          "--nosuffix", "-o",
                          "pv_name,vg_name,pv_uuid,pv_size,pv_free,pv_tags,pv_missing",
                          NULL};
    char *json = NULL;
    int rc = lvm_report(api, argv, timeout_ms, &json);
    if (rc < 0)
        return rc;
    rc = vmio_ml_lvm_parse_pvs(api, json, out, n);
    free(json);
    /* pvs takes PV names, not VGs: filter here. */
    if (rc == 0 && vg) {
        size_t k = 0;
        for (size_t i = 0; i < *n; i++)
            if (!strcmp((*out)[i].vg, vg))
                (*out)[k++] = (*out)[i];
        *n = k;
    }
    return rc;
}

int vmio_ml_lvm_lvs(const char *api, const char *vg, uint32_t timeout_ms,
                    struct vmio_ml_seg **out, size_t *n)
{
    const char *argv[] = {"lvm", "lvs", "-a", "--reportformat", "json", "--units", "b",
                          "--nosuffix", "-o",
                          "vg_name,lv_name,lv_attr,segtype,lv_size,seg_size,devices,"
                          "seg_pe_ranges,sync_percent",
                          vg, NULL};
    char *json = NULL;
    int rc = lvm_report(api, argv, timeout_ms, &json);
    if (rc < 0)
        return rc;
    rc = vmio_ml_lvm_parse_lvs(api, json, out, n);
    free(json);
    return rc;
}

int vmio_ml_lvm_vg(const char *api, const char *vg, uint32_t timeout_ms, struct vmio_ml_vg *out)
{
    const char *argv[] = {"lvm", "vgs", "--reportformat", "json", "--units", "b",
                          "--nosuffix", "-o",
                          "vg_name,vg_extent_size,vg_size,vg_free,vg_missing_pv_count",
                          vg, NULL};
    char *json = NULL;
    int rc = lvm_report(api, argv, timeout_ms, &json);
    if (rc < 0)
        return rc;
    struct vmio_ml_vg *vgs;
    size_t n;
    rc = vmio_ml_lvm_parse_vgs(api, json, &vgs, &n);
    free(json);
    if (rc < 0)
        return rc;
    if (n != 1) {
        free(vgs);
        return vmio_set_error(api, ENOENT, "lvm vgs %s: %zu rows", vg, n);
    }
    *out = vgs[0];
    free(vgs);
    return 0;
}

int vmio_ml_lvm_cmd(const char *api, uint32_t timeout_ms, const char *const args[])
{
    const char *argv[32];
    size_t k = 0;
    argv[k++] = "lvm";
    for (size_t j = 0; args[j]; j++) {
        if (k >= VMIO_ARRAY_SIZE(argv) - 1)
            return vmio_set_error(api, E2BIG, "lvm: too many arguments");
        argv[k++] = args[j];
    }
    argv[k] = NULL;
    return vmio_spawn_check(api, argv, timeout_ms, NULL);
}
