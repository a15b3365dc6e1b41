/* Messages between the gfarm:// backend and vmio-gfarm-helper
 * (libvmio/storage/gfarm-helper-proto.c): byte layouts written out by
 * hand, encode/decode round trips of every op, and every rejection of the
 * strict decoders with its exact return code (-EBADMSG for a message that
 * is not well formed, -EPROTO for a well-formed one that breaks the
 * protocol). Messages are handed to decoders in buffers of exactly their
 * length so that a sanitizer build catches any over-read. */
#include <stdint.h>

#include "test-common.h"

#include "storage/gfarm-helper-proto.h"

#define REQ_MAX (GFH_REQ_HEAD + 2 * GFH_MAX_PATH + 1)
#define REP_MAX (GFH_REP_HEAD + GFH_MAX_MSG)

/* A heap copy of exactly n bytes (n may be 0). */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A request laid out by hand: header, then text bytes. */
static size_t req_bytes(uint8_t *buf, uint32_t magic, uint32_t op, uint32_t window,
                        uint32_t textlen, uint64_t arg0, uint64_t arg1, const void *text,
                        size_t n)
{
    put32(buf, magic);
    put32(buf + 4, op);
    put32(buf + 8, window);
    put32(buf + 12, textlen);
    put64(buf + 16, arg0);
    put64(buf + 24, arg1);
    if (n)
        memcpy(buf + GFH_REQ_HEAD, text, n);
    return GFH_REQ_HEAD + n;
}

/* A reply laid out by hand. */
static size_t rep_bytes(uint8_t *buf, uint32_t magic, uint32_t op, uint32_t err,
                        uint32_t msglen, uint64_t value, const void *msg, size_t n)
{
    put32(buf, magic);
    put32(buf + 4, op);
    put32(buf + 8, err);
    put32(buf + 12, msglen);
    put64(buf + 16, value);
    if (n)
        memcpy(buf + GFH_REP_HEAD, msg, n);
    return GFH_REP_HEAD + n;
}

static int decode_req_exact(const uint8_t *b, size_t n, struct gfh_req *q)
{
    uint8_t *d = dup_exact(b, n);
    int r = gfh_decode_req(d, n, q);
    /* Pointers into the message must stay inside it. */
    if (r == 0 && q->op == GFH_OPEN) {
        ck_assert(q->path >= (const char *)d && q->path + q->path_len <= (const char *)d + n);
        ck_assert(q->beneath >= (const char *)d &&
                  q->beneath + q->beneath_len <= (const char *)d + n);
    }
    free(d);
    return r;
}

static int decode_rep_exact(const uint8_t *b, size_t n, struct gfh_rep *p)
{
    uint8_t *d = dup_exact(b, n);
    int r = gfh_decode_rep(d, n, p);
    free(d);
    return r;
}

/* ---- requests -------------------------------------------------------- */

START_TEST(test_req_layout)
{
    struct gfh_req q = {
        .op = GFH_OPEN, .window = 0x00100000, .arg0 = 0x0102030405060708ull, .arg1 = 42,
        .path = "/a/b.img", .path_len = 8, .beneath = "/a", .beneath_len = 2,
    };
    static const uint8_t expect[] = {
        'V', 'M', 'F', 'H', 1, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, 11, 0, 0, 0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 42, 0, 0, 0, 0, 0, 0, 0,
        '/', 'a', '/', 'b', '.', 'i', 'm', 'g', 0, '/', 'a',
    };
    uint8_t out[64];
    memset(out, 0xee, sizeof out);
    ck_assert_int_eq(gfh_encode_req(out, sizeof out, &q), (int)sizeof expect);
    ck_assert_mem_eq(out, expect, sizeof expect);
    ck_assert_uint_eq(out[sizeof expect], 0xee);       /* no write past the message */

    struct gfh_req s = { .op = GFH_SIZE };
    static const uint8_t expect_size[GFH_REQ_HEAD] = { 'V', 'M', 'F', 'H', 6 };
    memset(out, 0xee, sizeof out);
    ck_assert_int_eq(gfh_encode_req(out, sizeof out, &s), GFH_REQ_HEAD);
    ck_assert_mem_eq(out, expect_size, sizeof expect_size);
    ck_assert_uint_eq(out[GFH_REQ_HEAD], 0xee);
}
END_TEST

static void open_roundtrip(const char *path, const char *beneath, uint32_t window,
                           uint64_t flags, uint64_t create)
{
    struct gfh_req q = {
        .op = GFH_OPEN, .window = window, .arg0 = flags, .arg1 = create,
        .path = path, .path_len = strlen(path),
        .beneath = beneath, .beneath_len = beneath ? strlen(beneath) : 0,
    }, d;
    static uint8_t out[REQ_MAX];
    int n = gfh_encode_req(out, sizeof out, &q);
    ck_assert_int_eq(n, (int)(GFH_REQ_HEAD + q.path_len + 1 + q.beneath_len));
    uint8_t *b = dup_exact(out, (size_t)n);
    ck_assert_int_eq(gfh_decode_req(b, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.op, GFH_OPEN);
    ck_assert_uint_eq(d.window, window);
    ck_assert(d.arg0 == flags && d.arg1 == create);
    ck_assert_uint_eq(d.path_len, q.path_len);
    ck_assert_mem_eq(d.path, path, q.path_len);
    ck_assert_ptr_eq(d.path, (const char *)b + GFH_REQ_HEAD);
    ck_assert_uint_eq(d.beneath_len, q.beneath_len);
    if (q.beneath_len)
        ck_assert_mem_eq(d.beneath, beneath, q.beneath_len);
    ck_assert_ptr_eq(d.beneath, (const char *)b + GFH_REQ_HEAD + q.path_len + 1);
    free(b);
}

START_TEST(test_req_open_roundtrip)
{
    open_roundtrip("/images/vm/disk.img", "/images", 1 << 20, 0x3, 1ull << 40);
    /* Empty beneath: the text ends with the path's NUL. */
    open_roundtrip("/images/vm/disk.img", "", 4096, 0, 0);
    open_roundtrip("/images/vm/disk.img", NULL, UINT32_MAX, UINT64_MAX, UINT64_MAX);
    open_roundtrip("x", "", 1, 0, 0);

    /* The longest parts allowed. */
    char *big = malloc(GFH_MAX_PATH + 1), *big2 = malloc(GFH_MAX_PATH + 1);
    ck_assert_ptr_nonnull(big);
    ck_assert_ptr_nonnull(big2);
    memset(big, 'p', GFH_MAX_PATH);
    big[GFH_MAX_PATH] = 0;
    memset(big2, 'b', GFH_MAX_PATH);
    big2[GFH_MAX_PATH] = 0;
    open_roundtrip(big, big2, 1, 0, 0);
    open_roundtrip(big, "", 1, 0, 0);
    free(big);
    free(big2);
}
END_TEST

START_TEST(test_req_simple_roundtrip)
{
    static const uint32_t ops[] = {
        GFH_READ, GFH_WRITE, GFH_SYNC, GFH_TRUNCATE, GFH_SIZE, GFH_CLOSE,
    };
    static const uint64_t args[][2] = {
        { 0, 0 }, { 4096, 65536 }, { UINT64_MAX, 0 }, { 0, UINT64_MAX },
        { UINT64_MAX - 10, 10 }, { 0x0123456789abcdefull, 0xfedcba98ull },
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (size_t j = 0; j < sizeof args / sizeof args[0]; j++) {
            struct gfh_req q = {
                .op = ops[i], .window = (uint32_t)(i * 1000 + j),
                .arg0 = args[j][0], .arg1 = args[j][1],
            }, d;
            uint8_t out[GFH_REQ_HEAD + 8];
            memset(out, 0xee, sizeof out);
            ck_assert_int_eq(gfh_encode_req(out, GFH_REQ_HEAD, &q), GFH_REQ_HEAD);
            ck_assert_uint_eq(out[GFH_REQ_HEAD], 0xee);
            ck_assert_int_eq(decode_req_exact(out, GFH_REQ_HEAD, &d), 0);
            ck_assert_uint_eq(d.op, ops[i]);
            ck_assert_uint_eq(d.window, q.window);
            ck_assert(d.arg0 == q.arg0 && d.arg1 == q.arg1);
            ck_assert_ptr_null(d.path);
            ck_assert_ptr_null(d.beneath);
            ck_assert_uint_eq(d.path_len, 0);
            ck_assert_uint_eq(d.beneath_len, 0);
        }
}
END_TEST

START_TEST(test_req_encode_refuse)
{
    static uint8_t out[REQ_MAX + 1];
    struct gfh_req q = {
        .op = GFH_OPEN, .window = 1, .path = "/p", .path_len = 2, .beneath = "/b",
        .beneath_len = 2,
    };
    /* Exactly big enough, then one byte short. */
    ck_assert_int_eq(gfh_encode_req(out, GFH_REQ_HEAD + 5, &q), GFH_REQ_HEAD + 5);
    memset(out, 0xee, sizeof out);
    ck_assert_int_eq(gfh_encode_req(out, GFH_REQ_HEAD + 4, &q), -EINVAL);
    ck_assert_uint_eq(out[0], 0xee);                   /* nothing written */
    ck_assert_int_eq(gfh_encode_req(out, 0, &q), -EINVAL);

    struct gfh_req s = { .op = GFH_SYNC };
    ck_assert_int_eq(gfh_encode_req(out, GFH_REQ_HEAD - 1, &s), -EINVAL);
    ck_assert_int_eq(gfh_encode_req(out, 0, &s), -EINVAL);

    /* Over-long parts, and an empty path. */
    char *big = malloc(GFH_MAX_PATH + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', GFH_MAX_PATH + 1);
    big[GFH_MAX_PATH + 1] = 0;
    q.path = big;
    q.path_len = GFH_MAX_PATH + 1;
    ck_assert_int_eq(gfh_encode_req(out, sizeof out, &q), -ENAMETOOLONG);
    q.path = "/p";
    q.path_len = 2;
    q.beneath = big;
    q.beneath_len = GFH_MAX_PATH + 1;
    ck_assert_int_eq(gfh_encode_req(out, sizeof out, &q), -ENAMETOOLONG);
    q.beneath_len = 0;
    q.path = "";
    q.path_len = 0;
    ck_assert_int_eq(gfh_encode_req(out, sizeof out, &q), -ENAMETOOLONG);
    free(big);
}
END_TEST

START_TEST(test_req_reject_head)
{
    uint8_t good[GFH_REQ_HEAD + 16], bad[GFH_REQ_HEAD + 16];
    struct gfh_req q = { .op = GFH_SIZE }, d;
    ck_assert_int_eq(gfh_encode_req(good, sizeof good, &q), GFH_REQ_HEAD);

    /* Short buffers, down to nothing. */
    for (size_t n = 0; n < GFH_REQ_HEAD; n++)
        ck_assert_int_eq(decode_req_exact(good, n, &d), -EBADMSG);

    /* Every single-bit flip of the magic. */
    for (int byte = 0; byte < 4; byte++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, GFH_REQ_HEAD);
            bad[byte] ^= (uint8_t)(1u << bit);
            ck_assert_int_eq(decode_req_exact(bad, GFH_REQ_HEAD, &d), -EBADMSG);
        }

    /* Text length that disagrees with the message length, both ways. */
    memcpy(bad, good, GFH_REQ_HEAD);
    put32(bad + 12, 1);
    ck_assert_int_eq(decode_req_exact(bad, GFH_REQ_HEAD, &d), -EBADMSG);
    put32(bad + 12, UINT32_MAX);
    ck_assert_int_eq(decode_req_exact(bad, GFH_REQ_HEAD, &d), -EBADMSG);
    memset(bad + GFH_REQ_HEAD, 'z', 16);
    put32(bad + 12, 0);
    ck_assert_int_eq(decode_req_exact(bad, GFH_REQ_HEAD + 4, &d), -EBADMSG);
    put32(bad + 12, 3);
    ck_assert_int_eq(decode_req_exact(bad, GFH_REQ_HEAD + 4, &d), -EBADMSG);

    /* Ops without text must not carry any, even when textlen agrees. */
    static const uint32_t simple[] = {
        GFH_READ, GFH_WRITE, GFH_SYNC, GFH_TRUNCATE, GFH_SIZE, GFH_CLOSE,
    };
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        size_t n = req_bytes(bad, GFH_MAGIC, simple[i], 1, 4, 0, 1, "abcd", 4);
        ck_assert_int_eq(decode_req_exact(bad, n, &d), -EBADMSG);
        n = req_bytes(bad, GFH_MAGIC, simple[i], 1, 0, 0, 1, NULL, 0);
        ck_assert_int_eq(decode_req_exact(bad, n, &d), 0);
    }

    /* Unknown ops: well formed, outside the protocol. */
    static const uint32_t unknown[] = { 0, GFH_CLOSE + 1, 0x100, UINT32_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        size_t n = req_bytes(bad, GFH_MAGIC, unknown[i], 1, 0, 0, 0, NULL, 0);
        ck_assert_int_eq(decode_req_exact(bad, n, &d), -EPROTO);
    }
}
END_TEST

START_TEST(test_req_reject_open)
{
    static uint8_t b[REQ_MAX + 64];
    static char text[2 * GFH_MAX_PATH + 8];
    struct gfh_req d;
    size_t n;

#define OPEN_TEXT(t, len) req_bytes(b, GFH_MAGIC, GFH_OPEN, 4096, (uint32_t)(len), 1, 0, (t), (len))

    /* Well formed, for reference. */
    n = OPEN_TEXT("/p\0/b", 5);
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);
    n = OPEN_TEXT("/p\0", 3);
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);
    ck_assert_uint_eq(d.beneath_len, 0);
    n = OPEN_TEXT("p\0", 2);
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);

    /* Too short to hold a path and its NUL. */
    n = OPEN_TEXT("", 0);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT("p", 1);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT("\0", 1);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);

    /* No NUL between path and beneath. */
    n = OPEN_TEXT("/path/only", 10);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);

    /* Empty path. */
    n = OPEN_TEXT("\0/b", 3);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT("\0\0", 2);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);

    /* A NUL inside beneath (including a trailing one). */
    n = OPEN_TEXT("/p\0/b\0c", 7);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT("/p\0/b\0", 6);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT("/p\0\0", 4);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);

    /* Over-long path, over-long beneath, over-long text. */
    memset(text, 'p', GFH_MAX_PATH + 1);
    text[GFH_MAX_PATH + 1] = 0;
    n = OPEN_TEXT(text, GFH_MAX_PATH + 2);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    memset(text, 'p', GFH_MAX_PATH);
    text[GFH_MAX_PATH] = 0;
    n = OPEN_TEXT(text, GFH_MAX_PATH + 1);
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);
    text[0] = '/';
    text[1] = 0;
    memset(text + 2, 'b', GFH_MAX_PATH + 1);
    n = OPEN_TEXT(text, GFH_MAX_PATH + 3);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);
    n = OPEN_TEXT(text, GFH_MAX_PATH + 2);
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);
    memset(text, 'p', 2 * GFH_MAX_PATH + 2);
    text[GFH_MAX_PATH] = 0;
    n = OPEN_TEXT(text, 2 * GFH_MAX_PATH + 1);       /* both parts at the limit */
    ck_assert_int_eq(decode_req_exact(b, n, &d), 0);
    n = OPEN_TEXT(text, 2 * GFH_MAX_PATH + 2);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EBADMSG);

    /* Zero window: well formed, but the helper could not map it. */
    n = req_bytes(b, GFH_MAGIC, GFH_OPEN, 0, 5, 1, 0, "/p\0/b", 5);
    ck_assert_int_eq(decode_req_exact(b, n, &d), -EPROTO);
#undef OPEN_TEXT
}
END_TEST

START_TEST(test_req_reject_overflow)
{
    uint8_t b[GFH_REQ_HEAD];
    struct gfh_req d;
    static const uint32_t ops[] = { GFH_READ, GFH_WRITE };
    for (size_t i = 0; i < 2; i++) {
        req_bytes(b, GFH_MAGIC, ops[i], 4096, 0, UINT64_MAX, 1, NULL, 0);
        ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), -EPROTO);
        req_bytes(b, GFH_MAGIC, ops[i], 4096, 0, 1, UINT64_MAX, NULL, 0);
        ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), -EPROTO);
        req_bytes(b, GFH_MAGIC, ops[i], 4096, 0, 1ull << 63, 1ull << 63, NULL, 0);
        ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), -EPROTO);
        /* Up to the last byte of the offset space is fine. */
        req_bytes(b, GFH_MAGIC, ops[i], 4096, 0, UINT64_MAX - 1, 1, NULL, 0);
        ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), 0);
        req_bytes(b, GFH_MAGIC, ops[i], 4096, 0, UINT64_MAX, 0, NULL, 0);
        ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), 0);
    }
    /* Other ops do not treat arg0 + arg1 as a range. */
    req_bytes(b, GFH_MAGIC, GFH_TRUNCATE, 0, 0, UINT64_MAX, UINT64_MAX, NULL, 0);
    ck_assert_int_eq(decode_req_exact(b, sizeof b, &d), 0);
}
END_TEST

/* ---- replies --------------------------------------------------------- */

START_TEST(test_rep_layout)
{
    struct gfh_rep p = { .op = GFH_SIZE, .err = 0, .value = 0x1122334455667788ull };
    snprintf(p.msg, sizeof p.msg, "ok");
    static const uint8_t expect[] = {
        'V', 'M', 'F', 'H', 6, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 'o', 'k',
    };
    uint8_t out[64];
    memset(out, 0xee, sizeof out);
    ck_assert_int_eq(gfh_encode_rep(out, sizeof out, &p), (int)sizeof expect);
    ck_assert_mem_eq(out, expect, sizeof expect);
    ck_assert_uint_eq(out[sizeof expect], 0xee);
}
END_TEST

START_TEST(test_rep_roundtrip)
{
    static const int32_t errs[] = { 0, 1, EIO, ENOSPC, 4095 };
    static const char *const msgs[] = {
        "", "gfarm: read of /x at 0: Input/output error", "?",
    };
    static uint8_t out[REP_MAX + 8];
    for (uint32_t op = GFH_OPEN; op <= GFH_CLOSE; op++)
        for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
            for (size_t j = 0; j < sizeof msgs / sizeof msgs[0]; j++) {
                struct gfh_rep p = { .op = op, .err = errs[i], .value = UINT64_MAX - op }, d;
                snprintf(p.msg, sizeof p.msg, "%s", msgs[j]);
                size_t m = strlen(msgs[j]);
                int n = gfh_encode_rep(out, sizeof out, &p);
                ck_assert_int_eq(n, (int)(GFH_REP_HEAD + m));
                ck_assert_int_eq(decode_rep_exact(out, (size_t)n, &d), 0);
                ck_assert_uint_eq(d.op, op);
                ck_assert_int_eq(d.err, errs[i]);
                ck_assert(d.value == p.value);
                ck_assert_str_eq(d.msg, msgs[j]);
            }

    /* The longest message; a longer one is cut at GFH_MAX_MSG. */
    struct gfh_rep p = { .op = GFH_WRITE, .err = EIO }, d;
    memset(p.msg, 'm', GFH_MAX_MSG);
    p.msg[GFH_MAX_MSG] = 0;
    int n = gfh_encode_rep(out, sizeof out, &p);
    ck_assert_int_eq(n, REP_MAX);
    ck_assert_int_eq(decode_rep_exact(out, (size_t)n, &d), 0);
    ck_assert_uint_eq(strlen(d.msg), GFH_MAX_MSG);
    ck_assert_str_eq(d.msg, p.msg);
}
END_TEST

START_TEST(test_rep_encode_refuse)
{
    uint8_t out[REP_MAX];
    struct gfh_rep p = { .op = GFH_READ, .err = EIO };
    snprintf(p.msg, sizeof p.msg, "abc");
    ck_assert_int_eq(gfh_encode_rep(out, GFH_REP_HEAD + 3, &p), GFH_REP_HEAD + 3);
    memset(out, 0xee, sizeof out);
    ck_assert_int_eq(gfh_encode_rep(out, GFH_REP_HEAD + 2, &p), -EINVAL);
    ck_assert_uint_eq(out[0], 0xee);
    ck_assert_int_eq(gfh_encode_rep(out, 0, &p), -EINVAL);
    p.msg[0] = 0;
    ck_assert_int_eq(gfh_encode_rep(out, GFH_REP_HEAD, &p), GFH_REP_HEAD);
    ck_assert_int_eq(gfh_encode_rep(out, GFH_REP_HEAD - 1, &p), -EINVAL);
}
END_TEST

START_TEST(test_rep_reject)
{
    static uint8_t b[REP_MAX + 16];
    struct gfh_rep d;
    size_t n = rep_bytes(b, GFH_MAGIC, GFH_READ, 0, 3, 7, "abc", 3);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), 0);

    /* Short buffers. */
    for (size_t k = 0; k < GFH_REP_HEAD; k++)
        ck_assert_int_eq(decode_rep_exact(b, k, &d), -EBADMSG);

    /* Bad magic: every single-bit flip. */
    for (int byte = 0; byte < 4; byte++)
        for (int bit = 0; bit < 8; bit++) {
            rep_bytes(b, GFH_MAGIC, GFH_READ, 0, 0, 0, NULL, 0);
            b[byte] ^= (uint8_t)(1u << bit);
            ck_assert_int_eq(decode_rep_exact(b, GFH_REP_HEAD, &d), -EBADMSG);
        }

    /* Bad op. */
    static const uint32_t ops[] = { 0, GFH_CLOSE + 1, 0x80000001u, UINT32_MAX };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        n = rep_bytes(b, GFH_MAGIC, ops[i], 0, 0, 0, NULL, 0);
        ck_assert_int_eq(decode_rep_exact(b, n, &d), -EPROTO);
    }

    /* Negative or huge err. */
    static const uint32_t errs[] = {
        (uint32_t)-1, (uint32_t)-EIO, 0x80000000u, 4096, 0x7fffffffu,
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        n = rep_bytes(b, GFH_MAGIC, GFH_SYNC, errs[i], 0, 0, NULL, 0);
        ck_assert_int_eq(decode_rep_exact(b, n, &d), -EPROTO);
    }
    n = rep_bytes(b, GFH_MAGIC, GFH_SYNC, 4095, 0, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), 0);

    /* Message length that disagrees with the message, or is too long. */
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, 4, 0, "abc", 3);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), -EBADMSG);
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, 2, 0, "abc", 3);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), -EBADMSG);
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, 1, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), -EBADMSG);
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, UINT32_MAX, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), -EBADMSG);
    memset(b + GFH_REP_HEAD, 'x', GFH_MAX_MSG + 1);
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, GFH_MAX_MSG + 1, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n + GFH_MAX_MSG + 1, &d), -EBADMSG);
    n = rep_bytes(b, GFH_MAGIC, GFH_READ, EIO, GFH_MAX_MSG, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n + GFH_MAX_MSG, &d), 0);

    /* Op and err are checked before the length. */
    n = rep_bytes(b, GFH_MAGIC, 99, 0, 5, 0, NULL, 0);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), -EPROTO);
}
END_TEST

START_TEST(test_rep_sanitize)
{
    /* Every byte value: printable ASCII kept, anything else becomes '?'. */
    static uint8_t b[GFH_REP_HEAD + 256];
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    struct gfh_rep d;
    for (size_t off = 0; off < 256; off += 255) {
        size_t m = off ? 1 : 255;      /* 0..254, then byte 255 alone */
        size_t n = rep_bytes(b, GFH_MAGIC, GFH_OPEN, ENOENT, (uint32_t)m, 0, all + off, m);
        ck_assert_int_eq(decode_rep_exact(b, n, &d), 0);
        ck_assert_uint_eq(strlen(d.msg), m);
        for (size_t i = 0; i < m; i++) {
            uint8_t c = all[off + i];
            char want = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
            ck_assert_msg(d.msg[i] == want, "byte 0x%02x became 0x%02x", c,
                          (unsigned char)d.msg[i]);
        }
    }

    /* A NUL, an escape sequence and a newline cannot reach the message. */
    size_t n = rep_bytes(b, GFH_MAGIC, GFH_OPEN, EACCES, 9, 0, "a\0b\x1b[2J\nc", 9);
    ck_assert_int_eq(decode_rep_exact(b, n, &d), 0);
    ck_assert_str_eq(d.msg, "a?b?[2J?c");
    ck_assert_int_eq(d.err, EACCES);
}
END_TEST

static Suite *gfarm_proto_suite(void)
{
    Suite *s = suite_create("gfarm-proto");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, test_req_layout);
    tcase_add_test(tc, test_req_open_roundtrip);
    tcase_add_test(tc, test_req_simple_roundtrip);
    tcase_add_test(tc, test_req_encode_refuse);
    tcase_add_test(tc, test_req_reject_head);
    tcase_add_test(tc, test_req_reject_open);
    tcase_add_test(tc, test_req_reject_overflow);
    suite_add_tcase(s, tc);
    tc = tcase_create("reply");
    tcase_add_test(tc, test_rep_layout);
    tcase_add_test(tc, test_rep_roundtrip);
    tcase_add_test(tc, test_rep_encode_refuse);
    tcase_add_test(tc, test_rep_reject);
    tcase_add_test(tc, test_rep_sanitize);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(gfarm_proto_suite());
}
