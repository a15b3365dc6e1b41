/* Fuzz target for the decoders of the messages between the gfarm://
 * backend and vmio-gfarm-helper (libvmio/storage/gfarm-helper-proto.c):
 * the helper decodes what the library sends, the library decodes what a
 * helper (possibly a broken one) answers. The input, copied into a buffer
 * of exactly its size, goes through gfh_decode_req and gfh_decode_rep.
 *
 * Beyond "no crash, no sanitizer report", it checks the contracts and
 * aborts on a violation:
 *  - failure: -EBADMSG or -EPROTO, nothing pointing outside the input;
 *  - success: the fields respect the protocol's limits, and re-encoding
 *    then decoding again gives the same fields. A request decodes from
 *    exactly one encoding: re-encoding reproduces the input. A reply does
 *    too when its message was printable (the decoder replaces anything
 *    else by '?'). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/gfarm-helper-proto.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQ_MAX (GFH_REQ_HEAD + 2 * GFH_MAX_PATH + 1)
#define REP_MAX (GFH_REP_HEAD + GFH_MAX_MSG)

/* [p, p + n) lies within [b, b + len). */
static int inside(const void *p, size_t n, const uint8_t *b, size_t len)
{
    uintptr_t q = (uintptr_t)p, lo = (uintptr_t)b;
    return q >= lo && q - lo <= len && n <= len - (q - lo);
}

static int req_equal(const struct gfh_req *a, const struct gfh_req *b)
{
    if (a->op != b->op || a->window != b->window || a->arg0 != b->arg0 ||
        a->arg1 != b->arg1 || a->path_len != b->path_len ||
        a->beneath_len != b->beneath_len)
        return 0;
    if (a->op != GFH_OPEN)
        return a->path == NULL && b->path == NULL && a->beneath == NULL &&
               b->beneath == NULL;
    return memcmp(a->path, b->path, a->path_len) == 0 &&
           memcmp(a->beneath, b->beneath, a->beneath_len) == 0;
}

static void fuzz_req(const uint8_t *b, size_t n)
{
    struct gfh_req q;
    memset(&q, 0xa5, sizeof q);
    int r = gfh_decode_req(b, n, &q);
    if (r < 0) {
        CHECK(r == -EBADMSG || r == -EPROTO);
        if (q.path)
            CHECK(inside(q.path, q.path_len, b, n));
        if (q.beneath)
            CHECK(inside(q.beneath, q.beneath_len, b, n));
        return;
    }
    CHECK(r == 0);
    CHECK(q.op >= GFH_OPEN && q.op <= GFH_CLOSE);
    if (q.op == GFH_OPEN) {
        CHECK(q.window > 0);
        CHECK(q.path_len >= 1 && q.path_len <= GFH_MAX_PATH);
        CHECK(q.beneath_len <= GFH_MAX_PATH);
        CHECK((const uint8_t *)q.path == b + GFH_REQ_HEAD);
        CHECK((const uint8_t *)q.beneath == b + GFH_REQ_HEAD + q.path_len + 1);
        CHECK(inside(q.beneath, q.beneath_len, b, n));
        CHECK(memchr(q.path, 0, q.path_len) == NULL);
        CHECK(memchr(q.beneath, 0, q.beneath_len) == NULL);
        CHECK(n == GFH_REQ_HEAD + q.path_len + 1 + q.beneath_len);
    } else {
        CHECK(n == GFH_REQ_HEAD);
        CHECK(q.path == NULL && q.beneath == NULL);
        if (q.op == GFH_READ || q.op == GFH_WRITE)
            CHECK(q.arg0 + q.arg1 >= q.arg0);
    }

    uint8_t *out = malloc(REQ_MAX);
    CHECK(out != NULL);
    int m = gfh_encode_req(out, REQ_MAX, &q);
    CHECK(m >= 0 && (size_t)m == n);
    CHECK(memcmp(out, b, n) == 0);
    /* One byte less does not fit. */
    CHECK(gfh_encode_req(out, n - 1, &q) == -EINVAL);
    struct gfh_req q2;
    CHECK(gfh_decode_req(out, (size_t)m, &q2) == 0);
    CHECK(req_equal(&q, &q2));
    free(out);
}

static void fuzz_rep(const uint8_t *b, size_t n)
{
    struct gfh_rep p;
    memset(&p, 0xa5, sizeof p);
    int r = gfh_decode_rep(b, n, &p);
    if (r < 0) {
        CHECK(r == -EBADMSG || r == -EPROTO);
        return;
    }
    CHECK(r == 0);
    CHECK(p.op >= GFH_OPEN && p.op <= GFH_CLOSE);
    CHECK(p.err >= 0 && p.err <= 4095);
    size_t m = strlen(p.msg);
    CHECK(m <= GFH_MAX_MSG && n == GFH_REP_HEAD + m);
    int printable = 1;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)p.msg[i];
        CHECK(c >= 0x20 && c < 0x7f);
        if (c != b[GFH_REP_HEAD + i]) {
            CHECK(c == '?');
            printable = 0;
        }
    }

    uint8_t *out = malloc(REP_MAX);
    CHECK(out != NULL);
    int k = gfh_encode_rep(out, REP_MAX, &p);
    CHECK(k >= 0 && (size_t)k == n);
    if (printable)
        CHECK(memcmp(out, b, n) == 0);
    else
        CHECK(memcmp(out, b, GFH_REP_HEAD) == 0);
    CHECK(gfh_encode_rep(out, n - 1, &p) == -EINVAL);
    struct gfh_rep p2;
    memset(&p2, 0x5a, sizeof p2);
    CHECK(gfh_decode_rep(out, (size_t)k, &p2) == 0);
    CHECK(p2.op == p.op && p2.err == p.err && p2.value == p.value);
    CHECK(strcmp(p2.msg, p.msg) == 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > REQ_MAX + 64)
        return 0;
    /* The message, in a buffer of exactly its size. */
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    if (size)
        memcpy(b, data, size);
    fuzz_req(b, size);
    fuzz_rep(b, size);
    free(b);
    return 0;
}
