/* CPU and NUMA-node bitmaps for VM groups (group/cpuset.h): set algebra,
 * the Linux cpulist text form ("0-3,8") and libvirt/Xen byte maps. Pure;
 * parse errors are recorded under "vmio_cpuset_parse" so callers can
 * re-prefix them with vmio_error_reprefix(). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "group/cpuset.h"

#define PARSE_API "vmio_cpuset_parse"

void vmio_cpuset_zero(struct vmio_cpuset *s)
{
    memset(s, 0, sizeof *s);
}

void vmio_cpuset_set(struct vmio_cpuset *s, unsigned cpu)
{
    if (cpu < VMIO_CPUSET_MAX)
        s->w[cpu / 64] |= UINT64_C(1) << (cpu % 64);
}

void vmio_cpuset_clear(struct vmio_cpuset *s, unsigned cpu)
{
    if (cpu < VMIO_CPUSET_MAX)
        s->w[cpu / 64] &= ~(UINT64_C(1) << (cpu % 64));
}

int vmio_cpuset_test(const struct vmio_cpuset *s, unsigned cpu)
{
    if (cpu >= VMIO_CPUSET_MAX)
        return 0;
    return (s->w[cpu / 64] >> (cpu % 64)) & 1;
}

unsigned vmio_cpuset_count(const struct vmio_cpuset *s)
{
    unsigned n = 0;
    for (size_t i = 0; i < VMIO_CPUSET_WORDS; i++)
        n += (unsigned)__builtin_popcountll(s->w[i]);
    return n;
}

int vmio_cpuset_empty(const struct vmio_cpuset *s)
{
    for (size_t i = 0; i < VMIO_CPUSET_WORDS; i++)
        if (s->w[i])
            return 0;
    return 1;
}

int vmio_cpuset_equal(const struct vmio_cpuset *a, const struct vmio_cpuset *b)
{
    return memcmp(a->w, b->w, sizeof a->w) == 0;
}

int vmio_cpuset_next(const struct vmio_cpuset *s, unsigned from)
{
    if (from >= VMIO_CPUSET_MAX)
        return -1;
    size_t i = from / 64;
    uint64_t w = s->w[i] & (~UINT64_C(0) << (from % 64));
    for (;;) {
        if (w)
            return (int)(i * 64 + (size_t)__builtin_ctzll(w));
        if (++i == VMIO_CPUSET_WORDS)
            return -1;
        w = s->w[i];
    }
}

void vmio_cpuset_or(struct vmio_cpuset *d, const struct vmio_cpuset *a)
{
    for (size_t i = 0; i < VMIO_CPUSET_WORDS; i++)
        d->w[i] |= a->w[i];
}

void vmio_cpuset_and(struct vmio_cpuset *d, const struct vmio_cpuset *a)
{
    for (size_t i = 0; i < VMIO_CPUSET_WORDS; i++)
        d->w[i] &= a->w[i];
}

void vmio_cpuset_andnot(struct vmio_cpuset *d, const struct vmio_cpuset *a)
{
    for (size_t i = 0; i < VMIO_CPUSET_WORDS; i++)
        d->w[i] &= ~a->w[i];
}

/* A decimal CPU number below VMIO_CPUSET_MAX at *p; advances *p. */
static int parse_num(const char **p, unsigned *out)
{
    const char *s = *p;
    unsigned v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (unsigned)(*s - '0');
        if (v >= VMIO_CPUSET_MAX)
            return -2;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

/* Surrounding white space is ignored (sysfs files end in a newline);
 * inside the list none is allowed. Stride ("0-7:2") and exclusion ("^3")
 * forms are not accepted. */
int vmio_cpuset_parse(const char *text, struct vmio_cpuset *s)
{
    if (!text || !s)
        return vmio_set_error(PARSE_API, EINVAL, "no CPU list");
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    const char *end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    struct vmio_cpuset tmp;
    vmio_cpuset_zero(&tmp);
    while (p < end) {
        unsigned a, b;
        int r = parse_num(&p, &a);
        if (r == 0 && p < end && *p == '-') {
            p++;
            r = parse_num(&p, &b);
        } else {
            b = a;
        }
        if (r == -2 || (r == 0 && p > end))
            return vmio_set_error(PARSE_API, EINVAL,
                                  "bad CPU list '%.64s': CPU numbers must be below %d", text,
                                  VMIO_CPUSET_MAX);
        if (r < 0 || p > end)
            return vmio_set_error(PARSE_API, EINVAL,
                                  "bad CPU list '%.64s': expected a number at offset %zu", text,
                                  (size_t)(p - text));
        if (b < a)
            return vmio_set_error(PARSE_API, EINVAL,
                                  "bad CPU list '%.64s': range %u-%u goes backwards", text, a, b);
        for (unsigned c = a; c <= b; c++)
            vmio_cpuset_set(&tmp, c);
        if (p == end)
            break;
        if (*p != ',' || p + 1 == end)
            return vmio_set_error(PARSE_API, EINVAL,
                                  "bad CPU list '%.64s': unexpected '%c' at offset %zu", text,
                                  isprint((unsigned char)*p) ? *p : '?', (size_t)(p - text));
        p++;
    }
    *s = tmp;
    return 0;
}

int vmio_cpuset_format(const struct vmio_cpuset *s, char *buf, size_t len)
{
    size_t n = 0;
    int first = 1;
    if (len)
        buf[0] = '\0';
    for (int c = vmio_cpuset_next(s, 0); c >= 0;) {
        int e = c;
        while (e + 1 < VMIO_CPUSET_MAX && vmio_cpuset_test(s, (unsigned)e + 1))
            e++;
        char item[24];
        int k = e == c ? snprintf(item, sizeof item, "%s%d", first ? "" : ",", c)
                       : snprintf(item, sizeof item, "%s%d-%d", first ? "" : ",", c, e);
        for (int i = 0; i < k; i++, n++)
            if (n + 1 < len) {
                buf[n] = item[i];
                buf[n + 1] = '\0';
            }
        first = 0;
        c = e + 1 < VMIO_CPUSET_MAX ? vmio_cpuset_next(s, (unsigned)e + 1) : -1;
    }
    return (int)n;
}

void vmio_cpuset_from_map(struct vmio_cpuset *s, const unsigned char *map, size_t maplen)
{
    vmio_cpuset_zero(s);
    for (size_t i = 0; i < maplen && i < VMIO_CPUSET_MAX / 8; i++)
        for (unsigned j = 0; j < 8; j++)
            if (map[i] & (1u << j))
                vmio_cpuset_set(s, (unsigned)(i * 8 + j));
}

void vmio_cpuset_to_map(const struct vmio_cpuset *s, unsigned char *map, size_t maplen)
{
    memset(map, 0, maplen);
    for (size_t i = 0; i < maplen && i < VMIO_CPUSET_MAX / 8; i++)
        for (unsigned j = 0; j < 8; j++)
            if (vmio_cpuset_test(s, (unsigned)(i * 8 + j)))
                map[i] |= (unsigned char)(1u << j);
}
