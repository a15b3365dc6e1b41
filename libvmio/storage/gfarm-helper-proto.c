/* Encoding and strict decoding of the gfarm helper messages. */
#include <errno.h>
#include <string.h>

#include "storage/gfarm-helper-proto.h"

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Request: magic, op, window, textlen (u32 each), arg0, arg1 (u64), then
 * OPEN's text: path NUL beneath (no trailing NUL). */
int gfh_encode_req(uint8_t *buf, size_t cap, const struct gfh_req *q)
{
    size_t text = 0;
    if (q->op == GFH_OPEN) {
        if (q->path_len == 0 || q->path_len > GFH_MAX_PATH || q->beneath_len > GFH_MAX_PATH)
            return -ENAMETOOLONG;
        text = q->path_len + 1 + q->beneath_len;
    }
    if (cap < GFH_REQ_HEAD + text)
        return -EINVAL;
    put32(buf, GFH_MAGIC);
    put32(buf + 4, q->op);
    put32(buf + 8, q->window);
    put32(buf + 12, (uint32_t)text);
    put64(buf + 16, q->arg0);
    put64(buf + 24, q->arg1);
    if (text) {
        memcpy(buf + GFH_REQ_HEAD, q->path, q->path_len);
        buf[GFH_REQ_HEAD + q->path_len] = 0;
        if (q->beneath_len)
            memcpy(buf + GFH_REQ_HEAD + q->path_len + 1, q->beneath, q->beneath_len);
    }
    return (int)(GFH_REQ_HEAD + text);
}

int gfh_decode_req(const uint8_t *buf, size_t len, struct gfh_req *q)
{
    memset(q, 0, sizeof *q);
    if (len < GFH_REQ_HEAD || get32(buf) != GFH_MAGIC)
        return -EBADMSG;
    q->op = get32(buf + 4);
    q->window = get32(buf + 8);
    uint32_t text = get32(buf + 12);
    q->arg0 = get64(buf + 16);
    q->arg1 = get64(buf + 24);
    if (text != len - GFH_REQ_HEAD)
        return -EBADMSG;
    switch (q->op) {
    case GFH_OPEN: {
        if (text < 2 || text > 2 * GFH_MAX_PATH + 1)
            return -EBADMSG;
        const uint8_t *t = buf + GFH_REQ_HEAD;
        const uint8_t *nul = memchr(t, 0, text);
        if (!nul || nul == t)
            return -EBADMSG;
        q->path = (const char *)t;
        q->path_len = (size_t)(nul - t);
        q->beneath = (const char *)nul + 1;
        q->beneath_len = text - q->path_len - 1;
        if (q->path_len > GFH_MAX_PATH || q->beneath_len > GFH_MAX_PATH ||
            memchr(q->beneath, 0, q->beneath_len))
            return -EBADMSG;
        if (q->window == 0)
            return -EPROTO;
        return 0;
    }
    case GFH_READ:
    case GFH_WRITE:
        if (q->arg0 + q->arg1 < q->arg0)
            return -EPROTO;
        /* fall through */
    case GFH_SYNC:
    case GFH_TRUNCATE:
    case GFH_SIZE:
    case GFH_CLOSE:
        return text == 0 ? 0 : -EBADMSG;
    default:
        return -EPROTO;
    }
}

/* Reply: magic, op, err, msglen (u32 each), value (u64), then msglen
 * bytes of message (no NUL). */
int gfh_encode_rep(uint8_t *buf, size_t cap, const struct gfh_rep *p)
{
    size_t m = strnlen(p->msg, GFH_MAX_MSG);
    if (cap < GFH_REP_HEAD + m)
        return -EINVAL;
    put32(buf, GFH_MAGIC);
    put32(buf + 4, p->op);
    put32(buf + 8, (uint32_t)p->err);
    put32(buf + 12, (uint32_t)m);
    put64(buf + 16, p->value);
    memcpy(buf + GFH_REP_HEAD, p->msg, m);
    return (int)(GFH_REP_HEAD + m);
}

int gfh_decode_rep(const uint8_t *buf, size_t len, struct gfh_rep *p)
{
    memset(p, 0, sizeof *p);
    if (len < GFH_REP_HEAD || get32(buf) != GFH_MAGIC)
        return -EBADMSG;
    p->op = get32(buf + 4);
    p->err = (int32_t)get32(buf + 8);
    uint32_t m = get32(buf + 12);
    p->value = get64(buf + 16);
    if (p->op < GFH_OPEN || p->op > GFH_CLOSE)
        return -EPROTO;
    if (p->err < 0 || p->err > 4095)
        return -EPROTO;
    if (m > GFH_MAX_MSG || m != len - GFH_REP_HEAD)
        return -EBADMSG;
    /* Keep the text printable: it ends up in vmio_errmsg(). */
    for (uint32_t i = 0; i < m; i++) {
        uint8_t c = buf[GFH_REP_HEAD + i];
        p->msg[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    p->msg[m] = 0;
    return 0;
}
