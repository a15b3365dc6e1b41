/* Routes table parsing and vmiod selection; see gfarm-route.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/internal.h"
#include "storage/gfarm-route.h"

#define API "gfarm"
#define MAX_ROUTES 4096
#define MAX_FILE (1u << 20)

struct gfroute {
    char *host, *uri, *root;
};

struct gfroute_table {
    struct gfroute *r;
    size_t n;
};

void gfroute_free(struct gfroute_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->r[i].host);
        free(t->r[i].uri);
        free(t->r[i].root);
    }
    free(t->r);
    free(t);
}

static int printable_token(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* "HOST[:PORT]/EXPORT[/...]" after "vmio://": a host and an export are
 * both required (a bare "vmio://host/" would take the image's first
 * directory for the export). */
static int has_host_and_export(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash && slash != s && slash[1] != 0 && slash[1] != '/';
}

int gfroute_parse(const char *text, size_t len, const char *name, struct gfroute_table **out)
{
    *out = NULL;
    struct gfroute_table *t = calloc(1, sizeof *t);
    if (!t)
        return vmio_set_error(API, ENOMEM, "out of memory");
    int r = 0, lineno = 0;
    size_t pos = 0;
    while (pos < len && r == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        char *line = strndup(text + pos, ll);
        pos += ll + (nl ? 1 : 0);
        if (!line) {
            r = vmio_set_error(API, ENOMEM, "out of memory");
            break;
        }
        if (strlen(line) != ll) {
            r = vmio_set_error(API, EINVAL, "%s:%d: NUL byte in line", name, lineno);
            free(line);
            break;
        }
        char *save = NULL, *f[4];
        int nf = 0;
        for (char *tok = strtok_r(line, " \t\r", &save); tok && nf < 4;
             tok = strtok_r(NULL, " \t\r", &save))
            f[nf++] = tok;
        if (nf == 0 || f[0][0] == '#') {
            free(line);
            continue;
        }
        if (nf != 3) {
            r = vmio_set_error(API, EINVAL,
                               "%s:%d: expected 'GFSD-HOST vmio://HOST[:PORT]/EXPORT "
                               "GFARM-DIR'", name, lineno);
        } else if (strncmp(f[1], "vmio://", 7) != 0 || strchr(f[1], '?') ||
                   !has_host_and_export(f[1] + 7) || !printable_token(f[0]) ||
                   !printable_token(f[1])) {
            r = vmio_set_error(API, EINVAL, "%s:%d: '%s' is not a vmio://HOST[:PORT]/EXPORT "
                               "URI", name, lineno, f[1]);
        } else if (f[2][0] != '/' || strstr(f[2], "/../") || !printable_token(f[2])) {
            r = vmio_set_error(API, EINVAL, "%s:%d: '%s' is not an absolute Gfarm directory",
                               name, lineno, f[2]);
        } else if (t->n == MAX_ROUTES) {
            r = vmio_set_error(API, E2BIG, "%s: more than %d routes", name, MAX_ROUTES);
        } else {
            struct gfroute *nr = realloc(t->r, (t->n + 1) * sizeof *nr);
            if (!nr) {
                r = vmio_set_error(API, ENOMEM, "out of memory");
            } else {
                t->r = nr;
                struct gfroute *e = &t->r[t->n];
                e->host = strdup(f[0]);
                e->uri = strdup(f[1]);
                e->root = strdup(f[2]);
                t->n++;
                if (!e->host || !e->uri || !e->root)
                    r = vmio_set_error(API, ENOMEM, "out of memory");
                else {
                    /* Canonical forms: no trailing slashes. */
                    size_t k = strlen(e->root);
                    while (k > 1 && e->root[k - 1] == '/')
                        e->root[--k] = 0;
                    k = strlen(e->uri);
                    while (k > 7 && e->uri[k - 1] == '/')
                        e->uri[--k] = 0;
                }
            }
        }
        free(line);
    }
    if (r < 0) {
        gfroute_free(t);
        return r;
    }
    *out = t;
    return 0;
}

int gfroute_load(const char *path, struct gfroute_table **out)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return vmio_set_error_errno(API, errno, "cannot open routes file %s", path);
    char *buf = malloc(MAX_FILE + 1);
    if (!buf) {
        fclose(fp);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, MAX_FILE + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    int r;
    if (bad)
        r = vmio_set_error(API, EIO, "cannot read routes file %s", path);
    else if (n > MAX_FILE)
        r = vmio_set_error(API, EFBIG, "routes file %s is larger than 1 MiB", path);
    else
        r = gfroute_parse(buf, n, path, out);
    free(buf);
    return r;
}

/* Path relative to root, or NULL if path is not beneath root. */
static const char *rel_path(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1)
        return path[0] == '/' ? path : NULL;
    if (strncmp(path, root, n) != 0 || path[n] != '/')
        return NULL;
    return path + n;
}

static int pick_for_host(const struct gfroute_table *t, const char *path, const char *host,
                         char **uri, char **hostout)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct gfroute *e = &t->r[i];
        if (strcasecmp(e->host, host) != 0)
            continue;
        const char *rel = rel_path(path, e->root);
        if (!rel || rel[1] == 0)
            continue;
        size_t n = strlen(e->uri) + strlen(rel) + 1;
        *uri = malloc(n);
        *hostout = strdup(host);
        if (!*uri || !*hostout) {
            free(*uri);
            free(*hostout);
            *uri = *hostout = NULL;
            return vmio_set_error(API, ENOMEM, "out of memory");
        }
        snprintf(*uri, n, "%s%s", e->uri, rel);
        return 0;
    }
    return 1;
}

int gfroute_pick(const struct gfroute_table *t, const char *path, const char *const *hosts,
                 int nhosts, char **uri, char **host)
{
    *uri = *host = NULL;
    char self[256];
    if (gethostname(self, sizeof self) == 0) {
        self[sizeof self - 1] = 0;
        for (int i = 0; i < nhosts; i++)
            if (strcasecmp(hosts[i], self) == 0) {
                int r = pick_for_host(t, path, hosts[i], uri, host);
                if (r <= 0)
                    return r;
            }
    }
    for (int i = 0; i < nhosts; i++) {
        int r = pick_for_host(t, path, hosts[i], uri, host);
        if (r <= 0)
            return r;
    }
    return 1;
}
