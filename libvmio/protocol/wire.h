/* The vmio wire protocol (docs/protocol.md is the normative description):
 * frame header, message bodies, their encoders and strict decoders, and
 * the error-code mapping. Shared by the client (storage/remote.c), the
 * server (server/) and the fuzz harness. All integers are little endian. */
#ifndef VMIO_PROTOCOL_WIRE_H
#define VMIO_PROTOCOL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define VMIO_WIRE_MAGIC 0x4F494D56u   /* bytes "VMIO" */
#define VMIO_WIRE_VERSION 1u
#define VMIO_WIRE_HDR_SIZE 24u
#define VMIO_WIRE_NONCE_SIZE 32u
#define VMIO_WIRE_PROOF_SIZE 32u      /* HMAC-SHA256 */
#define VMIO_WIRE_MAX_NAME 4096u      /* export name / path bytes */
#define VMIO_WIRE_MAX_HANDSHAKE (20u + 2u * VMIO_WIRE_MAX_NAME)
#define VMIO_WIRE_MAX_ERRMSG 1024u
/* Largest READ/WRITE payload a peer may use; the server announces its own
 * (<= this) in OPEN_REPLY and clients split larger requests. */
#define VMIO_WIRE_MAX_IO (32u << 20)
#define VMIO_WIRE_IO_BODY 32u
#define VMIO_WIRE_RANGE_BODY 24u
#define VMIO_WIRE_MAX_FRAME (VMIO_WIRE_MAX_IO + VMIO_WIRE_IO_BODY)

/* Message types. A reply has the request's type with bit 0x80 set. */
enum vmio_wire_type {
    VMIO_WIRE_HELLO = 0x01,
    VMIO_WIRE_AUTH = 0x02,
    VMIO_WIRE_OPEN = 0x03,
    VMIO_WIRE_READ = 0x10,
    VMIO_WIRE_WRITE = 0x11,
    VMIO_WIRE_FLUSH = 0x12,
    VMIO_WIRE_TRIM = 0x13,
    VMIO_WIRE_WRITE_ZEROES = 0x14,
    VMIO_WIRE_SIZE = 0x15,
    VMIO_WIRE_TRUNCATE = 0x16,
    VMIO_WIRE_BLOCK_STATUS = 0x17,
    VMIO_WIRE_DISCONNECT = 0x18,
    VMIO_WIRE_LOCAL = 0x19,        /* F_LOCAL: where the open file lives */
    VMIO_WIRE_REPLY = 0x80
};

/* Feature bits negotiated in HELLO (result = client & server). */
#define VMIO_WIRE_F_BLOCK_STATUS 0x1u
#define VMIO_WIRE_F_TRUNCATE 0x2u
#define VMIO_WIRE_F_RDMA 0x4u          /* data by one-sided RDMA */
#define VMIO_WIRE_F_LOCAL 0x8u         /* LOCAL: same-host data path */
#define VMIO_WIRE_F_ALL (VMIO_WIRE_F_BLOCK_STATUS | VMIO_WIRE_F_TRUNCATE)

/* OPEN flags: same bits as VMIO_O_*. */
#define VMIO_WIRE_OPEN_RDWR 0x1u
#define VMIO_WIRE_OPEN_CREATE 0x2u
#define VMIO_WIRE_OPEN_DIRECT 0x4u
#define VMIO_WIRE_OPEN_TRUNC 0x8u
#define VMIO_WIRE_OPEN_EXCL 0x10u
#define VMIO_WIRE_OPEN_ALL 0x1fu

/* Request flags (READ/WRITE/TRIM/WRITE_ZEROES): VMIO_REQ_* bits. */
#define VMIO_WIRE_REQ_FUA 0x1u
#define VMIO_WIRE_REQ_MAY_TRIM 0x2u
#define VMIO_WIRE_REQ_ALL 0x3u

struct vmio_wire_hdr {
    uint16_t type;
    uint16_t flags;      /* must be 0 in version 1 */
    uint64_t id;
    uint32_t length;     /* bytes after the header */
    int32_t status;      /* replies: 0 or a VMIO_WIRE_E* code */
};

struct vmio_wire_hello {          /* C->S, 40 bytes */
    uint16_t min_version, max_version;
    uint32_t features;
    uint8_t nonce[VMIO_WIRE_NONCE_SIZE];
};

struct vmio_wire_hello_reply {    /* S->C, 72 bytes */
    uint16_t version;
    uint32_t features;
    uint8_t nonce[VMIO_WIRE_NONCE_SIZE];
    uint8_t proof[VMIO_WIRE_PROOF_SIZE];
};

struct vmio_wire_open {           /* C->S, 20 + names */
    uint32_t flags;
    uint64_t create_size;
    const char *export_name; uint16_t export_len;   /* point into the frame */
    const char *path; uint16_t path_len;
};

struct vmio_wire_open_reply {     /* S->C, 16 bytes */
    uint64_t size;
    uint32_t caps;                /* VMIO_CAP_* */
    uint32_t max_io;
};

struct vmio_wire_io {             /* READ/WRITE body, 32 bytes */
    uint64_t offset;
    uint32_t length;
    uint32_t flags;
    uint64_t addr;                /* client buffer for RDMA; 0 over TCP */
    uint32_t rkey;                /* its remote key; 0 over TCP */
};

struct vmio_wire_range {          /* TRIM/WRITE_ZEROES/BLOCK_STATUS, 24 bytes */
    uint64_t offset;
    uint64_t length;
    uint32_t flags;
};

/* LOCAL reply, 64 bytes: what a client on the same host needs to take
 * over the server's open file descriptor (docs/protocol.md section 13). */
#define VMIO_WIRE_LOCAL_REPLY 64u
#define VMIO_WIRE_LOCAL_RDWR 0x1u       /* the descriptor is open read-write */
#define VMIO_WIRE_LOCAL_ALL 0x1u
struct vmio_wire_local_reply {
    uint8_t boot_id[16];          /* the server's kernel boot id */
    uint64_t pidns;               /* inode of its pid namespace */
    uint32_t pid;                 /* the server process, in that namespace */
    uint32_t fd;                  /* the image's descriptor in it */
    uint64_t dev, ino;            /* the image's st_dev, st_ino */
    uint32_t flags;               /* VMIO_WIRE_LOCAL_* */
};

/* A decoded request (server side). */
struct vmio_wire_request {
    struct vmio_wire_hdr hdr;
    union {
        struct vmio_wire_io io;
        struct vmio_wire_range range;
        uint64_t size;            /* TRUNCATE */
    } u;
    const uint8_t *data;          /* WRITE payload (points into body) */
};

/* Wire error codes (fixed numbers, documented; Linux's errno values). */
enum vmio_wire_error {
    VMIO_WIRE_EOK = 0,
    VMIO_WIRE_EPERM = 1,
    VMIO_WIRE_ENOENT = 2,
    VMIO_WIRE_EIO = 5,
    VMIO_WIRE_ENOMEM = 12,
    VMIO_WIRE_EACCES = 13,
    VMIO_WIRE_EEXIST = 17,
    VMIO_WIRE_ENOTDIR = 20,
    VMIO_WIRE_EISDIR = 21,
    VMIO_WIRE_EINVAL = 22,
    VMIO_WIRE_EFBIG = 27,
    VMIO_WIRE_ENOSPC = 28,
    VMIO_WIRE_EROFS = 30,
    VMIO_WIRE_ENAMETOOLONG = 36,
    VMIO_WIRE_EPROTO = 71,
    VMIO_WIRE_EOVERFLOW = 75,
    VMIO_WIRE_ENOTSUP = 95,
    VMIO_WIRE_ESHUTDOWN = 108
};
int32_t vmio_wire_status_from_errno(int err);   /* err > 0 */
int vmio_wire_errno_from_status(int32_t status); /* returns > 0 */

/* Header. decode checks magic, flags and that length <= max_length;
 * returns 0 or -EPROTO with a message recorded under api. */
void vmio_wire_encode_hdr(uint8_t out[VMIO_WIRE_HDR_SIZE], const struct vmio_wire_hdr *h);
int vmio_wire_decode_hdr(const char *api, const uint8_t in[VMIO_WIRE_HDR_SIZE],
                         uint32_t max_length, struct vmio_wire_hdr *h);

/* Bodies. Encoders return the number of bytes written; out must be large
 * enough (sizes above). Decoders are strict about lengths and reserved
 * fields and return 0 or -EPROTO with a message. */
size_t vmio_wire_encode_hello(uint8_t *out, const struct vmio_wire_hello *m);
int vmio_wire_decode_hello(const char *api, const uint8_t *in, size_t len,
                           struct vmio_wire_hello *m);
size_t vmio_wire_encode_hello_reply(uint8_t *out, const struct vmio_wire_hello_reply *m);
int vmio_wire_decode_hello_reply(const char *api, const uint8_t *in, size_t len,
                                 struct vmio_wire_hello_reply *m);
/* out needs 20 + export_len + path_len bytes. */
size_t vmio_wire_encode_open(uint8_t *out, const struct vmio_wire_open *m);
int vmio_wire_decode_open(const char *api, const uint8_t *in, size_t len,
                          struct vmio_wire_open *m);
size_t vmio_wire_encode_open_reply(uint8_t *out, const struct vmio_wire_open_reply *m);
int vmio_wire_decode_open_reply(const char *api, const uint8_t *in, size_t len,
                                struct vmio_wire_open_reply *m);
size_t vmio_wire_encode_local_reply(uint8_t *out, const struct vmio_wire_local_reply *m);
int vmio_wire_decode_local_reply(const char *api, const uint8_t *in, size_t len,
                                 struct vmio_wire_local_reply *m);
size_t vmio_wire_encode_io(uint8_t *out, const struct vmio_wire_io *m);
size_t vmio_wire_encode_range(uint8_t *out, const struct vmio_wire_range *m);

/* Decode one request frame (header already decoded into hdr, body of
 * hdr->length bytes). Checks the type, body sizes, flags, that a WRITE's
 * payload matches its length, and that io lengths are <= max_io. */
int vmio_wire_decode_request(const char *api, const struct vmio_wire_hdr *hdr,
                             const uint8_t *body, uint32_t max_io,
                             struct vmio_wire_request *req);

/* Little-endian helpers. */
static inline void vmio_put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void vmio_put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void vmio_put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t vmio_get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t vmio_get_le32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t vmio_get_le64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

#endif
