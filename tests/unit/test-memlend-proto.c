/* The memory-lending manager protocol's codecs (libvmio/memlend/proto.c):
 * frames laid out byte by byte from docs/memlend-protocol.md decode to
 * the expected values, encoders reproduce them, and every malformed input
 * (truncation, trailing bytes, bad strings, unknown types, states and
 * error codes, oversized counts) is refused with -EPROTO, the caller's
 * prefix and the output untouched. The authentication proof is checked
 * against an independent HMAC over the documented concatenation. */
#include <nettle/hmac.h>

#include "test-common.h"

#include "core/internal.h"
#include "memlend/proto.h"

#define API "test"

/* A little-endian byte builder independent of the library's encoders. */
struct bytes {
    uint8_t b[8192];
    size_t n;
};

static void b8(struct bytes *x, uint8_t v)
{
    ck_assert_uint_lt(x->n, sizeof x->b);
    x->b[x->n++] = v;
}

static void b16(struct bytes *x, uint16_t v)
{
    b8(x, (uint8_t)v);
    b8(x, (uint8_t)(v >> 8));
}

static void b32(struct bytes *x, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b8(x, (uint8_t)(v >> (8 * i)));
}

static void b64(struct bytes *x, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b8(x, (uint8_t)(v >> (8 * i)));
}

static void bstr(struct bytes *x, const char *s)
{
    b16(x, (uint16_t)strlen(s));
    for (const char *p = s; *p; p++)
        b8(x, (uint8_t)*p);
}

static void lease_bytes(struct bytes *x, uint64_t id, uint32_t state, const char *iqn)
{
    b64(x, id);
    b64(x, 64ull << 20);
    b32(x, state);
    b32(x, 1);
    b64(x, 1800000000);
    bstr(x, "lenderA");
    bstr(x, "vm1");
    bstr(x, "192.0.2.7:3260");
    bstr(x, iqn);
}

/* The error convention of a failed decode. */
#define ck_decode_fails(expr)                                                   \
    do {                                                                        \
        int r_ = (expr);                                                        \
        ck_assert_vmio_err(r_, EPROTO, API);                                    \
    } while (0)

START_TEST(t_header)
{
    struct bytes x = { .n = 0 };
    b32(&x, 0x4C4D4D56);
    b16(&x, VMIO_ML_REQUEST);
    b16(&x, 0);
    b32(&x, 77);
    b32(&x, 0);
    b32(&x, 12);
    ck_assert_uint_eq(x.n, VMIO_ML_HDR_SIZE);
    ck_assert_mem_eq(x.b, "VMML", 4);
    struct vmio_ml_hdr h;
    ck_assert_vmio_ok(vmio_ml_decode_hdr(API, x.b, &h));
    ck_assert_uint_eq(h.type, VMIO_ML_REQUEST);
    ck_assert_uint_eq(h.id, 77);
    ck_assert_uint_eq(h.length, 12);
    uint8_t enc[VMIO_ML_HDR_SIZE];
    vmio_ml_encode_hdr(&h, enc);
    ck_assert_mem_eq(enc, x.b, sizeof enc);

    struct vmio_ml_hdr keep;
    memset(&keep, 0xa5, sizeof keep);
    struct vmio_ml_hdr bad = { .type = VMIO_ML_REQUEST, .id = 1 };
    /* flags */
    bad.flags = 1;
    vmio_ml_encode_hdr(&bad, enc);
    h = keep;
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    ck_assert_mem_eq(&h, &keep, sizeof h);
    bad.flags = 0;
    /* status on a request */
    bad.status = EIO;
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    /* unknown status on a reply, a known one */
    bad.type = VMIO_ML_REQUEST | VMIO_ML_REPLY;
    bad.status = 4095;
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    bad.status = ENOSPC;
    vmio_ml_encode_hdr(&bad, enc);
    ck_assert_vmio_ok(vmio_ml_decode_hdr(API, enc, &h));
    bad.status = -ENOSPC;   /* codes are positive */
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    bad.status = 0;
    /* unknown types, replies to notices, notices with ids */
    uint16_t unknown[] = { 0x00, 0x03, 0x16, 0x23, 0x31, 0x41, 0xc0, 0xff, 0x7e };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(unknown); i++) {
        bad.type = unknown[i];
        vmio_ml_encode_hdr(&bad, enc);
        ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    }
    bad.type = VMIO_ML_NOTICE;
    bad.id = 3;
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    /* FATAL needs a status */
    bad.type = VMIO_ML_FATAL;
    bad.id = 0;
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    bad.status = EACCES;
    vmio_ml_encode_hdr(&bad, enc);
    ck_assert_vmio_ok(vmio_ml_decode_hdr(API, enc, &h));
    /* length limit */
    bad = (struct vmio_ml_hdr){ .type = VMIO_ML_STATUS | VMIO_ML_REPLY,
                                .length = VMIO_ML_MAX_BODY };
    vmio_ml_encode_hdr(&bad, enc);
    ck_assert_vmio_ok(vmio_ml_decode_hdr(API, enc, &h));
    bad.length++;
    vmio_ml_encode_hdr(&bad, enc);
    ck_decode_fails(vmio_ml_decode_hdr(API, enc, &h));
    /* magic */
    memcpy(enc, "VMIO", 4);
    ck_assert_vmio_err_msg(vmio_ml_decode_hdr(API, enc, &h), EPROTO, API, "magic");
}
END_TEST

START_TEST(t_hello)
{
    struct bytes x = { .n = 0 };
    b16(&x, 1);
    b16(&x, 1);
    b32(&x, VMIO_MEMLEND_ROLE_LENDER);
    for (int i = 0; i < 32; i++)
        b8(&x, (uint8_t)i);
    bstr(&x, "host-1.example_A");
    struct vmio_ml_hello h;
    ck_assert_vmio_ok(vmio_ml_decode_hello(API, x.b, x.n, &h));
    ck_assert_uint_eq(h.role, VMIO_MEMLEND_ROLE_LENDER);
    ck_assert_str_eq(h.name, "host-1.example_A");
    ck_assert_uint_eq(h.nonce[31], 31);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello(&b, &h);
    ck_assert_uint_eq(b.len, x.n);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    /* Every truncation, and a trailing byte. */
    for (size_t n = 0; n < x.n; n++)
        ck_decode_fails(vmio_ml_decode_hello(API, x.b, n, &h));
    x.b[x.n] = 0;
    ck_decode_fails(vmio_ml_decode_hello(API, x.b, x.n + 1, &h));
    /* Names: empty, too long, bad characters. */
    const char *bad_names[] = { "", "has space", "a/b", "x\x01", "colon:x",
                                "0123456789012345678901234567890123456789012345678901234567890123" };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(bad_names); i++) {
        struct bytes y = { .n = 0 };
        memcpy(y.b, x.b, 40);
        y.n = 40;
        bstr(&y, bad_names[i]);
        ck_decode_fails(vmio_ml_decode_hello(API, y.b, y.n, &h));
    }
    /* A NUL inside the name. */
    struct bytes y = { .n = 0 };
    memcpy(y.b, x.b, 40);
    y.n = 40;
    b16(&y, 3);
    b8(&y, 'a');
    b8(&y, 0);
    b8(&y, 'b');
    ck_assert_vmio_err_msg(vmio_ml_decode_hello(API, y.b, y.n, &h), EPROTO, API, "NUL");
    /* Role and versions. */
    struct vmio_ml_hello keep = h;
    x.b[4] = 4;
    ck_decode_fails(vmio_ml_decode_hello(API, x.b, x.n, &h));
    x.b[4] = 0;
    ck_decode_fails(vmio_ml_decode_hello(API, x.b, x.n, &h));
    x.b[4] = 1;
    x.b[0] = 2;   /* min 2 > max 1 */
    ck_decode_fails(vmio_ml_decode_hello(API, x.b, x.n, &h));
    x.b[0] = 0;   /* min 0 */
    ck_decode_fails(vmio_ml_decode_hello(API, x.b, x.n, &h));
    ck_assert_mem_eq(&h, &keep, sizeof h);
}
END_TEST

START_TEST(t_hello_reply_auth)
{
    struct bytes x = { .n = 0 };
    b16(&x, 1);
    b16(&x, 0);
    for (int i = 0; i < 64; i++)
        b8(&x, (uint8_t)(i + 100));
    struct vmio_ml_hello_reply r;
    ck_assert_vmio_ok(vmio_ml_decode_hello_reply(API, x.b, x.n, &r));
    ck_assert_uint_eq(r.nonce[0], 100);
    ck_assert_uint_eq(r.proof[31], 163);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello_reply(&b, &r);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    x.b[2] = 1;   /* reserved */
    ck_decode_fails(vmio_ml_decode_hello_reply(API, x.b, x.n, &r));
    x.b[2] = 0;
    x.b[0] = 2;   /* a version the client did not offer */
    ck_decode_fails(vmio_ml_decode_hello_reply(API, x.b, x.n, &r));
    ck_decode_fails(vmio_ml_decode_hello_reply(API, x.b, x.n - 1, &r));

    uint8_t proof[32];
    ck_assert_vmio_ok(vmio_ml_decode_auth(API, x.b + 4, 32, proof));
    ck_decode_fails(vmio_ml_decode_auth(API, x.b, 31, proof));
    ck_decode_fails(vmio_ml_decode_auth(API, x.b, 33, proof));
}
END_TEST

START_TEST(t_lender_messages)
{
    struct bytes x = { .n = 0 };
    bstr(&x, "[2001:db8::1]:3260");
    b64(&x, 5ull << 30);
    struct vmio_ml_register reg;
    ck_assert_vmio_ok(vmio_ml_decode_register(API, x.b, x.n, &reg));
    ck_assert_str_eq(reg.portal, "[2001:db8::1]:3260");
    ck_assert_uint_eq(reg.exportable, 5ull << 30);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_register(&b, &reg);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    for (size_t n = 0; n < x.n; n++)
        ck_decode_fails(vmio_ml_decode_register(API, x.b, n, &reg));
    x.n = 0;
    bstr(&x, "with space:1");
    b64(&x, 1);
    ck_decode_fails(vmio_ml_decode_register(API, x.b, x.n, &reg));
    x.n = 0;
    bstr(&x, "");
    b64(&x, 1);
    ck_decode_fails(vmio_ml_decode_register(API, x.b, x.n, &reg));

    /* PROVIDED: success with an IQN, failure with a known code only. */
    x.n = 0;
    b64(&x, 9);
    b32(&x, 0);
    b32(&x, 1);
    bstr(&x, "iqn.2026-12.org.vmio:a.lease9");
    struct vmio_ml_provided p;
    ck_assert_vmio_ok(vmio_ml_decode_provided(API, x.b, x.n, &p));
    ck_assert_uint_eq(p.lease_id, 9);
    ck_assert_uint_eq(p.lun, 1);
    ck_assert_str_eq(p.target_iqn, "iqn.2026-12.org.vmio:a.lease9");
    vmio_ml_encode_provided(&b, &p);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    x.n = 0;
    b64(&x, 9);
    b32(&x, 0);
    b32(&x, 1);
    bstr(&x, "");   /* success needs an IQN */
    ck_decode_fails(vmio_ml_decode_provided(API, x.b, x.n, &p));
    x.n = 0;
    b64(&x, 9);
    b32(&x, ENOSPC);
    b32(&x, 0);
    bstr(&x, "");
    ck_assert_vmio_ok(vmio_ml_decode_provided(API, x.b, x.n, &p));
    ck_assert_uint_eq(p.err, ENOSPC);
    x.b[8] = 200;   /* not a protocol error code */
    ck_decode_fails(vmio_ml_decode_provided(API, x.b, x.n, &p));
    x.n = 0;
    b64(&x, 9);
    b32(&x, ENOSPC);
    b32(&x, 1);   /* a failure with a LUN */
    bstr(&x, "");
    ck_decode_fails(vmio_ml_decode_provided(API, x.b, x.n, &p));

    uint64_t v;
    uint8_t eight[9] = { 1, 0, 0, 0, 0, 0, 0, 0x80, 0 };
    ck_assert_vmio_ok(vmio_ml_decode_u64(API, eight, 8, &v));
    ck_assert_uint_eq(v, 0x8000000000000001ull);
    ck_decode_fails(vmio_ml_decode_u64(API, eight, 7, &v));
    ck_decode_fails(vmio_ml_decode_u64(API, eight, 9, &v));
    uint32_t secs;
    uint8_t four[4] = { 30, 0, 0, 0 };
    ck_assert_vmio_ok(vmio_ml_decode_lease_seconds(API, four, 4, &secs));
    ck_assert_uint_eq(secs, 30);
    four[0] = 0;
    ck_decode_fails(vmio_ml_decode_lease_seconds(API, four, 4, &secs));
    ck_assert_vmio_ok(vmio_ml_decode_empty(API, NULL, 0));
    ck_decode_fails(vmio_ml_decode_empty(API, four, 1));
}
END_TEST

START_TEST(t_lease_notice)
{
    struct bytes x = { .n = 0 };
    b32(&x, VMIO_MEMLEND_NOTICE_REVOKE);
    lease_bytes(&x, 42, VMIO_MEMLEND_REVOKING, "iqn.2026-12.org.vmio:lenderA.lease42");
    struct vmio_memlend_notice n;
    ck_assert_vmio_ok(vmio_ml_decode_notice(API, x.b, x.n, &n));
    ck_assert_uint_eq(n.type, VMIO_MEMLEND_NOTICE_REVOKE);
    ck_assert_uint_eq(n.lease.id, 42);
    ck_assert_uint_eq(n.lease.size, 64ull << 20);
    ck_assert_uint_eq(n.lease.state, VMIO_MEMLEND_REVOKING);
    ck_assert_uint_eq(n.lease.lun, 1);
    ck_assert_int_eq(n.lease.lender_expiry, 1800000000);
    ck_assert_str_eq(n.lease.lender, "lenderA");
    ck_assert_str_eq(n.lease.borrower, "vm1");
    ck_assert_str_eq(n.lease.portal, "192.0.2.7:3260");
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_notice(&b, &n);
    ck_assert_uint_eq(b.len, x.n);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    /* The lease alone (REQUEST reply). */
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_ml_decode_lease_body(API, x.b + 4, x.n - 4, &l));
    ck_assert_uint_eq(l.id, 42);
    for (size_t k = 0; k < x.n; k++)
        ck_decode_fails(vmio_ml_decode_notice(API, x.b, k, &n));
    /* A PENDING lease has no IQN yet. */
    x.n = 0;
    b32(&x, VMIO_MEMLEND_NOTICE_PROVISION);
    lease_bytes(&x, 43, VMIO_MEMLEND_PENDING, "");
    ck_assert_vmio_ok(vmio_ml_decode_notice(API, x.b, x.n, &n));
    ck_assert_str_eq(n.lease.target_iqn, "");
    /* Unknown notice type, unknown states, lease id 0. */
    struct vmio_memlend_notice keep = n;
    x.b[0] = 5;
    ck_decode_fails(vmio_ml_decode_notice(API, x.b, x.n, &n));
    x.b[0] = 0;
    ck_decode_fails(vmio_ml_decode_notice(API, x.b, x.n, &n));
    uint32_t states[] = { 0, 7, 0xffffffff };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(states); i++) {
        x.n = 0;
        b32(&x, 1);
        lease_bytes(&x, 43, states[i], "");
        ck_decode_fails(vmio_ml_decode_notice(API, x.b, x.n, &n));
    }
    x.n = 0;
    b32(&x, 1);
    lease_bytes(&x, 0, 1, "");
    ck_decode_fails(vmio_ml_decode_notice(API, x.b, x.n, &n));
    ck_assert_mem_eq(&n, &keep, sizeof n);
}
END_TEST

START_TEST(t_status)
{
    struct bytes x = { .n = 0 };
    b32(&x, 2);
    b32(&x, 1);
    for (int i = 0; i < 2; i++) {
        bstr(&x, i ? "lenderB" : "lenderA");
        bstr(&x, "192.0.2.7:3260");
        b64(&x, 1ull << 30);
        b64(&x, 64ull << 20);
        b32(&x, (uint32_t)i);
        b64(&x, 1800000000 + i);
    }
    lease_bytes(&x, 1, VMIO_MEMLEND_ATTACHED, "iqn.2026-12.org.vmio:lenderA.lease1");
    struct vmio_memlend_lease *ls;
    struct vmio_memlend_lender_info *ld;
    size_t nls, nld;
    ck_assert_vmio_ok(vmio_ml_decode_status(API, x.b, x.n, &ls, &nls, &ld, &nld));
    ck_assert_uint_eq(nld, 2);
    ck_assert_uint_eq(nls, 1);
    ck_assert_str_eq(ld[1].name, "lenderB");
    ck_assert_uint_eq(ld[1].available, 1);
    ck_assert_int_eq(ld[1].expiry, 1800000001);
    ck_assert_uint_eq(ls[0].state, VMIO_MEMLEND_ATTACHED);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_status(&b, ld, nld, ls, nls);
    ck_assert_mem_eq(b.data, x.b, x.n);
    vmio_ml_buf_free(&b);
    free(ls);
    free(ld);
    for (size_t k = 0; k < x.n; k++)
        ck_decode_fails(vmio_ml_decode_status(API, x.b, k, &ls, &nls, &ld, &nld));
    /* available must be 0 or 1 */
    struct bytes y = x;
    size_t avail_off = 8 + 2 + 7 + 2 + 14 + 16;
    y.b[avail_off] = 2;
    ck_decode_fails(vmio_ml_decode_status(API, y.b, y.n, &ls, &nls, &ld, &nld));
    /* Counts beyond the limits or the body are refused before any
     * allocation. */
    y.n = 0;
    b32(&y, 0xffffffff);
    b32(&y, 0);
    ck_decode_fails(vmio_ml_decode_status(API, y.b, y.n, &ls, &nls, &ld, &nld));
    y.n = 0;
    b32(&y, 0);
    b32(&y, 4000);
    ck_assert_vmio_err_msg(vmio_ml_decode_status(API, y.b, y.n, &ls, &nls, &ld, &nld), EPROTO,
                           API, "truncated");
    /* Empty. */
    y.n = 0;
    b32(&y, 0);
    b32(&y, 0);
    ck_assert_vmio_ok(vmio_ml_decode_status(API, y.b, y.n, &ls, &nls, &ld, &nld));
    ck_assert_uint_eq(nls + nld, 0);
    ck_assert_ptr_null(ls);
    ck_assert_ptr_null(ld);
}
END_TEST

START_TEST(t_error_body)
{
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_error(&b, "no lender\nhas\x01 room");
    char msg[VMIO_ML_MAX_ERRMSG + 1];
    ck_assert_vmio_ok(vmio_ml_decode_error(API, b.data, b.len, msg));
    ck_assert_str_eq(msg, "no lender?has? room");   /* control bytes never travel */
    vmio_ml_buf_free(&b);
    struct bytes x = { .n = 0 };
    bstr(&x, "tab\there");
    ck_decode_fails(vmio_ml_decode_error(API, x.b, x.n, msg));
    x.n = 0;
    b16(&x, VMIO_ML_MAX_ERRMSG + 1);
    ck_decode_fails(vmio_ml_decode_error(API, x.b, x.n, msg));
    /* Long messages are cut at the limit. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    vmio_ml_encode_error(&b, big);
    ck_assert_vmio_ok(vmio_ml_decode_error(API, b.data, b.len, msg));
    ck_assert_uint_eq(strlen(msg), VMIO_ML_MAX_ERRMSG);
    vmio_ml_buf_free(&b);
}
END_TEST

START_TEST(t_proof)
{
    const uint8_t secret[] = "s3cret";
    uint8_t cn[32], sn[32];
    for (int i = 0; i < 32; i++) {
        cn[i] = (uint8_t)i;
        sn[i] = (uint8_t)(255 - i);
    }
    /* Independent: HMAC over one buffer label || cnonce || snonce ||
     * u32le role || name. */
    for (int server = 0; server < 2; server++) {
        uint8_t msg[128];
        size_t n = 0;
        const char *label = server ? "vmio-memlend-server-v1" : "vmio-memlend-client-v1";
        memcpy(msg, label, strlen(label));
        n += strlen(label);
        memcpy(msg + n, cn, 32);
        n += 32;
        memcpy(msg + n, sn, 32);
        n += 32;
        uint8_t role[4] = { 2, 0, 0, 0 };
        memcpy(msg + n, role, 4);
        n += 4;
        memcpy(msg + n, "vm1", 3);
        n += 3;
        uint8_t want[32], got[32];
        struct hmac_sha256_ctx ctx;
        hmac_sha256_set_key(&ctx, 6, secret);
        hmac_sha256_update(&ctx, n, msg);
        hmac_sha256_digest(&ctx, 32, want);
        vmio_ml_proof(secret, 6, server, cn, sn, 2, "vm1", got);
        ck_assert_mem_eq(got, want, 32);
    }
    /* Direction, role and name all change the proof. */
    uint8_t a[32], b[32];
    vmio_ml_proof(secret, 6, 0, cn, sn, 2, "vm1", a);
    vmio_ml_proof(secret, 6, 1, cn, sn, 2, "vm1", b);
    ck_assert_mem_ne(a, b, 32);
    vmio_ml_proof(secret, 6, 0, cn, sn, 1, "vm1", b);
    ck_assert_mem_ne(a, b, 32);
    vmio_ml_proof(secret, 6, 0, cn, sn, 2, "vm2", b);
    ck_assert_mem_ne(a, b, 32);
    vmio_ml_proof(secret, 6, 0, sn, cn, 2, "vm1", b);
    ck_assert_mem_ne(a, b, 32);
}
END_TEST

START_TEST(t_split_addr)
{
    char host[64];
    uint16_t port;
    ck_assert_vmio_ok(vmio_ml_split_addr(API, "127.0.0.1:7000", host, sizeof host, &port, 0));
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 7000);
    ck_assert_vmio_ok(vmio_ml_split_addr(API, "[::1]:65535", host, sizeof host, &port, 0));
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 65535);
    ck_assert_vmio_ok(vmio_ml_split_addr(API, "mgr.example:0", host, sizeof host, &port, 1));
    ck_assert_uint_eq(port, 0);
    const char *bad[] = { "", "host", ":80", "host:", "host:65536", "host:-1", "host:8x",
                          "::1:80", "[::1]80", "[::1", "host:123456" };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(bad); i++)
        ck_assert_vmio_err(vmio_ml_split_addr(API, bad[i], host, sizeof host, &port, 0), EINVAL,
                           API);
    ck_assert_vmio_err(vmio_ml_split_addr(API, "h:0", host, sizeof host, &port, 0), EINVAL, API);
    ck_assert_vmio_err(vmio_ml_split_addr(API, "averyveryverylonghostname:1", host, 8, &port, 0),
                       EINVAL, API);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlend-proto");
    TCase *tc = tcase_create("proto");
    tcase_add_test(tc, t_header);
    tcase_add_test(tc, t_hello);
    tcase_add_test(tc, t_hello_reply_auth);
    tcase_add_test(tc, t_lender_messages);
    tcase_add_test(tc, t_lease_notice);
    tcase_add_test(tc, t_status);
    tcase_add_test(tc, t_error_body);
    tcase_add_test(tc, t_proof);
    tcase_add_test(tc, t_split_addr);
    suite_add_tcase(s, tc);
    return test_run(s);
}
