/* Fuzz target for the memory-lending manager protocol's decoders
 * (libvmio/memlend/proto.c): the bytes every manager and client reads
 * from its peer. Input: one frame, a 20-byte header then the body. The
 * header goes through vmio_ml_decode_hdr; the body, copied into a buffer
 * of exactly its size, through every body decoder.
 *
 * Beyond "no crash, no sanitizer report", it checks the decoders'
 * contracts and aborts on a violation:
 *  - failure: -EPROTO (or -ENOMEM), the same errno recorded for the
 *    thread, a message with the caller's prefix, the output untouched;
 *  - success: re-encoding the decoded value reproduces the input bytes
 *    (one encoding per value), strings respect their character sets. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "memlend/proto.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_failure(int r)
{
    CHECK(r == -EPROTO || r == -ENOMEM);
    CHECK(vmio_errno() == -r);
    CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
}

/* The encoder's output equals the input. */
static void check_reencode(struct vmio_ml_buf *b, const uint8_t *in, size_t n)
{
    CHECK(!b->oom);
    CHECK(b->len == n);
    CHECK(n == 0 || memcmp(b->data, in, n) == 0);
    vmio_ml_buf_free(b);
}

static void check_lease(const struct vmio_memlend_lease *l)
{
    CHECK(l->id != 0);
    CHECK(l->state >= VMIO_MEMLEND_PENDING && l->state <= VMIO_MEMLEND_LOST);
    CHECK(vmio_ml_name_valid(l->lender) && vmio_ml_name_valid(l->borrower));
    CHECK(vmio_ml_portal_valid(l->portal));
    CHECK(l->target_iqn[0] == 0 || vmio_ml_iqn_valid(l->target_iqn));
}

static void fuzz_header(const uint8_t *data)
{
    struct vmio_ml_hdr h, keep;
    memset(&keep, 0xa5, sizeof keep);
    h = keep;
    int r = vmio_ml_decode_hdr(API, data, &h);
    if (r < 0) {
        check_failure(r);
        CHECK(memcmp(&h, &keep, sizeof h) == 0);
        return;
    }
    CHECK(h.flags == 0 && h.length <= VMIO_ML_MAX_BODY);
    CHECK(h.status == 0 || vmio_ml_errno_valid(h.status));
    CHECK(h.status == 0 || (h.type & VMIO_ML_REPLY) || h.type == VMIO_ML_FATAL);
    uint8_t out[VMIO_ML_HDR_SIZE];
    vmio_ml_encode_hdr(&h, out);
    CHECK(memcmp(out, data, sizeof out) == 0);
}

#define DECODE_KEEP(type_, call_, ok_)                                          \
    do {                                                                        \
        type_ m_, keep_;                                                        \
        memset(&keep_, 0xa5, sizeof keep_);                                     \
        m_ = keep_;                                                             \
        int r_ = call_;                                                         \
        if (r_ < 0) {                                                           \
            check_failure(r_);                                                  \
            CHECK(memcmp(&m_, &keep_, sizeof m_) == 0);                         \
        } else {                                                                \
            CHECK(r_ == 0);                                                     \
            ok_;                                                                \
        }                                                                       \
    } while (0)

static void fuzz_body(const uint8_t *b, size_t n)
{
    struct vmio_ml_buf e = { 0 };

    DECODE_KEEP(struct vmio_ml_hello, vmio_ml_decode_hello(API, b, n, &m_), {
        CHECK(vmio_ml_name_valid(m_.name));
        CHECK(m_.role >= 1 && m_.role <= 3 && m_.min_version >= 1);
        vmio_ml_encode_hello(&e, &m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(struct vmio_ml_hello_reply, vmio_ml_decode_hello_reply(API, b, n, &m_), {
        vmio_ml_encode_hello_reply(&e, &m_);
        check_reencode(&e, b, n);
    });
    {
        uint8_t p[VMIO_ML_PROOF_SIZE], keep[VMIO_ML_PROOF_SIZE];
        memset(keep, 0xa5, sizeof keep);
        memcpy(p, keep, sizeof p);
        int r = vmio_ml_decode_auth(API, b, n, p);
        if (r < 0) {
            check_failure(r);
            CHECK(memcmp(p, keep, sizeof p) == 0);
        } else {
            CHECK(n == sizeof p && memcmp(p, b, n) == 0);
        }
    }
    DECODE_KEEP(struct vmio_ml_register, vmio_ml_decode_register(API, b, n, &m_), {
        CHECK(vmio_ml_portal_valid(m_.portal));
        vmio_ml_encode_register(&e, &m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(uint64_t, vmio_ml_decode_u64(API, b, n, &m_), {
        vmio_ml_put_u64(&e, m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(uint32_t, vmio_ml_decode_lease_seconds(API, b, n, &m_), {
        CHECK(m_ >= 1 && m_ <= 86400);
        vmio_ml_put_u32(&e, m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(struct vmio_ml_provided, vmio_ml_decode_provided(API, b, n, &m_), {
        CHECK(m_.err == 0 ? vmio_ml_iqn_valid(m_.target_iqn)
                          : vmio_ml_errno_valid((int)m_.err) && !m_.target_iqn[0]);
        vmio_ml_encode_provided(&e, &m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(struct vmio_ml_request, vmio_ml_decode_request(API, b, n, &m_), {
        vmio_ml_encode_request(&e, &m_);
        check_reencode(&e, b, n);
    });
    {
        int r = vmio_ml_decode_empty(API, b, n);
        if (r < 0)
            check_failure(r);
        else
            CHECK(n == 0);
    }
    DECODE_KEEP(struct vmio_memlend_lease, vmio_ml_decode_lease_body(API, b, n, &m_), {
        check_lease(&m_);
        vmio_ml_encode_lease(&e, &m_);
        check_reencode(&e, b, n);
    });
    DECODE_KEEP(struct vmio_memlend_notice, vmio_ml_decode_notice(API, b, n, &m_), {
        CHECK(m_.type >= 1 && m_.type <= 4);
        check_lease(&m_.lease);
        vmio_ml_encode_notice(&e, &m_);
        check_reencode(&e, b, n);
    });
    {
        struct vmio_memlend_lease *ls = (void *)&e, *keep_ls = ls;
        struct vmio_memlend_lender_info *ld = (void *)&e, *keep_ld = ld;
        size_t nls = 77, nld = 88;
        int r = vmio_ml_decode_status(API, b, n, &ls, &nls, &ld, &nld);
        if (r < 0) {
            check_failure(r);
            CHECK(ls == keep_ls && ld == keep_ld && nls == 77 && nld == 88);
        } else {
            CHECK(nls <= VMIO_ML_MAX_LEASES && nld <= VMIO_ML_MAX_LENDERS);
            for (size_t i = 0; i < nls; i++)
                check_lease(&ls[i]);
            for (size_t i = 0; i < nld; i++) {
                CHECK(vmio_ml_name_valid(ld[i].name) && vmio_ml_portal_valid(ld[i].portal));
                CHECK(ld[i].available <= 1);
            }
            struct vmio_ml_buf s = { 0 };
            vmio_ml_encode_status(&s, ld, nld, ls, nls);
            check_reencode(&s, b, n);
            free(ls);
            free(ld);
        }
    }
    {
        char msg[VMIO_ML_MAX_ERRMSG + 1], keep[VMIO_ML_MAX_ERRMSG + 1];
        memset(keep, 0xa5, sizeof keep);
        memcpy(msg, keep, sizeof msg);
        int r = vmio_ml_decode_error(API, b, n, msg);
        if (r < 0) {
            check_failure(r);
            CHECK(memcmp(msg, keep, sizeof msg) == 0);
        } else {
            CHECK(strlen(msg) <= VMIO_ML_MAX_ERRMSG);
            vmio_ml_encode_error(&e, msg);
            check_reencode(&e, b, n);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < VMIO_ML_HDR_SIZE)
        return 0;
    fuzz_header(data);
    size_t n = size - VMIO_ML_HDR_SIZE;
    /* Exactly the body's size, so that any over-read is reported. */
    uint8_t *body = malloc(n ? n : 1);
    if (!body)
        return 0;
    memcpy(body, data + VMIO_ML_HDR_SIZE, n);
    fuzz_body(body, n);
    free(body);
    return 0;
}
