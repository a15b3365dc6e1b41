/* Encoders and strict decoders for vmio protocol frames. Every byte that
 * comes from a peer goes through a decoder here before anything uses it. */
#include <string.h>

#include "core/internal.h"
#include "protocol/wire.h"

static const struct { int err; int32_t status; } errmap[] = {
    { EPERM, VMIO_WIRE_EPERM }, { ENOENT, VMIO_WIRE_ENOENT }, { EIO, VMIO_WIRE_EIO },
    { ENOMEM, VMIO_WIRE_ENOMEM }, { EACCES, VMIO_WIRE_EACCES }, { EEXIST, VMIO_WIRE_EEXIST },
    { ENOTDIR, VMIO_WIRE_ENOTDIR }, { EISDIR, VMIO_WIRE_EISDIR }, { EINVAL, VMIO_WIRE_EINVAL },
    { EFBIG, VMIO_WIRE_EFBIG }, { ENOSPC, VMIO_WIRE_ENOSPC }, { EROFS, VMIO_WIRE_EROFS },
    { ENAMETOOLONG, VMIO_WIRE_ENAMETOOLONG }, { EPROTO, VMIO_WIRE_EPROTO },
    { EOVERFLOW, VMIO_WIRE_EOVERFLOW }, { ENOTSUP, VMIO_WIRE_ENOTSUP },
    { ESHUTDOWN, VMIO_WIRE_ESHUTDOWN }, { EDQUOT, VMIO_WIRE_ENOSPC },
};

int32_t vmio_wire_status_from_errno(int err)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(errmap); i++)
        if (errmap[i].err == err)
            return errmap[i].status;
    return VMIO_WIRE_EIO;
}

int vmio_wire_errno_from_status(int32_t status)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(errmap); i++)
        if (errmap[i].status == status)
            return errmap[i].err;
    return EIO;
}

void vmio_wire_encode_hdr(uint8_t out[VMIO_WIRE_HDR_SIZE], const struct vmio_wire_hdr *h)
{
    vmio_put_le32(out, VMIO_WIRE_MAGIC);
    vmio_put_le16(out + 4, h->type);
    vmio_put_le16(out + 6, h->flags);
    vmio_put_le64(out + 8, h->id);
    vmio_put_le32(out + 16, h->length);
    vmio_put_le32(out + 20, (uint32_t)h->status);
}

int vmio_wire_decode_hdr(const char *api, const uint8_t in[VMIO_WIRE_HDR_SIZE],
                         uint32_t max_length, struct vmio_wire_hdr *h)
{
    uint32_t magic = vmio_get_le32(in);
    if (magic != VMIO_WIRE_MAGIC)
        return vmio_set_error(api, EPROTO, "bad frame magic 0x%08x (not a vmio peer?)", magic);
    struct vmio_wire_hdr t;
    t.type = vmio_get_le16(in + 4);
    t.flags = vmio_get_le16(in + 6);
    t.id = vmio_get_le64(in + 8);
    t.length = vmio_get_le32(in + 16);
    t.status = (int32_t)vmio_get_le32(in + 20);
    if (t.flags != 0)
        return vmio_set_error(api, EPROTO, "frame has unknown flags 0x%x", t.flags);
    if (t.length > max_length)
        return vmio_set_error(api, EPROTO, "frame length %u exceeds limit %u", t.length,
                              max_length);
    *h = t;
    return 0;
}

size_t vmio_wire_encode_hello(uint8_t *out, const struct vmio_wire_hello *m)
{
    vmio_put_le16(out, m->min_version);
    vmio_put_le16(out + 2, m->max_version);
    vmio_put_le32(out + 4, m->features);
    memcpy(out + 8, m->nonce, VMIO_WIRE_NONCE_SIZE);
    return 8 + VMIO_WIRE_NONCE_SIZE;
}

int vmio_wire_decode_hello(const char *api, const uint8_t *in, size_t len,
                           struct vmio_wire_hello *m)
{
    if (len != 8 + VMIO_WIRE_NONCE_SIZE)
        return vmio_set_error(api, EPROTO, "HELLO has %zu bytes, expected %u", len,
                              8 + VMIO_WIRE_NONCE_SIZE);
    struct vmio_wire_hello t;
    t.min_version = vmio_get_le16(in);
    t.max_version = vmio_get_le16(in + 2);
    t.features = vmio_get_le32(in + 4);
    memcpy(t.nonce, in + 8, VMIO_WIRE_NONCE_SIZE);
    if (t.min_version == 0 || t.min_version > t.max_version)
        return vmio_set_error(api, EPROTO, "HELLO has bad version range %u..%u",
                              t.min_version, t.max_version);
    *m = t;
    return 0;
}

size_t vmio_wire_encode_hello_reply(uint8_t *out, const struct vmio_wire_hello_reply *m)
{
    vmio_put_le16(out, m->version);
    vmio_put_le16(out + 2, 0);
    vmio_put_le32(out + 4, m->features);
    memcpy(out + 8, m->nonce, VMIO_WIRE_NONCE_SIZE);
    memcpy(out + 8 + VMIO_WIRE_NONCE_SIZE, m->proof, VMIO_WIRE_PROOF_SIZE);
    return 8 + VMIO_WIRE_NONCE_SIZE + VMIO_WIRE_PROOF_SIZE;
}

int vmio_wire_decode_hello_reply(const char *api, const uint8_t *in, size_t len,
                                 struct vmio_wire_hello_reply *m)
{
    if (len != 8 + VMIO_WIRE_NONCE_SIZE + VMIO_WIRE_PROOF_SIZE)
        return vmio_set_error(api, EPROTO, "HELLO reply has %zu bytes", len);
    if (vmio_get_le16(in + 2) != 0)
        return vmio_set_error(api, EPROTO, "HELLO reply has non-zero reserved field");
    struct vmio_wire_hello_reply t;
    t.version = vmio_get_le16(in);
    t.features = vmio_get_le32(in + 4);
    memcpy(t.nonce, in + 8, VMIO_WIRE_NONCE_SIZE);
    memcpy(t.proof, in + 8 + VMIO_WIRE_NONCE_SIZE, VMIO_WIRE_PROOF_SIZE);
    *m = t;
    return 0;
}

size_t vmio_wire_encode_open(uint8_t *out, const struct vmio_wire_open *m)
{
    vmio_put_le32(out, m->flags);
    vmio_put_le32(out + 4, 0);
    vmio_put_le64(out + 8, m->create_size);
    vmio_put_le16(out + 16, m->export_len);
    vmio_put_le16(out + 18, m->path_len);
    memcpy(out + 20, m->export_name, m->export_len);
    memcpy(out + 20 + m->export_len, m->path, m->path_len);
    return 20u + m->export_len + m->path_len;
}

static int check_name(const char *api, const char *what, const uint8_t *p, size_t n)
{
    if (n == 0)
        return vmio_set_error(api, EINVAL, "empty %s", what);
    if (n > VMIO_WIRE_MAX_NAME)
        return vmio_set_error(api, ENAMETOOLONG, "%s too long", what);
    for (size_t i = 0; i < n; i++)
        if (p[i] == 0)
            return vmio_set_error(api, EINVAL, "%s contains a NUL byte", what);
    return 0;
}

int vmio_wire_decode_open(const char *api, const uint8_t *in, size_t len,
                          struct vmio_wire_open *m)
{
    if (len < 20)
        return vmio_set_error(api, EPROTO, "OPEN too short (%zu bytes)", len);
    struct vmio_wire_open t;
    t.flags = vmio_get_le32(in);
    if (vmio_get_le32(in + 4) != 0)
        return vmio_set_error(api, EPROTO, "OPEN has non-zero reserved field");
    t.create_size = vmio_get_le64(in + 8);
    t.export_len = vmio_get_le16(in + 16);
    t.path_len = vmio_get_le16(in + 18);
    if (t.flags & ~VMIO_WIRE_OPEN_ALL)
        return vmio_set_error(api, EPROTO, "OPEN has unknown flags 0x%x", t.flags);
    if ((size_t)20 + t.export_len + t.path_len != len)
        return vmio_set_error(api, EPROTO, "OPEN name lengths do not match the frame");
    int r = check_name(api, "export name", in + 20, t.export_len);
    if (r < 0)
        return r;
    r = check_name(api, "path", in + 20 + t.export_len, t.path_len);
    if (r < 0)
        return r;
    if (t.create_size > (uint64_t)INT64_MAX)
        return vmio_set_error(api, EFBIG, "create size too large");
    t.export_name = (const char *)in + 20;
    t.path = (const char *)in + 20 + t.export_len;
    *m = t;
    return 0;
}

size_t vmio_wire_encode_open_reply(uint8_t *out, const struct vmio_wire_open_reply *m)
{
    vmio_put_le64(out, m->size);
    vmio_put_le32(out + 8, m->caps);
    vmio_put_le32(out + 12, m->max_io);
    return 16;
}

int vmio_wire_decode_open_reply(const char *api, const uint8_t *in, size_t len,
                                struct vmio_wire_open_reply *m)
{
    if (len != 16)
        return vmio_set_error(api, EPROTO, "OPEN reply has %zu bytes, expected 16", len);
    struct vmio_wire_open_reply t;
    t.size = vmio_get_le64(in);
    t.caps = vmio_get_le32(in + 8);
    t.max_io = vmio_get_le32(in + 12);
    if (t.max_io < 4096 || t.max_io > VMIO_WIRE_MAX_IO)
        return vmio_set_error(api, EPROTO, "server announced max I/O %u out of range",
                              t.max_io);
    if (t.size > (uint64_t)INT64_MAX)
        return vmio_set_error(api, EPROTO, "server announced absurd size");
    *m = t;
    return 0;
}

size_t vmio_wire_encode_local_reply(uint8_t *out, const struct vmio_wire_local_reply *m)
{
    memcpy(out, m->boot_id, 16);
    vmio_put_le64(out + 16, m->pidns);
    vmio_put_le32(out + 24, m->pid);
    vmio_put_le32(out + 28, m->fd);
    vmio_put_le64(out + 32, m->dev);
    vmio_put_le64(out + 40, m->ino);
    vmio_put_le32(out + 48, m->flags);
    memset(out + 52, 0, VMIO_WIRE_LOCAL_REPLY - 52);
    return VMIO_WIRE_LOCAL_REPLY;
}

int vmio_wire_decode_local_reply(const char *api, const uint8_t *in, size_t len,
                                 struct vmio_wire_local_reply *m)
{
    if (len != VMIO_WIRE_LOCAL_REPLY)
        return vmio_set_error(api, EPROTO, "LOCAL reply has %zu bytes, expected %u", len,
                              VMIO_WIRE_LOCAL_REPLY);
    struct vmio_wire_local_reply t;
    memcpy(t.boot_id, in, 16);
    t.pidns = vmio_get_le64(in + 16);
    t.pid = vmio_get_le32(in + 24);
    t.fd = vmio_get_le32(in + 28);
    t.dev = vmio_get_le64(in + 32);
    t.ino = vmio_get_le64(in + 40);
    t.flags = vmio_get_le32(in + 48);
    for (unsigned i = 52; i < VMIO_WIRE_LOCAL_REPLY; i++)
        if (in[i] != 0)
            return vmio_set_error(api, EPROTO, "LOCAL reply has non-zero reserved bytes");
    if (t.flags & ~VMIO_WIRE_LOCAL_ALL)
        return vmio_set_error(api, EPROTO, "LOCAL reply has unknown flags 0x%x", t.flags);
    if (t.pid == 0 || t.pid > INT32_MAX || t.fd > INT32_MAX)
        return vmio_set_error(api, EPROTO, "LOCAL reply names pid %u, descriptor %u", t.pid,
                              t.fd);
    *m = t;
    return 0;
}

size_t vmio_wire_encode_io(uint8_t *out, const struct vmio_wire_io *m)
{
    vmio_put_le64(out, m->offset);
    vmio_put_le32(out + 8, m->length);
    vmio_put_le32(out + 12, m->flags);
    vmio_put_le64(out + 16, m->addr);
    vmio_put_le32(out + 24, m->rkey);
    vmio_put_le32(out + 28, 0);
    return VMIO_WIRE_IO_BODY;
}

size_t vmio_wire_encode_range(uint8_t *out, const struct vmio_wire_range *m)
{
    vmio_put_le64(out, m->offset);
    vmio_put_le64(out + 8, m->length);
    vmio_put_le32(out + 16, m->flags);
    vmio_put_le32(out + 20, 0);
    return VMIO_WIRE_RANGE_BODY;
}

static int decode_io(const char *api, const uint8_t *in, struct vmio_wire_io *io)
{
    io->offset = vmio_get_le64(in);
    io->length = vmio_get_le32(in + 8);
    io->flags = vmio_get_le32(in + 12);
    io->addr = vmio_get_le64(in + 16);
    io->rkey = vmio_get_le32(in + 24);
    if (vmio_get_le32(in + 28) != 0)
        return vmio_set_error(api, EPROTO, "request has non-zero reserved field");
    if (io->flags & ~VMIO_WIRE_REQ_ALL)
        return vmio_set_error(api, EPROTO, "request has unknown flags 0x%x", io->flags);
    if (io->offset > (uint64_t)INT64_MAX || io->length > (uint64_t)INT64_MAX - io->offset)
        return vmio_set_error(api, EINVAL, "request range overflows");
    return 0;
}

static int decode_range(const char *api, const uint8_t *in, struct vmio_wire_range *r)
{
    r->offset = vmio_get_le64(in);
    r->length = vmio_get_le64(in + 8);
    r->flags = vmio_get_le32(in + 16);
    if (vmio_get_le32(in + 20) != 0)
        return vmio_set_error(api, EPROTO, "request has non-zero reserved field");
    if (r->flags & ~VMIO_WIRE_REQ_ALL)
        return vmio_set_error(api, EPROTO, "request has unknown flags 0x%x", r->flags);
    if (r->offset > (uint64_t)INT64_MAX || r->length > (uint64_t)INT64_MAX - r->offset)
        return vmio_set_error(api, EINVAL, "request range overflows");
    return 0;
}

int vmio_wire_decode_request(const char *api, const struct vmio_wire_hdr *hdr,
                             const uint8_t *body, uint32_t max_io,
                             struct vmio_wire_request *req)
{
    struct vmio_wire_request t;
    memset(&t, 0, sizeof t);
    t.hdr = *hdr;
    if (hdr->status != 0)
        return vmio_set_error(api, EPROTO, "request carries a status");
    int r = 0;
    switch (hdr->type) {
    case VMIO_WIRE_READ:
    case VMIO_WIRE_WRITE:
        if (hdr->length < VMIO_WIRE_IO_BODY)
            return vmio_set_error(api, EPROTO, "I/O request body too short");
        r = decode_io(api, body, &t.u.io);
        if (r < 0)
            return r;
        if (t.u.io.length == 0 || t.u.io.length > max_io)
            return vmio_set_error(api, EINVAL, "I/O length %u not in 1..%u", t.u.io.length,
                                  max_io);
        if (hdr->type == VMIO_WIRE_READ) {
            if (hdr->length != VMIO_WIRE_IO_BODY)
                return vmio_set_error(api, EPROTO, "READ carries a payload");
        } else if (t.u.io.rkey != 0) {
            /* The server fetches the data with RDMA READ. */
            if (hdr->length != VMIO_WIRE_IO_BODY)
                return vmio_set_error(api, EPROTO, "WRITE by RDMA carries a payload");
            t.data = NULL;
        } else {
            if (hdr->length != VMIO_WIRE_IO_BODY + t.u.io.length)
                return vmio_set_error(api, EPROTO,
                                      "WRITE payload is %u bytes, header says %u",
                                      hdr->length - VMIO_WIRE_IO_BODY, t.u.io.length);
            t.data = body + VMIO_WIRE_IO_BODY;
        }
        break;
    case VMIO_WIRE_TRIM:
    case VMIO_WIRE_WRITE_ZEROES:
    case VMIO_WIRE_BLOCK_STATUS:
        if (hdr->length != VMIO_WIRE_RANGE_BODY)
            return vmio_set_error(api, EPROTO, "range request has %u bytes", hdr->length);
        r = decode_range(api, body, &t.u.range);
        if (r < 0)
            return r;
        if (t.u.range.length == 0)
            return vmio_set_error(api, EINVAL, "zero-length range");
        break;
    case VMIO_WIRE_TRUNCATE:
        if (hdr->length != 8)
            return vmio_set_error(api, EPROTO, "TRUNCATE has %u bytes", hdr->length);
        t.u.size = vmio_get_le64(body);
        if (t.u.size > (uint64_t)INT64_MAX)
            return vmio_set_error(api, EFBIG, "TRUNCATE size too large");
        break;
    case VMIO_WIRE_FLUSH:
    case VMIO_WIRE_SIZE:
    case VMIO_WIRE_DISCONNECT:
    case VMIO_WIRE_LOCAL:
        if (hdr->length != 0)
            return vmio_set_error(api, EPROTO, "request type 0x%x carries a body", hdr->type);
        break;
    default:
        return vmio_set_error(api, EPROTO, "unknown request type 0x%x", hdr->type);
    }
    *req = t;
    return 0;
}
