/* Shared-secret challenge-response authentication (HMAC-SHA256 from
 * nettle, constant-time comparison). */
#ifndef VMIO_PROTOCOL_AUTH_H
#define VMIO_PROTOCOL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/wire.h"

/* Fill buf with n cryptographically random bytes (getrandom). */
int vmio_auth_random(const char *api, void *buf, size_t n);

/* proof = HMAC-SHA256(secret, label || first_nonce || second_nonce).
 * The server proves itself with label "vmio-server-proof-v1" over
 * (client nonce, server nonce), the client with "vmio-client-proof-v1"
 * over (server nonce, client nonce). */
void vmio_auth_server_proof(const uint8_t *secret, size_t secret_len,
                            const uint8_t cnonce[VMIO_WIRE_NONCE_SIZE],
                            const uint8_t snonce[VMIO_WIRE_NONCE_SIZE],
                            uint8_t proof[VMIO_WIRE_PROOF_SIZE]);
void vmio_auth_client_proof(const uint8_t *secret, size_t secret_len,
                            const uint8_t snonce[VMIO_WIRE_NONCE_SIZE],
                            const uint8_t cnonce[VMIO_WIRE_NONCE_SIZE],
                            uint8_t proof[VMIO_WIRE_PROOF_SIZE]);
/* Constant-time equality of two proofs: 1 if equal. */
int vmio_auth_proof_equal(const uint8_t a[VMIO_WIRE_PROOF_SIZE],
                          const uint8_t b[VMIO_WIRE_PROOF_SIZE]);

#endif
