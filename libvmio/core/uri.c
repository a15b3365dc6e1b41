/* URI parsing: scheme://[user@]host[:port]/path?k=v&k=v, IPv6 in brackets,
 * percent-decoding, strict rejection of anything ambiguous. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/uri.h"

void vmio_uri_clear(struct vmio_uri *u)
{
    free(u->scheme);
    free(u->host);
    free(u->path);
    for (size_t i = 0; i < u->nopts; i++) {
        free(u->opts[i].key);
        free(u->opts[i].value);
    }
    free(u->opts);
    memset(u, 0, sizeof *u);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode [s, s+n) into a new string; rejects bad escapes and NUL/control
 * bytes (a path with a NUL would be silently cut by the kernel). */
static int decode(const char *api, const char *s, size_t n, char **out)
{
    char *d = malloc(n + 1), *p = d;
    if (!d)
        return vmio_set_error(api, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n) {
                free(d);
                return vmio_set_error(api, EINVAL, "truncated %%-escape in URI");
            }
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) {
                free(d);
                return vmio_set_error(api, EINVAL, "bad %%-escape in URI");
            }
            c = (unsigned char)(h * 16 + l);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            free(d);
            return vmio_set_error(api, EINVAL, "control character in URI");
        }
        *p++ = (char)c;
    }
    *p = '\0';
    *out = d;
    return 0;
}

static int parse_query(const char *api, const char *q, struct vmio_uri *u)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            if (!eq)
                return vmio_set_error(api, EINVAL, "URI option '%.*s' has no value",
                                      (int)len, q);
            struct vmio_uri_opt *o = realloc(u->opts, (u->nopts + 1) * sizeof *o);
            if (!o)
                return vmio_set_error(api, ENOMEM, "out of memory");
            u->opts = o;
            o = &u->opts[u->nopts];
            o->key = o->value = NULL;
            int r = decode(api, q, (size_t)(eq - q), &o->key);
            if (r < 0)
                return r;
            r = decode(api, eq + 1, len - (size_t)(eq - q) - 1, &o->value);
            if (r < 0) {
                free(o->key);
                return r;
            }
            u->nopts++;
            if (o->key[0] == '\0')
                return vmio_set_error(api, EINVAL, "URI option with empty name");
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

static int parse_port(const char *api, const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5)
        return vmio_set_error(api, EINVAL, "bad port in URI");
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return vmio_set_error(api, EINVAL, "bad port '%.*s' in URI", (int)n, s);
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return vmio_set_error(api, EINVAL, "port %u out of range", v);
    *port = (uint16_t)v;
    return 0;
}

static int parse_authority(const char *api, const char *a, size_t n, struct vmio_uri *u)
{
    const char *at = memchr(a, '@', n);
    if (at)
        return vmio_set_error(api, EINVAL,
                              "user names in URIs are not supported (use secret-file=)");
    if (n == 0)
        return 0;
    const char *host = a, *port = NULL;
    size_t hlen = n;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', n);
        if (!rb)
            return vmio_set_error(api, EINVAL, "unterminated '[' in URI host");
        host = a + 1;
        hlen = (size_t)(rb - a - 1);
        if (rb + 1 < a + n) {
            if (rb[1] != ':')
                return vmio_set_error(api, EINVAL, "junk after ']' in URI host");
            port = rb + 2;
        }
        if (hlen == 0)
            return vmio_set_error(api, EINVAL, "empty IPv6 address in URI");
    } else {
        const char *colon = memchr(a, ':', n);
        if (colon) {
            hlen = (size_t)(colon - a);
            port = colon + 1;
        }
        if (hlen == 0)
            return vmio_set_error(api, EINVAL, "empty host in URI");
    }
    if (port) {
        int r = parse_port(api, port, (size_t)(a + n - port), &u->port);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '%'))
            return vmio_set_error(api, EINVAL, "invalid character in URI host");
    }
    u->host = strndup(host, hlen);
    if (!u->host)
        return vmio_set_error(api, ENOMEM, "out of memory");
    return 0;
}

int vmio_uri_parse(const char *api, const char *s, struct vmio_uri *u)
{
    int r;
    memset(u, 0, sizeof *u);
    if (!s || !*s)
        return vmio_set_error(api, EINVAL, "empty URI");
    const char *sep = strstr(s, "://");
    const char *p;
    /* A scheme is letters, digits, + - . and starts with a letter. */
    int has_scheme = sep != NULL && sep > s && isalpha((unsigned char)s[0]);
    for (const char *c = s; has_scheme && c < sep; c++)
        if (!(isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.'))
            has_scheme = 0;
    if (!has_scheme) {
        /* Plain local path: taken literally, no decoding, no query. */
        for (const char *c = s; *c; c++)
            if ((unsigned char)*c < 0x20)
                return vmio_set_error(api, EINVAL, "control character in path");
        u->scheme = strdup("file");
        u->path = strdup(s);
        if (!u->scheme || !u->path) {
            vmio_uri_clear(u);
            return vmio_set_error(api, ENOMEM, "out of memory");
        }
        return 0;
    }
    u->scheme = strndup(s, (size_t)(sep - s));
    if (!u->scheme) {
        r = vmio_set_error(api, ENOMEM, "out of memory");
        goto fail;
    }
    for (char *c = u->scheme; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    p = sep + 3;
    size_t alen = strcspn(p, "/?#");
    r = parse_authority(api, p, alen, u);
    if (r < 0)
        goto fail;
    p += alen;
    if (*p == '#') {
        r = vmio_set_error(api, EINVAL, "URI fragments are not supported");
        goto fail;
    }
    size_t plen = strcspn(p, "?#");
    r = decode(api, p, plen, &u->path);
    if (r < 0)
        goto fail;
    p += plen;
    if (*p == '?') {
        const char *hash = strchr(p, '#');
        if (hash) {
            r = vmio_set_error(api, EINVAL, "URI fragments are not supported");
            goto fail;
        }
        r = parse_query(api, p + 1, u);
        if (r < 0)
            goto fail;
    } else if (*p == '#') {
        r = vmio_set_error(api, EINVAL, "URI fragments are not supported");
        goto fail;
    }
    return 0;
fail:
    vmio_uri_clear(u);
    return r;
}

const char *vmio_uri_get(const struct vmio_uri *u, const char *key)
{
    for (size_t i = u->nopts; i-- > 0;)
        if (strcmp(u->opts[i].key, key) == 0)
            return u->opts[i].value;
    return NULL;
}

int vmio_uri_check_opts(const char *api, const struct vmio_uri *u, const char *const *allowed)
{
    for (size_t i = 0; i < u->nopts; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, u->opts[i].key) == 0)
                ok = 1;
        if (!ok)
            return vmio_set_error(api, EINVAL, "unknown URI option '%s' for %s://",
                                  u->opts[i].key, u->scheme);
    }
    return 0;
}
