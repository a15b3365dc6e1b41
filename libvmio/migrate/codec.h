/* Per-page analysis and encodings of the migration stream, shared by the
 * CPU path (codec.c) and the GPU path (gpu.c + gpu-kernels.cu). The
 * per-page logic itself lives in page-codec.h, which both compile.
 *
 * Analysis of one page (vmio_mig_analyze_*), given its snapshot and, when
 * the delta cache has one, the version last sent:
 *   1. all zero                          -> ZERO (len 0)
 *   2. HASH flag: SHA-256 of the page into out.hash (every non-zero page)
 *   3. has a reference and DELTA allowed -> DELTA encoding against it when
 *      it is no longer than the limit; an empty DELTA means "unchanged"
 *   4. RLE allowed                       -> RLE (= delta against a zero page)
 *      when no longer than the limit
 *   5. otherwise                         -> RAW (len = page size; the bytes
 *      are the snapshot; enc holds only scratch of the failed attempts)
 * The limit is page_size - page_size / 8: an encoding that saves less is
 * not worth its decode.
 *
 * Delta/RLE encoding (XBZRLE-style): a sequence of pairs
 *   uleb128 skip   bytes equal to the reference (may be 0 only first)
 *   uleb128 n      bytes that differ (n >= 1)
 *   n bytes        the new bytes
 * Trailing equal bytes are not encoded. Differences separated by fewer
 * than 3 equal bytes are merged into one literal (cheaper than a new
 * pair). The decoder (vmio_mig_delta_decode) checks every bound and never
 * writes outside the page; it rejects a uleb128 that is truncated, longer
 * than 5 bytes, over 32 bits or overlong (a redundant last 0x00 group), a
 * zero skip after the first pair, a zero-length literal, a skip or literal
 * past the page end or the input end, and anything after the page end.
 * An empty encoding is valid (the page is unchanged).
 */
#ifndef VMIO_MIGRATE_CODEC_H
#define VMIO_MIGRATE_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Page kinds produced by analysis (values = enum vmio_migrate_codec). */
#define VMIO_MIG_KIND_RAW 0
#define VMIO_MIG_KIND_ZERO 1
#define VMIO_MIG_KIND_RLE 2
#define VMIO_MIG_KIND_DELTA 3

/* Analysis flags. */
#define VMIO_MIG_A_RLE 0x1u     /* try RLE on pages without a reference */
#define VMIO_MIG_A_DELTA 0x2u   /* try DELTA against the reference */
#define VMIO_MIG_A_HASH 0x4u    /* SHA-256 of every non-zero page */

#define VMIO_MIG_HASH_SIZE 32
#define VMIO_MIG_PAGE_MIN 4096u
#define VMIO_MIG_PAGE_MAX 65536u

struct vmio_mig_page_out {
    uint8_t kind;                       /* VMIO_MIG_KIND_* */
    uint8_t reserved[3];
    uint32_t len;                       /* encoded length (RAW: page size) */
    uint8_t hash[VMIO_MIG_HASH_SIZE];   /* with VMIO_MIG_A_HASH, non-zero pages;
                                           zeros otherwise */
};

/* A batch of n pages in flat buffers (the GPU path needs them pinned and
 * contiguous; the CPU path uses the same layout). */
struct vmio_mig_batch {
    uint32_t page_size;
    uint32_t n;
    uint32_t flags;                 /* VMIO_MIG_A_* */
    const uint8_t *pages;           /* n * page_size: the snapshot */
    const uint8_t *refs;            /* n * page_size: reference of page i at
                                       i * page_size when has_ref[i] */
    const uint8_t *has_ref;         /* n bytes, 0 or 1 */
    struct vmio_mig_page_out *out;  /* n results */
    uint8_t *enc;                   /* n * page_size: encoding of page i at
                                       i * page_size (out[i].len bytes) */
};

/* Largest encoding analysis keeps (longer ones become RAW). */
static inline uint32_t vmio_mig_enc_limit(uint32_t page_size)
{
    return page_size - page_size / 8;
}

/* CPU analysis of a whole batch (the same per-page logic as the GPU). */
void vmio_mig_analyze_cpu(const struct vmio_mig_batch *b);

/* Encode page against ref (NULL = a zero page) into out (capacity cap).
 * Returns the length, or -1 when it would exceed cap. Nothing is written
 * at or past out + cap; bytes between the length and cap may be. */
long vmio_mig_delta_encode(const uint8_t *page, const uint8_t *ref, uint32_t page_size,
                           uint8_t *out, size_t cap);
/* Apply an encoding to page (which holds the reference, or zeros for
 * RLE). Returns 0, or -EINVAL for a malformed encoding (page may then be
 * partly written, but never outside [page, page + page_size)). */
int vmio_mig_delta_decode(uint8_t *page, uint32_t page_size, const uint8_t *enc, size_t len);

/* 1 when the page is all zero. Memory-bandwidth speed. */
int vmio_mig_is_zero(const uint8_t *page, size_t len);
/* SHA-256 of a page (nettle; the same value as the shared code). */
void vmio_mig_hash(const uint8_t *page, size_t len, uint8_t out[VMIO_MIG_HASH_SIZE]);

#endif
