/* Fuzz target for every decoder of bytes that come from a peer
 * (libvmio/protocol/wire.c). Input: one frame, a 24-byte header then the
 * body. The header goes through vmio_wire_decode_hdr; the body, copied
 * into a buffer of exactly its size, through every body decoder and
 * vmio_wire_decode_request with two max_io limits.
 *
 * Beyond "no crash, no sanitizer report", it checks the decoders'
 * contracts and aborts on a violation:
 *  - failure: a negative errno, the same errno recorded for the thread, a
 *    message with the caller's prefix, the out-parameter untouched;
 *  - success: re-encoding the decoded value reproduces the input bytes
 *    (the decoders are strict: one encoding per value), pointers into the
 *    frame stay inside it, lengths respect the limits. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "protocol/wire.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hdr_equal(const struct vmio_wire_hdr *a, const struct vmio_wire_hdr *b)
{
    /* Field by field: the struct has padding. */
    return a->type == b->type && a->flags == b->flags && a->id == b->id &&
           a->length == b->length && a->status == b->status;
}

/* The error convention for a failed decode. */
static void check_failure(int r)
{
    CHECK(r == -EPROTO || r == -EINVAL || r == -EFBIG || r == -ENAMETOOLONG);
    CHECK(vmio_errno() == -r);
    CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
}

static void fuzz_header(const uint8_t *data)
{
    struct vmio_wire_hdr h, keep;
    memset(&keep, 0xa5, sizeof keep);
    h = keep;
    int r = vmio_wire_decode_hdr(API, data, VMIO_WIRE_MAX_FRAME, &h);
    if (r < 0) {
        check_failure(r);
        CHECK(r == -EPROTO);
        CHECK(memcmp(&h, &keep, sizeof h) == 0);
        return;
    }
    CHECK(r == 0);
    CHECK(h.flags == 0);
    CHECK(h.length <= VMIO_WIRE_MAX_FRAME);
    uint8_t out[VMIO_WIRE_HDR_SIZE];
    vmio_wire_encode_hdr(out, &h);
    CHECK(memcmp(out, data, VMIO_WIRE_HDR_SIZE) == 0);
    /* A tighter limit may only turn success into -EPROTO. */
    struct vmio_wire_hdr h2;
    r = vmio_wire_decode_hdr(API, data, h.length, &h2);
    CHECK(r == 0 && hdr_equal(&h, &h2));
    if (h.length > 0) {
        r = vmio_wire_decode_hdr(API, data, h.length - 1, &h2);
        CHECK(r == -EPROTO);
    }
}

static void fuzz_hello(const uint8_t *b, size_t n)
{
    struct vmio_wire_hello m, keep;
    memset(&keep, 0xa5, sizeof keep);
    m = keep;
    int r = vmio_wire_decode_hello(API, b, n, &m);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&m, &keep, sizeof m) == 0);
        return;
    }
    CHECK(n == 40 && m.min_version >= 1 && m.min_version <= m.max_version);
    uint8_t out[40];
    CHECK(vmio_wire_encode_hello(out, &m) == n);
    CHECK(memcmp(out, b, n) == 0);
}

static void fuzz_hello_reply(const uint8_t *b, size_t n)
{
    struct vmio_wire_hello_reply m, keep;
    memset(&keep, 0xa5, sizeof keep);
    m = keep;
    int r = vmio_wire_decode_hello_reply(API, b, n, &m);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&m, &keep, sizeof m) == 0);
        return;
    }
    uint8_t out[72];
    CHECK(n == 72);
    CHECK(vmio_wire_encode_hello_reply(out, &m) == n);
    CHECK(memcmp(out, b, n) == 0);
}

static void fuzz_open(const uint8_t *b, size_t n)
{
    struct vmio_wire_open m, keep;
    memset(&keep, 0xa5, sizeof keep);
    m = keep;
    int r = vmio_wire_decode_open(API, b, n, &m);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&m, &keep, sizeof m) == 0);
        return;
    }
    CHECK((m.flags & ~VMIO_WIRE_OPEN_ALL) == 0);
    CHECK(m.create_size <= (uint64_t)INT64_MAX);
    CHECK(m.export_len >= 1 && m.export_len <= VMIO_WIRE_MAX_NAME);
    CHECK(m.path_len >= 1 && m.path_len <= VMIO_WIRE_MAX_NAME);
    CHECK(20u + m.export_len + m.path_len == n);
    CHECK(n <= VMIO_WIRE_MAX_HANDSHAKE);
    CHECK((const uint8_t *)m.export_name == b + 20);
    CHECK((const uint8_t *)m.path == b + 20 + m.export_len);
    CHECK(memchr(m.export_name, 0, m.export_len) == NULL);
    CHECK(memchr(m.path, 0, m.path_len) == NULL);
    uint8_t *out = malloc(n);
    CHECK(out != NULL);
    CHECK(vmio_wire_encode_open(out, &m) == n);
    CHECK(memcmp(out, b, n) == 0);
    free(out);
}

static void fuzz_open_reply(const uint8_t *b, size_t n)
{
    struct vmio_wire_open_reply m, keep;
    memset(&keep, 0xa5, sizeof keep);
    m = keep;
    int r = vmio_wire_decode_open_reply(API, b, n, &m);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&m, &keep, sizeof m) == 0);
        return;
    }
    CHECK(n == 16 && m.max_io >= 4096 && m.max_io <= VMIO_WIRE_MAX_IO);
    CHECK(m.size <= (uint64_t)INT64_MAX);
    uint8_t out[16];
    CHECK(vmio_wire_encode_open_reply(out, &m) == n);
    CHECK(memcmp(out, b, n) == 0);
}

static void fuzz_request(const struct vmio_wire_hdr *h, const uint8_t *b, uint32_t max_io)
{
    struct vmio_wire_request q, keep;
    memset(&keep, 0xa5, sizeof keep);
    q = keep;
    int r = vmio_wire_decode_request(API, h, b, max_io, &q);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&q, &keep, sizeof q) == 0);
        return;
    }
    CHECK(h->status == 0);
    CHECK(hdr_equal(&q.hdr, h));
    uint8_t out[VMIO_WIRE_IO_BODY];
    switch (h->type) {
    case VMIO_WIRE_READ:
    case VMIO_WIRE_WRITE:
        CHECK(q.u.io.length >= 1 && q.u.io.length <= max_io);
        CHECK((q.u.io.flags & ~VMIO_WIRE_REQ_ALL) == 0);
        CHECK(q.u.io.offset + q.u.io.length <= (uint64_t)INT64_MAX);
        CHECK(vmio_wire_encode_io(out, &q.u.io) == VMIO_WIRE_IO_BODY);
        CHECK(memcmp(out, b, VMIO_WIRE_IO_BODY) == 0);
        if (h->type == VMIO_WIRE_WRITE && q.u.io.rkey != 0) {
            /* Data by RDMA READ: no payload in the frame. */
            CHECK(h->length == VMIO_WIRE_IO_BODY && q.data == NULL);
        } else if (h->type == VMIO_WIRE_WRITE) {
            CHECK(h->length == VMIO_WIRE_IO_BODY + q.u.io.length);
            CHECK(q.data == b + VMIO_WIRE_IO_BODY);
            /* Touch the payload: a sanitizer sees any overrun. */
            volatile uint8_t sum = 0;
            for (uint32_t i = 0; i < q.u.io.length; i++)
                sum = (uint8_t)(sum + q.data[i]);
            (void)sum;
        } else {
            CHECK(h->length == VMIO_WIRE_IO_BODY && q.data == NULL);
        }
        break;
    case VMIO_WIRE_TRIM:
    case VMIO_WIRE_WRITE_ZEROES:
    case VMIO_WIRE_BLOCK_STATUS:
        CHECK(h->length == VMIO_WIRE_RANGE_BODY);
        CHECK(q.u.range.length >= 1);
        CHECK(q.u.range.offset + q.u.range.length <= (uint64_t)INT64_MAX);
        CHECK(vmio_wire_encode_range(out, &q.u.range) == VMIO_WIRE_RANGE_BODY);
        CHECK(memcmp(out, b, VMIO_WIRE_RANGE_BODY) == 0);
        break;
    case VMIO_WIRE_TRUNCATE:
        CHECK(h->length == 8 && q.u.size == vmio_get_le64(b));
        CHECK(q.u.size <= (uint64_t)INT64_MAX);
        break;
    case VMIO_WIRE_FLUSH:
    case VMIO_WIRE_SIZE:
    case VMIO_WIRE_DISCONNECT:
    case VMIO_WIRE_LOCAL:
        CHECK(h->length == 0);
        break;
    default:
        CHECK(!"decoded an unknown request type");
    }
}

static void fuzz_status(int32_t status)
{
    int e = vmio_wire_errno_from_status(status);
    CHECK(e > 0);
    /* Mapping back gives a status that maps to the same errno. */
    CHECK(vmio_wire_errno_from_status(vmio_wire_status_from_errno(e)) == e);
}

static void fuzz_local_reply(const uint8_t *b, size_t n)
{
    struct vmio_wire_local_reply m, keep;
    memset(&keep, 0xa5, sizeof keep);
    m = keep;
    int r = vmio_wire_decode_local_reply(API, b, n, &m);
    if (r < 0) {
        check_failure(r);
        CHECK(r == -EPROTO);
        CHECK(memcmp(&m, &keep, sizeof m) == 0);
        return;
    }
    CHECK(n == VMIO_WIRE_LOCAL_REPLY);
    CHECK(m.pid > 0 && m.pid <= INT32_MAX && m.fd <= INT32_MAX);
    CHECK((m.flags & ~VMIO_WIRE_LOCAL_ALL) == 0);
    uint8_t out[VMIO_WIRE_LOCAL_REPLY];
    CHECK(vmio_wire_encode_local_reply(out, &m) == n);
    CHECK(memcmp(out, b, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < VMIO_WIRE_HDR_SIZE || size - VMIO_WIRE_HDR_SIZE > VMIO_WIRE_MAX_FRAME)
        return 0;
    vmio_clear_error();
    fuzz_header(data);

    /* The body, in a buffer of exactly its size. */
    size_t blen = size - VMIO_WIRE_HDR_SIZE;
    uint8_t *body = malloc(blen ? blen : 1);
    if (!body)
        return 0;
    memcpy(body, data + VMIO_WIRE_HDR_SIZE, blen);

    fuzz_hello(body, blen);
    fuzz_hello_reply(body, blen);
    fuzz_open(body, blen);
    fuzz_open_reply(body, blen);
    fuzz_local_reply(body, blen);

    /* decode_request trusts hdr->length to be the body's size (the
     * caller read exactly that many bytes): give it the real size. */
    struct vmio_wire_hdr h = {
        .type = vmio_get_le16(data + 4), .flags = 0, .id = vmio_get_le64(data + 8),
        .length = (uint32_t)blen, .status = (int32_t)vmio_get_le32(data + 20),
    };
    fuzz_request(&h, body, VMIO_WIRE_MAX_IO);
    fuzz_request(&h, body, 4096);
    fuzz_status(h.status);
    free(body);
    return 0;
}
