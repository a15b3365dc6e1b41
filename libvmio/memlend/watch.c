/* The lender's memory watcher (see watch.h): /proc/meminfo and PSI
 * parsers, sampling, and the optional libvirt guests. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "memlend/watch.h"

struct vmio_ml_watch {
    char *meminfo_path;
    char *psi_path;             /* NULL: no PSI */
    struct vmio_ml_guests *guests;
};

/* Parse an unsigned decimal at *p (no sign, no overflow); advance *p. */
static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

int vmio_ml_parse_meminfo(const char *api, const char *text, uint64_t *total,
                          uint64_t *available)
{
    uint64_t t = 0, a = 0;
    int have_t = 0, have_a = 0;
    const char *line = text;
    unsigned lineno = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        lineno++;
        int is_t = len > 9 && strncmp(line, "MemTotal:", 9) == 0;
        int is_a = len > 13 && strncmp(line, "MemAvailable:", 13) == 0;
        if (is_t || is_a) {
            const char *p = line + (is_t ? 9 : 13);
            uint64_t kb;
            while (*p == ' ')
                p++;
            if (parse_u64(&p, &kb) < 0 || strncmp(p, " kB", 3) != 0 ||
                (size_t)(p + 3 - line) != len || kb > UINT64_MAX / 1024)
                return vmio_set_error(api, EINVAL, "meminfo line %u: malformed '%.*s'",
                                      lineno, (int)(len > 60 ? 60 : len), line);
            if ((is_t && have_t) || (is_a && have_a))
                return vmio_set_error(api, EINVAL, "meminfo line %u: %s repeated", lineno,
                                      is_t ? "MemTotal" : "MemAvailable");
            if (is_t) {
                t = kb * 1024;
                have_t = 1;
            } else {
                a = kb * 1024;
                have_a = 1;
            }
        }
        if (!end)
            break;
        line = end + 1;
    }
    if (!have_t || !have_a)
        return vmio_set_error(api, EINVAL, "meminfo: no %s line (kernel older than 3.14?)",
                              have_t ? "MemAvailable" : "MemTotal");
    if (a > t)
        return vmio_set_error(api, EINVAL,
                              "meminfo: MemAvailable %" PRIu64 " kB above MemTotal %" PRIu64
                              " kB", a / 1024, t / 1024);
    *total = t;
    *available = a;
    return 0;
}

/* "avg10=1.23 avg60=... avg300=... total=N" after "some " or "full ". */
static int parse_psi_line(const char *p, const char *end, uint32_t *avg10_x100,
                          uint64_t *total)
{
    static const char *const keys[] = {"avg10=", "avg60=", "avg300="};
    uint32_t v10 = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t kl = strlen(keys[k]);
        if ((size_t)(end - p) < kl || strncmp(p, keys[k], kl) != 0)
            return -1;
        p += kl;
        uint64_t ip, fp;
        if (parse_u64(&p, &ip) < 0 || *p != '.')
            return -1;
        p++;
        const char *f = p;
        if (parse_u64(&p, &fp) < 0 || p - f != 2 || ip > 100 || (ip == 100 && fp))
            return -1;
        if (k == 0)
            v10 = (uint32_t)(ip * 100 + fp);
        if (*p != ' ')
            return -1;
        p++;
    }
    if ((size_t)(end - p) < 6 || strncmp(p, "total=", 6) != 0)
        return -1;
    p += 6;
    uint64_t tot;
    if (parse_u64(&p, &tot) < 0 || p != end)
        return -1;
    *avg10_x100 = v10;
    *total = tot;
    return 0;
}

int vmio_ml_parse_psi(const char *api, const char *text, struct vmio_ml_mem_sample *s)
{
    int have_some = 0, have_full = 0;
    uint32_t some10 = 0, full10 = 0;
    uint64_t some_t = 0, full_t = 0;
    const char *line = text;
    unsigned lineno = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        lineno++;
        int r;
        if (strncmp(line, "some ", 5) == 0 && !have_some) {
            r = parse_psi_line(line + 5, end, &some10, &some_t);
            have_some = 1;
        } else if (strncmp(line, "full ", 5) == 0 && !have_full) {
            r = parse_psi_line(line + 5, end, &full10, &full_t);
            have_full = 1;
        } else {
            r = -1;
        }
        if (r < 0)
            return vmio_set_error(api, EINVAL, "memory pressure line %u: malformed '%.*s'",
                                  lineno, (int)(end - line > 80 ? 80 : end - line), line);
        if (!*end)
            break;
        line = end + 1;
    }
    if (!have_some)
        return vmio_set_error(api, EINVAL, "memory pressure: no 'some' line");
    s->psi_valid = 1;
    s->psi_some_avg10_x100 = some10;
    s->psi_some_total_us = some_t;
    s->psi_full_avg10_x100 = full10;
    s->psi_full_total_us = full_t;
    return 0;
}

/* Whole small file into buf (NUL terminated). -errno; an oversized file
 * gets its message here, under api. */
static int read_small(const char *api, const char *path, char *buf, size_t n)
{
    int r = vmio_read_small_file(path, buf, n);
    if (r == -EFBIG)
        return vmio_set_error(api, EFBIG, "%s: larger than %zu bytes", path, n - 1);
    return r;
}

int vmio_ml_watch_new(const char *api, const struct vmio_ml_watch_cfg *cfg,
                      struct vmio_ml_watch **out)
{
    struct vmio_ml_watch *w = calloc(1, sizeof *w);
    if (!w)
        return vmio_set_error(api, ENOMEM, "out of memory");
    const char *mi = cfg && cfg->meminfo_path ? cfg->meminfo_path : "/proc/meminfo";
    const char *psi = cfg && cfg->psi_path ? cfg->psi_path : "/proc/pressure/memory";
    w->meminfo_path = strdup(mi);
    w->psi_path = *psi ? strdup(psi) : NULL;
    if (!w->meminfo_path || (*psi && !w->psi_path)) {
        vmio_ml_watch_free(w);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    if (cfg && cfg->libvirt_uri) {
        int r = vmio_ml_guests_open(api, cfg->libvirt_uri, &w->guests);
        if (r < 0) {
            vmio_ml_watch_free(w);
            return r;
        }
    }
    /* One sample now, so a wrong path fails here and not later. */
    struct vmio_ml_mem_sample s;
    int r = vmio_ml_watch_sample(api, w, &s);
    if (r < 0) {
        vmio_ml_watch_free(w);
        return r;
    }
    *out = w;
    return 0;
}

int vmio_ml_watch_sample(const char *api, struct vmio_ml_watch *w, struct vmio_ml_mem_sample *s)
{
    char buf[16384];
    struct vmio_ml_mem_sample n;
    memset(&n, 0, sizeof n);
    n.t_ns = vmio_now_ns();
    int r = read_small(api, w->meminfo_path, buf, sizeof buf);
    if (r == -EFBIG)
        return r;
    if (r < 0)
        return vmio_set_error_errno(api, -r, "%s", w->meminfo_path);
    r = vmio_ml_parse_meminfo(api, buf, &n.mem_total, &n.mem_available);
    if (r < 0)
        return r;
    if (w->psi_path) {
        r = read_small(api, w->psi_path, buf, sizeof buf);
        if (r == 0) {
            r = vmio_ml_parse_psi(api, buf, &n);
            if (r < 0)
                return r;
        } else if (r != -ENOENT && r != -EOPNOTSUPP && r != -ENOTSUP) {
            /* PSI compiled out or disabled (psi=0) are fine; anything
             * else is a real failure. */
            return r == -EFBIG ? r : vmio_set_error_errno(api, -r, "%s", w->psi_path);
        }
    }
    if (w->guests) {
        r = vmio_ml_guests_sample(api, w->guests, &n.guests, &n.guests_swapping);
        if (r < 0)
            return r;
    }
    *s = n;
    return 0;
}

void vmio_ml_watch_free(struct vmio_ml_watch *w)
{
    if (!w)
        return;
    vmio_ml_guests_close(w->guests);
    free(w->meminfo_path);
    free(w->psi_path);
    free(w);
}
