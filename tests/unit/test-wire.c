/* Wire protocol (libvmio/protocol/wire.c): byte layouts written out by
 * hand, encode/decode round trips of every body, and every rejection of
 * the strict decoders (errno, message prefix, out-parameter untouched).
 * Bodies are handed to decoders in buffers of exactly their length so
 * that a sanitizer build catches any over-read. */
#include <stdint.h>

#include "test-common.h"

#include "protocol/wire.h"

#define API "test_api"

/* A heap copy of exactly n bytes (n may be 0). */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* ---- header ---------------------------------------------------------- */

START_TEST(test_hdr_layout)
{
    struct vmio_wire_hdr h = {
        .type = VMIO_WIRE_WRITE, .flags = 0, .id = 0x0102030405060708ull,
        .length = 0x20, .status = -22,
    };
    static const uint8_t expect[VMIO_WIRE_HDR_SIZE] = {
        'V', 'M', 'I', 'O', 0x11, 0x00, 0x00, 0x00,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x20, 0x00, 0x00, 0x00, 0xea, 0xff, 0xff, 0xff,
    };
    uint8_t out[VMIO_WIRE_HDR_SIZE];
    vmio_wire_encode_hdr(out, &h);
    ck_assert_mem_eq(out, expect, sizeof expect);

    struct vmio_wire_hdr d;
    ck_assert_int_eq(vmio_wire_decode_hdr(API, out, 0x20, &d), 0);
    ck_assert_uint_eq(d.type, h.type);
    ck_assert_uint_eq(d.flags, 0);
    ck_assert(d.id == h.id);
    ck_assert_uint_eq(d.length, h.length);
    ck_assert_int_eq(d.status, -22);
}
END_TEST

START_TEST(test_hdr_roundtrip)
{
    static const uint16_t types[] = {
        VMIO_WIRE_HELLO, VMIO_WIRE_AUTH, VMIO_WIRE_OPEN, VMIO_WIRE_READ,
        VMIO_WIRE_WRITE | VMIO_WIRE_REPLY, VMIO_WIRE_DISCONNECT, 0xffff,
    };
    static const uint32_t lengths[] = { 0, 1, 40, VMIO_WIRE_MAX_FRAME };
    static const int32_t statuses[] = { 0, VMIO_WIRE_EINVAL, INT32_MIN, INT32_MAX, -1 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t j = 0; j < sizeof lengths / sizeof lengths[0]; j++)
            for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++) {
                struct vmio_wire_hdr h = {
                    .type = types[i], .id = ~(uint64_t)0 - i * 977 - j,
                    .length = lengths[j], .status = statuses[k],
                }, d;
                uint8_t out[VMIO_WIRE_HDR_SIZE];
                vmio_wire_encode_hdr(out, &h);
                ck_assert_int_eq(vmio_wire_decode_hdr(API, out, VMIO_WIRE_MAX_FRAME, &d), 0);
                ck_assert_uint_eq(d.type, h.type);
                ck_assert(d.id == h.id);
                ck_assert_uint_eq(d.length, h.length);
                ck_assert_int_eq(d.status, h.status);
            }
}
END_TEST

START_TEST(test_hdr_reject)
{
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_READ, .id = 7, .length = 100 };
    struct vmio_wire_hdr d, keep;
    uint8_t good[VMIO_WIRE_HDR_SIZE], bad[VMIO_WIRE_HDR_SIZE];
    vmio_wire_encode_hdr(good, &h);
    memset(&keep, 0x5a, sizeof keep);

    /* Every single-bit flip of the magic. */
    for (int byte = 0; byte < 4; byte++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, sizeof bad);
            bad[byte] ^= (uint8_t)(1u << bit);
            d = keep;
            ck_assert_vmio_err_msg(vmio_wire_decode_hdr(API, bad, 1000, &d), EPROTO, API,
                                   "magic");
            ck_assert_mem_eq(&d, &keep, sizeof d);
        }

    /* Any flag bit: version 1 defines none. */
    for (int bit = 0; bit < 16; bit++) {
        memcpy(bad, good, sizeof bad);
        vmio_put_le16(bad + 6, (uint16_t)(1u << bit));
        d = keep;
        ck_assert_vmio_err_msg(vmio_wire_decode_hdr(API, bad, 1000, &d), EPROTO, API,
                               "flags");
        ck_assert_mem_eq(&d, &keep, sizeof d);
    }

    /* Over-length: limit exact is fine, one byte more is not. */
    ck_assert_int_eq(vmio_wire_decode_hdr(API, good, 100, &d), 0);
    d = keep;
    ck_assert_vmio_err_msg(vmio_wire_decode_hdr(API, good, 99, &d), EPROTO, API, "length");
    ck_assert_mem_eq(&d, &keep, sizeof d);
    memcpy(bad, good, sizeof bad);
    vmio_put_le32(bad + 16, UINT32_MAX);
    ck_assert_vmio_err(vmio_wire_decode_hdr(API, bad, VMIO_WIRE_MAX_FRAME, &d), EPROTO, API);
}
END_TEST

/* ---- HELLO ----------------------------------------------------------- */

static struct vmio_wire_hello sample_hello(void)
{
    struct vmio_wire_hello m = { .min_version = 1, .max_version = 3,
                                 .features = 0xa0000003u };
    for (unsigned i = 0; i < VMIO_WIRE_NONCE_SIZE; i++)
        m.nonce[i] = (uint8_t)(i * 7 + 1);
    return m;
}

START_TEST(test_hello)
{
    struct vmio_wire_hello m = sample_hello(), d;
    uint8_t out[64];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_hello(out, &m), 40);
    ck_assert_uint_eq(out[40], 0xee);          /* no write past the body */
    static const uint8_t head[8] = { 1, 0, 3, 0, 0x03, 0x00, 0x00, 0xa0 };
    ck_assert_mem_eq(out, head, sizeof head);
    ck_assert_mem_eq(out + 8, m.nonce, VMIO_WIRE_NONCE_SIZE);

    uint8_t *b = dup_exact(out, 40);
    ck_assert_int_eq(vmio_wire_decode_hello(API, b, 40, &d), 0);
    ck_assert_uint_eq(d.min_version, 1);
    ck_assert_uint_eq(d.max_version, 3);
    ck_assert_uint_eq(d.features, m.features);
    ck_assert_mem_eq(d.nonce, m.nonce, VMIO_WIRE_NONCE_SIZE);
    free(b);

    /* min == max is a valid range. */
    m.min_version = m.max_version = 1;
    vmio_wire_encode_hello(out, &m);
    ck_assert_int_eq(vmio_wire_decode_hello(API, out, 40, &d), 0);
}
END_TEST

START_TEST(test_hello_reject)
{
    struct vmio_wire_hello m = sample_hello(), d, keep;
    uint8_t out[64];
    memset(&keep, 0x5a, sizeof keep);
    vmio_wire_encode_hello(out, &m);
    for (size_t len = 0; len < sizeof out; len++) {
        if (len == 40)
            continue;
        uint8_t *b = dup_exact(out, len);
        d = keep;
        ck_assert_vmio_err_msg(vmio_wire_decode_hello(API, b, len, &d), EPROTO, API, "HELLO");
        ck_assert_mem_eq(&d, &keep, sizeof d);
        free(b);
    }
    m.min_version = 0;
    vmio_wire_encode_hello(out, &m);
    d = keep;
    ck_assert_vmio_err_msg(vmio_wire_decode_hello(API, out, 40, &d), EPROTO, API, "version");
    ck_assert_mem_eq(&d, &keep, sizeof d);
    m.min_version = 4;
    m.max_version = 3;
    vmio_wire_encode_hello(out, &m);
    ck_assert_vmio_err_msg(vmio_wire_decode_hello(API, out, 40, &d), EPROTO, API, "version");
    ck_assert_mem_eq(&d, &keep, sizeof d);
}
END_TEST

/* ---- HELLO reply ----------------------------------------------------- */

START_TEST(test_hello_reply)
{
    struct vmio_wire_hello_reply m = { .version = 1, .features = VMIO_WIRE_F_ALL }, d, keep;
    for (unsigned i = 0; i < VMIO_WIRE_NONCE_SIZE; i++)
        m.nonce[i] = (uint8_t)(0xff - i);
    for (unsigned i = 0; i < VMIO_WIRE_PROOF_SIZE; i++)
        m.proof[i] = (uint8_t)(i ^ 0x3c);
    uint8_t out[96];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_hello_reply(out, &m), 72);
    ck_assert_uint_eq(out[72], 0xee);
    static const uint8_t head[8] = { 1, 0, 0, 0, VMIO_WIRE_F_ALL, 0, 0, 0 };
    ck_assert_mem_eq(out, head, sizeof head);
    ck_assert_mem_eq(out + 8, m.nonce, VMIO_WIRE_NONCE_SIZE);
    ck_assert_mem_eq(out + 40, m.proof, VMIO_WIRE_PROOF_SIZE);

    uint8_t *b = dup_exact(out, 72);
    ck_assert_int_eq(vmio_wire_decode_hello_reply(API, b, 72, &d), 0);
    ck_assert_uint_eq(d.version, 1);
    ck_assert_uint_eq(d.features, VMIO_WIRE_F_ALL);
    ck_assert_mem_eq(d.nonce, m.nonce, VMIO_WIRE_NONCE_SIZE);
    ck_assert_mem_eq(d.proof, m.proof, VMIO_WIRE_PROOF_SIZE);
    free(b);

    memset(&keep, 0x5a, sizeof keep);
    for (size_t len = 0; len < sizeof out; len++) {
        if (len == 72)
            continue;
        b = dup_exact(out, len);
        d = keep;
        ck_assert_vmio_err(vmio_wire_decode_hello_reply(API, b, len, &d), EPROTO, API);
        ck_assert_mem_eq(&d, &keep, sizeof d);
        free(b);
    }
    out[3] = 1;   /* reserved */
    d = keep;
    ck_assert_vmio_err_msg(vmio_wire_decode_hello_reply(API, out, 72, &d), EPROTO, API,
                           "reserved");
    ck_assert_mem_eq(&d, &keep, sizeof d);
}
END_TEST

/* ---- OPEN ------------------------------------------------------------ */

/* Builds an OPEN body by hand (independent of the encoder). */
static size_t build_open(uint8_t *out, uint32_t flags, uint32_t reserved, uint64_t size,
                         const char *exp, size_t elen, const char *path, size_t plen)
{
    vmio_put_le32(out, flags);
    vmio_put_le32(out + 4, reserved);
    vmio_put_le64(out + 8, size);
    vmio_put_le16(out + 16, (uint16_t)elen);
    vmio_put_le16(out + 18, (uint16_t)plen);
    memcpy(out + 20, exp, elen);
    memcpy(out + 20 + elen, path, plen);
    return 20 + elen + plen;
}

START_TEST(test_open)
{
    struct vmio_wire_open m = {
        .flags = VMIO_WIRE_OPEN_RDWR | VMIO_WIRE_OPEN_CREATE, .create_size = 1ull << 40,
        .export_name = "images", .export_len = 6, .path = "vm/disk0.raw", .path_len = 12,
    }, d;
    uint8_t out[64], ref[64];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_open(out, &m), 38);
    ck_assert_uint_eq(out[38], 0xee);
    size_t n = build_open(ref, m.flags, 0, m.create_size, "images", 6, "vm/disk0.raw", 12);
    ck_assert_uint_eq(n, 38);
    ck_assert_mem_eq(out, ref, n);

    uint8_t *b = dup_exact(out, 38);
    ck_assert_int_eq(vmio_wire_decode_open(API, b, 38, &d), 0);
    ck_assert_uint_eq(d.flags, m.flags);
    ck_assert(d.create_size == m.create_size);
    ck_assert_uint_eq(d.export_len, 6);
    ck_assert_uint_eq(d.path_len, 12);
    /* Names point into the frame, not NUL-terminated. */
    ck_assert_ptr_eq(d.export_name, (const char *)b + 20);
    ck_assert_ptr_eq(d.path, (const char *)b + 26);
    ck_assert_mem_eq(d.export_name, "images", 6);
    ck_assert_mem_eq(d.path, "vm/disk0.raw", 12);
    free(b);

    /* Every defined flag, maximal size, maximal names. */
    static char big[VMIO_WIRE_MAX_NAME];
    memset(big, 'n', sizeof big);
    uint8_t *lb = malloc(20 + 2 * VMIO_WIRE_MAX_NAME);
    ck_assert_ptr_nonnull(lb);
    n = build_open(lb, VMIO_WIRE_OPEN_ALL, 0, (uint64_t)INT64_MAX, big, sizeof big, big,
                   sizeof big);
    ck_assert_uint_le(n, VMIO_WIRE_MAX_HANDSHAKE);
    ck_assert_int_eq(vmio_wire_decode_open(API, lb, n, &d), 0);
    ck_assert_uint_eq(d.export_len, VMIO_WIRE_MAX_NAME);
    free(lb);
}
END_TEST

static void open_reject(const uint8_t *in, size_t len, int err, const char *needle)
{
    struct vmio_wire_open d, keep;
    memset(&keep, 0x5a, sizeof keep);
    d = keep;
    uint8_t *b = dup_exact(in, len);
    ck_assert_vmio_err_msg(vmio_wire_decode_open(API, b, len, &d), err, API, needle);
    ck_assert_mem_eq(&d, &keep, sizeof d);
    free(b);
}

START_TEST(test_open_reject)
{
    uint8_t buf[20 + 2 * VMIO_WIRE_MAX_NAME + 16];
    size_t n;

    for (size_t len = 0; len < 20; len++) {
        build_open(buf, 0, 0, 0, "", 0, "", 0);
        open_reject(buf, len, EPROTO, "short");
    }
    n = build_open(buf, 0, 1, 0, "e", 1, "p", 1);
    open_reject(buf, n, EPROTO, "reserved");
    n = build_open(buf, VMIO_WIRE_OPEN_ALL + 1, 0, 0, "e", 1, "p", 1);
    open_reject(buf, n, EPROTO, "flags");
    n = build_open(buf, 0x80000000u, 0, 0, "e", 1, "p", 1);
    open_reject(buf, n, EPROTO, "flags");
    /* Name lengths that disagree with the frame, both ways. */
    n = build_open(buf, 0, 0, 0, "e", 1, "p", 1);
    open_reject(buf, n - 1, EPROTO, "length");
    buf[n] = 'x';
    open_reject(buf, n + 1, EPROTO, "length");
    n = build_open(buf, 0, 0, 0, "exp", 3, "path", 4);
    vmio_put_le16(buf + 16, 0xffff);
    open_reject(buf, n, EPROTO, "length");
    /* Empty names. */
    n = build_open(buf, 0, 0, 0, "", 0, "p", 1);
    open_reject(buf, n, EINVAL, "export");
    n = build_open(buf, 0, 0, 0, "e", 1, "", 0);
    open_reject(buf, n, EINVAL, "path");
    /* NUL bytes would truncate the name the kernel sees. */
    n = build_open(buf, 0, 0, 0, "e\0x", 3, "p", 1);
    open_reject(buf, n, EINVAL, "NUL");
    n = build_open(buf, 0, 0, 0, "e", 1, "p/\0", 3);
    open_reject(buf, n, EINVAL, "NUL");
    /* Names over the limit. */
    static char big[VMIO_WIRE_MAX_NAME + 1];
    memset(big, 'n', sizeof big);
    n = build_open(buf, 0, 0, 0, big, sizeof big, "p", 1);
    open_reject(buf, n, ENAMETOOLONG, "too long");
    n = build_open(buf, 0, 0, 0, "e", 1, big, sizeof big);
    open_reject(buf, n, ENAMETOOLONG, "too long");
    /* A size no file can have. */
    n = build_open(buf, VMIO_WIRE_OPEN_CREATE, 0, (uint64_t)INT64_MAX + 1, "e", 1, "p", 1);
    open_reject(buf, n, EFBIG, "size");
    n = build_open(buf, VMIO_WIRE_OPEN_CREATE, 0, UINT64_MAX, "e", 1, "p", 1);
    open_reject(buf, n, EFBIG, "size");
}
END_TEST

/* ---- OPEN reply ------------------------------------------------------ */

START_TEST(test_local_reply)
{
    struct vmio_wire_local_reply m = { .pidns = 0xeffffffcu, .pid = 4242, .fd = 7,
                                       .dev = 0x10305, .ino = 0x1122334455667788ull,
                                       .flags = VMIO_WIRE_LOCAL_RDWR }, d, keep;
    for (int i = 0; i < 16; i++)
        m.boot_id[i] = (uint8_t)(0xa0 + i);
    uint8_t out[VMIO_WIRE_LOCAL_REPLY + 8];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_local_reply(out, &m), VMIO_WIRE_LOCAL_REPLY);
    ck_assert_uint_eq(out[VMIO_WIRE_LOCAL_REPLY], 0xee);
    ck_assert_uint_eq(out[0], 0xa0);
    ck_assert(vmio_get_le64(out + 16) == m.pidns);
    ck_assert_uint_eq(vmio_get_le32(out + 24), 4242);
    ck_assert_uint_eq(vmio_get_le32(out + 28), 7);
    ck_assert(vmio_get_le64(out + 40) == m.ino);
    uint8_t *b = dup_exact(out, VMIO_WIRE_LOCAL_REPLY);
    ck_assert_int_eq(vmio_wire_decode_local_reply(API, b, VMIO_WIRE_LOCAL_REPLY, &d), 0);
    ck_assert_mem_eq(d.boot_id, m.boot_id, 16);
    ck_assert(d.pidns == m.pidns && d.dev == m.dev && d.ino == m.ino);
    ck_assert(d.pid == m.pid && d.fd == m.fd && d.flags == m.flags);
    free(b);

    /* Every other length, unknown flags, reserved bytes, pid 0, numbers
     * above INT32_MAX: rejected, output untouched. */
    memset(&keep, 0x5a, sizeof keep);
    for (size_t len = 0; len < sizeof out; len++) {
        if (len == VMIO_WIRE_LOCAL_REPLY)
            continue;
        b = dup_exact(out, len);
        d = keep;
        ck_assert_vmio_err_msg(vmio_wire_decode_local_reply(API, b, len, &d), EPROTO, API,
                               "LOCAL reply has");
        ck_assert_mem_eq(&d, &keep, sizeof d);
        free(b);
    }
    struct { size_t at; uint32_t v; const char *needle; } bad[] = {
        { 48, 0x2, "unknown flags" }, { 52, 1, "reserved" }, { 60, 1, "reserved" },
        { 24, 0, "pid 0" }, { 24, 0x80000000u, "names pid" }, { 28, 0x80000000u, "descriptor" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vmio_wire_encode_local_reply(out, &m);
        vmio_put_le32(out + bad[i].at, bad[i].v);
        d = keep;
        ck_assert_vmio_err_msg(vmio_wire_decode_local_reply(API, out, VMIO_WIRE_LOCAL_REPLY, &d),
                               EPROTO, API, bad[i].needle);
        ck_assert_mem_eq(&d, &keep, sizeof d);
    }
}
END_TEST

START_TEST(test_open_reply)
{
    struct vmio_wire_open_reply m = { .size = 0x1122334455667788ull & (uint64_t)INT64_MAX,
                                      .caps = 0x7f, .max_io = 1u << 20 }, d, keep;
    uint8_t out[32];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_open_reply(out, &m), 16);
    ck_assert_uint_eq(out[16], 0xee);
    ck_assert(vmio_get_le64(out) == m.size);
    ck_assert_uint_eq(vmio_get_le32(out + 8), 0x7f);
    ck_assert_uint_eq(vmio_get_le32(out + 12), 1u << 20);
    uint8_t *b = dup_exact(out, 16);
    ck_assert_int_eq(vmio_wire_decode_open_reply(API, b, 16, &d), 0);
    ck_assert(d.size == m.size);
    ck_assert_uint_eq(d.caps, m.caps);
    ck_assert_uint_eq(d.max_io, m.max_io);
    free(b);

    /* Limits of max_io are inclusive. */
    m.max_io = 4096;
    vmio_wire_encode_open_reply(out, &m);
    ck_assert_int_eq(vmio_wire_decode_open_reply(API, out, 16, &d), 0);
    m.max_io = VMIO_WIRE_MAX_IO;
    vmio_wire_encode_open_reply(out, &m);
    ck_assert_int_eq(vmio_wire_decode_open_reply(API, out, 16, &d), 0);

    memset(&keep, 0x5a, sizeof keep);
    for (size_t len = 0; len < sizeof out; len++) {
        if (len == 16)
            continue;
        b = dup_exact(out, len);
        d = keep;
        ck_assert_vmio_err(vmio_wire_decode_open_reply(API, b, len, &d), EPROTO, API);
        ck_assert_mem_eq(&d, &keep, sizeof d);
        free(b);
    }
    static const uint32_t bad_io[] = { 0, 1, 4095, VMIO_WIRE_MAX_IO + 1, UINT32_MAX };
    for (size_t i = 0; i < sizeof bad_io / sizeof bad_io[0]; i++) {
        m.max_io = bad_io[i];
        vmio_wire_encode_open_reply(out, &m);
        d = keep;
        ck_assert_vmio_err_msg(vmio_wire_decode_open_reply(API, out, 16, &d), EPROTO, API,
                               "max I/O");
        ck_assert_mem_eq(&d, &keep, sizeof d);
    }
    m.max_io = 65536;
    m.size = (uint64_t)INT64_MAX + 1;
    vmio_wire_encode_open_reply(out, &m);
    ck_assert_vmio_err_msg(vmio_wire_decode_open_reply(API, out, 16, &d), EPROTO, API, "size");
}
END_TEST

/* ---- requests -------------------------------------------------------- */

struct frame {
    struct vmio_wire_hdr hdr;
    uint8_t *body;
};

static struct frame mkframe(uint16_t type, const void *body, uint32_t len)
{
    struct frame f = { .hdr = { .type = type, .id = 42, .length = len } };
    f.body = dup_exact(body, len);
    return f;
}

static void decode_ok(struct frame *f, uint32_t max_io, struct vmio_wire_request *req)
{
    int r = vmio_wire_decode_request(API, &f->hdr, f->body, max_io, req);
    ck_assert_msg(r == 0, "type 0x%x rejected: %s", f->hdr.type, vmio_errmsg());
    ck_assert_uint_eq(req->hdr.type, f->hdr.type);
    ck_assert(req->hdr.id == f->hdr.id);
    ck_assert_uint_eq(req->hdr.length, f->hdr.length);
}

static void decode_bad(struct frame *f, uint32_t max_io, int err, const char *needle)
{
    struct vmio_wire_request req, keep;
    memset(&keep, 0x5a, sizeof keep);
    req = keep;
    int r = vmio_wire_decode_request(API, &f->hdr, f->body, max_io, &req);
    ck_assert_msg(r == -err, "type 0x%x length %u: got %d, expected %d", f->hdr.type,
                  f->hdr.length, r, -err);
    ck_assert_vmio_err_msg(r, err, API, needle);
    ck_assert_mem_eq(&req, &keep, sizeof req);
}

static void free_frame(struct frame *f)
{
    free(f->body);
    f->body = NULL;
}

START_TEST(test_io_layout)
{
    struct vmio_wire_io io = { .offset = 0x0a0b0c0d0e0f1011ull, .length = 0x1234,
                               .flags = VMIO_WIRE_REQ_FUA, .addr = 0xdeadbeefcafef00dull,
                               .rkey = 0x55667788 };
    uint8_t out[40];
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_io(out, &io), VMIO_WIRE_IO_BODY);
    ck_assert_uint_eq(out[32], 0xee);
    static const uint8_t expect[32] = {
        0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x34, 0x12, 0, 0, 1, 0, 0, 0,
        0x0d, 0xf0, 0xfe, 0xca, 0xef, 0xbe, 0xad, 0xde, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0,
    };
    ck_assert_mem_eq(out, expect, sizeof expect);

    struct vmio_wire_range rg = { .offset = 0x100, .length = 0x200000000ull,
                                  .flags = VMIO_WIRE_REQ_MAY_TRIM };
    memset(out, 0xee, sizeof out);
    ck_assert_uint_eq(vmio_wire_encode_range(out, &rg), VMIO_WIRE_RANGE_BODY);
    ck_assert_uint_eq(out[24], 0xee);
    static const uint8_t expect_rg[24] = {
        0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
    };
    ck_assert_mem_eq(out, expect_rg, sizeof expect_rg);
}
END_TEST

START_TEST(test_request_read_write)
{
    struct vmio_wire_request req;
    uint8_t buf[VMIO_WIRE_IO_BODY + 4096];
    struct vmio_wire_io io = { .offset = 8192, .length = 4096, .flags = 0 };

    vmio_wire_encode_io(buf, &io);
    struct frame f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY);
    decode_ok(&f, 4096, &req);
    ck_assert(req.u.io.offset == 8192);
    ck_assert_uint_eq(req.u.io.length, 4096);
    ck_assert_ptr_null(req.data);
    free_frame(&f);

    io.flags = VMIO_WIRE_REQ_FUA;
    vmio_wire_encode_io(buf, &io);
    test_fill(buf + VMIO_WIRE_IO_BODY, 4096, 0, 3);
    f = mkframe(VMIO_WIRE_WRITE, buf, sizeof buf);
    decode_ok(&f, VMIO_WIRE_MAX_IO, &req);
    ck_assert_uint_eq(req.u.io.flags, VMIO_WIRE_REQ_FUA);
    ck_assert_ptr_eq(req.data, f.body + VMIO_WIRE_IO_BODY);
    ck_assert_int_eq(test_check(req.data, 4096, 0, 3), -1);
    free_frame(&f);

    /* The last byte an offset may reach. */
    io.offset = (uint64_t)INT64_MAX - 1;
    io.length = 1;
    io.flags = 0;
    vmio_wire_encode_io(buf, &io);
    f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY);
    decode_ok(&f, 4096, &req);
    free_frame(&f);
}
END_TEST

START_TEST(test_request_io_reject)
{
    uint8_t buf[VMIO_WIRE_IO_BODY + 300];
    struct vmio_wire_io io = { .offset = 0, .length = 512 };
    struct frame f;
    memset(buf, 0, sizeof buf);

    /* Short bodies. */
    vmio_wire_encode_io(buf, &io);
    for (uint32_t len = 0; len < VMIO_WIRE_IO_BODY; len++) {
        f = mkframe(VMIO_WIRE_READ, buf, len);
        decode_bad(&f, 4096, EPROTO, "short");
        free_frame(&f);
        f = mkframe(VMIO_WIRE_WRITE, buf, len);
        decode_bad(&f, 4096, EPROTO, "short");
        free_frame(&f);
    }
    /* A READ with a payload. */
    f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY + 1);
    decode_bad(&f, 4096, EPROTO, "payload");
    free_frame(&f);
    /* WRITE payload shorter and longer than its length field. */
    io.length = 200;
    vmio_wire_encode_io(buf, &io);
    f = mkframe(VMIO_WIRE_WRITE, buf, VMIO_WIRE_IO_BODY + 100);
    decode_bad(&f, 4096, EPROTO, "WRITE payload");
    free_frame(&f);
    f = mkframe(VMIO_WIRE_WRITE, buf, VMIO_WIRE_IO_BODY + 201);
    decode_bad(&f, 4096, EPROTO, "WRITE payload");
    free_frame(&f);
    f = mkframe(VMIO_WIRE_WRITE, buf, VMIO_WIRE_IO_BODY);
    decode_bad(&f, 4096, EPROTO, "WRITE payload");
    free_frame(&f);
    /* Zero length and length over max_io, for both. */
    static const uint16_t types[] = { VMIO_WIRE_READ, VMIO_WIRE_WRITE };
    for (int t = 0; t < 2; t++) {
        io.length = 0;
        vmio_wire_encode_io(buf, &io);
        f = mkframe(types[t], buf, VMIO_WIRE_IO_BODY);
        decode_bad(&f, 4096, EINVAL, "length");
        free_frame(&f);
        io.length = 257;
        vmio_wire_encode_io(buf, &io);
        f = mkframe(types[t], buf, VMIO_WIRE_IO_BODY + (t ? 257 : 0));
        decode_bad(&f, 256, EINVAL, "length");
        free_frame(&f);
        /* ... and exactly max_io passes. */
        io.length = 256;
        vmio_wire_encode_io(buf, &io);
        f = mkframe(types[t], buf, VMIO_WIRE_IO_BODY + (t ? 256 : 0));
        struct vmio_wire_request req;
        decode_ok(&f, 256, &req);
        free_frame(&f);
    }
    /* Reserved field, each byte. */
    for (int i = 28; i < 32; i++) {
        io.length = 16;
        vmio_wire_encode_io(buf, &io);
        buf[i] = 0x80;
        f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY);
        decode_bad(&f, 4096, EPROTO, "reserved");
        free_frame(&f);
    }
    /* Unknown request flags. */
    for (int bit = 2; bit < 32; bit++) {
        io.length = 16;
        io.flags = 1u << bit;
        vmio_wire_encode_io(buf, &io);
        f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY);
        decode_bad(&f, 4096, EPROTO, "flags");
        free_frame(&f);
    }
    io.flags = 0;
    /* offset + length beyond what a file can hold, or wrapping. */
    static const uint64_t offs[] = { (uint64_t)INT64_MAX, (uint64_t)INT64_MAX - 15,
                                     (uint64_t)INT64_MAX + 1, UINT64_MAX - 15, UINT64_MAX };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        io.offset = offs[i];
        io.length = 16;
        vmio_wire_encode_io(buf, &io);
        f = mkframe(VMIO_WIRE_READ, buf, VMIO_WIRE_IO_BODY);
        decode_bad(&f, 4096, EINVAL, "overflow");
        free_frame(&f);
    }
}
END_TEST

START_TEST(test_request_range)
{
    static const uint16_t types[] = { VMIO_WIRE_TRIM, VMIO_WIRE_WRITE_ZEROES,
                                       VMIO_WIRE_BLOCK_STATUS };
    uint8_t buf[64];
    for (int t = 0; t < 3; t++) {
        struct vmio_wire_range rg = { .offset = 4096, .length = 1ull << 33,
                                      .flags = VMIO_WIRE_REQ_ALL };
        struct vmio_wire_request req;
        struct frame f;

        vmio_wire_encode_range(buf, &rg);
        f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
        decode_ok(&f, 4096, &req);   /* max_io does not limit ranges */
        ck_assert(req.u.range.offset == 4096);
        ck_assert(req.u.range.length == 1ull << 33);
        ck_assert_uint_eq(req.u.range.flags, VMIO_WIRE_REQ_ALL);
        ck_assert_ptr_null(req.data);
        free_frame(&f);

        rg.offset = 1;
        rg.length = (uint64_t)INT64_MAX - 1;
        vmio_wire_encode_range(buf, &rg);
        f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
        decode_ok(&f, 4096, &req);
        free_frame(&f);

        for (uint32_t len = 0; len < sizeof buf; len++) {
            if (len == VMIO_WIRE_RANGE_BODY)
                continue;
            f = mkframe(types[t], buf, len);
            decode_bad(&f, 4096, EPROTO, "range");
            free_frame(&f);
        }
        rg.offset = 0;
        rg.length = 0;
        vmio_wire_encode_range(buf, &rg);
        f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
        decode_bad(&f, 4096, EINVAL, "zero-length");
        free_frame(&f);

        rg.length = 1;
        for (int i = 20; i < 24; i++) {
            vmio_wire_encode_range(buf, &rg);
            buf[i] = 1;
            f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
            decode_bad(&f, 4096, EPROTO, "reserved");
            free_frame(&f);
        }
        rg.flags = VMIO_WIRE_REQ_ALL + 1;
        vmio_wire_encode_range(buf, &rg);
        f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
        decode_bad(&f, 4096, EPROTO, "flags");
        free_frame(&f);
        rg.flags = 0;

        static const uint64_t bad[][2] = {
            { (uint64_t)INT64_MAX, 1 }, { 1, (uint64_t)INT64_MAX },
            { (uint64_t)INT64_MAX + 1, 1 }, { 1ull << 62, 3ull << 62 },
            { UINT64_MAX, UINT64_MAX },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            rg.offset = bad[i][0];
            rg.length = bad[i][1];
            vmio_wire_encode_range(buf, &rg);
            f = mkframe(types[t], buf, VMIO_WIRE_RANGE_BODY);
            decode_bad(&f, 4096, EINVAL, "overflow");
            free_frame(&f);
        }
    }
}
END_TEST

START_TEST(test_request_truncate)
{
    uint8_t buf[16];
    struct vmio_wire_request req;
    struct frame f;

    vmio_put_le64(buf, (uint64_t)INT64_MAX);
    f = mkframe(VMIO_WIRE_TRUNCATE, buf, 8);
    decode_ok(&f, 4096, &req);
    ck_assert(req.u.size == (uint64_t)INT64_MAX);
    free_frame(&f);
    vmio_put_le64(buf, 0);
    f = mkframe(VMIO_WIRE_TRUNCATE, buf, 8);
    decode_ok(&f, 4096, &req);
    ck_assert(req.u.size == 0);
    free_frame(&f);

    for (uint32_t len = 0; len < sizeof buf; len++) {
        if (len == 8)
            continue;
        f = mkframe(VMIO_WIRE_TRUNCATE, buf, len);
        decode_bad(&f, 4096, EPROTO, "TRUNCATE");
        free_frame(&f);
    }
    vmio_put_le64(buf, (uint64_t)INT64_MAX + 1);
    f = mkframe(VMIO_WIRE_TRUNCATE, buf, 8);
    decode_bad(&f, 4096, EFBIG, "too large");
    free_frame(&f);
}
END_TEST

START_TEST(test_request_bodyless)
{
    static const uint16_t types[] = { VMIO_WIRE_FLUSH, VMIO_WIRE_SIZE, VMIO_WIRE_DISCONNECT };
    uint8_t buf[8] = { 0 };
    for (int t = 0; t < 3; t++) {
        struct vmio_wire_request req;
        struct frame f = mkframe(types[t], buf, 0);
        decode_ok(&f, 4096, &req);
        ck_assert_ptr_null(req.data);
        free_frame(&f);
        for (uint32_t len = 1; len <= sizeof buf; len++) {
            f = mkframe(types[t], buf, len);
            decode_bad(&f, 4096, EPROTO, "body");
            free_frame(&f);
        }
    }
}
END_TEST

START_TEST(test_request_type_and_status)
{
    uint8_t buf[VMIO_WIRE_IO_BODY + 16];
    struct vmio_wire_io io = { .offset = 0, .length = 16 };
    vmio_wire_encode_io(buf, &io);

    /* Handshake messages, replies and undefined numbers are not requests. */
    static const uint16_t bad_types[] = {
        0x00, VMIO_WIRE_HELLO, VMIO_WIRE_AUTH, VMIO_WIRE_OPEN, 0x04, 0x0f, 0x1a, 0x7f,
        VMIO_WIRE_READ | VMIO_WIRE_REPLY, VMIO_WIRE_FLUSH | VMIO_WIRE_REPLY,
        VMIO_WIRE_REPLY, 0x0110, 0xffff,
    };
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        struct frame f = mkframe(bad_types[i], buf, 0);
        decode_bad(&f, 4096, EPROTO, "type");
        free_frame(&f);
    }

    /* A status belongs to replies only, whatever the type. */
    static const uint16_t types[] = { VMIO_WIRE_READ, VMIO_WIRE_WRITE, VMIO_WIRE_FLUSH };
    static const uint32_t lens[] = { VMIO_WIRE_IO_BODY, VMIO_WIRE_IO_BODY + 16, 0 };
    static const int32_t statuses[] = { 1, -1, VMIO_WIRE_EIO, INT32_MIN };
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof statuses / sizeof statuses[0]; s++) {
            struct frame f = mkframe(types[t], buf, lens[t]);
            f.hdr.status = statuses[s];
            decode_bad(&f, 4096, EPROTO, "status");
            free_frame(&f);
        }
}
END_TEST

/* ---- errno <-> status ------------------------------------------------ */

START_TEST(test_status_mapping)
{
    /* The wire numbers are Linux's errno values, fixed by the protocol. */
    static const struct { int err; int32_t status; } map[] = {
        { EPERM, 1 }, { ENOENT, 2 }, { EIO, 5 }, { ENOMEM, 12 }, { EACCES, 13 },
        { EEXIST, 17 }, { ENOTDIR, 20 }, { EISDIR, 21 }, { EINVAL, 22 }, { EFBIG, 27 },
        { ENOSPC, 28 }, { EROFS, 30 }, { ENAMETOOLONG, 36 }, { EPROTO, 71 },
        { EOVERFLOW, 75 }, { ENOTSUP, 95 }, { ESHUTDOWN, 108 },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        ck_assert_int_eq(vmio_wire_status_from_errno(map[i].err), map[i].status);
        ck_assert_int_eq(vmio_wire_errno_from_status(map[i].status), map[i].err);
    }
    ck_assert_int_eq(VMIO_WIRE_EOK, 0);
    ck_assert_int_eq(VMIO_WIRE_ESHUTDOWN, 108);
    /* EOPNOTSUPP is ENOTSUP on Linux. */
    ck_assert_int_eq(vmio_wire_status_from_errno(EOPNOTSUPP), VMIO_WIRE_ENOTSUP);
    /* Quota is reported as out of space. */
    ck_assert_int_eq(vmio_wire_status_from_errno(EDQUOT), VMIO_WIRE_ENOSPC);
    /* Anything else travels as EIO, and unknown statuses come back as EIO. */
    static const int others[] = { EXDEV, ENXIO, EAGAIN, EBADF, ETIMEDOUT, 4095 };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        ck_assert_int_eq(vmio_wire_status_from_errno(others[i]), VMIO_WIRE_EIO);
    static const int32_t unknown[] = { 3, 9, 100, 9999, -1, -22, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_int_eq(vmio_wire_errno_from_status(unknown[i]), EIO);
    /* A status of 0 is not an error: whatever it maps to must be > 0 per
     * the contract, so it may never be 0. */
    ck_assert_int_gt(vmio_wire_errno_from_status(0), 0);
}
END_TEST

START_TEST(test_le_helpers)
{
    uint8_t b[8];
    vmio_put_le16(b, 0xbeef);
    ck_assert_uint_eq(b[0], 0xef);
    ck_assert_uint_eq(b[1], 0xbe);
    ck_assert_uint_eq(vmio_get_le16(b), 0xbeef);
    vmio_put_le32(b, 0x80000001u);
    ck_assert_uint_eq(b[0], 1);
    ck_assert_uint_eq(b[3], 0x80);
    ck_assert_uint_eq(vmio_get_le32(b), 0x80000001u);
    vmio_put_le64(b, 0xff00000000000001ull);
    ck_assert_uint_eq(b[0], 1);
    ck_assert_uint_eq(b[7], 0xff);
    ck_assert(vmio_get_le64(b) == 0xff00000000000001ull);
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("header");
    tcase_add_test(tc, test_hdr_layout);
    tcase_add_test(tc, test_hdr_roundtrip);
    tcase_add_test(tc, test_hdr_reject);
    tcase_add_test(tc, test_le_helpers);
    suite_add_tcase(s, tc);
    tc = tcase_create("handshake");
    tcase_add_test(tc, test_hello);
    tcase_add_test(tc, test_hello_reject);
    tcase_add_test(tc, test_hello_reply);
    tcase_add_test(tc, test_open);
    tcase_add_test(tc, test_open_reject);
    tcase_add_test(tc, test_open_reply);
    tcase_add_test(tc, test_local_reply);
    suite_add_tcase(s, tc);
    tc = tcase_create("requests");
    tcase_add_test(tc, test_io_layout);
    tcase_add_test(tc, test_request_read_write);
    tcase_add_test(tc, test_request_io_reject);
    tcase_add_test(tc, test_request_range);
    tcase_add_test(tc, test_request_truncate);
    tcase_add_test(tc, test_request_bodyless);
    tcase_add_test(tc, test_request_type_and_status);
    tcase_add_test(tc, test_status_mapping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(wire_suite());
}
