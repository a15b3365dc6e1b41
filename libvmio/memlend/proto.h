/* The memory-lending manager protocol (docs/memlend-protocol.md is the
 * normative description): frame header, message bodies, their encoders
 * and strict decoders, the authentication proofs and the error-code
 * mapping. Shared by the manager (manager.c), the client (client.c) and
 * the fuzz harness. All integers are little endian. */
#ifndef VMIO_MEMLEND_PROTO_H
#define VMIO_MEMLEND_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/memlend.h>

#define VMIO_ML_MAGIC 0x4C4D4D56u   /* bytes "VMML" */
#define VMIO_ML_VERSION 1u
#define VMIO_ML_HDR_SIZE 20u
#define VMIO_ML_NONCE_SIZE 32u
#define VMIO_ML_PROOF_SIZE 32u
#define VMIO_ML_MAX_BODY (4u << 20)
#define VMIO_ML_MAX_ERRMSG 1024u
/* Limits of the strings (bytes, without a terminator). */
#define VMIO_ML_MAX_NAME 63u
#define VMIO_ML_MAX_PORTAL 127u
#define VMIO_ML_MAX_IQN 223u
/* Largest status reply: this many lenders and leases. The manager refuses
 * to hold more. */
#define VMIO_ML_MAX_LENDERS 4096u
#define VMIO_ML_MAX_LEASES 4096u
/* Largest lease size (1 PiB) and its granularity. */
#define VMIO_ML_MAX_SIZE (1ull << 50)
#define VMIO_ML_SIZE_ALIGN 4096u

/* Message types. A reply has the request's type with bit 0x80 set. */
enum vmio_ml_type {
    VMIO_ML_HELLO = 0x01,
    VMIO_ML_AUTH = 0x02,
    VMIO_ML_REGISTER = 0x10,
    VMIO_ML_HEARTBEAT = 0x11,
    VMIO_ML_WITHDRAW = 0x12,
    VMIO_ML_PROVIDED = 0x13,
    VMIO_ML_RECLAIM = 0x14,
    VMIO_ML_UNEXPORTED = 0x15,
    VMIO_ML_REQUEST = 0x20,
    VMIO_ML_ATTACHED = 0x21,
    VMIO_ML_RELEASE = 0x22,
    VMIO_ML_STATUS = 0x30,
    VMIO_ML_NOTICE = 0x40,     /* manager -> client, id 0, never answered */
    VMIO_ML_FATAL = 0x7f,      /* manager -> client, id 0: the manager closes the
                                  connection; status says why, body is a message */
    VMIO_ML_REPLY = 0x80
};

struct vmio_ml_hdr {
    uint16_t type;
    uint16_t flags;            /* 0 in version 1 */
    uint32_t id;               /* request id, echoed in the reply; 0 in notices */
    int32_t status;            /* replies: 0 or a VMIO_ML_E* code; else 0 */
    uint32_t length;           /* body bytes after the header */
};

struct vmio_ml_hello {         /* C->S */
    uint16_t min_version, max_version;
    uint32_t role;
    uint8_t nonce[VMIO_ML_NONCE_SIZE];
    char name[VMIO_ML_MAX_NAME + 1];
};

struct vmio_ml_hello_reply {   /* S->C */
    uint16_t version;
    uint8_t nonce[VMIO_ML_NONCE_SIZE];
    uint8_t proof[VMIO_ML_PROOF_SIZE];
};

struct vmio_ml_register {
    char portal[VMIO_ML_MAX_PORTAL + 1];
    uint64_t exportable;
};

struct vmio_ml_provided {
    uint64_t lease_id;
    uint32_t err;              /* 0 or a VMIO_ML_E* code (positive) */
    uint32_t lun;
    char target_iqn[VMIO_ML_MAX_IQN + 1];
};

struct vmio_ml_request {
    uint64_t size;
    uint32_t wait_ms;          /* how long the borrower waits for READY */
};

/* Error codes in reply headers and PROVIDED: Linux errno numbers, only
 * these (anything else is a protocol error). */
int vmio_ml_errno_valid(int code);

/* Header: fixed 20 bytes. Decoding checks magic, flags, the type against
 * the known set, length <= VMIO_ML_MAX_BODY and the status rules. */
void vmio_ml_encode_hdr(const struct vmio_ml_hdr *h, uint8_t out[VMIO_ML_HDR_SIZE]);
int vmio_ml_decode_hdr(const char *api, const uint8_t in[VMIO_ML_HDR_SIZE],
                       struct vmio_ml_hdr *h);

/* A growable output buffer for bodies and frames. */
struct vmio_ml_buf {
    uint8_t *data;
    size_t len, cap;
    int oom;                   /* an append failed: the content is invalid */
};
void vmio_ml_buf_free(struct vmio_ml_buf *b);
void vmio_ml_put_u16(struct vmio_ml_buf *b, uint16_t v);
void vmio_ml_put_u32(struct vmio_ml_buf *b, uint32_t v);
void vmio_ml_put_u64(struct vmio_ml_buf *b, uint64_t v);
void vmio_ml_put_bytes(struct vmio_ml_buf *b, const void *p, size_t n);
void vmio_ml_put_str(struct vmio_ml_buf *b, const char *s);
/* Append a whole frame (header + body) to b. */
void vmio_ml_put_frame(struct vmio_ml_buf *b, uint16_t type, uint32_t id, int32_t status,
                       const void *body, size_t len);

/* Body encoders (append to b) and strict decoders: the body must be
 * consumed exactly, strings respect their limits and character sets,
 * enumerations their values. Decoders return 0 or -EPROTO (message with
 * api prefix) and leave *out untouched on failure. */
void vmio_ml_encode_hello(struct vmio_ml_buf *b, const struct vmio_ml_hello *m);
int vmio_ml_decode_hello(const char *api, const uint8_t *p, size_t n, struct vmio_ml_hello *out);
void vmio_ml_encode_hello_reply(struct vmio_ml_buf *b, const struct vmio_ml_hello_reply *m);
int vmio_ml_decode_hello_reply(const char *api, const uint8_t *p, size_t n,
                               struct vmio_ml_hello_reply *out);
/* AUTH body: the client's proof. */
int vmio_ml_decode_auth(const char *api, const uint8_t *p, size_t n,
                        uint8_t proof[VMIO_ML_PROOF_SIZE]);
void vmio_ml_encode_register(struct vmio_ml_buf *b, const struct vmio_ml_register *m);
int vmio_ml_decode_register(const char *api, const uint8_t *p, size_t n,
                            struct vmio_ml_register *out);
/* Bodies of one u64 (HEARTBEAT: exportable; RECLAIM, UNEXPORTED,
 * ATTACHED, RELEASE: a lease id). */
int vmio_ml_decode_u64(const char *api, const uint8_t *p, size_t n, uint64_t *out);
/* Body of one u32 (REGISTER and HEARTBEAT replies: the lease seconds,
 * 1..86400). */
int vmio_ml_decode_lease_seconds(const char *api, const uint8_t *p, size_t n, uint32_t *out);
void vmio_ml_encode_provided(struct vmio_ml_buf *b, const struct vmio_ml_provided *m);
int vmio_ml_decode_provided(const char *api, const uint8_t *p, size_t n,
                            struct vmio_ml_provided *out);
void vmio_ml_encode_request(struct vmio_ml_buf *b, const struct vmio_ml_request *m);
int vmio_ml_decode_request(const char *api, const uint8_t *p, size_t n,
                           struct vmio_ml_request *out);
/* Empty bodies (WITHDRAW, STATUS, most replies). */
int vmio_ml_decode_empty(const char *api, const uint8_t *p, size_t n);
/* A lease (REQUEST reply). */
void vmio_ml_encode_lease(struct vmio_ml_buf *b, const struct vmio_memlend_lease *l);
int vmio_ml_decode_lease_body(const char *api, const uint8_t *p, size_t n,
                              struct vmio_memlend_lease *out);
/* NOTICE body: type then lease. */
void vmio_ml_encode_notice(struct vmio_ml_buf *b, const struct vmio_memlend_notice *m);
int vmio_ml_decode_notice(const char *api, const uint8_t *p, size_t n,
                          struct vmio_memlend_notice *out);
/* STATUS reply: counts, lenders, leases. On success *leases and *lenders
 * are malloc'd (NULL when the count is 0). */
void vmio_ml_encode_status(struct vmio_ml_buf *b, const struct vmio_memlend_lender_info *lenders,
                           size_t nlenders, const struct vmio_memlend_lease *leases,
                           size_t nleases);
int vmio_ml_decode_status(const char *api, const uint8_t *p, size_t n,
                          struct vmio_memlend_lease **leases, size_t *nleases,
                          struct vmio_memlend_lender_info **lenders, size_t *nlenders);
/* Error reply body: a message of 0..VMIO_ML_MAX_ERRMSG printable bytes.
 * out (size >= VMIO_ML_MAX_ERRMSG + 1) gets it NUL terminated. */
void vmio_ml_encode_error(struct vmio_ml_buf *b, const char *msg);
int vmio_ml_decode_error(const char *api, const uint8_t *p, size_t n, char *out);

/* Character sets: names [A-Za-z0-9._-], 1..63 bytes; portals and IQNs
 * printable ASCII without spaces. 1 when valid. */
int vmio_ml_name_valid(const char *s);
int vmio_ml_portal_valid(const char *s);
int vmio_ml_iqn_valid(const char *s);

/* Authentication proofs: HMAC-SHA256(secret, label || cnonce || snonce ||
 * u32 role || name), with the label "vmio-memlend-server-v1" for the
 * manager's proof and "vmio-memlend-client-v1" for the client's, so that
 * neither is useful in the other direction or in another protocol. */
void vmio_ml_proof(const uint8_t *secret, size_t secret_len, int server,
                   const uint8_t cnonce[VMIO_ML_NONCE_SIZE],
                   const uint8_t snonce[VMIO_ML_NONCE_SIZE], uint32_t role, const char *name,
                   uint8_t out[VMIO_ML_PROOF_SIZE]);

/* "host:port" or "[v6addr]:port" -> host (brackets removed) and port.
 * port_zero_ok allows port 0. 0 or -EINVAL (message set). */
int vmio_ml_split_addr(const char *api, const char *addr, char *host, size_t hostlen,
                       uint16_t *port, int port_zero_ok);

#endif
