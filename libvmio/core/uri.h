/* URI parsing for every backend: file paths, file://, vmio://, gfarm://. */
#ifndef VMIO_CORE_URI_H
#define VMIO_CORE_URI_H

#include <stddef.h>
#include <stdint.h>

struct vmio_uri_opt {
    char *key;
    char *value;
};

struct vmio_uri {
    char *scheme;        /* "file", "vmio", "gfarm", ... (lower case) */
    char *host;          /* NULL when the URI has no authority */
    uint16_t port;       /* 0 when absent */
    char *path;          /* percent-decoded; never NULL after a parse */
    struct vmio_uri_opt *opts;
    size_t nopts;
};

/* Parse s. A string without "scheme://" is a local file path. On failure
 * records an error under api and leaves *u cleared. */
int vmio_uri_parse(const char *api, const char *s, struct vmio_uri *u);
void vmio_uri_clear(struct vmio_uri *u);
/* Value of query option key, or NULL. */
const char *vmio_uri_get(const struct vmio_uri *u, const char *key);
/* Fails with -EINVAL naming the first option not in allowed (NULL-ended). */
int vmio_uri_check_opts(const char *api, const struct vmio_uri *u, const char *const *allowed);

#endif
