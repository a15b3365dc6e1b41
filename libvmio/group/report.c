/* What vmio_group_apply() did or would do: the list of changes, the
 * warnings and the placement text (struct vmio_group_report). Building a
 * report never fails loudly: running out of memory marks it failed and
 * apply returns -ENOMEM. Identical warnings are kept once, so a backend
 * can warn about a driver's limit for every VM without flooding. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/state.h"

struct vmio_group_report {
    struct vmio_group_change *changes;
    size_t nchanges, cchanges;
    char **warnings;
    size_t nwarnings, cwarnings;
    char *cpus;
    int oom;
};

struct vmio_group_report *vmio_group_report_new(void)
{
    return calloc(1, sizeof(struct vmio_group_report));
}

static char *dup_or_empty(const char *s, int *oom)
{
    char *d = strdup(s ? s : "");
    if (!d)
        *oom = 1;
    return d;
}

void vmio_group_report_add(struct vmio_group_report *r, const char *vm, const char *what,
                           const char *before, const char *after)
{
    if (!r || r->oom)
        return;
    if (r->nchanges == r->cchanges) {
        size_t n = r->cchanges ? r->cchanges * 2 : 16;
        struct vmio_group_change *c = realloc(r->changes, n * sizeof *c);
        if (!c) {
            r->oom = 1;
            return;
        }
        r->changes = c;
        r->cchanges = n;
    }
    struct vmio_group_change *c = &r->changes[r->nchanges];
    c->vm = vm ? dup_or_empty(vm, &r->oom) : NULL;
    c->what = dup_or_empty(what, &r->oom);
    c->before = dup_or_empty(before, &r->oom);
    c->after = dup_or_empty(after, &r->oom);
    r->nchanges++; /* freed with the report even when a copy failed */
}

void vmio_group_report_warn(struct vmio_group_report *r, const char *fmt, ...)
{
    if (!r || r->oom)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < r->nwarnings; i++)
        if (strcmp(r->warnings[i], buf) == 0)
            return;
    if (r->nwarnings == r->cwarnings) {
        size_t n = r->cwarnings ? r->cwarnings * 2 : 8;
        char **w = realloc(r->warnings, n * sizeof *w);
        if (!w) {
            r->oom = 1;
            return;
        }
        r->warnings = w;
        r->cwarnings = n;
    }
    char *d = strdup(buf);
    if (!d) {
        r->oom = 1;
        return;
    }
    r->warnings[r->nwarnings++] = d;
}

void vmio_group_report_set_cpus(struct vmio_group_report *r, const char *text)
{
    if (!r)
        return;
    free(r->cpus);
    r->cpus = NULL;
    if (text && !(r->cpus = strdup(text)))
        r->oom = 1;
}

int vmio_group_report_failed(const struct vmio_group_report *r)
{
    return r && r->oom;
}

VMIO_API size_t vmio_group_report_count(const vmio_group_report *r)
{
    return r ? r->nchanges : 0;
}

VMIO_API const struct vmio_group_change *vmio_group_report_change(const vmio_group_report *r,
                                                                  size_t i)
{
    return r && i < r->nchanges ? &r->changes[i] : NULL;
}

VMIO_API size_t vmio_group_report_warning_count(const vmio_group_report *r)
{
    return r ? r->nwarnings : 0;
}

VMIO_API const char *vmio_group_report_warning(const vmio_group_report *r, size_t i)
{
    return r && i < r->nwarnings ? r->warnings[i] : NULL;
}

VMIO_API const char *vmio_group_report_cpus(const vmio_group_report *r)
{
    return r ? r->cpus : NULL;
}

VMIO_API void vmio_group_report_free(vmio_group_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nchanges; i++) {
        free((char *)r->changes[i].vm);
        free((char *)r->changes[i].what);
        free((char *)r->changes[i].before);
        free((char *)r->changes[i].after);
    }
    free(r->changes);
    for (size_t i = 0; i < r->nwarnings; i++)
        free(r->warnings[i]);
    free(r->warnings);
    free(r->cpus);
    free(r);
}
