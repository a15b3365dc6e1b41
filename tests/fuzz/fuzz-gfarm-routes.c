/* Fuzz target for the routes table of the gfarm:// backend
 * (libvmio/storage/gfarm-route.c), a file an administrator writes. The
 * input is parsed as a routes file; a table that parsed is asked for a
 * vmiod for a few fixed paths and replica host lists (one of them holds
 * the local host, which gfroute_pick prefers). Checked contracts:
 *  - a failed parse: -EINVAL/-E2BIG/-ENOMEM with the "gfarm: " prefix and
 *    no table;
 *  - a pick: 0 with a vmio:// URI ending with the path below the route's
 *    directory and one of the given hosts, or 1 with both outputs NULL. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "storage/gfarm-route.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {
    "/images/vm/disk.img", "/images", "/images2/x", "/data/a/b.raw", "/x", "/", "",
    "rel/x",
};

/* The uri is some route's URI followed by a part of path strictly below
 * a directory: a suffix of path that starts with '/' and is not "/". */
static int ends_with_rel(const char *uri, const char *path)
{
    size_t ul = strlen(uri);
    for (const char *s = path; *s; s++) {
        size_t sl = strlen(s);
        if (*s == '/' && s[1] && sl < ul && strcmp(uri + ul - sl, s) == 0)
            return 1;
    }
    return 0;
}

static void pick(const struct gfroute_table *t, const char *path, const char *const *hosts,
                 int nhosts)
{
    char *uri = (char *)1, *host = (char *)1;
    int r = gfroute_pick(t, path, hosts, nhosts, &uri, &host);
    if (r < 0) {
        CHECK(r == -ENOMEM && uri == NULL && host == NULL);
        return;
    }
    if (r == 1) {
        CHECK(uri == NULL && host == NULL);
        return;
    }
    CHECK(r == 0 && uri != NULL && host != NULL);
    CHECK(strncmp(uri, "vmio://", 7) == 0);
    CHECK(strchr(uri, '?') == NULL);
    CHECK(path[0] == '/');
    CHECK(ends_with_rel(uri, path));
    int found = 0;
    for (int i = 0; i < nhosts; i++)
        found |= strcmp(host, hosts[i]) == 0;
    CHECK(found);
    free(uri);
    free(host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    /* Exactly the input, not NUL-terminated. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    vmio_clear_error();

    struct gfroute_table *t = (struct gfroute_table *)1;
    int r = gfroute_parse(text, size, "fuzz", &t);
    free(text);
    if (r < 0) {
        CHECK(r == -EINVAL || r == -E2BIG || r == -ENOMEM);
        CHECK(vmio_errno() == -r);
        CHECK(strncmp(vmio_errmsg(), "gfarm: ", 7) == 0);
        CHECK(t == NULL);
        return 0;
    }
    CHECK(r == 0 && t != NULL);

    char self[256];
    if (gethostname(self, sizeof self) != 0)
        snprintf(self, sizeof self, "localhost");
    self[sizeof self - 1] = 0;
    const char *h1[] = { "io1.example", "IO2.example", "io3" };
    const char *h2[] = { "io3", self, "io1.example" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        pick(t, paths[i], h1, 3);
        pick(t, paths[i], h2, 3);
        pick(t, paths[i], h1, 0);
    }
    gfroute_free(t);
    return 0;
}
