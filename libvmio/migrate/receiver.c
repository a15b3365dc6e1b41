/* The migration receiver: reads records in order, checks each one's
 * checksum and sequence number, applies page entries to the destination
 * regions (never outside them), verifies every DEDUP source against the
 * bytes it holds, and at the end compares the digest of all its memory
 * with the sender's and answers with a RESULT record. Any error is
 * answered too (status + message) before the connection is closed. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "core/internal.h"
#include "protocol/wire.h"
#include "migrate/engine.h"
#include "migrate/stream.h"

#define API "vmio_migrate_receive"

struct rregion {
    uint8_t *base;
    uint64_t length;
    uint32_t page_size;
    uint64_t npages;
    char name[VMIO_MIG_NAME_MAX];
    int owned;              /* mmap'd here */
};

struct vmio_migrate_receiver {
    struct vmio_migrate_options o;
    struct rregion *regions;
    uint32_t nregions;
    int user_regions;
    struct vmio_mig_listener *l;
    atomic_int cancel;
    pthread_mutex_t mx;
    struct vmio_transport *t;
    uint8_t digest[VMIO_MIG_DIGEST];
    int have_digest;
    struct vmio_migrate_receiver_stats st;
};

int vmio_migrate_receiver_new(const struct vmio_migrate_options *o, vmio_migrate_receiver **out)
{
    const char *api = "vmio_migrate_receiver_new";
    VMIO_CHECK_ARG(api, out != NULL, EINVAL);
    int r = vmio_mig_check_opts(api, o);
    if (r < 0)
        return r;
    struct vmio_migrate_receiver *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return vmio_set_error(api, ENOMEM, "out of memory");
    vmio_mig_opts_resolve(o, &rc->o);
    pthread_mutex_init(&rc->mx, NULL);
    *out = rc;
    return 0;
}

static void drop_owned(struct vmio_migrate_receiver *rc)
{
    for (uint32_t i = 0; i < rc->nregions; i++)
        if (rc->regions[i].owned)
            munmap(rc->regions[i].base, rc->regions[i].length);
    if (!rc->user_regions) {
        free(rc->regions);
        rc->regions = NULL;
        rc->nregions = 0;
    }
}

void vmio_migrate_receiver_free(vmio_migrate_receiver *rc)
{
    if (!rc)
        return;
    drop_owned(rc);
    free(rc->regions);
    vmio_mig_listener_close(rc->l);
    pthread_mutex_destroy(&rc->mx);
    free(rc);
}

int vmio_migrate_receiver_add_region(vmio_migrate_receiver *rc,
                                     const struct vmio_migrate_region *reg)
{
    const char *api = "vmio_migrate_receiver_add_region";
    VMIO_CHECK_ARG(api, rc != NULL, EINVAL);
    int r = vmio_mig_check_region(api, reg);
    if (r < 0)
        return r;
    if (rc->nregions && !rc->user_regions)
        return vmio_set_error(api, EBUSY, "the receiver already allocated its regions");
    struct rregion *n = realloc(rc->regions, (rc->nregions + 1) * sizeof(*n));
    if (!n)
        return vmio_set_error(api, ENOMEM, "out of memory");
    rc->regions = n;
    struct rregion *g = &n[rc->nregions];
    memset(g, 0, sizeof(*g));
    g->base = reg->base;
    g->length = reg->length;
    g->page_size = reg->page_size;
    g->npages = reg->length / reg->page_size;
    if (reg->name)
        strcpy(g->name, reg->name);
    rc->user_regions = 1;
    return (int)rc->nregions++;
}

int vmio_migrate_receiver_listen(vmio_migrate_receiver *rc, const char *uri)
{
    const char *api = "vmio_migrate_receiver_listen";
    VMIO_CHECK_ARG(api, rc != NULL && uri != NULL, EINVAL);
    struct vmio_mig_addr a;
    int r = vmio_mig_parse_addr(api, uri, &a);
    if (r < 0)
        return r;
    vmio_mig_listener_close(rc->l);
    rc->l = NULL;
    int port;
    r = vmio_mig_listen(api, &a, &rc->l, &port);
    return r < 0 ? r : port;
}

void vmio_migrate_receiver_cancel(vmio_migrate_receiver *rc)
{
    if (!rc)
        return;
    atomic_store(&rc->cancel, 1);
    pthread_mutex_lock(&rc->mx);
    if (rc->t)
        vmio_transport_shutdown(rc->t);
    pthread_mutex_unlock(&rc->mx);
}

int vmio_migrate_receiver_region(vmio_migrate_receiver *rc, uint32_t i,
                                 struct vmio_migrate_region *out)
{
    const char *api = "vmio_migrate_receiver_region";
    VMIO_CHECK_ARG(api, rc != NULL && out != NULL, EINVAL);
    if (i >= rc->nregions)
        return vmio_set_error(api, ERANGE, "region %u: the receiver has %u", i, rc->nregions);
    out->struct_size = sizeof(*out);
    out->page_size = rc->regions[i].page_size;
    out->base = rc->regions[i].base;
    out->length = rc->regions[i].length;
    out->name = rc->regions[i].name;
    return 0;
}

int vmio_migrate_receiver_digest(vmio_migrate_receiver *rc, uint8_t digest[16])
{
    const char *api = "vmio_migrate_receiver_digest";
    VMIO_CHECK_ARG(api, rc != NULL && digest != NULL, EINVAL);
    if (!rc->have_digest)
        return vmio_set_error(api, ENODATA, "no migration has completed");
    memcpy(digest, rc->digest, VMIO_MIG_DIGEST);
    return 0;
}

int vmio_migrate_receiver_get_stats(vmio_migrate_receiver *rc,
                                struct vmio_migrate_receiver_stats *st)
{
    const char *api = "vmio_migrate_receiver_stats";
    VMIO_CHECK_ARG(api, rc != NULL && st != NULL && st->struct_size >= 8, EINVAL);
    size_t n = VMIO_MIN((size_t)st->struct_size, sizeof(rc->st));
    memcpy(st, &rc->st, n);
    st->struct_size = (uint32_t)n;
    return 0;
}

int vmio_migrate_digest(const struct vmio_migrate_region *regions, uint32_t n,
                        uint8_t digest[16])
{
    const char *api = "vmio_migrate_digest";
    VMIO_CHECK_ARG(api, (regions != NULL || n == 0) && digest != NULL, EINVAL);
    VMIO_MIG_DIGEST_OF(regions, n, struct vmio_migrate_region, digest);
    return 0;
}

/* ---- the stream ------------------------------------------------------------ */

struct rx {
    struct vmio_migrate_receiver *rc;
    struct vmio_transport *t;
    uint64_t seq;
    uint8_t *buf, *raw, *scratch;
    size_t buf_cap, raw_cap, scratch_cap;
    int have_hello, in_round, final_seen, dest_zeroed;
    int64_t round;
    struct vmio_mig_comp_ctx cc;
    char err[256];
};

#define BAD(code, ...)                                                        \
    do {                                                                      \
        snprintf(x->err, sizeof x->err, __VA_ARGS__);                         \
        return -(code);                                                       \
    } while (0)

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 65536;
    while (n < need)
        n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int on_hello(struct rx *x, const uint8_t *p, size_t len)
{
    struct vmio_migrate_receiver *rc = x->rc;
    struct vmio_mig_hello h;
    int r = vmio_mig_hello_decode(p, len, &h, x->err, sizeof x->err);
    if (r < 0)
        return r;
    if (rc->user_regions) {
        if (h.nregions != rc->nregions) {
            free(h.regions);
            BAD(EINVAL, "the sender has %u regions, the receiver %u", h.nregions,
                rc->nregions);
        }
        for (uint32_t i = 0; i < h.nregions; i++) {
            struct rregion *g = &rc->regions[i];
            if (g->length != h.regions[i].length || g->page_size != h.regions[i].page_size ||
                (g->name[0] && h.regions[i].name[0] && strcmp(g->name, h.regions[i].name))) {
                snprintf(x->err, sizeof x->err,
                         "region %u: the sender has \"%s\" %llu bytes in %u-byte pages, the "
                         "receiver \"%s\" %llu bytes in %u-byte pages", i, h.regions[i].name,
                         (unsigned long long)h.regions[i].length, h.regions[i].page_size,
                         g->name, (unsigned long long)g->length, g->page_size);
                free(h.regions);
                return -EINVAL;
            }
        }
        x->dest_zeroed = (rc->o.flags & VMIO_MIGRATE_F_DEST_ZEROED) != 0;
    } else {
        drop_owned(rc);
        rc->regions = calloc(h.nregions, sizeof(*rc->regions));
        if (!rc->regions) {
            free(h.regions);
            BAD(ENOMEM, "out of memory for %u regions", h.nregions);
        }
        for (uint32_t i = 0; i < h.nregions; i++) {
            struct rregion *g = &rc->regions[i];
            g->length = h.regions[i].length;
            g->page_size = h.regions[i].page_size;
            g->npages = g->length / g->page_size;
            memcpy(g->name, h.regions[i].name, VMIO_MIG_NAME_MAX);
            void *m = mmap(NULL, g->length, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) {
                rc->nregions = i;
                free(h.regions);
                BAD(ENOMEM, "cannot allocate region %u (%llu bytes)", i,
                    (unsigned long long)g->length);
            }
            g->base = m;
            g->owned = 1;
            rc->nregions = i + 1;
        }
        x->dest_zeroed = 1;
    }
    free(h.regions);
    x->have_hello = 1;
    return 0;
}

static int apply_block(struct rx *x, const struct rregion *g, const struct vmio_mig_entry *e)
{
    size_t need = (size_t)e->count * g->page_size;
    /* Consecutive pages (the usual case in round 0) decompress in place;
     * entry_next checked that they lie inside the region. */
    struct vmio_mig_block_iter bi;
    vmio_mig_block_iter_init(&bi, e);
    uint64_t last = e->page;
    for (uint64_t k = 0; k < e->count; k++)
        last = vmio_mig_block_iter_next(&bi);
    int direct = last - e->page + 1 == e->count;
    if (!direct && grow(&x->scratch, &x->scratch_cap, need) < 0)
        BAD(ENOMEM, "out of memory");
    uint8_t *dst = direct ? g->base + e->page * g->page_size : x->scratch;
    int comp = e->codec == VMIO_MIGRATE_CODEC_ZSTD ? VMIO_MIG_COMP_ZSTD : VMIO_MIG_COMP_LZ4;
    int r = vmio_mig_decompress(&x->cc, comp, e->data, e->len, dst, need);
    if (r == -ENOTSUP)
        BAD(ENOTSUP, "%s block at page %llu: this build has no %s",
            vmio_migrate_codec_name(e->codec), (unsigned long long)e->page,
            vmio_migrate_codec_name(e->codec));
    if (r < 0)
        BAD(EINVAL, "%s block at page %llu: corrupt data", vmio_migrate_codec_name(e->codec),
            (unsigned long long)e->page);
    if (direct)
        return 0;
    vmio_mig_block_iter_init(&bi, e);
    for (uint64_t k = 0; k < e->count; k++) {
        uint64_t pg = vmio_mig_block_iter_next(&bi);
        memcpy(g->base + pg * g->page_size, x->scratch + k * g->page_size, g->page_size);
    }
    return 0;
}

static int on_pages(struct rx *x, const struct vmio_mig_rec *rec, const uint8_t *p, size_t len)
{
    struct vmio_migrate_receiver *rc = x->rc;
    if (!x->in_round)
        BAD(EPROTO, "record %llu: pages before any round", (unsigned long long)rec->seq);
    if (rec->region >= rc->nregions)
        BAD(EPROTO, "record %llu: region %u does not exist (%u regions)",
            (unsigned long long)rec->seq, rec->region, rc->nregions);
    const struct rregion *g = &rc->regions[rec->region];
    uint32_t ps = g->page_size;
    struct vmio_mig_entry_iter it;
    struct vmio_mig_entry e;
    vmio_mig_entry_iter_init(&it, p, len, g->npages, ps);
    char err[160];
    int r;
    while ((r = vmio_mig_entry_next(&it, &e, err, sizeof err)) == 1) {
        uint8_t *dst = g->base + e.page * ps;
        rc->st.pages += e.count;
        rc->st.raw_bytes += e.count * ps;
        if (e.codec < VMIO_MIGRATE_CODEC_COUNT)
            rc->st.codec_pages[e.codec] += e.count;
        switch (e.codec) {
        case VMIO_MIGRATE_CODEC_ZERO:
            if (!(x->dest_zeroed && x->round == 0))
                memset(dst, 0, e.count * ps);
            break;
        case VMIO_MIGRATE_CODEC_SKIP:
            break;
        case VMIO_MIGRATE_CODEC_RAW:
            memcpy(dst, e.data, ps);
            break;
        case VMIO_MIGRATE_CODEC_RLE:
            memset(dst, 0, ps);
            /* fall through */
        case VMIO_MIGRATE_CODEC_DELTA:
            if (vmio_mig_delta_decode(dst, ps, e.data, e.len) < 0)
                BAD(EINVAL, "record %llu, region %u, page %llu: malformed %s encoding",
                    (unsigned long long)rec->seq, rec->region, (unsigned long long)e.page,
                    vmio_migrate_codec_name(e.codec));
            break;
        case VMIO_MIGRATE_CODEC_DEDUP: {
            if (e.src_region >= rc->nregions || e.src_page >= rc->regions[e.src_region].npages ||
                rc->regions[e.src_region].page_size != ps)
                BAD(EINVAL, "record %llu, page %llu: dedup source %u/%llu does not exist",
                    (unsigned long long)rec->seq, (unsigned long long)e.page, e.src_region,
                    (unsigned long long)e.src_page);
            const uint8_t *src = rc->regions[e.src_region].base + e.src_page * ps;
            uint8_t h[VMIO_MIG_HASH_SIZE];
            vmio_mig_hash(src, ps, h);
            if (memcmp(h, e.hash, VMIO_MIG_HASH_SIZE))
                BAD(EINVAL, "record %llu, page %llu: dedup source %u/%llu does not hold the "
                    "bytes the sender named (its digest differs)", (unsigned long long)rec->seq,
                    (unsigned long long)e.page, e.src_region, (unsigned long long)e.src_page);
            if (src != dst)
                memcpy(dst, src, ps);
            break;
        }
        case VMIO_MIGRATE_CODEC_ZSTD:
        case VMIO_MIGRATE_CODEC_LZ4:
            if ((r = apply_block(x, g, &e)) < 0)
                return r;
            break;
        }
    }
    if (r < 0)
        BAD(EINVAL, "record %llu, region %u: %s", (unsigned long long)rec->seq, rec->region,
            err);
    return 0;
}

static int on_round(struct rx *x, const uint8_t *p, size_t len)
{
    if (len != VMIO_MIG_ROUND_BODY)
        BAD(EPROTO, "ROUND body of %zu bytes", len);
    uint32_t round = vmio_get_le32(p), flags = vmio_get_le32(p + 4);
    if ((int64_t)round != x->round + 1 || x->final_seen || (flags & ~VMIO_MIG_ROUND_FINAL))
        BAD(EPROTO, "round %u after round %lld%s", round, (long long)x->round,
            x->final_seen ? " (the final one)" : "");
    x->round = round;
    x->in_round = 1;
    x->final_seen = (flags & VMIO_MIG_ROUND_FINAL) != 0;
    x->rc->st.rounds = round + 1;
    return 0;
}

/* Send RESULT (status 0 with our digest, or an errno and a message). */
static void send_result(struct rx *x, uint64_t seq, int status, const uint8_t *digest,
                        const char *msg)
{
    uint8_t body[VMIO_MIG_RESULT_MIN + VMIO_MIG_MAX_MSG];
    size_t ml = msg ? VMIO_MIN(strlen(msg), (size_t)VMIO_MIG_MAX_MSG) : 0;
    vmio_put_le32(body, (uint32_t)status);
    if (digest)
        memcpy(body + 4, digest, VMIO_MIG_DIGEST);
    else
        memset(body + 4, 0, VMIO_MIG_DIGEST);
    if (ml)
        memcpy(body + VMIO_MIG_RESULT_MIN, msg, ml);
    uint8_t hdr[VMIO_MIG_REC_HDR];
    struct vmio_mig_rec rec = { .type = VMIO_MIG_REC_RESULT, .seq = seq,
                                .wire_len = (uint32_t)(VMIO_MIG_RESULT_MIN + ml),
                                .raw_len = (uint32_t)(VMIO_MIG_RESULT_MIN + ml) };
    vmio_mig_rec_pack(hdr, &rec, body);
    struct iovec iov[2] = { { hdr, sizeof hdr }, { body, rec.wire_len } };
    vmio_transport_sendv(x->t, iov, 2);
}

static int on_end(struct rx *x, const uint8_t *p, size_t len, int *mismatch)
{
    struct vmio_migrate_receiver *rc = x->rc;
    if (len != VMIO_MIG_END_BODY)
        BAD(EPROTO, "END body of %zu bytes", len);
    if (!x->final_seen)
        BAD(EPROTO, "the stream ended without a final round");
    uint32_t rounds = vmio_get_le32(p + VMIO_MIG_DIGEST + 8);
    int no_digest = (rounds & 0x80000000u) != 0;
    VMIO_MIG_DIGEST_OF(rc->regions, rc->nregions, struct rregion, rc->digest);
    rc->have_digest = 1;
    *mismatch = !no_digest && memcmp(rc->digest, p, VMIO_MIG_DIGEST) != 0;
    return 0;
}

static int run(struct rx *x)
{
    struct vmio_migrate_receiver *rc = x->rc;
    uint8_t hdr[VMIO_MIG_REC_HDR];
    for (;;) {
        int r = vmio_transport_recv(x->t, hdr, sizeof hdr);
        if (r < 0) {
            if (atomic_load(&rc->cancel))
                BAD(ECANCELED, "cancelled");
            if (r == -EPIPE)
                BAD(EPIPE, "the sender closed the connection after record %llu%s (stream "
                    "truncated)", (unsigned long long)x->seq, x->have_hello ? "" : " before HELLO");
            if (r == -EAGAIN)
                BAD(ETIMEDOUT, "no data from the sender for %u ms after record %llu",
                    rc->o.timeout_ms, (unsigned long long)x->seq);
            BAD(-r, "reading record %llu: %s", (unsigned long long)x->seq, vmio_errmsg());
        }
        rc->st.wire_bytes += sizeof hdr;
        struct vmio_mig_rec rec;
        if ((r = vmio_mig_rec_parse(hdr, x->seq, &rec, x->err, sizeof x->err)) < 0)
            return r;
        /* never NULL, even for an empty payload */
        if (grow(&x->buf, &x->buf_cap, rec.wire_len ? rec.wire_len : 1) < 0)
            BAD(ENOMEM, "out of memory for a %u-byte record", rec.wire_len);
        if (rec.wire_len && (r = vmio_transport_recv(x->t, x->buf, rec.wire_len)) < 0)
            BAD(r == -EPIPE ? EPIPE : -r, "record %llu truncated: %s", (unsigned long long)rec.seq,
                r == -EPIPE ? "the sender closed the connection" : vmio_errmsg());
        rc->st.wire_bytes += rec.wire_len;
        uint64_t t0 = vmio_now_ns();
        if (!vmio_mig_rec_check(hdr, x->buf, rec.wire_len))
            BAD(EBADMSG, "record %llu (type %u, %u bytes): checksum mismatch",
                (unsigned long long)rec.seq, rec.type, rec.wire_len);
        x->seq++;
        rc->st.records++;
        const uint8_t *pl = x->buf;
        size_t plen = rec.wire_len;
        if (rec.comp) {
            if (grow(&x->raw, &x->raw_cap, rec.raw_len) < 0)
                BAD(ENOMEM, "out of memory");
            if ((r = vmio_mig_decompress(&x->cc, rec.comp, x->buf, rec.wire_len, x->raw,
                                         rec.raw_len)) < 0)
                BAD(-r, "record %llu: cannot decompress its payload", (unsigned long long)rec.seq);
            pl = x->raw;
            plen = rec.raw_len;
        }
        if (!x->have_hello && rec.type != VMIO_MIG_REC_HELLO && rec.type != VMIO_MIG_REC_ABORT)
            BAD(EPROTO, "the stream does not start with HELLO (type %u)", rec.type);
        int mismatch = 0;
        switch (rec.type) {
        case VMIO_MIG_REC_HELLO:
            if (x->have_hello)
                BAD(EPROTO, "a second HELLO");
            r = on_hello(x, pl, plen);
            break;
        case VMIO_MIG_REC_ROUND:
            r = on_round(x, pl, plen);
            break;
        case VMIO_MIG_REC_PAGES:
            r = on_pages(x, &rec, pl, plen);
            break;
        case VMIO_MIG_REC_END:
            r = on_end(x, pl, plen, &mismatch);
            break;
        case VMIO_MIG_REC_ABORT: {
            char m[VMIO_MIG_MAX_MSG + 1];
            size_t ml = VMIO_MIN(plen, (size_t)VMIO_MIG_MAX_MSG);
            memcpy(m, pl, ml);
            m[ml] = 0;
            BAD(ECONNABORTED, "the sender aborted: %s", m);
        }
        default:
            BAD(EPROTO, "record %llu: type %u is not for a receiver",
                (unsigned long long)rec.seq, rec.type);
        }
        rc->st.decode_ns += vmio_now_ns() - t0;
        if (r < 0)
            return r;
        if (rec.type == VMIO_MIG_REC_END) {
            if (mismatch) {
                snprintf(x->err, sizeof x->err, "the digest of the received memory differs "
                         "from the sender's (memory changed during the final round?)");
                return -EIO;
            }
            send_result(x, 0, 0, rc->digest, "");
            return 0;
        }
    }
}

int vmio_mig_receive_on(struct vmio_migrate_receiver *rc, struct vmio_transport *t)
{
    struct rx x = { .rc = rc, .t = t, .round = -1 };
    memset(&rc->st, 0, sizeof(rc->st));
    rc->st.struct_size = sizeof(rc->st);
    rc->have_digest = 0;
    pthread_mutex_lock(&rc->mx);
    rc->t = t;
    pthread_mutex_unlock(&rc->mx);
    vmio_transport_set_recv_timeout(t, (int)rc->o.timeout_ms);
    uint64_t t0 = vmio_now_ns();
    int r = run(&x);
    if (r < 0) {
        send_result(&x, 0, -r, NULL, x.err);
        /* Let the result reach the sender before the connection closes:
         * read (and drop) what it still sends for a moment. */
        int fd = t->fd;
        if (!vmio_transport_is_rdma(t) && fd >= 0) {
            shutdown(fd, SHUT_WR);
            vmio_transport_set_recv_timeout(t, 500);
            uint8_t junk[65536];
            for (int i = 0; i < 4096 && vmio_transport_recv_some(t, junk, sizeof junk) > 0; i++)
                ;
        }
        vmio_set_error(API, -r, "%s", x.err);
        rc->have_digest = 0;
    }
    rc->st.total_ns = vmio_now_ns() - t0;
    pthread_mutex_lock(&rc->mx);
    rc->t = NULL;
    pthread_mutex_unlock(&rc->mx);
    free(x.buf);
    free(x.raw);
    free(x.scratch);
    vmio_mig_comp_ctx_free(&x.cc);
    return r;
}

int vmio_migrate_receive(vmio_migrate_receiver *rc)
{
    VMIO_CHECK_ARG(API, rc != NULL, EINVAL);
    if (!rc->l)
        return vmio_set_error(API, EINVAL, "call vmio_migrate_receiver_listen first");
    atomic_store(&rc->cancel, 0);
    struct vmio_transport *t;
    int r = vmio_mig_accept(API, rc->l, 0, &rc->cancel, &t);
    if (r < 0)
        return r;
    r = vmio_mig_receive_on(rc, t);
    vmio_transport_close(t);
    return r;
}

int vmio_migrate_receive_fd(vmio_migrate_receiver *rc, int fd)
{
    const char *api = "vmio_migrate_receive_fd";
    VMIO_CHECK_ARG(api, rc != NULL && fd >= 0, EINVAL);
    atomic_store(&rc->cancel, 0);
    struct vmio_transport *t;
    int r = vmio_mig_wrap_fd(api, fd, &t);
    if (r < 0)
        return r;
    r = vmio_mig_receive_on(rc, t);
    vmio_transport_close(t);
    return r < 0 ? vmio_error_reprefix(api, -r) : r;
}
