/* Messages between the gfarm:// backend and a vmio-gfarm-helper process.
 *
 * The backend starts each helper with a SOCK_SEQPACKET socket on fd 3 and
 * a shared data window (a memfd) on fd 4. One request at a time per helper:
 * the backend sends a request message, the helper answers with one reply.
 * Read and write payloads travel through the window, never the socket.
 * All integers are little endian on the wire (both ends are one machine,
 * but the decoder does not trust that the peer is well formed). */
#ifndef VMIO_STORAGE_GFARM_HELPER_PROTO_H
#define VMIO_STORAGE_GFARM_HELPER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define GFH_MAGIC 0x48464d56u         /* "VMFH" */
#define GFH_SOCK_FD 3
#define GFH_WINDOW_FD 4
#define GFH_MAX_PATH 4096
#define GFH_MAX_MSG 512

enum gfh_op {
    GFH_OPEN = 1,       /* arg0 = GFIO_* flags, arg1 = create size; text = path
                           NUL beneath-root (may be empty) */
    GFH_READ = 2,       /* arg0 = offset, arg1 = length (<= window) */
    GFH_WRITE = 3,      /* arg0 = offset, arg1 = length (<= window) */
    GFH_SYNC = 4,
    GFH_TRUNCATE = 5,   /* arg0 = size */
    GFH_SIZE = 6,       /* reply value = size */
    GFH_CLOSE = 7,      /* closes the file; the helper then exits */
};

#define GFH_REQ_HEAD 32
struct gfh_req {
    uint32_t op;
    uint32_t window;    /* OPEN: window size the helper must map */
    uint64_t arg0, arg1;
    const char *path;   /* OPEN only; points into the decoded buffer */
    size_t path_len;
    const char *beneath;
    size_t beneath_len;
};

#define GFH_REP_HEAD 24
struct gfh_rep {
    uint32_t op;
    int32_t err;        /* 0 or a positive errno */
    uint64_t value;
    char msg[GFH_MAX_MSG + 1];   /* NUL-terminated, printable */
};

/* Encoders return the message length (<= cap) or -EINVAL/-ENAMETOOLONG. */
int gfh_encode_req(uint8_t *buf, size_t cap, const struct gfh_req *q);
int gfh_encode_rep(uint8_t *buf, size_t cap, const struct gfh_rep *p);
/* Decoders check everything; 0 or -EBADMSG / -EPROTO with no output
 * pointing outside buf. */
int gfh_decode_req(const uint8_t *buf, size_t len, struct gfh_req *q);
int gfh_decode_rep(const uint8_t *buf, size_t len, struct gfh_rep *p);

#endif
