/* Routes table of the gfarm:// backend (libvmio/storage/gfarm-route.c):
 * what the parser accepts and rejects (errors name file:line), and how
 * gfroute_pick chooses a vmiod among the replica hosts (case-insensitive
 * host match, paths strictly beneath the route's directory, the local
 * host first, then gfmd's order). */
#include <limits.h>

#include "test-common.h"

#include "storage/gfarm-route.h"

#define API "gfarm"
#define NAME "routes.conf"

static struct gfroute_table *parse_ok(const char *text)
{
    struct gfroute_table *t = (struct gfroute_table *)1;
    ck_assert_vmio_ok(gfroute_parse(text, strlen(text), NAME, &t));
    ck_assert_ptr_nonnull(t);
    return t;
}

/* The parser fails with EINVAL and a message naming NAME:line and needle. */
static void parse_bad(const char *text, size_t len, int line, const char *needle)
{
    struct gfroute_table *t = (struct gfroute_table *)1;
    char where[64];
    snprintf(where, sizeof where, NAME ":%d: ", line);
    ck_assert_vmio_err_msg(gfroute_parse(text, len, NAME, &t), EINVAL, API, where);
    ck_assert_msg(strstr(vmio_errmsg(), needle) != NULL, "message '%s' does not mention '%s'",
                  vmio_errmsg(), needle);
    ck_assert_ptr_null(t);
}

#define BAD_URI "is not a vmio://HOST[:PORT]/EXPORT URI"
#define BAD_DIR "is not an absolute Gfarm directory"
#define BAD_FIELDS "expected 'GFSD-HOST vmio://HOST[:PORT]/EXPORT GFARM-DIR'"

/* gfroute_pick must give want_uri via want_host (NULL: no route, 1). */
static void pick_is(const struct gfroute_table *t, const char *path,
                    const char *const *hosts, int nhosts, const char *want_uri,
                    const char *want_host)
{
    char *uri = (char *)1, *host = (char *)1;
    int r = gfroute_pick(t, path, hosts, nhosts, &uri, &host);
    if (!want_uri) {
        ck_assert_msg(r == 1, "%s: expected no route, got %d (%s via %s)", path, r,
                      r == 0 ? uri : "-", r == 0 ? host : "-");
        ck_assert_ptr_null(uri);
        ck_assert_ptr_null(host);
        return;
    }
    ck_assert_msg(r == 0, "%s: expected %s, got %d (%s)", path, want_uri, r, vmio_errmsg());
    ck_assert_str_eq(uri, want_uri);
    ck_assert_str_eq(host, want_host);
    free(uri);
    free(host);
}

static void pick1(const struct gfroute_table *t, const char *path, const char *h,
                  const char *want_uri)
{
    const char *hosts[] = { h };
    pick_is(t, path, hosts, 1, want_uri, h);
}

/* ---- parsing --------------------------------------------------------- */

START_TEST(test_parse_comments_blanks)
{
    static const char text[] =
        "# gfsd host     vmiod export URI                    Gfarm directory\n"
        "\n"
        "   \t  \n"
        "  # indented comment with vmio://x/y and four or more words\n"
        "#\n"
        "io1.example     vmio://io1.example:10810/images     /images\n"
        "\tio2.example\tvmio://10.0.0.2/data\t/data   \r\n"
        "io3.example vmio://[::1]:4000/e /  # a fourth field is not a comment\n";
    struct gfroute_table *t = (struct gfroute_table *)1;
    /* The last line has four fields. */
    ck_assert_vmio_err_msg(gfroute_parse(text, strlen(text), NAME, &t), EINVAL, API,
                           NAME ":8: ");
    ck_assert_ptr_null(t);

    /* Without it, and without a final newline. */
    char cut[sizeof text];
    int len = (int)(strstr(text, "io3.example") - text);
    snprintf(cut, sizeof cut, "%.*sio3.example vmio://[::1]:4000/e /", len, text);
    t = parse_ok(cut);
    pick1(t, "/images/a/b.img", "io1.example", "vmio://io1.example:10810/images/a/b.img");
    pick1(t, "/data/x", "io2.example", "vmio://10.0.0.2/data/x");
    pick1(t, "/x/y.raw", "io3.example", "vmio://[::1]:4000/e/x/y.raw");
    gfroute_free(t);

    /* Nothing but comments, and nothing at all: an empty table. */
    t = parse_ok("# only a comment\n\n");
    pick1(t, "/images/a", "io1.example", NULL);
    gfroute_free(t);
    t = parse_ok("");
    pick1(t, "/images/a", "io1.example", NULL);
    gfroute_free(t);
    gfroute_free(NULL);
}
END_TEST

START_TEST(test_parse_fields)
{
    static const char *const bad[] = {
        "io1",
        "io1 vmio://io1/images",
        "io1 vmio://io1/images /images extra",
        "io1 vmio://io1/images /images /more /fields",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_bad(bad[i], strlen(bad[i]), 1, BAD_FIELDS);

    /* The line number counts comments and blank lines. */
    static const char text[] =
        "# header\n"
        "io1 vmio://io1/images /images\n"
        "\n"
        "io2 vmio://io2/images\n"
        "io3 vmio://io3/images /images\n";
    parse_bad(text, strlen(text), 4, BAD_FIELDS);
}
END_TEST

START_TEST(test_parse_uri)
{
    static const char *const bad[] = {
        "h http://io1/images /images",
        "h VMIO://io1/images /images",
        "h vmio:/io1/images /images",
        "h io1/images /images",
        "h vmio://io1 /images",
        "h vmio://io1:10810 /images",
        "h vmio://io1/ /images",              /* no export */
        "h vmio://io1:10810/ /images",
        "h vmio://io1// /images",
        "h vmio://io1//images /images",       /* empty export */
        "h vmio:///images /images",           /* no host */
        "h vmio:// /images",
        "h vmio://io1/images? /images",
        "h vmio://io1/images?timeout=5 /images",
        "h vmio://io1/im?ages /images",
        "h vmio://io1/images\x7f /images",
        "h vmio://io1/imag\x01s /images",
        "h vmio://io1/im\xc3\xa9 /images",
        /* A gfsd host that is not printable is reported the same way. */
        "h\x01 vmio://io1/images /images",
        "h\xff vmio://io1/images /images",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_bad(bad[i], strlen(bad[i]), 1, BAD_URI);

    /* What is fine. */
    struct gfroute_table *t = parse_ok("h vmio://io1:10810/images/sub/dir /images\n");
    pick1(t, "/images/x", "h", "vmio://io1:10810/images/sub/dir/x");
    gfroute_free(t);
}
END_TEST

START_TEST(test_parse_dir)
{
    static const char *const bad[] = {
        "h vmio://io1/images images",
        "h vmio://io1/images ./images",
        "h vmio://io1/images ~/images",
        "h vmio://io1/images /a/../b",
        "h vmio://io1/images /a/b\x7f",
        "h vmio://io1/images /a/\x02",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_bad(bad[i], strlen(bad[i]), 1, BAD_DIR);
}
END_TEST

START_TEST(test_parse_trailing_slashes)
{
    struct gfroute_table *t = parse_ok(
        "a vmio://a/images/ /images///\n"
        "b vmio://b/e// //\n"
        "c vmio://c/e/sub/ /data/\n");
    pick1(t, "/images/vm.img", "a", "vmio://a/images/vm.img");
    pick1(t, "/images", "a", NULL);
    pick1(t, "/images/", "a", NULL);
    pick1(t, "/x/y", "b", "vmio://b/e/x/y");
    pick1(t, "/data/d.raw", "c", "vmio://c/e/sub/d.raw");
    gfroute_free(t);
}
END_TEST

START_TEST(test_parse_nul)
{
    static const char text[] =
        "a vmio://a/images /images\n"
        "b vmio://b/images /ima\0ges\n"
        "c vmio://c/images /images\n";
    parse_bad(text, sizeof text - 1, 2, "NUL byte in line");
    /* A NUL in a comment is still a NUL. */
    static const char text2[] = "# comment\0with a NUL\n";
    parse_bad(text2, sizeof text2 - 1, 1, "NUL byte in line");
    /* The text need not be NUL-terminated: only len bytes are read. */
    static const char text3[] = "a vmio://a/images /images\nXXXX";
    struct gfroute_table *t = NULL;
    ck_assert_vmio_ok(gfroute_parse(text3, 26, NAME, &t));
    pick1(t, "/images/z", "a", "vmio://a/images/z");
    gfroute_free(t);
}
END_TEST

START_TEST(test_parse_too_many)
{
    size_t n = 4097, cap = n * 40 + 1, len = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "h%zu vmio://h/e /d%zu\n", i, i);
    struct gfroute_table *t = (struct gfroute_table *)1;
    ck_assert_vmio_err_msg(gfroute_parse(text, len, NAME, &t), E2BIG, API, NAME);
    ck_assert_ptr_null(t);
    /* One fewer is fine. */
    len = (size_t)(strstr(text, "h4096 ") - text);
    ck_assert_vmio_ok(gfroute_parse(text, len, NAME, &t));
    pick1(t, "/d4095/x", "h4095", "vmio://h/e/x");
    gfroute_free(t);
    free(text);
}
END_TEST

/* ---- picking --------------------------------------------------------- */

START_TEST(test_pick_host_case)
{
    struct gfroute_table *t = parse_ok("IO1.Example.ORG vmio://io1/images /images\n");
    /* The host returned is the replica host as gfmd spelled it. */
    pick1(t, "/images/a.img", "io1.example.org", "vmio://io1/images/a.img");
    pick1(t, "/images/a.img", "IO1.EXAMPLE.ORG", "vmio://io1/images/a.img");
    pick1(t, "/images/a.img", "io1.example.or", NULL);
    pick1(t, "/images/a.img", "io1.example.org.", NULL);
    gfroute_free(t);
}
END_TEST

START_TEST(test_pick_beneath)
{
    struct gfroute_table *t = parse_ok("h vmio://h:1/e /images\n");
    pick1(t, "/images/a", "h", "vmio://h:1/e/a");
    pick1(t, "/images/a/b/c.img", "h", "vmio://h:1/e/a/b/c.img");
    /* Not the root itself, not a sibling with the root as a prefix. */
    pick1(t, "/images", "h", NULL);
    pick1(t, "/images/", "h", NULL);
    pick1(t, "/images2/a", "h", NULL);
    pick1(t, "/imagesa", "h", NULL);
    pick1(t, "/image", "h", NULL);
    pick1(t, "/other/images/a", "h", NULL);
    pick1(t, "images/a", "h", NULL);
    pick1(t, "", "h", NULL);
    gfroute_free(t);

    /* The root of the namespace serves every absolute path but itself. */
    t = parse_ok("h vmio://h/e /\n");
    pick1(t, "/a", "h", "vmio://h/e/a");
    pick1(t, "/images/x.img", "h", "vmio://h/e/images/x.img");
    pick1(t, "/", "h", NULL);
    pick1(t, "", "h", NULL);
    pick1(t, "a/b", "h", NULL);
    gfroute_free(t);
}
END_TEST

START_TEST(test_pick_order)
{
    struct gfroute_table *t = parse_ok(
        "gfsd-b.invalid vmio://b/e /images\n"
        "gfsd-c.invalid vmio://c/e /images\n"
        "gfsd-c.invalid vmio://c/other /data\n"
        "gfsd-d.invalid vmio://d/e /data\n"
        "gfsd-d.invalid vmio://d/first /images/sub\n"
        "gfsd-d.invalid vmio://d/second /images\n");
    /* First replica host (in the given order) with a matching route. */
    const char *h1[] = { "gfsd-a.invalid", "gfsd-c.invalid", "gfsd-b.invalid" };
    pick_is(t, "/images/x", h1, 3, "vmio://c/e/x", "gfsd-c.invalid");
    const char *h2[] = { "gfsd-b.invalid", "gfsd-c.invalid" };
    pick_is(t, "/images/x", h2, 2, "vmio://b/e/x", "gfsd-b.invalid");
    /* A host's routes for other directories do not count. */
    const char *h3[] = { "gfsd-b.invalid", "gfsd-c.invalid", "gfsd-d.invalid" };
    pick_is(t, "/data/y", h3, 3, "vmio://c/other/y", "gfsd-c.invalid");
    /* Among one host's routes, the first matching line wins. */
    const char *h4[] = { "gfsd-d.invalid" };
    pick_is(t, "/images/sub/z", h4, 1, "vmio://d/first/z", "gfsd-d.invalid");
    pick_is(t, "/images/z", h4, 1, "vmio://d/second/z", "gfsd-d.invalid");
    /* No host with a route: 1. */
    const char *h5[] = { "gfsd-a.invalid", "gfsd-e.invalid" };
    pick_is(t, "/images/x", h5, 2, NULL, NULL);
    pick_is(t, "/nowhere/x", h3, 3, NULL, NULL);
    pick_is(t, "/images/x", h5, 0, NULL, NULL);
    gfroute_free(t);
}
END_TEST

/* The local host's name, changed to upper case (host match ignores case). */
static void self_upper(char *buf, size_t n)
{
    ck_assert_int_eq(gethostname(buf, n), 0);
    buf[n - 1] = 0;
    ck_assert_msg(buf[0] != 0, "empty host name");
    for (char *p = buf; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
}

START_TEST(test_pick_local_first)
{
    char self[256], text[1024];
    self_upper(self, sizeof self);
    snprintf(text, sizeof text,
             "gfsd-b.invalid vmio://b/e /images\n"
             "%s vmio://self/e /images\n", self);
    struct gfroute_table *t = parse_ok(text);

    /* The local host holds a replica and has a route: it wins. */
    const char *h1[] = { "gfsd-b.invalid", self };
    pick_is(t, "/images/x", h1, 2, "vmio://self/e/x", self);
    /* It is not among the replica hosts: gfmd's order. */
    const char *h2[] = { "gfsd-a.invalid", "gfsd-b.invalid" };
    pick_is(t, "/images/x", h2, 2, "vmio://b/e/x", "gfsd-b.invalid");
    gfroute_free(t);

    /* The local host holds a replica but has no route (or none for this
     * directory): a later host with a route is still picked. */
    snprintf(text, sizeof text,
             "%s vmio://self/e /data\n"
             "gfsd-b.invalid vmio://b/e /images\n", self);
    t = parse_ok(text);
    const char *h3[] = { self, "gfsd-a.invalid", "gfsd-b.invalid" };
    pick_is(t, "/images/x", h3, 3, "vmio://b/e/x", "gfsd-b.invalid");
    pick_is(t, "/data/x", h3, 3, "vmio://self/e/x", self);
    gfroute_free(t);
    t = parse_ok("gfsd-b.invalid vmio://b/e /images\n");
    pick_is(t, "/images/x", h3, 3, "vmio://b/e/x", "gfsd-b.invalid");
    gfroute_free(t);
}
END_TEST

/* ---- loading --------------------------------------------------------- */

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_load)
{
    char dir[PATH_MAX], path[PATH_MAX + 32], where[PATH_MAX + 32];
    test_mkdtemp(dir, sizeof dir);
    struct gfroute_table *t = (struct gfroute_table *)1;

    /* Missing file: ENOENT, the path and the reason. */
    snprintf(path, sizeof path, "%s/no-such-routes", dir);
    ck_assert_vmio_err_msg(gfroute_load(path, &t), ENOENT, API, "cannot open routes file");
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), path));
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), strerror(ENOENT)));

    /* A good file. */
    snprintf(path, sizeof path, "%s/routes", dir);
    static const char good[] = "# routes\nio1 vmio://io1:10810/images /images\n";
    write_file(path, good, sizeof good - 1);
    t = NULL;
    ck_assert_vmio_ok(gfroute_load(path, &t));
    pick1(t, "/images/a", "io1", "vmio://io1:10810/images/a");
    gfroute_free(t);

    /* Errors name the file and the line. */
    static const char bad[] = "# routes\n\nio1 vmio://io1:10810/images images\n";
    write_file(path, bad, sizeof bad - 1);
    snprintf(where, sizeof where, "%s:3: ", path);
    t = (struct gfroute_table *)1;
    ck_assert_vmio_err_msg(gfroute_load(path, &t), EINVAL, API, where);
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), BAD_DIR));
    ck_assert_ptr_null(t);

    /* An empty file is an empty table. */
    write_file(path, "", 0);
    ck_assert_vmio_ok(gfroute_load(path, &t));
    pick1(t, "/images/a", "io1", NULL);
    gfroute_free(t);

    /* 1 MiB is the limit. */
    size_t big = (1u << 20) + 1;
    char *text = malloc(big);
    ck_assert_ptr_nonnull(text);
    memset(text, '#', big);
    text[big - 1] = '\n';
    write_file(path, text, big);
    ck_assert_vmio_err_msg(gfroute_load(path, &t), EFBIG, API, "larger than 1 MiB");
    write_file(path, text + 1, big - 1);
    ck_assert_vmio_ok(gfroute_load(path, &t));
    gfroute_free(t);
    free(text);

    /* A directory opens but cannot be read. */
    t = NULL;
    ck_assert_vmio_err_msg(gfroute_load(dir, &t), EIO, API, "cannot read routes file");
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), dir));
    ck_assert_ptr_null(t);

    test_rmtree(dir);
}
END_TEST

static Suite *gfarm_route_suite(void)
{
    Suite *s = suite_create("gfarm-route");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_comments_blanks);
    tcase_add_test(tc, test_parse_fields);
    tcase_add_test(tc, test_parse_uri);
    tcase_add_test(tc, test_parse_dir);
    tcase_add_test(tc, test_parse_trailing_slashes);
    tcase_add_test(tc, test_parse_nul);
    tcase_add_test(tc, test_parse_too_many);
    suite_add_tcase(s, tc);
    tc = tcase_create("pick");
    tcase_add_test(tc, test_pick_host_case);
    tcase_add_test(tc, test_pick_beneath);
    tcase_add_test(tc, test_pick_order);
    tcase_add_test(tc, test_pick_local_first);
    suite_add_tcase(s, tc);
    tc = tcase_create("load");
    tcase_add_test(tc, test_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(gfarm_route_suite());
}
