/* Per-page logic of the migration codecs, compiled both by the C compiler
 * (codec.c, the CPU path) and by nvcc (gpu-kernels.cu, the GPU path), so
 * that both paths take the same zero / delta / RLE / kind / length
 * decisions from the same code. The formats and the analysis order are
 * documented in codec.h.
 *
 * Device rules: no libc (no memcmp/memset/memcpy: loops), no host-only
 * data; everything is VMIO_PC_FN. Words are loaded at offsets that are
 * multiples of 8 from the page start (pages are 8-byte aligned on the
 * device; the host loads through __builtin_memcpy, so any alignment works
 * there). The delta encoder works on 64-byte blocks with one "equal" bit
 * per byte, computed from words (portable, the device) or with SSE2 on
 * x86-64 hosts (the same bits; the unit test compares them); page sizes
 * that are not a multiple of 64 take a byte loop.
 *
 * Hooks an includer may define before including this file:
 *   VMIO_PC_IS_ZERO(p, len)  the zero test analysis uses (codec.c plugs its
 *                            SIMD vmio_mig_is_zero in; same result)
 *   VMIO_PC_EQMASK           the 64-byte "equal" mask of the delta encoder
 *                            (default: SSE2 on x86-64 hosts, else words)
 */
#ifndef VMIO_MIGRATE_PAGE_CODEC_H
#define VMIO_MIGRATE_PAGE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "migrate/codec.h"

#ifdef __CUDACC__
#define VMIO_PC_FN static __host__ __device__ inline
#define VMIO_PC_INLINE static __host__ __device__ __forceinline__
#else
#define VMIO_PC_FN static inline
#define VMIO_PC_INLINE static inline __attribute__((always_inline))
#endif

#ifndef VMIO_PC_IS_ZERO
#define VMIO_PC_IS_ZERO(p, len) vmio_pc_is_zero((p), (len))
#endif

#define VMIO_PC_HIGHS 0x8080808080808080ull
#define VMIO_PC_LOWS 0x7f7f7f7f7f7f7f7full

/* Same as vmio_mig_enc_limit(), usable on the device. */
VMIO_PC_FN uint32_t vmio_pc_enc_limit(uint32_t page_size)
{
    return page_size - page_size / 8;
}

/* Index of the lowest set bit of x != 0. */
VMIO_PC_FN unsigned vmio_pc_ctz64(uint64_t x)
{
#ifdef __CUDA_ARCH__
    return (unsigned)(__ffsll((long long)x) - 1);
#else
    return (unsigned)__builtin_ctzll(x);
#endif
}

/* The 8 bytes at p (p - page start is a multiple of 8: aligned on the
 * device). */
VMIO_PC_FN uint64_t vmio_pc_load64(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return *(const uint64_t *)(const void *)p;
#else
    uint64_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
#endif
}

/* 0x80 in every byte of x that is zero, 0 elsewhere (exact, no carries
 * between bytes). */
VMIO_PC_FN uint64_t vmio_pc_zero_bytes(uint64_t x)
{
    uint64_t nz = ((x & VMIO_PC_LOWS) + VMIO_PC_LOWS) | x;
    return ~nz & VMIO_PC_HIGHS;
}

/* 1 when the len bytes at p are all zero: 64-byte blocks OR-reduced,
 * early exit per block. */
VMIO_PC_FN int vmio_pc_is_zero(const uint8_t *p, uint32_t len)
{
    uint32_t off = 0;
    for (; off + 64 <= len; off += 64) {
        uint64_t acc = 0;
        for (uint32_t k = 0; k < 64; k += 8)
            acc |= vmio_pc_load64(p + off + k);
        if (acc)
            return 0;
    }
    for (; off < len; off++)
        if (p[off])
            return 0;
    return 1;
}

/* ---- delta / RLE encoding ------------------------------------------- */

/* Appends v as uleb128 at out[*pos], within cap. 0, or -1 when full. */
VMIO_PC_FN int vmio_pc_put_uleb(uint8_t *out, uint32_t cap, uint32_t *pos, uint32_t v)
{
    uint32_t p = *pos;
    do {
        if (p >= cap)
            return -1;
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[p++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
    *pos = p;
    return 0;
}

/* Appends one pair (skip, literal of n bytes at lit, of which room bytes
 * may be read) at out[*o] within cap. 0, or -1 when it does not fit
 * (bytes up to cap may be written). */
VMIO_PC_FN int vmio_pc_put_pair(uint8_t *out, uint32_t cap, uint32_t *o, uint32_t skip,
                                const uint8_t *lit, uint32_t n, uint32_t room)
{
    if (vmio_pc_put_uleb(out, cap, o, skip) < 0 || vmio_pc_put_uleb(out, cap, o, n) < 0 ||
        n > cap - *o)
        return -1;
    uint8_t *dst = out + *o;
    *o += n;
#ifndef __CUDA_ARCH__
    /* Short literals (the common case) as two unaligned 8-byte moves when
     * the room is there on both sides. */
    if (n <= 16 && room >= 16 && *o - n + 16 <= cap) {
        uint64_t a, b;
        __builtin_memcpy(&a, lit, 8);
        __builtin_memcpy(&b, lit + 8, 8);
        __builtin_memcpy(dst, &a, 8);
        __builtin_memcpy(dst + 8, &b, 8);
        return 0;
    }
    __builtin_memcpy(dst, lit, n);
#else
    for (uint32_t k = 0; k < n; k++)
        dst[k] = lit[k];
#endif
    return 0;
}

/* Byte-at-a-time encoder for page sizes that are not a multiple of 8
 * (the word encoder below handles every real page size). */
VMIO_PC_FN long vmio_pc_delta_encode_bytes(const uint8_t *page, const uint8_t *ref,
                                           uint32_t len, uint8_t *out, uint32_t cap)
{
#define VMIO_PC_EQ(i) ((i) >= len || page[i] == (ref ? ref[i] : 0))
    uint32_t pos = 0, o = 0, i = 0;
    for (;;) {
        while (i < len && VMIO_PC_EQ(i))
            i++;
        if (i >= len)
            return (long)o;
        uint32_t d = i, e = d + 1;
        /* bytes past the end count as equal */
        while (!(VMIO_PC_EQ(e) && VMIO_PC_EQ(e + 1) && VMIO_PC_EQ(e + 2)))
            e++;
        if (vmio_pc_put_pair(out, cap, &o, d - pos, page + d, e - d, len - d) < 0)
            return -1;
        pos = i = e;
    }
#undef VMIO_PC_EQ
}

/* Bit i set when byte off + i of page equals that of ref (a zero page
 * when !has_ref), i < 64: the portable form, 8 words with the equal bytes
 * gathered by a multiply (byte j's 0x01 lands on bit 56 + j, no carries). */
VMIO_PC_INLINE uint64_t vmio_pc_eqmask_words(const uint8_t *page, const uint8_t *ref,
                                             uint32_t off, const int has_ref)
{
    uint64_t x[8], any = 0;
    for (int k = 0; k < 8; k++) {
        x[k] = vmio_pc_load64(page + off + 8 * k);
        if (has_ref)
            x[k] ^= vmio_pc_load64(ref + off + 8 * k);
        any |= x[k];
    }
    if (!any)
        return ~0ull;
    uint64_t m = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t z = vmio_pc_zero_bytes(x[k]) >> 7;
        m |= ((z * 0x0102040810204080ull) >> 56) << (8 * k);
    }
    return m;
}

#if defined(__SSE2__) && !defined(__CUDACC__)
#include <emmintrin.h>
#define VMIO_PC_HAVE_SSE2 1
/* The same mask with SSE2 byte compares (x86-64 baseline). */
VMIO_PC_INLINE uint64_t vmio_pc_eqmask_sse2(const uint8_t *page, const uint8_t *ref,
                                            uint32_t off, const int has_ref)
{
    uint64_t m = 0;
    for (int k = 0; k < 4; k++) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(page + off + 16 * k));
        __m128i b = has_ref
                        ? _mm_loadu_si128((const __m128i *)(const void *)(ref + off + 16 * k))
                        : _mm_setzero_si128();
        m |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) << (16 * k);
    }
    return m;
}
#endif
#ifndef VMIO_PC_EQMASK
#ifdef VMIO_PC_HAVE_SSE2
#define VMIO_PC_EQMASK vmio_pc_eqmask_sse2
#else
#define VMIO_PC_EQMASK vmio_pc_eqmask_words
#endif
#endif

/* Block encoder, len a multiple of 64: one bit per byte ("equal to the
 * reference") for the current and the next 64-byte block. has_ref is a
 * constant after inlining, so the RLE and delta loops are separate. */
VMIO_PC_INLINE long vmio_pc_delta_encode_blocks(const uint8_t *page, const uint8_t *ref,
                                                uint32_t len, uint8_t *out, uint32_t cap,
                                                const int has_ref)
{
#define VMIO_PC_M(off) ((off) < len ? VMIO_PC_EQMASK(page, ref, (off), has_ref) : ~0ull)
    uint32_t pos = 0, o = 0;    /* end of the previous literal, bytes out */
    uint32_t blk = 0;           /* block of m */
    uint64_t m = VMIO_PC_M(0u), mn = VMIO_PC_M(64u);
    for (;;) {
        /* The next differing byte d at or after pos (pos - blk < 64). */
        uint64_t ne = ~m & (~0ull << (pos - blk));
        while (!ne) {
            blk += 64;
            if (blk >= len)
                return (long)o;
            m = mn;
            mn = VMIO_PC_M(blk + 64);
            ne = ~m;
        }
        uint32_t d = blk + (uint32_t)vmio_pc_ctz64(ne);
        /* The literal ends at the first e > d from which 3 bytes are equal
         * (bytes past the end count as equal: no trailing equal bytes). */
        uint64_t after = ~0ull << (d - blk);
        uint32_t e;
        for (;;) {
            uint64_t run = m & ((m >> 1) | (mn << 63)) & ((m >> 2) | (mn << 62)) & after;
            if (run) {
                e = blk + (uint32_t)vmio_pc_ctz64(run);
                break;
            }
            blk += 64;
            m = mn;
            mn = VMIO_PC_M(blk + 64);
            after = ~0ull;
        }
        if (vmio_pc_put_pair(out, cap, &o, d - pos, page + d, e - d, len - d) < 0)
            return -1;
        pos = e;    /* in block blk: pos - blk < 64 */
    }
#undef VMIO_PC_M
}

/* Delta (ref != NULL) or RLE (ref == NULL) encoding of page in the format
 * of codec.h, into out of capacity cap (nothing is written at or past
 * out + cap; bytes between the result and cap may be). Returns the
 * length, or -1 when it would exceed cap. */
VMIO_PC_FN long vmio_pc_delta_encode(const uint8_t *page, const uint8_t *ref,
                                     uint32_t page_size, uint8_t *out, uint32_t cap)
{
    if (page_size % 64)
        return vmio_pc_delta_encode_bytes(page, ref, page_size, out, cap);
    if (ref)
        return vmio_pc_delta_encode_blocks(page, ref, page_size, out, cap, 1);
    return vmio_pc_delta_encode_blocks(page, NULL, page_size, out, cap, 0);
}

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------- */

#define VMIO_PC_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* The round constants (FIPS 180-4 4.2.2): in constant memory on the
 * device, read-only data on the host. */
#define VMIO_PC_SHA256_K                                                        \
    {                                                                           \
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, \
        0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, \
        0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, \
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, \
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, \
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, \
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, \
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, \
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, \
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, \
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,                         \
    }
#ifdef __CUDACC__
static __constant__ uint32_t vmio_pc_sha256_k_dev[64] = VMIO_PC_SHA256_K;
#endif

VMIO_PC_FN void vmio_pc_sha256_block(uint32_t h[8], const uint8_t *blk)
{
#ifdef __CUDA_ARCH__
    const uint32_t *k = vmio_pc_sha256_k_dev;
#else
    static const uint32_t k[64] = VMIO_PC_SHA256_K;
#endif
    uint32_t w[16];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)blk[4 * t] << 24 | (uint32_t)blk[4 * t + 1] << 16 |
               (uint32_t)blk[4 * t + 2] << 8 | (uint32_t)blk[4 * t + 3];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = w[t];
        } else {
            /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], in a
             * ring of 16. */
            uint32_t w2 = w[(t - 2) & 15], w15 = w[(t - 15) & 15];
            uint32_t s0 = VMIO_PC_ROTR(w15, 7) ^ VMIO_PC_ROTR(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = VMIO_PC_ROTR(w2, 17) ^ VMIO_PC_ROTR(w2, 19) ^ (w2 >> 10);
            wt = s1 + w[(t - 7) & 15] + s0 + w[t & 15];
            w[t & 15] = wt;
        }
        uint32_t S1 = VMIO_PC_ROTR(e, 6) ^ VMIO_PC_ROTR(e, 11) ^ VMIO_PC_ROTR(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + k[t] + wt;
        uint32_t S0 = VMIO_PC_ROTR(a, 2) ^ VMIO_PC_ROTR(a, 13) ^ VMIO_PC_ROTR(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

/* SHA-256 of the len bytes at p. */
VMIO_PC_FN void vmio_pc_sha256(const uint8_t *p, uint32_t len, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint32_t off = 0;
    for (; off + 64 <= len; off += 64)
        vmio_pc_sha256_block(h, p + off);
    /* Padding: the rest, 0x80, zeros, the bit length (big endian) in the
     * last 8 bytes of the last block; one or two blocks. */
    uint8_t tail[128];
    uint32_t rest = len - off;
    uint32_t tlen = rest + 9 <= 64 ? 64 : 128;
    for (uint32_t i = 0; i < tlen; i++)
        tail[i] = i < rest ? p[off + i] : 0;
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    vmio_pc_sha256_block(h, tail);
    if (tlen == 128)
        vmio_pc_sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

#undef VMIO_PC_ROTR

/* ---- analysis ------------------------------------------------------- */

/* Analysis of one page in the order of codec.h. ref is the version last
 * sent or NULL; enc receives the DELTA/RLE encoding (page_size bytes of
 * room; at most vmio_pc_enc_limit(page_size) are written). The hash is
 * computed here when flags has VMIO_MIG_A_HASH; a caller with a faster
 * SHA-256 clears the flag and hashes the non-ZERO pages itself (the
 * decisions do not depend on the hash). out->hash is zeroed otherwise. */
VMIO_PC_FN void vmio_pc_analyze_page(const uint8_t *page, const uint8_t *ref,
                                     uint32_t page_size, uint32_t flags,
                                     struct vmio_mig_page_out *out, uint8_t *enc)
{
    uint32_t limit = vmio_pc_enc_limit(page_size);
    for (int i = 0; i < 3; i++)
        out->reserved[i] = 0;
    if (VMIO_PC_IS_ZERO(page, page_size)) {
        for (int i = 0; i < VMIO_MIG_HASH_SIZE; i++)
            out->hash[i] = 0;
        out->kind = VMIO_MIG_KIND_ZERO;
        out->len = 0;
        return;
    }
    if (flags & VMIO_MIG_A_HASH) {
        vmio_pc_sha256(page, page_size, out->hash);
    } else {
        for (int i = 0; i < VMIO_MIG_HASH_SIZE; i++)
            out->hash[i] = 0;
    }
    if (ref && (flags & VMIO_MIG_A_DELTA)) {
        long n = vmio_pc_delta_encode(page, ref, page_size, enc, limit);
        if (n >= 0) {
            out->kind = VMIO_MIG_KIND_DELTA;
            out->len = (uint32_t)n;
            return;
        }
    }
    if (flags & VMIO_MIG_A_RLE) {
        long n = vmio_pc_delta_encode(page, NULL, page_size, enc, limit);
        if (n >= 0) {
            out->kind = VMIO_MIG_KIND_RLE;
            out->len = (uint32_t)n;
            return;
        }
    }
    out->kind = VMIO_MIG_KIND_RAW;
    out->len = page_size;
}

#endif
