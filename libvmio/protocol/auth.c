/* Challenge-response authentication with nettle's HMAC-SHA256. */
#include <string.h>
#include <sys/random.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

#include "core/internal.h"
#include "protocol/auth.h"

int vmio_auth_random(const char *api, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return vmio_set_error_errno(api, errno, "getrandom");
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void proof(const uint8_t *secret, size_t secret_len, const char *label,
                  const uint8_t *n1, const uint8_t *n2, uint8_t out[VMIO_WIRE_PROOF_SIZE])
{
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, secret_len, secret);
    hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
    hmac_sha256_update(&ctx, VMIO_WIRE_NONCE_SIZE, n1);
    hmac_sha256_update(&ctx, VMIO_WIRE_NONCE_SIZE, n2);
    hmac_sha256_digest(&ctx, VMIO_WIRE_PROOF_SIZE, out);
}

void vmio_auth_server_proof(const uint8_t *secret, size_t secret_len,
                            const uint8_t cnonce[VMIO_WIRE_NONCE_SIZE],
                            const uint8_t snonce[VMIO_WIRE_NONCE_SIZE],
                            uint8_t out[VMIO_WIRE_PROOF_SIZE])
{
    proof(secret, secret_len, "vmio-server-proof-v1", cnonce, snonce, out);
}

void vmio_auth_client_proof(const uint8_t *secret, size_t secret_len,
                            const uint8_t snonce[VMIO_WIRE_NONCE_SIZE],
                            const uint8_t cnonce[VMIO_WIRE_NONCE_SIZE],
                            uint8_t out[VMIO_WIRE_PROOF_SIZE])
{
    proof(secret, secret_len, "vmio-client-proof-v1", snonce, cnonce, out);
}

int vmio_auth_proof_equal(const uint8_t a[VMIO_WIRE_PROOF_SIZE],
                          const uint8_t b[VMIO_WIRE_PROOF_SIZE])
{
    return memeql_sec(a, b, VMIO_WIRE_PROOF_SIZE) != 0;
}
