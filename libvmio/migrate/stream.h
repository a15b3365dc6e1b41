/* The migration stream (docs/migration-stream.md is the normative
 * description): record header, checksums, the HELLO/ROUND/END/RESULT
 * bodies, and the PAGES payload's entry encoder and strict parser. Shared
 * by the sender, the receiver and the fuzz harness. Little endian. */
#ifndef VMIO_MIGRATE_STREAM_H
#define VMIO_MIGRATE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/codec.h"

#define VMIO_MIG_VERSION 1u
#define VMIO_MIG_REC_HDR 32u
#define VMIO_MIG_MAX_PAYLOAD (40u << 20)   /* raw or wire payload bytes */
#define VMIO_MIG_MAX_REGIONS 4096u
#define VMIO_MIG_NAME_MAX 64u              /* bytes incl. the NUL */
#define VMIO_MIG_REGION_DESC 80u
#define VMIO_MIG_DIGEST 16u
#define VMIO_MIG_MAX_MSG 512u

enum vmio_mig_rec_type {
    VMIO_MIG_REC_HELLO = 1,   /* sender: version, region table */
    VMIO_MIG_REC_ROUND = 2,   /* sender: a round starts */
    VMIO_MIG_REC_PAGES = 3,   /* sender: entries for one region */
    VMIO_MIG_REC_END = 4,     /* sender: digest of all memory */
    VMIO_MIG_REC_RESULT = 5,  /* receiver: status + digest it computed */
    VMIO_MIG_REC_ABORT = 6    /* either side: gives up, with a message */
};

enum vmio_mig_comp {
    VMIO_MIG_COMP_NONE = 0,
    VMIO_MIG_COMP_ZSTD = 1,
    VMIO_MIG_COMP_LZ4 = 2
};

struct vmio_mig_rec {
    uint8_t type;
    uint8_t comp;         /* enum vmio_mig_comp of the payload */
    uint32_t region;      /* PAGES: region index; else 0 */
    uint64_t seq;         /* 0, 1, 2, ... per direction */
    uint32_t wire_len;    /* payload bytes after the header */
    uint32_t raw_len;     /* payload bytes after decompression */
};

/* Fill the 32-byte header, checksum over it and the wire payload. */
void vmio_mig_rec_pack(uint8_t hdr[VMIO_MIG_REC_HDR], const struct vmio_mig_rec *r,
                       const void *payload);
/* Parse and bound-check a header (the checksum is checked later, with the
 * payload). expect_seq: the sequence number the reader is at. Returns 0
 * or -EINVAL/-EPROTO with the message in err. */
int vmio_mig_rec_parse(const uint8_t hdr[VMIO_MIG_REC_HDR], uint64_t expect_seq,
                       struct vmio_mig_rec *r, char *err, size_t errlen);
/* 1 when the checksum of hdr+payload is right. */
int vmio_mig_rec_check(const uint8_t hdr[VMIO_MIG_REC_HDR], const void *payload,
                       size_t len);

/* HELLO. */
struct vmio_mig_region_info {
    uint64_t length;
    uint32_t page_size;
    char name[VMIO_MIG_NAME_MAX];
};
struct vmio_mig_hello {
    uint32_t version;
    uint32_t flags;
    uint32_t nregions;
    struct vmio_mig_region_info *regions;   /* parse: malloc'd, caller frees */
};
size_t vmio_mig_hello_size(uint32_t nregions);
void vmio_mig_hello_encode(const struct vmio_mig_hello *h, uint8_t *out);
int vmio_mig_hello_decode(const uint8_t *p, size_t len, struct vmio_mig_hello *h, char *err,
                          size_t errlen);

/* ROUND: round number, flags (1 = final round, the VM is paused). */
#define VMIO_MIG_ROUND_BODY 8u
#define VMIO_MIG_ROUND_FINAL 0x1u
/* END: digest, total pages sent, rounds. */
#define VMIO_MIG_END_BODY (VMIO_MIG_DIGEST + 12u)
#define VMIO_MIG_END_NO_DIGEST 0x1u   /* flags bit: digest not computed */
/* RESULT: u32 status (0 or errno), digest, message (no NUL). */
#define VMIO_MIG_RESULT_MIN (4u + VMIO_MIG_DIGEST)

/* ---- PAGES entries ------------------------------------------------------
 * entry := uleb128 advance, u8 codec, body
 *   page = cursor + advance; the entry covers [page, page + count); the
 *   cursor moves to page + count (it starts at 0 in every record).
 *   ZERO, SKIP: uleb128 count - 1
 *   RAW:        page_size bytes
 *   RLE, DELTA: uleb128 len (1..page_size), len bytes (codec.h format)
 *   DEDUP:      uleb128 src_region, uleb128 src_page, 32-byte SHA-256 of
 *               the source page's bytes as the receiver holds them
 *   ZSTD, LZ4:  a block of pages compressed together; advance must be 0
 *               and the cursor does not move: uleb128 count - 1, uleb128
 *               first page, count - 1 times uleb128 gap (next page =
 *               previous + 1 + gap), uleb128 clen, clen bytes that
 *               decompress to exactly count * page_size bytes */
struct vmio_mig_entry {
    uint8_t codec;          /* enum vmio_migrate_codec: RAW..SKIP, not ZSTD/LZ4 */
    uint64_t page;
    uint64_t count;         /* 1 except ZERO/SKIP runs */
    const uint8_t *data;    /* RAW: page bytes; RLE/DELTA: the encoding */
    uint32_t len;
    uint32_t src_region;    /* DEDUP */
    uint64_t src_page;
    const uint8_t *hash;    /* DEDUP: 32 bytes */
    const uint8_t *pagelist;/* ZSTD/LZ4: the gaps after the first page */
    uint32_t pagelist_len;
};
/* The pages of a ZSTD/LZ4 block, in order (bounds checked by entry_next):
 * call next e->count times. */
struct vmio_mig_block_iter {
    const uint8_t *pos, *end;
    uint64_t page, left;
    int first;
};
void vmio_mig_block_iter_init(struct vmio_mig_block_iter *bi, const struct vmio_mig_entry *e);
uint64_t vmio_mig_block_iter_next(struct vmio_mig_block_iter *bi);

/* Largest bytes one entry takes (RAW of the largest page + headers). */
#define VMIO_MIG_ENTRY_MAX (VMIO_MIG_PAGE_MAX + 32u)

/* Writer: out must have VMIO_MIG_ENTRY_MAX (or, for RAW/DELTA, len + 32)
 * bytes free. Returns bytes written. cursor is updated. Not for blocks. */
size_t vmio_mig_entry_put(uint8_t *out, uint64_t *cursor, const struct vmio_mig_entry *e,
                          uint32_t page_size);
/* Writer of a ZSTD/LZ4 block over pages[0..count) (ascending); out needs
 * 24 + 10 * count + clen bytes. */
size_t vmio_mig_block_put(uint8_t *out, uint8_t codec, const uint64_t *pages, uint64_t count,
                          const void *cdata, size_t clen);

/* Strict reader over one record's (decompressed) payload. */
struct vmio_mig_entry_iter {
    const uint8_t *p, *end;
    uint64_t cursor;
    uint64_t npages;        /* pages in the record's region */
    uint32_t page_size;
};
void vmio_mig_entry_iter_init(struct vmio_mig_entry_iter *it, const uint8_t *p, size_t len,
                              uint64_t npages, uint32_t page_size);
/* 1 with *e filled, 0 at the end, -EINVAL with err set when malformed
 * (unknown codec, page or run past the region, bad length, truncation,
 * overlong or overflowing uleb128). Source bounds of DEDUP are checked by
 * the caller, which knows the regions. */
int vmio_mig_entry_next(struct vmio_mig_entry_iter *it, struct vmio_mig_entry *e, char *err,
                        size_t errlen);

/* uleb128 helpers (at most 10 bytes; 64-bit values). */
size_t vmio_mig_uleb_put(uint8_t *out, uint64_t v);
/* Returns bytes consumed, 0 when truncated/overlong/overflowing. */
size_t vmio_mig_uleb_get(const uint8_t *p, const uint8_t *end, uint64_t *v);

/* Payload compression with per-thread contexts (zero-initialise; free
 * with vmio_mig_comp_ctx_free). Returns the compressed length, 0 when it
 * would not fit cap (send uncompressed then), -ENOTSUP when not built. */
struct vmio_mig_comp_ctx {
    void *zc, *zd;
};
void vmio_mig_comp_ctx_free(struct vmio_mig_comp_ctx *c);
long vmio_mig_compress(struct vmio_mig_comp_ctx *c, int comp, int level, const void *in,
                       size_t len, void *out, size_t cap);
/* Decompress exactly raw_len bytes; -EINVAL when the data is corrupt or
 * its size differs, -ENOTSUP when not built. */
int vmio_mig_decompress(struct vmio_mig_comp_ctx *c, int comp, const void *in, size_t len,
                        void *out, size_t raw_len);
size_t vmio_mig_compress_bound(int comp, size_t len);
int vmio_mig_comp_available(int comp);

/* XXH3-128 of the bytes of n regions in order (the end-to-end digest):
 * regions is an array of n structs of stride bytes, each with a pointer
 * at base_off and a uint64_t length at len_off. */
void vmio_mig_digest_regions(const void *regions, uint32_t n, size_t stride, size_t base_off,
                             size_t len_off, uint8_t out[VMIO_MIG_DIGEST]);
#define VMIO_MIG_DIGEST_OF(regions, n, type, out)                                       \
    vmio_mig_digest_regions((regions), (n), sizeof(type), offsetof(type, base),           \
                            offsetof(type, length), (out))

#endif
