/* Migration stream records: header packing and strict parsing, checksums
 * (XXH3-64 over header and payload), HELLO bodies, PAGES entries, payload
 * compression (zstd, lz4) and the end-to-end digest (XXH3-128). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t on the stack */
#include <xxhash.h>
#if VMIO_BUILT_ZSTD
#include <zstd.h>
#endif
#if VMIO_BUILT_LZ4
#include <lz4.h>
#endif

#include <vmio/migrate.h>

#include "migrate/stream.h"
#include "core/internal.h"
#include "protocol/wire.h"

static uint64_t rec_checksum(const uint8_t *hdr, const void *payload, size_t len)
{
    uint64_t seed = XXH3_64bits(hdr, 24);
    return XXH3_64bits_withSeed(payload, len, seed);
}

void vmio_mig_rec_pack(uint8_t hdr[VMIO_MIG_REC_HDR], const struct vmio_mig_rec *r,
                       const void *payload)
{
    hdr[0] = r->type;
    hdr[1] = r->comp;
    hdr[2] = hdr[3] = 0;
    vmio_put_le32(hdr + 4, r->region);
    vmio_put_le64(hdr + 8, r->seq);
    vmio_put_le32(hdr + 16, r->wire_len);
    vmio_put_le32(hdr + 20, r->raw_len);
    vmio_put_le64(hdr + 24, rec_checksum(hdr, payload, r->wire_len));
}

int vmio_mig_rec_parse(const uint8_t hdr[VMIO_MIG_REC_HDR], uint64_t expect_seq,
                       struct vmio_mig_rec *r, char *err, size_t errlen)
{
    r->type = hdr[0];
    r->comp = hdr[1];
    r->region = vmio_get_le32(hdr + 4);
    r->seq = vmio_get_le64(hdr + 8);
    r->wire_len = vmio_get_le32(hdr + 16);
    r->raw_len = vmio_get_le32(hdr + 20);
    if (r->type < VMIO_MIG_REC_HELLO || r->type > VMIO_MIG_REC_ABORT) {
        snprintf(err, errlen, "record %llu: unknown type %u",
                 (unsigned long long)expect_seq, r->type);
        return -EPROTO;
    }
    if (hdr[2] || hdr[3]) {
        snprintf(err, errlen, "record %llu: reserved header bytes set",
                 (unsigned long long)expect_seq);
        return -EPROTO;
    }
    if (r->seq != expect_seq) {
        snprintf(err, errlen, "record %llu arrived where %llu was expected (lost or reordered)",
                 (unsigned long long)r->seq, (unsigned long long)expect_seq);
        return -EPROTO;
    }
    if (r->comp > VMIO_MIG_COMP_LZ4 || (r->comp && r->type != VMIO_MIG_REC_PAGES)) {
        snprintf(err, errlen, "record %llu: bad compression %u",
                 (unsigned long long)r->seq, r->comp);
        return -EPROTO;
    }
    if (r->wire_len > VMIO_MIG_MAX_PAYLOAD || r->raw_len > VMIO_MIG_MAX_PAYLOAD ||
        (r->comp == VMIO_MIG_COMP_NONE && r->raw_len != r->wire_len)) {
        snprintf(err, errlen, "record %llu: bad payload length %u/%u",
                 (unsigned long long)r->seq, r->wire_len, r->raw_len);
        return -EPROTO;
    }
    if (r->type != VMIO_MIG_REC_PAGES && r->region) {
        snprintf(err, errlen, "record %llu: region set on a type %u record",
                 (unsigned long long)r->seq, r->type);
        return -EPROTO;
    }
    return 0;
}

int vmio_mig_rec_check(const uint8_t hdr[VMIO_MIG_REC_HDR], const void *payload, size_t len)
{
    return rec_checksum(hdr, payload, len) == vmio_get_le64(hdr + 24);
}

/* ---- HELLO -------------------------------------------------------------- */

size_t vmio_mig_hello_size(uint32_t nregions)
{
    return 16 + (size_t)nregions * VMIO_MIG_REGION_DESC;
}

void vmio_mig_hello_encode(const struct vmio_mig_hello *h, uint8_t *out)
{
    vmio_put_le32(out, h->version);
    vmio_put_le32(out + 4, h->flags);
    vmio_put_le32(out + 8, h->nregions);
    vmio_put_le32(out + 12, 0);
    for (uint32_t i = 0; i < h->nregions; i++) {
        uint8_t *d = out + 16 + (size_t)i * VMIO_MIG_REGION_DESC;
        vmio_put_le64(d, h->regions[i].length);
        vmio_put_le32(d + 8, h->regions[i].page_size);
        vmio_put_le32(d + 12, 0);
        memset(d + 16, 0, VMIO_MIG_NAME_MAX);
        memcpy(d + 16, h->regions[i].name,
               strnlen(h->regions[i].name, VMIO_MIG_NAME_MAX - 1));
    }
}

int vmio_mig_hello_decode(const uint8_t *p, size_t len, struct vmio_mig_hello *h, char *err,
                          size_t errlen)
{
    memset(h, 0, sizeof(*h));
    if (len < 16) {
        snprintf(err, errlen, "HELLO of %zu bytes is too short", len);
        return -EPROTO;
    }
    h->version = vmio_get_le32(p);
    h->flags = vmio_get_le32(p + 4);
    h->nregions = vmio_get_le32(p + 8);
    if (h->version != VMIO_MIG_VERSION) {
        snprintf(err, errlen, "stream version %u, this library reads version %u", h->version,
                 VMIO_MIG_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (h->nregions == 0 || h->nregions > VMIO_MIG_MAX_REGIONS ||
        len != vmio_mig_hello_size(h->nregions)) {
        snprintf(err, errlen, "HELLO: %u regions in %zu bytes", h->nregions, len);
        return -EPROTO;
    }
    h->regions = calloc(h->nregions, sizeof(*h->regions));
    if (!h->regions) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < h->nregions; i++) {
        const uint8_t *d = p + 16 + (size_t)i * VMIO_MIG_REGION_DESC;
        struct vmio_mig_region_info *ri = &h->regions[i];
        ri->length = vmio_get_le64(d);
        ri->page_size = vmio_get_le32(d + 8);
        memcpy(ri->name, d + 16, VMIO_MIG_NAME_MAX);
        uint32_t ps = ri->page_size;
        if (ps < VMIO_MIG_PAGE_MIN || ps > VMIO_MIG_PAGE_MAX || (ps & (ps - 1)) ||
            ri->length == 0 || ri->length % ps || ri->length > (1ull << 50) ||
            ri->name[VMIO_MIG_NAME_MAX - 1] != 0) {
            snprintf(err, errlen, "HELLO: region %u is malformed (length %llu, page size %u)",
                     i, (unsigned long long)ri->length, ps);
            free(h->regions);
            h->regions = NULL;
            return -EPROTO;
        }
    }
    return 0;
}

/* ---- uleb128 ------------------------------------------------------------ */

size_t vmio_mig_uleb_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return n;
}

size_t vmio_mig_uleb_get(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 10; i++) {
        if (p + i >= end)
            return 0;
        uint8_t b = p[i];
        if (i == 9 && b > 1)
            return 0;                 /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return 0;             /* overlong: a redundant zero group */
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* ---- PAGES entries ------------------------------------------------------ */

size_t vmio_mig_entry_put(uint8_t *out, uint64_t *cursor, const struct vmio_mig_entry *e,
                          uint32_t page_size)
{
    size_t n = vmio_mig_uleb_put(out, e->page - *cursor);
    out[n++] = e->codec;
    switch (e->codec) {
    case VMIO_MIGRATE_CODEC_ZERO:
    case VMIO_MIGRATE_CODEC_SKIP:
        n += vmio_mig_uleb_put(out + n, e->count - 1);
        break;
    case VMIO_MIGRATE_CODEC_RAW:
        memcpy(out + n, e->data, page_size);
        n += page_size;
        break;
    case VMIO_MIGRATE_CODEC_RLE:
    case VMIO_MIGRATE_CODEC_DELTA:
        n += vmio_mig_uleb_put(out + n, e->len);
        memcpy(out + n, e->data, e->len);
        n += e->len;
        break;
    case VMIO_MIGRATE_CODEC_DEDUP:
        n += vmio_mig_uleb_put(out + n, e->src_region);
        n += vmio_mig_uleb_put(out + n, e->src_page);
        memcpy(out + n, e->hash, VMIO_MIG_HASH_SIZE);
        n += VMIO_MIG_HASH_SIZE;
        break;
    }
    *cursor = e->page + (e->codec == VMIO_MIGRATE_CODEC_ZERO ||
                         e->codec == VMIO_MIGRATE_CODEC_SKIP ? e->count : 1);
    return n;
}

size_t vmio_mig_block_put(uint8_t *out, uint8_t codec, const uint64_t *pages, uint64_t count,
                          const void *cdata, size_t clen)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = codec;
    n += vmio_mig_uleb_put(out + n, count - 1);
    n += vmio_mig_uleb_put(out + n, pages[0]);
    for (uint64_t i = 1; i < count; i++)
        n += vmio_mig_uleb_put(out + n, pages[i] - pages[i - 1] - 1);
    n += vmio_mig_uleb_put(out + n, clen);
    memcpy(out + n, cdata, clen);
    return n + clen;
}

void vmio_mig_block_iter_init(struct vmio_mig_block_iter *bi, const struct vmio_mig_entry *e)
{
    bi->pos = e->pagelist;
    bi->end = e->pagelist + e->pagelist_len;
    bi->page = e->page;
    bi->left = e->count;
    bi->first = 1;
}

uint64_t vmio_mig_block_iter_next(struct vmio_mig_block_iter *bi)
{
    uint64_t gap = 0;
    if (!bi->first) {
        /* entry_next validated the whole list */
        bi->pos += vmio_mig_uleb_get(bi->pos, bi->end, &gap);
        bi->page += gap + 1;
    }
    bi->first = 0;
    bi->left--;
    return bi->page;
}

void vmio_mig_entry_iter_init(struct vmio_mig_entry_iter *it, const uint8_t *p, size_t len,
                              uint64_t npages, uint32_t page_size)
{
    it->p = p;
    it->end = len ? p + len : p;
    it->cursor = 0;
    it->npages = npages;
    it->page_size = page_size;
}

#define BAD(...)                                                              \
    do {                                                                      \
        snprintf(err, errlen, __VA_ARGS__);                                   \
        return -EINVAL;                                                       \
    } while (0)

static int block_next(struct vmio_mig_entry_iter *it, uint64_t adv, struct vmio_mig_entry *e,
                      char *err, size_t errlen)
{
    uint64_t count, page, gap, clen;
    size_t k;
    e->codec = *it->p++;
    if (adv != 0)
        BAD("compressed block after page %llu: advance must be 0",
            (unsigned long long)it->cursor);
    if (!(k = vmio_mig_uleb_get(it->p, it->end, &count)) || count >= it->npages ||
        (count + 1) * (uint64_t)it->page_size > VMIO_MIG_MAX_PAYLOAD)
        BAD("compressed block after page %llu: bad page count",
            (unsigned long long)it->cursor);
    it->p += k;
    count++;
    if (!(k = vmio_mig_uleb_get(it->p, it->end, &page)) || page >= it->npages)
        BAD("compressed block: first page outside the region");
    it->p += k;
    e->page = page;
    e->count = count;
    e->pagelist = it->p;
    for (uint64_t i = 1; i < count; i++) {
        if (!(k = vmio_mig_uleb_get(it->p, it->end, &gap)) || gap >= it->npages - page - 1)
            BAD("compressed block: page %llu of %llu outside the region",
                (unsigned long long)i, (unsigned long long)count);
        page += gap + 1;
        it->p += k;
    }
    e->pagelist_len = (uint32_t)(it->p - e->pagelist);
    if (!(k = vmio_mig_uleb_get(it->p, it->end, &clen)) || clen == 0 ||
        clen > (uint64_t)(it->end - it->p - k))
        BAD("compressed block at page %llu: bad or truncated length",
            (unsigned long long)e->page);
    it->p += k;
    e->data = it->p;
    e->len = (uint32_t)clen;
    it->p += clen;
    return 1;
}

int vmio_mig_entry_next(struct vmio_mig_entry_iter *it, struct vmio_mig_entry *e, char *err,
                        size_t errlen)
{
    if (it->p == it->end)
        return 0;
    uint64_t adv, v;
    size_t k = vmio_mig_uleb_get(it->p, it->end, &adv);
    if (!k)
        BAD("entry after page %llu: bad page advance", (unsigned long long)it->cursor);
    it->p += k;
    if (it->p < it->end &&
        (*it->p == VMIO_MIGRATE_CODEC_ZSTD || *it->p == VMIO_MIGRATE_CODEC_LZ4)) {
        memset(e, 0, sizeof(*e));
        return block_next(it, adv, e, err, errlen);
    }
    if (adv >= it->npages - VMIO_MIN(it->cursor, it->npages) || it->cursor >= it->npages)
        BAD("entry page %llu+%llu is outside the region (%llu pages)",
            (unsigned long long)it->cursor, (unsigned long long)adv,
            (unsigned long long)it->npages);
    if (it->p == it->end)
        BAD("entry for page %llu: truncated", (unsigned long long)(it->cursor + adv));
    memset(e, 0, sizeof(*e));
    e->page = it->cursor + adv;
    e->codec = *it->p++;
    e->count = 1;
    size_t left;
    switch (e->codec) {
    case VMIO_MIGRATE_CODEC_ZERO:
    case VMIO_MIGRATE_CODEC_SKIP:
        k = vmio_mig_uleb_get(it->p, it->end, &v);
        if (!k)
            BAD("run at page %llu: bad count", (unsigned long long)e->page);
        if (v >= it->npages - e->page)
            BAD("run of %llu pages at page %llu passes the region's end",
                (unsigned long long)v + 1, (unsigned long long)e->page);
        it->p += k;
        e->count = v + 1;
        break;
    case VMIO_MIGRATE_CODEC_RAW:
        if ((size_t)(it->end - it->p) < it->page_size)
            BAD("raw page %llu: truncated", (unsigned long long)e->page);
        e->data = it->p;
        e->len = it->page_size;
        it->p += it->page_size;
        break;
    case VMIO_MIGRATE_CODEC_RLE:
    case VMIO_MIGRATE_CODEC_DELTA:
        k = vmio_mig_uleb_get(it->p, it->end, &v);
        if (!k || v == 0 || v > it->page_size)
            BAD("encoded page %llu: bad length", (unsigned long long)e->page);
        it->p += k;
        left = (size_t)(it->end - it->p);
        if (left < v)
            BAD("encoded page %llu: truncated", (unsigned long long)e->page);
        e->data = it->p;
        e->len = (uint32_t)v;
        it->p += v;
        break;
    case VMIO_MIGRATE_CODEC_DEDUP:
        k = vmio_mig_uleb_get(it->p, it->end, &v);
        if (!k || v > UINT32_MAX)
            BAD("dedup page %llu: bad source region", (unsigned long long)e->page);
        it->p += k;
        e->src_region = (uint32_t)v;
        k = vmio_mig_uleb_get(it->p, it->end, &v);
        if (!k)
            BAD("dedup page %llu: bad source page", (unsigned long long)e->page);
        it->p += k;
        e->src_page = v;
        if ((size_t)(it->end - it->p) < VMIO_MIG_HASH_SIZE)
            BAD("dedup page %llu: truncated", (unsigned long long)e->page);
        e->hash = it->p;
        it->p += VMIO_MIG_HASH_SIZE;
        break;
    default:
        BAD("page %llu: unknown codec %u", (unsigned long long)e->page, e->codec);
    }
    it->cursor = e->page + e->count;
    return 1;
}

/* ---- compression -------------------------------------------------------- */

int vmio_mig_comp_available(int comp)
{
    switch (comp) {
    case VMIO_MIG_COMP_NONE:
        return 1;
    case VMIO_MIG_COMP_ZSTD:
        return VMIO_BUILT_ZSTD;
    case VMIO_MIG_COMP_LZ4:
        return VMIO_BUILT_LZ4;
    }
    return 0;
}

size_t vmio_mig_compress_bound(int comp, size_t len)
{
#if VMIO_BUILT_ZSTD
    if (comp == VMIO_MIG_COMP_ZSTD)
        return ZSTD_compressBound(len);
#endif
#if VMIO_BUILT_LZ4
    if (comp == VMIO_MIG_COMP_LZ4)
        return (size_t)LZ4_compressBound((int)len);
#endif
    return len;
}

void vmio_mig_comp_ctx_free(struct vmio_mig_comp_ctx *c)
{
#if VMIO_BUILT_ZSTD
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
#endif
    c->zc = c->zd = NULL;
}

long vmio_mig_compress(struct vmio_mig_comp_ctx *c, int comp, int level, const void *in,
                       size_t len, void *out, size_t cap)
{
    (void)c;
    (void)level;
    (void)in;
    (void)len;
    (void)out;
    (void)cap;
#if VMIO_BUILT_ZSTD
    if (comp == VMIO_MIG_COMP_ZSTD) {
        if (!c->zc && !(c->zc = ZSTD_createCCtx()))
            return -ENOMEM;
        size_t r = ZSTD_compressCCtx(c->zc, out, cap, in, len, level ? level : 1);
        if (ZSTD_isError(r))
            return 0;
        return (long)r;
    }
#endif
#if VMIO_BUILT_LZ4
    if (comp == VMIO_MIG_COMP_LZ4) {
        int r = LZ4_compress_default(in, out, (int)len, (int)VMIO_MIN(cap, (size_t)INT32_MAX));
        return r > 0 ? r : 0;
    }
#endif
    return -ENOTSUP;
}

int vmio_mig_decompress(struct vmio_mig_comp_ctx *c, int comp, const void *in, size_t len,
                        void *out, size_t raw_len)
{
    (void)c;
    (void)in;
    (void)len;
    (void)out;
    (void)raw_len;
#if VMIO_BUILT_ZSTD
    if (comp == VMIO_MIG_COMP_ZSTD) {
        if (!c->zd && !(c->zd = ZSTD_createDCtx()))
            return -ENOMEM;
        size_t r = ZSTD_decompressDCtx(c->zd, out, raw_len, in, len);
        if (ZSTD_isError(r) || r != raw_len)
            return -EINVAL;
        return 0;
    }
#endif
#if VMIO_BUILT_LZ4
    if (comp == VMIO_MIG_COMP_LZ4) {
        int r = LZ4_decompress_safe(in, out, (int)len, (int)raw_len);
        if (r < 0 || (size_t)r != raw_len)
            return -EINVAL;
        return 0;
    }
#endif
    return -ENOTSUP;
}

/* ---- digest ------------------------------------------------------------- */

void vmio_mig_digest_regions(const void *regions, uint32_t n, size_t stride, size_t base_off,
                             size_t len_off, uint8_t out[VMIO_MIG_DIGEST])
{
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    for (uint32_t i = 0; i < n; i++) {
        const char *r = (const char *)regions + (size_t)i * stride;
        const void *base;
        uint64_t len;
        memcpy(&base, r + base_off, sizeof base);
        memcpy(&len, r + len_off, sizeof len);
        XXH3_128bits_update(&st, base, len);
    }
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, VMIO_MIG_DIGEST);
}
