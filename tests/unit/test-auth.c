/* Authentication proofs (libvmio/protocol/auth.c) against independent
 * computations: nettle's HMAC-SHA256 over the documented input
 * (label || first nonce || second nonce) assembled in one buffer, and
 * nettle itself checked against RFC 4231 test vectors first. */
#include <nettle/hmac.h>

#include "test-common.h"

#include "protocol/auth.h"

static void hmac(const void *key, size_t klen, const void *msg, size_t mlen,
                 uint8_t out[SHA256_DIGEST_SIZE])
{
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, klen, key);
    hmac_sha256_update(&ctx, mlen, msg);
    hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    ck_assert_uint_eq(strlen(hex), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* Reference proof: HMAC(secret, label || n1 || n2) from one contiguous
 * buffer. */
static void ref_proof(const uint8_t *secret, size_t slen, const char *label,
                      const uint8_t *n1, const uint8_t *n2, uint8_t out[32])
{
    uint8_t msg[64 + 2 * VMIO_WIRE_NONCE_SIZE];
    size_t ll = strlen(label);
    ck_assert_uint_le(ll, 64);
    memcpy(msg, label, ll);
    memcpy(msg + ll, n1, VMIO_WIRE_NONCE_SIZE);
    memcpy(msg + ll + VMIO_WIRE_NONCE_SIZE, n2, VMIO_WIRE_NONCE_SIZE);
    hmac(secret, slen, msg, ll + 2 * VMIO_WIRE_NONCE_SIZE, out);
}

START_TEST(test_rfc4231_vectors)
{
    uint8_t out[32], expect[32];

    /* RFC 4231 test case 2: key "Jefe". */
    hmac("Jefe", 4, "what do ya want for nothing?", 28, out);
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", expect, 32);
    ck_assert_mem_eq(out, expect, 32);

    /* RFC 4231 test case 1: 20 bytes of 0x0b, "Hi There". */
    uint8_t key[20];
    memset(key, 0x0b, sizeof key);
    hmac(key, sizeof key, "Hi There", 8, out);
    unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", expect, 32);
    ck_assert_mem_eq(out, expect, 32);

    /* RFC 4231 test case 6: a key longer than the block size. */
    uint8_t longkey[131];
    memset(longkey, 0xaa, sizeof longkey);
    static const char msg6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac(longkey, sizeof longkey, msg6, sizeof msg6 - 1, out);
    unhex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", expect, 32);
    ck_assert_mem_eq(out, expect, 32);
}
END_TEST

static void nonces(uint8_t c[32], uint8_t s[32], uint8_t seed)
{
    for (int i = 0; i < 32; i++) {
        c[i] = (uint8_t)(seed + i);
        s[i] = (uint8_t)(0xf0 ^ (seed * 3 + i));
    }
}

START_TEST(test_proofs_match_reference)
{
    static const char *const secrets[] = { "s", "correct horse battery staple",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-longer-than-a-block" };
    for (size_t k = 0; k < sizeof secrets / sizeof secrets[0]; k++) {
        const uint8_t *sec = (const uint8_t *)secrets[k];
        size_t slen = strlen(secrets[k]);
        uint8_t cn[32], sn[32], got[32], ref[32];
        nonces(cn, sn, (uint8_t)(k * 40));

        vmio_auth_server_proof(sec, slen, cn, sn, got);
        ref_proof(sec, slen, "vmio-server-proof-v1", cn, sn, ref);
        ck_assert_mem_eq(got, ref, 32);

        vmio_auth_client_proof(sec, slen, sn, cn, got);
        ref_proof(sec, slen, "vmio-client-proof-v1", sn, cn, ref);
        ck_assert_mem_eq(got, ref, 32);
    }
}
END_TEST

START_TEST(test_proofs_differ)
{
    const uint8_t *sec = (const uint8_t *)"shared-secret";
    uint8_t cn[32], sn[32], sp[32], cp[32], sp2[32], x[32];
    nonces(cn, sn, 1);

    vmio_auth_server_proof(sec, 13, cn, sn, sp);
    vmio_auth_client_proof(sec, 13, sn, cn, cp);
    /* A client proof can never be replayed as a server proof (labels). */
    ck_assert_int_eq(vmio_auth_proof_equal(sp, cp), 0);
    /* The server proof is deterministic... */
    vmio_auth_server_proof(sec, 13, cn, sn, sp2);
    ck_assert_int_eq(vmio_auth_proof_equal(sp, sp2), 1);
    /* ...and depends on the order of the nonces. */
    vmio_auth_server_proof(sec, 13, sn, cn, x);
    ck_assert_int_eq(vmio_auth_proof_equal(sp, x), 0);
    /* Echoing the client's nonce as the server's changes everything too. */
    vmio_auth_server_proof(sec, 13, cn, cn, x);
    ck_assert_int_eq(vmio_auth_proof_equal(sp, x), 0);
    /* Every nonce bit matters. */
    for (int bit = 0; bit < 256; bit += 37) {
        uint8_t c2[32];
        memcpy(c2, cn, 32);
        c2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        vmio_auth_server_proof(sec, 13, c2, sn, x);
        ck_assert_int_eq(vmio_auth_proof_equal(sp, x), 0);
    }
}
END_TEST

START_TEST(test_wrong_secret)
{
    uint8_t cn[32], sn[32], good[32], bad[32];
    nonces(cn, sn, 9);
    vmio_auth_client_proof((const uint8_t *)"right", 5, sn, cn, good);
    vmio_auth_client_proof((const uint8_t *)"wrong", 5, sn, cn, bad);
    ck_assert_int_eq(vmio_auth_proof_equal(good, bad), 0);
    /* A prefix of the secret is a different secret. */
    vmio_auth_client_proof((const uint8_t *)"righ", 4, sn, cn, bad);
    ck_assert_int_eq(vmio_auth_proof_equal(good, bad), 0);
    /* (HMAC zero-pads keys, so "right" and "right\0" are one key: not a
     * property to test for.) */
}
END_TEST

START_TEST(test_proof_equal)
{
    uint8_t a[32], b[32];
    for (int i = 0; i < 32; i++)
        a[i] = b[i] = (uint8_t)(i * 11);
    ck_assert_int_eq(vmio_auth_proof_equal(a, b), 1);
    ck_assert_int_eq(vmio_auth_proof_equal(a, a), 1);
    /* A difference in any byte, including the first and the last. */
    for (int i = 0; i < 32; i++) {
        memcpy(b, a, 32);
        b[i] ^= 0x80;
        ck_assert_int_eq(vmio_auth_proof_equal(a, b), 0);
        b[i] ^= 0x81;
        ck_assert_int_eq(vmio_auth_proof_equal(a, b), 0);
    }
    memset(a, 0, 32);
    memset(b, 0, 32);
    ck_assert_int_eq(vmio_auth_proof_equal(a, b), 1);
    memset(b, 0xff, 32);
    ck_assert_int_eq(vmio_auth_proof_equal(a, b), 0);
}
END_TEST

START_TEST(test_random)
{
    uint8_t a[64], b[64];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    ck_assert_int_eq(vmio_auth_random("test_api", a, sizeof a), 0);
    ck_assert_int_eq(vmio_auth_random("test_api", b, sizeof b), 0);
    /* Two 512-bit draws are equal, or all zero, with negligible probability. */
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(!test_is_zero(a, sizeof a));
    ck_assert_int_eq(vmio_auth_random("test_api", a, 0), 0);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("hmac");
    tcase_add_test(tc, test_rfc4231_vectors);
    tcase_add_test(tc, test_proofs_match_reference);
    tcase_add_test(tc, test_proofs_differ);
    tcase_add_test(tc, test_wrong_secret);
    tcase_add_test(tc, test_proof_equal);
    tcase_add_test(tc, test_random);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(auth_suite());
}
