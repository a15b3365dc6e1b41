/* Encoders and strict decoders of the memory-lending manager protocol
 * (docs/memlend-protocol.md), the authentication proofs and the address
 * parser. Every decoder reads bytes that come from a peer: bounds are
 * checked before each read, bodies must be consumed exactly, and on
 * failure nothing is written to the caller's output. */
#include <stdlib.h>
#include <string.h>

#include <nettle/hmac.h>

#include "core/internal.h"
#include "memlend/proto.h"

static const int valid_errnos[] = {
    EPERM, ENOENT, EIO, EAGAIN, ENOMEM, EACCES, EBUSY, EEXIST, ENODEV, EINVAL, ENOSPC,
    ERANGE, ENAMETOOLONG, EPROTO, EOVERFLOW, EMSGSIZE, ENOTSUP, ETIMEDOUT, EALREADY,
    ESTALE, ECANCELED, EHOSTUNREACH, ECONNREFUSED,
};

int vmio_ml_errno_valid(int code)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(valid_errnos); i++)
        if (valid_errnos[i] == code)
            return 1;
    return 0;
}

/* ---- little-endian helpers ---- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static void set16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void set32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- header ---- */

static int type_known(uint16_t t)
{
    uint16_t base = t & (uint16_t)~VMIO_ML_REPLY;
    switch (base) {
    case VMIO_ML_HELLO:
    case VMIO_ML_AUTH:
    case VMIO_ML_REGISTER:
    case VMIO_ML_HEARTBEAT:
    case VMIO_ML_WITHDRAW:
    case VMIO_ML_PROVIDED:
    case VMIO_ML_RECLAIM:
    case VMIO_ML_UNEXPORTED:
    case VMIO_ML_REQUEST:
    case VMIO_ML_ATTACHED:
    case VMIO_ML_RELEASE:
    case VMIO_ML_STATUS:
        return 1;
    case VMIO_ML_NOTICE:
    case VMIO_ML_FATAL:
        return t == base;
    default:
        return 0;
    }
}

void vmio_ml_encode_hdr(const struct vmio_ml_hdr *h, uint8_t out[VMIO_ML_HDR_SIZE])
{
    set32(out, VMIO_ML_MAGIC);
    set16(out + 4, h->type);
    set16(out + 6, h->flags);
    set32(out + 8, h->id);
    set32(out + 12, (uint32_t)h->status);
    set32(out + 16, h->length);
}

int vmio_ml_decode_hdr(const char *api, const uint8_t in[VMIO_ML_HDR_SIZE], struct vmio_ml_hdr *h)
{
    uint32_t magic = get32(in);
    if (magic != VMIO_ML_MAGIC)
        return vmio_set_error(api, EPROTO, "bad frame magic 0x%08x (not a memlend manager peer)",
                              magic);
    struct vmio_ml_hdr t = {
        .type = get16(in + 4),
        .flags = get16(in + 6),
        .id = get32(in + 8),
        .status = (int32_t)get32(in + 12),
        .length = get32(in + 16),
    };
    if (!type_known(t.type))
        return vmio_set_error(api, EPROTO, "unknown message type 0x%02x", t.type);
    if (t.flags != 0)
        return vmio_set_error(api, EPROTO, "message type 0x%02x has flags 0x%x (must be 0)",
                              t.type, t.flags);
    if (t.length > VMIO_ML_MAX_BODY)
        return vmio_set_error(api, EPROTO, "message body of %u bytes exceeds the limit of %u",
                              t.length, VMIO_ML_MAX_BODY);
    if (t.type & VMIO_ML_REPLY) {
        if (t.status != 0 && !vmio_ml_errno_valid(t.status))
            return vmio_set_error(api, EPROTO, "reply with unknown status code %d", t.status);
    } else if (t.type == VMIO_ML_FATAL) {
        if (t.status == 0 || !vmio_ml_errno_valid(t.status))
            return vmio_set_error(api, EPROTO, "FATAL with status code %d", t.status);
    } else if (t.status != 0) {
        return vmio_set_error(api, EPROTO, "message type 0x%02x carries status %d", t.type,
                              t.status);
    }
    if ((t.type == VMIO_ML_NOTICE || t.type == VMIO_ML_FATAL) && t.id != 0)
        return vmio_set_error(api, EPROTO, "message type 0x%02x with request id %u (must be 0)",
                              t.type, t.id);
    *h = t;
    return 0;
}

/* ---- output buffer ---- */

void vmio_ml_buf_free(struct vmio_ml_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static uint8_t *buf_grow(struct vmio_ml_buf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            return NULL;
        }
        b->data = d;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

void vmio_ml_put_u16(struct vmio_ml_buf *b, uint16_t v)
{
    uint8_t *p = buf_grow(b, 2);
    if (p)
        set16(p, v);
}

void vmio_ml_put_u32(struct vmio_ml_buf *b, uint32_t v)
{
    uint8_t *p = buf_grow(b, 4);
    if (p)
        set32(p, v);
}

void vmio_ml_put_u64(struct vmio_ml_buf *b, uint64_t v)
{
    uint8_t *p = buf_grow(b, 8);
    if (p)
        set64(p, v);
}

void vmio_ml_put_bytes(struct vmio_ml_buf *b, const void *src, size_t n)
{
    if (n == 0)
        return;
    uint8_t *p = buf_grow(b, n);
    if (p)
        memcpy(p, src, n);
}

void vmio_ml_put_str(struct vmio_ml_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > UINT16_MAX) {
        b->oom = 1;
        return;
    }
    vmio_ml_put_u16(b, (uint16_t)n);
    vmio_ml_put_bytes(b, s, n);
}

void vmio_ml_put_frame(struct vmio_ml_buf *b, uint16_t type, uint32_t id, int32_t status,
                       const void *body, size_t len)
{
    if (len > VMIO_ML_MAX_BODY) {
        b->oom = 1;
        return;
    }
    struct vmio_ml_hdr h = { .type = type, .id = id, .status = status, .length = (uint32_t)len };
    uint8_t *p = buf_grow(b, VMIO_ML_HDR_SIZE);
    if (!p)
        return;
    vmio_ml_encode_hdr(&h, p);
    vmio_ml_put_bytes(b, body, len);
}

/* ---- input cursor ---- */

struct cur {
    const uint8_t *p;
    size_t n;
    const char *api;
    const char *what;   /* message name for errors */
};

static int short_body(struct cur *c)
{
    return vmio_set_error(c->api, EPROTO, "%s body truncated", c->what);
}

static int rd16(struct cur *c, uint16_t *v)
{
    if (c->n < 2)
        return short_body(c);
    *v = get16(c->p);
    c->p += 2;
    c->n -= 2;
    return 0;
}

static int rd32(struct cur *c, uint32_t *v)
{
    if (c->n < 4)
        return short_body(c);
    *v = get32(c->p);
    c->p += 4;
    c->n -= 4;
    return 0;
}

static int rd64(struct cur *c, uint64_t *v)
{
    if (c->n < 8)
        return short_body(c);
    *v = get64(c->p);
    c->p += 8;
    c->n -= 8;
    return 0;
}

static int rdbytes(struct cur *c, void *out, size_t n)
{
    if (c->n < n)
        return short_body(c);
    memcpy(out, c->p, n);
    c->p += n;
    c->n -= n;
    return 0;
}

/* A string of at most max bytes into out (max + 1 bytes), NUL terminated.
 * Characters are checked by the caller's validator. */
static int rdstr(struct cur *c, char *out, size_t max, const char *field)
{
    uint16_t len;
    int r = rd16(c, &len);
    if (r < 0)
        return r;
    if (len > max)
        return vmio_set_error(c->api, EPROTO, "%s: %s of %u bytes exceeds %zu", c->what, field,
                              len, max);
    if (c->n < len)
        return short_body(c);
    if (memchr(c->p, 0, len))
        return vmio_set_error(c->api, EPROTO, "%s: %s contains a NUL byte", c->what, field);
    memcpy(out, c->p, len);
    out[len] = 0;
    c->p += len;
    c->n -= len;
    return 0;
}

static int end(struct cur *c)
{
    if (c->n != 0)
        return vmio_set_error(c->api, EPROTO, "%s body has %zu trailing bytes", c->what, c->n);
    return 0;
}

static int bad_field(struct cur *c, const char *field, const char *value)
{
    return vmio_set_error(c->api, EPROTO, "%s: invalid %s '%.80s'", c->what, field, value);
}

/* ---- character sets ---- */

int vmio_ml_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > VMIO_ML_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int graph_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

int vmio_ml_portal_valid(const char *s)
{
    return graph_valid(s, VMIO_ML_MAX_PORTAL);
}

int vmio_ml_iqn_valid(const char *s)
{
    return graph_valid(s, VMIO_ML_MAX_IQN);
}

/* ---- hello / auth ---- */

void vmio_ml_encode_hello(struct vmio_ml_buf *b, const struct vmio_ml_hello *m)
{
    vmio_ml_put_u16(b, m->min_version);
    vmio_ml_put_u16(b, m->max_version);
    vmio_ml_put_u32(b, m->role);
    vmio_ml_put_bytes(b, m->nonce, VMIO_ML_NONCE_SIZE);
    vmio_ml_put_str(b, m->name);
}

int vmio_ml_decode_hello(const char *api, const uint8_t *p, size_t n, struct vmio_ml_hello *out)
{
    struct cur c = { p, n, api, "HELLO" };
    struct vmio_ml_hello m;
    memset(&m, 0, sizeof m);
    int r;
    if ((r = rd16(&c, &m.min_version)) < 0 || (r = rd16(&c, &m.max_version)) < 0 ||
        (r = rd32(&c, &m.role)) < 0 || (r = rdbytes(&c, m.nonce, VMIO_ML_NONCE_SIZE)) < 0 ||
        (r = rdstr(&c, m.name, VMIO_ML_MAX_NAME, "name")) < 0 || (r = end(&c)) < 0)
        return r;
    if (m.min_version == 0 || m.min_version > m.max_version)
        return vmio_set_error(api, EPROTO, "HELLO: bad version range %u..%u", m.min_version,
                              m.max_version);
    if (m.role < VMIO_MEMLEND_ROLE_LENDER || m.role > VMIO_MEMLEND_ROLE_OBSERVER)
        return vmio_set_error(api, EPROTO, "HELLO: unknown role %u", m.role);
    if (!vmio_ml_name_valid(m.name))
        return bad_field(&c, "name (1-63 of A-Z a-z 0-9 . _ -)", m.name);
    *out = m;
    return 0;
}

void vmio_ml_encode_hello_reply(struct vmio_ml_buf *b, const struct vmio_ml_hello_reply *m)
{
    vmio_ml_put_u16(b, m->version);
    vmio_ml_put_u16(b, 0);
    vmio_ml_put_bytes(b, m->nonce, VMIO_ML_NONCE_SIZE);
    vmio_ml_put_bytes(b, m->proof, VMIO_ML_PROOF_SIZE);
}

int vmio_ml_decode_hello_reply(const char *api, const uint8_t *p, size_t n,
                               struct vmio_ml_hello_reply *out)
{
    struct cur c = { p, n, api, "HELLO reply" };
    struct vmio_ml_hello_reply m;
    memset(&m, 0, sizeof m);
    uint16_t reserved;
    int r;
    if ((r = rd16(&c, &m.version)) < 0 || (r = rd16(&c, &reserved)) < 0 ||
        (r = rdbytes(&c, m.nonce, VMIO_ML_NONCE_SIZE)) < 0 ||
        (r = rdbytes(&c, m.proof, VMIO_ML_PROOF_SIZE)) < 0 || (r = end(&c)) < 0)
        return r;
    if (reserved != 0)
        return vmio_set_error(api, EPROTO, "HELLO reply: reserved field is %u", reserved);
    if (m.version != VMIO_ML_VERSION)
        return vmio_set_error(api, EPROTO, "HELLO reply: version %u was not offered", m.version);
    *out = m;
    return 0;
}

int vmio_ml_decode_auth(const char *api, const uint8_t *p, size_t n,
                        uint8_t proof[VMIO_ML_PROOF_SIZE])
{
    struct cur c = { p, n, api, "AUTH" };
    uint8_t tmp[VMIO_ML_PROOF_SIZE];
    int r;
    if ((r = rdbytes(&c, tmp, sizeof tmp)) < 0 || (r = end(&c)) < 0)
        return r;
    memcpy(proof, tmp, sizeof tmp);
    return 0;
}

/* ---- lender messages ---- */

void vmio_ml_encode_register(struct vmio_ml_buf *b, const struct vmio_ml_register *m)
{
    vmio_ml_put_str(b, m->portal);
    vmio_ml_put_u64(b, m->exportable);
}

int vmio_ml_decode_register(const char *api, const uint8_t *p, size_t n,
                            struct vmio_ml_register *out)
{
    struct cur c = { p, n, api, "REGISTER" };
    struct vmio_ml_register m;
    memset(&m, 0, sizeof m);
    int r;
    if ((r = rdstr(&c, m.portal, VMIO_ML_MAX_PORTAL, "portal")) < 0 ||
        (r = rd64(&c, &m.exportable)) < 0 || (r = end(&c)) < 0)
        return r;
    if (!vmio_ml_portal_valid(m.portal))
        return bad_field(&c, "portal", m.portal);
    *out = m;
    return 0;
}

int vmio_ml_decode_u64(const char *api, const uint8_t *p, size_t n, uint64_t *out)
{
    struct cur c = { p, n, api, "request" };
    uint64_t v = 0;
    int r;
    if ((r = rd64(&c, &v)) < 0 || (r = end(&c)) < 0)
        return r;
    *out = v;
    return 0;
}

int vmio_ml_decode_lease_seconds(const char *api, const uint8_t *p, size_t n, uint32_t *out)
{
    struct cur c = { p, n, api, "lease seconds" };
    uint32_t v = 0;
    int r;
    if ((r = rd32(&c, &v)) < 0 || (r = end(&c)) < 0)
        return r;
    if (v == 0 || v > 86400)
        return vmio_set_error(api, EPROTO, "lease of %u seconds (allowed: 1..86400)", v);
    *out = v;
    return 0;
}

void vmio_ml_encode_provided(struct vmio_ml_buf *b, const struct vmio_ml_provided *m)
{
    vmio_ml_put_u64(b, m->lease_id);
    vmio_ml_put_u32(b, m->err);
    vmio_ml_put_u32(b, m->lun);
    vmio_ml_put_str(b, m->target_iqn);
}

int vmio_ml_decode_provided(const char *api, const uint8_t *p, size_t n,
                            struct vmio_ml_provided *out)
{
    struct cur c = { p, n, api, "PROVIDED" };
    struct vmio_ml_provided m;
    memset(&m, 0, sizeof m);
    int r;
    if ((r = rd64(&c, &m.lease_id)) < 0 || (r = rd32(&c, &m.err)) < 0 ||
        (r = rd32(&c, &m.lun)) < 0 ||
        (r = rdstr(&c, m.target_iqn, VMIO_ML_MAX_IQN, "target IQN")) < 0 || (r = end(&c)) < 0)
        return r;
    if (m.err == 0) {
        if (!vmio_ml_iqn_valid(m.target_iqn))
            return bad_field(&c, "target IQN", m.target_iqn);
    } else {
        if (m.err > INT32_MAX || !vmio_ml_errno_valid((int)m.err))
            return vmio_set_error(api, EPROTO, "PROVIDED: unknown error code %u", m.err);
        if (m.target_iqn[0] || m.lun != 0)
            return vmio_set_error(api, EPROTO, "PROVIDED: a failure carries no IQN or LUN");
    }
    *out = m;
    return 0;
}

/* ---- borrower messages ---- */

void vmio_ml_encode_request(struct vmio_ml_buf *b, const struct vmio_ml_request *m)
{
    vmio_ml_put_u64(b, m->size);
    vmio_ml_put_u32(b, m->wait_ms);
}

int vmio_ml_decode_request(const char *api, const uint8_t *p, size_t n,
                           struct vmio_ml_request *out)
{
    struct cur c = { p, n, api, "REQUEST" };
    struct vmio_ml_request m;
    memset(&m, 0, sizeof m);
    int r;
    if ((r = rd64(&c, &m.size)) < 0 || (r = rd32(&c, &m.wait_ms)) < 0 || (r = end(&c)) < 0)
        return r;
    *out = m;
    return 0;
}

int vmio_ml_decode_empty(const char *api, const uint8_t *p, size_t n)
{
    (void)p;
    if (n != 0)
        return vmio_set_error(api, EPROTO, "message body of %zu bytes where none is allowed", n);
    return 0;
}

/* ---- leases, lenders, notices, status ---- */

void vmio_ml_encode_lease(struct vmio_ml_buf *b, const struct vmio_memlend_lease *l)
{
    vmio_ml_put_u64(b, l->id);
    vmio_ml_put_u64(b, l->size);
    vmio_ml_put_u32(b, l->state);
    vmio_ml_put_u32(b, l->lun);
    vmio_ml_put_u64(b, (uint64_t)l->lender_expiry);
    vmio_ml_put_str(b, l->lender);
    vmio_ml_put_str(b, l->borrower);
    vmio_ml_put_str(b, l->portal);
    vmio_ml_put_str(b, l->target_iqn);
}

/* Minimum encoded size of a lease and a lender (empty strings): bounds
 * the counts of a status reply before anything is allocated. */
#define LEASE_MIN (8 + 8 + 4 + 4 + 8 + 4 * 2)
#define LENDER_MIN (2 + 2 + 8 + 8 + 4 + 8)

static int rdlease(struct cur *c, struct vmio_memlend_lease *out)
{
    struct vmio_memlend_lease l;
    memset(&l, 0, sizeof l);
    uint64_t exp;
    int r;
    if ((r = rd64(c, &l.id)) < 0 || (r = rd64(c, &l.size)) < 0 || (r = rd32(c, &l.state)) < 0 ||
        (r = rd32(c, &l.lun)) < 0 || (r = rd64(c, &exp)) < 0 ||
        (r = rdstr(c, l.lender, VMIO_ML_MAX_NAME, "lender")) < 0 ||
        (r = rdstr(c, l.borrower, VMIO_ML_MAX_NAME, "borrower")) < 0 ||
        (r = rdstr(c, l.portal, VMIO_ML_MAX_PORTAL, "portal")) < 0 ||
        (r = rdstr(c, l.target_iqn, VMIO_ML_MAX_IQN, "target IQN")) < 0)
        return r;
    l.lender_expiry = (int64_t)exp;
    if (l.id == 0)
        return vmio_set_error(c->api, EPROTO, "%s: lease id 0", c->what);
    if (l.state < VMIO_MEMLEND_PENDING || l.state > VMIO_MEMLEND_LOST)
        return vmio_set_error(c->api, EPROTO, "%s: unknown lease state %u", c->what, l.state);
    if (!vmio_ml_name_valid(l.lender))
        return bad_field(c, "lender name", l.lender);
    if (!vmio_ml_name_valid(l.borrower))
        return bad_field(c, "borrower name", l.borrower);
    if (!vmio_ml_portal_valid(l.portal))
        return bad_field(c, "portal", l.portal);
    if (l.target_iqn[0] && !vmio_ml_iqn_valid(l.target_iqn))
        return bad_field(c, "target IQN", l.target_iqn);
    *out = l;
    return 0;
}

int vmio_ml_decode_lease_body(const char *api, const uint8_t *p, size_t n,
                              struct vmio_memlend_lease *out)
{
    struct cur c = { p, n, api, "lease" };
    struct vmio_memlend_lease l;
    int r;
    if ((r = rdlease(&c, &l)) < 0 || (r = end(&c)) < 0)
        return r;
    *out = l;
    return 0;
}

void vmio_ml_encode_notice(struct vmio_ml_buf *b, const struct vmio_memlend_notice *m)
{
    vmio_ml_put_u32(b, m->type);
    vmio_ml_encode_lease(b, &m->lease);
}

int vmio_ml_decode_notice(const char *api, const uint8_t *p, size_t n,
                          struct vmio_memlend_notice *out)
{
    struct cur c = { p, n, api, "NOTICE" };
    struct vmio_memlend_notice m;
    memset(&m, 0, sizeof m);
    int r;
    if ((r = rd32(&c, &m.type)) < 0 || (r = rdlease(&c, &m.lease)) < 0 || (r = end(&c)) < 0)
        return r;
    if (m.type < VMIO_MEMLEND_NOTICE_PROVISION || m.type > VMIO_MEMLEND_NOTICE_RELEASED)
        return vmio_set_error(api, EPROTO, "NOTICE: unknown type %u", m.type);
    *out = m;
    return 0;
}

void vmio_ml_encode_status(struct vmio_ml_buf *b, const struct vmio_memlend_lender_info *lenders,
                           size_t nlenders, const struct vmio_memlend_lease *leases,
                           size_t nleases)
{
    vmio_ml_put_u32(b, (uint32_t)nlenders);
    vmio_ml_put_u32(b, (uint32_t)nleases);
    for (size_t i = 0; i < nlenders; i++) {
        const struct vmio_memlend_lender_info *l = &lenders[i];
        vmio_ml_put_str(b, l->name);
        vmio_ml_put_str(b, l->portal);
        vmio_ml_put_u64(b, l->exportable);
        vmio_ml_put_u64(b, l->lent);
        vmio_ml_put_u32(b, l->available);
        vmio_ml_put_u64(b, (uint64_t)l->expiry);
    }
    for (size_t i = 0; i < nleases; i++)
        vmio_ml_encode_lease(b, &leases[i]);
}

int vmio_ml_decode_status(const char *api, const uint8_t *p, size_t n,
                          struct vmio_memlend_lease **leases, size_t *nleases,
                          struct vmio_memlend_lender_info **lenders, size_t *nlenders)
{
    struct cur c = { p, n, api, "STATUS reply" };
    uint32_t nl, ns;
    int r;
    if ((r = rd32(&c, &nl)) < 0 || (r = rd32(&c, &ns)) < 0)
        return r;
    if (nl > VMIO_ML_MAX_LENDERS || ns > VMIO_ML_MAX_LEASES)
        return vmio_set_error(api, EPROTO, "STATUS reply: %u lenders, %u leases exceed the limits",
                              nl, ns);
    if ((uint64_t)nl * LENDER_MIN + (uint64_t)ns * LEASE_MIN > c.n)
        return short_body(&c);
    struct vmio_memlend_lender_info *ld = nl ? calloc(nl, sizeof *ld) : NULL;
    struct vmio_memlend_lease *ls = ns ? calloc(ns, sizeof *ls) : NULL;
    if ((nl && !ld) || (ns && !ls)) {
        free(ld);
        free(ls);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < nl && r == 0; i++) {
        struct vmio_memlend_lender_info *l = &ld[i];
        uint64_t exp;
        if ((r = rdstr(&c, l->name, VMIO_ML_MAX_NAME, "lender name")) < 0 ||
            (r = rdstr(&c, l->portal, VMIO_ML_MAX_PORTAL, "portal")) < 0 ||
            (r = rd64(&c, &l->exportable)) < 0 || (r = rd64(&c, &l->lent)) < 0 ||
            (r = rd32(&c, &l->available)) < 0 || (r = rd64(&c, &exp)) < 0)
            break;
        l->expiry = (int64_t)exp;
        if (!vmio_ml_name_valid(l->name))
            r = bad_field(&c, "lender name", l->name);
        else if (!vmio_ml_portal_valid(l->portal))
            r = bad_field(&c, "portal", l->portal);
        else if (l->available > 1)
            r = vmio_set_error(api, EPROTO, "STATUS reply: available is %u", l->available);
    }
    for (uint32_t i = 0; i < ns && r == 0; i++)
        r = rdlease(&c, &ls[i]);
    if (r == 0)
        r = end(&c);
    if (r < 0) {
        free(ld);
        free(ls);
        return r;
    }
    *leases = ls;
    *nleases = ns;
    *lenders = ld;
    *nlenders = nl;
    return 0;
}

void vmio_ml_encode_error(struct vmio_ml_buf *b, const char *msg)
{
    char tmp[VMIO_ML_MAX_ERRMSG + 1];
    size_t n = 0;
    /* Only printable ASCII travels: anything else becomes '?'. */
    for (; msg[n] && n < VMIO_ML_MAX_ERRMSG; n++)
        tmp[n] = (msg[n] >= 0x20 && msg[n] <= 0x7e) ? msg[n] : '?';
    tmp[n] = 0;
    vmio_ml_put_str(b, tmp);
}

int vmio_ml_decode_error(const char *api, const uint8_t *p, size_t n, char *out)
{
    struct cur c = { p, n, api, "error reply" };
    char tmp[VMIO_ML_MAX_ERRMSG + 1];
    int r;
    if ((r = rdstr(&c, tmp, VMIO_ML_MAX_ERRMSG, "message")) < 0 || (r = end(&c)) < 0)
        return r;
    for (size_t i = 0; tmp[i]; i++)
        if (tmp[i] < 0x20 || tmp[i] > 0x7e)
            return vmio_set_error(api, EPROTO, "error reply: message has a control byte");
    memcpy(out, tmp, strlen(tmp) + 1);
    return 0;
}

/* ---- authentication ---- */

void vmio_ml_proof(const uint8_t *secret, size_t secret_len, int server,
                   const uint8_t cnonce[VMIO_ML_NONCE_SIZE],
                   const uint8_t snonce[VMIO_ML_NONCE_SIZE], uint32_t role, const char *name,
                   uint8_t out[VMIO_ML_PROOF_SIZE])
{
    const char *label = server ? "vmio-memlend-server-v1" : "vmio-memlend-client-v1";
    uint8_t r4[4];
    set32(r4, role);
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, secret_len, secret);
    hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
    hmac_sha256_update(&ctx, VMIO_ML_NONCE_SIZE, cnonce);
    hmac_sha256_update(&ctx, VMIO_ML_NONCE_SIZE, snonce);
    hmac_sha256_update(&ctx, sizeof r4, r4);
    hmac_sha256_update(&ctx, strlen(name), (const uint8_t *)name);
    hmac_sha256_digest(&ctx, VMIO_ML_PROOF_SIZE, out);
}

/* ---- addresses ---- */

int vmio_ml_split_addr(const char *api, const char *addr, char *host, size_t hostlen,
                       uint16_t *port, int port_zero_ok)
{
    if (!addr || !*addr)
        return vmio_set_error(api, EINVAL, "empty address (expected HOST:PORT)");
    const char *colon, *hs = addr, *he;
    if (addr[0] == '[') {
        he = strchr(addr, ']');
        if (!he || he[1] != ':')
            return vmio_set_error(api, EINVAL, "bad address '%s' (expected [ADDR]:PORT)", addr);
        hs = addr + 1;
        colon = he + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon)
            return vmio_set_error(api, EINVAL,
                                  "bad address '%s' (expected HOST:PORT or [ADDR]:PORT)", addr);
        he = colon;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= hostlen)
        return vmio_set_error(api, EINVAL, "bad host in address '%s'", addr);
    const char *ps = colon + 1;
    unsigned long v = 0;
    if (!*ps || strlen(ps) > 5)
        return vmio_set_error(api, EINVAL, "bad port in address '%s'", addr);
    for (const char *q = ps; *q; q++) {
        if (*q < '0' || *q > '9')
            return vmio_set_error(api, EINVAL, "bad port in address '%s'", addr);
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v > 65535 || (v == 0 && !port_zero_ok))
        return vmio_set_error(api, EINVAL, "port out of range in address '%s'", addr);
    memcpy(host, hs, hl);
    host[hl] = 0;
    *port = (uint16_t)v;
    return 0;
}
