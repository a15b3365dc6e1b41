/* CHAP credentials of a lent LUN's target, derived by lender and borrower
 * alike from the shared secret and the target's IQN, so that they never
 * travel on the manager protocol:
 *
 *   H      = HMAC-SHA256(secret, "vmio-memlend-chap-v1" || target_iqn)
 *   user   = "vmio-" || hex(H[0..8))      (21 characters)
 *   secret = hex(H[8..24))                (32 characters, 128 bits)
 *
 * Hex only, so that no tool's option parser or configuration syntax ever
 * sees a character it could misread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hmac.h>

#include "core/internal.h"
#include "memlend/proto.h"

#define API "vmio_memlend_chap_derive"
#define CHAP_LABEL "vmio-memlend-chap-v1"

static void hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}

int vmio_memlend_chap_derive(const char *secret_file, const char *target_iqn,
                             struct vmio_memlend_chap *out)
{
    VMIO_CHECK_ARG(API, secret_file != NULL, EFAULT);
    VMIO_CHECK_ARG(API, target_iqn != NULL, EFAULT);
    VMIO_CHECK_ARG(API, out != NULL, EFAULT);
    if (!vmio_ml_iqn_valid(target_iqn))
        return vmio_set_error(API, EINVAL,
                              "invalid target IQN '%.80s' (1-223 printable characters)",
                              target_iqn);
    uint8_t *secret;
    size_t slen;
    int r = vmio_read_secret_file(API, secret_file, &secret, &slen);
    if (r < 0)
        return r;
    uint8_t h[SHA256_DIGEST_SIZE];
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, slen, secret);
    hmac_sha256_update(&ctx, strlen(CHAP_LABEL), (const uint8_t *)CHAP_LABEL);
    hmac_sha256_update(&ctx, strlen(target_iqn), (const uint8_t *)target_iqn);
    hmac_sha256_digest(&ctx, sizeof h, h);
    memset(secret, 0, slen);
    free(secret);
    memset(&ctx, 0, sizeof ctx);

    struct vmio_memlend_chap c;
    memset(&c, 0, sizeof c);
    memcpy(c.user, "vmio-", 5);
    hex(c.user + 5, h, 8);
    hex(c.secret, h + 8, 16);
    memset(h, 0, sizeof h);
    *out = c;
    return 0;
}
