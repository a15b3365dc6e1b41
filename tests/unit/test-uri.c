/* URI parser (libvmio/core/uri.c): every accepted form and every
 * rejection, each rejection checked for -EINVAL, the thread's errno, the
 * caller's message prefix and a cleared output. */
#include "test-common.h"

#include "core/uri.h"

#define API "test_api"

static void assert_cleared(const struct vmio_uri *u)
{
    ck_assert_ptr_null(u->scheme);
    ck_assert_ptr_null(u->host);
    ck_assert_ptr_null(u->path);
    ck_assert_ptr_null(u->opts);
    ck_assert_uint_eq(u->nopts, 0);
    ck_assert_uint_eq(u->port, 0);
}

/* Parses s expecting failure with EINVAL and needle in the message. */
static void reject(const char *s, const char *needle)
{
    struct vmio_uri u;
    memset(&u, 0xa5, sizeof u);    /* garbage: the parser must clear it */
    int r = vmio_uri_parse(API, s, &u);
    ck_assert_msg(r == -EINVAL, "'%s' gave %d, expected -EINVAL", s ? s : "(null)", r);
    ck_assert_int_eq(vmio_errno(), EINVAL);
    ck_assert_msg(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0,
                  "'%s': message '%s' lacks the prefix", s ? s : "(null)", vmio_errmsg());
    if (needle)
        ck_assert_msg(strstr(vmio_errmsg(), needle) != NULL,
                      "'%s': message '%s' does not mention '%s'", s ? s : "(null)",
                      vmio_errmsg(), needle);
    assert_cleared(&u);
}

static void parse_ok(const char *s, struct vmio_uri *u)
{
    int r = vmio_uri_parse(API, s, u);
    ck_assert_msg(r == 0, "'%s' rejected: %s", s, vmio_errmsg());
    ck_assert_ptr_nonnull(u->scheme);
    ck_assert_ptr_nonnull(u->path);
}

START_TEST(test_plain_paths)
{
    static const char *const paths[] = {
        "/var/lib/images/disk.img",
        "disk.img",
        "./rel/dir/x.raw",
        "/tmp/a%20b",            /* taken literally: no decoding */
        "/tmp/q?x=1",            /* no query on plain paths */
        "/tmp/h#frag",           /* no fragment either */
        "1abc://not-a-scheme",   /* a scheme starts with a letter */
        "a_b://underscore",      /* '_' is not a scheme character */
        "://empty-scheme",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct vmio_uri u;
        parse_ok(paths[i], &u);
        ck_assert_str_eq(u.scheme, "file");
        ck_assert_ptr_null(u.host);
        ck_assert_uint_eq(u.port, 0);
        ck_assert_str_eq(u.path, paths[i]);
        ck_assert_uint_eq(u.nopts, 0);
        vmio_uri_clear(&u);
        assert_cleared(&u);
        vmio_uri_clear(&u);     /* clearing twice is harmless */
    }
}
END_TEST

START_TEST(test_file_uris)
{
    struct vmio_uri u;

    parse_ok("file:///var/lib/x.img", &u);
    ck_assert_str_eq(u.scheme, "file");
    ck_assert_ptr_null(u.host);
    ck_assert_str_eq(u.path, "/var/lib/x.img");
    vmio_uri_clear(&u);

    parse_ok("file://localhost/srv/y.raw", &u);
    ck_assert_str_eq(u.scheme, "file");
    ck_assert_str_eq(u.host, "localhost");
    ck_assert_uint_eq(u.port, 0);
    ck_assert_str_eq(u.path, "/srv/y.raw");
    vmio_uri_clear(&u);

    /* The scheme is case-insensitive and stored in lower case. */
    parse_ok("FiLe:///Z", &u);
    ck_assert_str_eq(u.scheme, "file");
    ck_assert_str_eq(u.path, "/Z");
    vmio_uri_clear(&u);

    /* In a URI the path is percent-decoded. */
    parse_ok("file:///tmp/a%20b%2fc%41", &u);
    ck_assert_str_eq(u.path, "/tmp/a b/cA");
    vmio_uri_clear(&u);
}
END_TEST

START_TEST(test_vmio_uris)
{
    struct vmio_uri u;

    parse_ok("vmio://host.example:1234/export/path?secret-file=x", &u);
    ck_assert_str_eq(u.scheme, "vmio");
    ck_assert_str_eq(u.host, "host.example");
    ck_assert_uint_eq(u.port, 1234);
    ck_assert_str_eq(u.path, "/export/path");
    ck_assert_uint_eq(u.nopts, 1);
    ck_assert_str_eq(u.opts[0].key, "secret-file");
    ck_assert_str_eq(u.opts[0].value, "x");
    ck_assert_str_eq(vmio_uri_get(&u, "secret-file"), "x");
    ck_assert_ptr_null(vmio_uri_get(&u, "timeout"));
    vmio_uri_clear(&u);

    parse_ok("vmio://h/e/p", &u);
    ck_assert_str_eq(u.host, "h");
    ck_assert_uint_eq(u.port, 0);
    ck_assert_str_eq(u.path, "/e/p");
    ck_assert_uint_eq(u.nopts, 0);
    vmio_uri_clear(&u);

    /* Port boundaries. */
    parse_ok("vmio://h:1/e", &u);
    ck_assert_uint_eq(u.port, 1);
    vmio_uri_clear(&u);
    parse_ok("vmio://h:65535/e", &u);
    ck_assert_uint_eq(u.port, 65535);
    vmio_uri_clear(&u);
    parse_ok("vmio://h:00080/e", &u);
    ck_assert_uint_eq(u.port, 80);
    vmio_uri_clear(&u);

    /* IPv6 literals, with and without a port. */
    parse_ok("vmio://[::1]:10810/export/disk", &u);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_uint_eq(u.port, 10810);
    ck_assert_str_eq(u.path, "/export/disk");
    vmio_uri_clear(&u);
    parse_ok("vmio://[2001:db8::7]/e", &u);
    ck_assert_str_eq(u.host, "2001:db8::7");
    ck_assert_uint_eq(u.port, 0);
    vmio_uri_clear(&u);

    /* No path at all, and a query right after the authority. */
    parse_ok("vmio://h:7", &u);
    ck_assert_str_eq(u.path, "");
    vmio_uri_clear(&u);
    parse_ok("vmio://h?timeout=3", &u);
    ck_assert_str_eq(u.path, "");
    ck_assert_str_eq(vmio_uri_get(&u, "timeout"), "3");
    vmio_uri_clear(&u);

    /* Unknown schemes parse (backend lookup rejects them later). */
    parse_ok("Gfarm://meta:601/home/img", &u);
    ck_assert_str_eq(u.scheme, "gfarm");
    ck_assert_uint_eq(u.port, 601);
    vmio_uri_clear(&u);
}
END_TEST

START_TEST(test_query_and_decoding)
{
    struct vmio_uri u;

    parse_ok("vmio://h/dir%20one/f%C3%A9?secret-file=%2Fetc%2Fvmio%2fkey&timeout=5"
             "&&transport=tcp&empty=", &u);
    ck_assert_str_eq(u.path, "/dir one/f\xc3\xa9");
    ck_assert_uint_eq(u.nopts, 4);
    ck_assert_str_eq(vmio_uri_get(&u, "secret-file"), "/etc/vmio/key");
    ck_assert_str_eq(vmio_uri_get(&u, "timeout"), "5");
    ck_assert_str_eq(vmio_uri_get(&u, "transport"), "tcp");
    ck_assert_str_eq(vmio_uri_get(&u, "empty"), "");
    vmio_uri_clear(&u);

    /* A repeated option: the last one wins. */
    parse_ok("vmio://h/p?timeout=1&timeout=2", &u);
    ck_assert_uint_eq(u.nopts, 2);
    ck_assert_str_eq(vmio_uri_get(&u, "timeout"), "2");
    vmio_uri_clear(&u);

    /* Keys are decoded too, and '=' in a value is kept. */
    parse_ok("vmio://h/p?se%63ret-file=a=b", &u);
    ck_assert_str_eq(vmio_uri_get(&u, "secret-file"), "a=b");
    vmio_uri_clear(&u);

    /* '+' is not a space in a path. */
    parse_ok("vmio://h/a+b", &u);
    ck_assert_str_eq(u.path, "/a+b");
    vmio_uri_clear(&u);
}
END_TEST

START_TEST(test_reject_empty)
{
    reject(NULL, "empty");
    reject("", "empty");
}
END_TEST

START_TEST(test_reject_ports)
{
    reject("vmio://h:0/e", "port");
    reject("vmio://h:65536/e", "port");
    reject("vmio://h:99999/e", "port");
    reject("vmio://h:123456/e", "port");
    reject("vmio://h:abc/e", "port");
    reject("vmio://h:12a/e", "port");
    reject("vmio://h:-1/e", "port");
    reject("vmio://h:+1/e", "port");
    reject("vmio://h:/e", "port");
    reject("vmio://[::1]:/e", "port");
    reject("vmio://[::1]:0/e", "port");
    reject("vmio://[::1]:70000/e", "port");
}
END_TEST

START_TEST(test_reject_authority)
{
    reject("vmio://user@host/e", "user");
    reject("vmio://user:pw@host:1/e", "user");
    reject("vmio://@host/e", "user");
    reject("vmio://:10810/e", "host");
    reject("vmio://[::1/e", "[");
    reject("vmio://[]:5/e", "IPv6");
    reject("vmio://[::1]x/e", "]");
    reject("vmio://ho st/e", "host");
    reject("vmio://h\"x/e", "host");
    reject("vmio://h;x/e", "host");
}
END_TEST

START_TEST(test_reject_fragments)
{
    reject("vmio://h/e/p#frag", "fragment");
    reject("vmio://h/e/p?a=1#frag", "fragment");
    reject("vmio://h#frag", "fragment");
    reject("file:///x#", "fragment");
}
END_TEST

START_TEST(test_reject_escapes)
{
    reject("vmio://h/a%zz", "escape");
    reject("vmio://h/a%g1", "escape");
    reject("vmio://h/a%1", "escape");
    reject("vmio://h/a%", "escape");
    reject("vmio://h/p?k=%4", "escape");
    reject("vmio://h/p?k%=1", "escape");
}
END_TEST

START_TEST(test_reject_control)
{
    reject("vmio://h/a%00b", "control");
    reject("vmio://h/a%0ab", "control");
    reject("vmio://h/a%1Fb", "control");
    reject("vmio://h/a%7fb", "control");
    reject("vmio://h/a\tb", "control");
    reject("vmio://h/p?k=%00", "control");
    reject("vmio://h/p?k%00=v", "control");
    reject("file:///tmp/x\ny", "control");
    reject("/tmp/plain\npath", "control");
    reject("/tmp/plain\x01path", "control");
}
END_TEST

START_TEST(test_reject_query)
{
    reject("vmio://h/p?novalue", "no value");
    reject("vmio://h/p?a=1&flag", "no value");
    reject("vmio://h/p?=v", "empty name");
}
END_TEST

START_TEST(test_check_opts)
{
    static const char *const allowed[] = { "secret-file", "timeout", NULL };
    static const char *const none[] = { NULL };
    struct vmio_uri u;

    parse_ok("vmio://h/p?timeout=1&secret-file=s", &u);
    ck_assert_int_eq(vmio_uri_check_opts(API, &u, allowed), 0);
    ck_assert_vmio_err_msg(vmio_uri_check_opts(API, &u, none), EINVAL, API, "timeout");
    vmio_uri_clear(&u);

    parse_ok("vmio://h/p?timeout=1&bogus-opt=2", &u);
    ck_assert_vmio_err_msg(vmio_uri_check_opts(API, &u, allowed), EINVAL, API, "bogus-opt");
    /* The message names the scheme the option is unknown for. */
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), "vmio://"));
    vmio_uri_clear(&u);

    /* Option names are case-sensitive. */
    parse_ok("vmio://h/p?Timeout=1", &u);
    ck_assert_vmio_err_msg(vmio_uri_check_opts(API, &u, allowed), EINVAL, API, "Timeout");
    vmio_uri_clear(&u);

    parse_ok("/plain/path", &u);
    ck_assert_int_eq(vmio_uri_check_opts(API, &u, none), 0);
    vmio_uri_clear(&u);
}
END_TEST

static Suite *uri_suite(void)
{
    Suite *s = suite_create("uri");
    TCase *tc = tcase_create("accept");
    tcase_add_test(tc, test_plain_paths);
    tcase_add_test(tc, test_file_uris);
    tcase_add_test(tc, test_vmio_uris);
    tcase_add_test(tc, test_query_and_decoding);
    tcase_add_test(tc, test_check_opts);
    suite_add_tcase(s, tc);
    tc = tcase_create("reject");
    tcase_add_test(tc, test_reject_empty);
    tcase_add_test(tc, test_reject_ports);
    tcase_add_test(tc, test_reject_authority);
    tcase_add_test(tc, test_reject_fragments);
    tcase_add_test(tc, test_reject_escapes);
    tcase_add_test(tc, test_reject_control);
    tcase_add_test(tc, test_reject_query);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(uri_suite());
}
