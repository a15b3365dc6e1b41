/* Fuzz target for the URI parser (libvmio/core/uri.c), which sees every
 * string a user or a configuration file hands to vmio_open(). The input,
 * cut at its first NUL, is parsed; the contract is checked: a failure is
 * -EINVAL/-ENOMEM with the caller's prefix and a cleared result; a
 * success has a lower-case scheme, decoded fields without control bytes,
 * a plain path taken literally, and option lookups that agree. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/uri.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int no_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static void check_cleared(const struct vmio_uri *u)
{
    CHECK(u->scheme == NULL && u->host == NULL && u->path == NULL && u->opts == NULL);
    CHECK(u->nopts == 0 && u->port == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    vmio_clear_error();

    struct vmio_uri u;
    memset(&u, 0xa5, sizeof u);
    int r = vmio_uri_parse(API, s, &u);
    if (r < 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        CHECK(vmio_errno() == -r);
        CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
        check_cleared(&u);
        free(s);
        return 0;
    }
    CHECK(r == 0);
    CHECK(u.scheme != NULL && u.path != NULL);
    CHECK(u.scheme[0] != '\0');
    for (const char *c = u.scheme; *c; c++)
        CHECK(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '+' ||
              *c == '-' || *c == '.');
    CHECK(no_control(u.path));
    if (strstr(s, "://") == NULL) {
        /* Without a scheme the whole string is the path, verbatim. */
        CHECK(strcmp(u.scheme, "file") == 0 && strcmp(u.path, s) == 0);
        CHECK(u.host == NULL && u.port == 0 && u.nopts == 0);
    }
    if (u.host) {
        CHECK(u.host[0] != '\0');
        CHECK(no_control(u.host));
        CHECK(strchr(u.host, '@') == NULL && strchr(u.host, '/') == NULL);
    }
    CHECK((u.nopts == 0) == (u.opts == NULL));
    for (size_t i = 0; i < u.nopts; i++) {
        CHECK(u.opts[i].key && u.opts[i].value && u.opts[i].key[0]);
        CHECK(no_control(u.opts[i].key) && no_control(u.opts[i].value));
        /* Lookup finds the last option with that key. */
        const char *v = vmio_uri_get(&u, u.opts[i].key);
        CHECK(v != NULL);
        size_t last = i;
        for (size_t j = i + 1; j < u.nopts; j++)
            if (strcmp(u.opts[j].key, u.opts[i].key) == 0)
                last = j;
        CHECK(v == u.opts[last].value);
    }
    static const char *const none[] = { NULL };
    r = vmio_uri_check_opts(API, &u, none);
    CHECK(u.nopts == 0 ? r == 0 : r == -EINVAL);
    if (u.nopts) {
        const char *allowed[2] = { u.opts[0].key, NULL };
        r = vmio_uri_check_opts(API, &u, allowed);
        int all_same = 1;
        for (size_t i = 1; i < u.nopts; i++)
            if (strcmp(u.opts[i].key, u.opts[0].key) != 0)
                all_same = 0;
        CHECK(all_same ? r == 0 : r == -EINVAL);
    }
    vmio_uri_clear(&u);
    check_cleared(&u);
    free(s);
    return 0;
}
