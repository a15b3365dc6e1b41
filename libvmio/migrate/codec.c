/* CPU side of the per-page codecs (codec.h): batch analysis with the
 * per-page logic shared with the GPU (page-codec.h), the delta/RLE
 * decoder that parses bytes from the peer, a SIMD zero-page test and the
 * page hash (nettle's SHA-256, the same digest as the shared code). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <nettle/sha2.h>

#include "migrate/codec.h"

/* ---- zero test ------------------------------------------------------ */

/* Portable: 64-byte blocks OR-reduced a word at a time. */
static int is_zero_words(const uint8_t *p, size_t len)
{
    size_t off = 0;
    for (; off + 64 <= len; off += 64) {
        uint64_t w[8];
        memcpy(w, p + off, sizeof w);
        if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
            return 0;
    }
    for (; off < len; off++)
        if (p[off])
            return 0;
    return 1;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_IS_ZERO_AVX2 1

/* AVX2: 128 bytes OR-reduced per test (memory, not the test, is the
 * limit), then 32-byte steps and a word tail. */
__attribute__((target("avx2"))) static int is_zero_avx2(const uint8_t *p, size_t len)
{
    size_t off = 0;
    for (; off + 128 <= len; off += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p + off));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + off + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(p + off + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(const void *)(p + off + 96));
        __m256i x = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        if (!_mm256_testz_si256(x, x))
            return 0;
    }
    for (; off + 32 <= len; off += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p + off));
        if (!_mm256_testz_si256(a, a))
            return 0;
    }
    return is_zero_words(p + off, len - off);
}
#endif

typedef int (*is_zero_fn)(const uint8_t *p, size_t len);

static int is_zero_resolve(const uint8_t *p, size_t len);
static is_zero_fn is_zero_impl = is_zero_resolve;

/* First call: pick the implementation for this CPU. Threads racing here
 * store the same pointer. */
static int is_zero_resolve(const uint8_t *p, size_t len)
{
    is_zero_fn f = is_zero_words;
#ifdef HAVE_IS_ZERO_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        f = is_zero_avx2;
#endif
    __atomic_store_n(&is_zero_impl, f, __ATOMIC_RELAXED);
    return f(p, len);
}

int vmio_mig_is_zero(const uint8_t *page, size_t len)
{
    is_zero_fn f = __atomic_load_n(&is_zero_impl, __ATOMIC_RELAXED);
    return f(page, len);
}

/* The shared per-page logic, with the SIMD zero test (same result as
 * vmio_pc_is_zero). */
#define VMIO_PC_IS_ZERO(p, len) vmio_mig_is_zero((p), (len))
#include "migrate/page-codec.h"

/* ---- hash ----------------------------------------------------------- */

void vmio_mig_hash(const uint8_t *page, size_t len, uint8_t out[VMIO_MIG_HASH_SIZE])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, page);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

/* ---- analysis ------------------------------------------------------- */

void vmio_mig_analyze_cpu(const struct vmio_mig_batch *b)
{
    size_t ps = b->page_size;
    /* nettle hashes faster than the portable SHA-256: analysis runs
     * without the hash step and nettle fills it in for the same pages. */
    uint32_t flags = b->flags & ~VMIO_MIG_A_HASH;
    for (uint32_t i = 0; i < b->n; i++) {
        const uint8_t *page = b->pages + i * ps;
        const uint8_t *ref = NULL;
        if (b->refs && b->has_ref && b->has_ref[i])
            ref = b->refs + i * ps;
        struct vmio_mig_page_out *out = &b->out[i];
        vmio_pc_analyze_page(page, ref, b->page_size, flags, out, b->enc + i * ps);
        if ((b->flags & VMIO_MIG_A_HASH) && out->kind != VMIO_MIG_KIND_ZERO)
            vmio_mig_hash(page, ps, out->hash);
    }
}

/* ---- delta / RLE ---------------------------------------------------- */

long vmio_mig_delta_encode(const uint8_t *page, const uint8_t *ref, uint32_t page_size,
                           uint8_t *out, size_t cap)
{
    /* The shared code counts in 32 bits; an encoding is never near that
     * (at most page_size + 8 bytes for pages up to 64 KiB). */
    uint32_t c = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    return vmio_pc_delta_encode(page, ref, page_size, out, c);
}

/* One uleb128 field at enc[*pos]: canonical (no redundant trailing 0x00
 * group), at most 32 bits. 0 or -EINVAL. */
static int get_uleb(const uint8_t *enc, size_t len, size_t *pos, uint32_t *v)
{
    uint64_t val = 0;
    size_t p = *pos;
    for (unsigned shift = 0;; shift += 7) {
        if (p >= len || shift > 28)
            return -EINVAL;     /* truncated, or more than 5 groups */
        uint8_t b = enc[p++];
        val |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift > 0)
                return -EINVAL; /* overlong */
            break;
        }
    }
    if (val > UINT32_MAX)
        return -EINVAL;
    *pos = p;
    *v = (uint32_t)val;
    return 0;
}

int vmio_mig_delta_decode(uint8_t *page, uint32_t page_size, const uint8_t *enc, size_t len)
{
    size_t i = 0;
    uint32_t pos = 0;   /* page offset reached */
    while (i < len) {
        uint32_t skip, n;
        if (get_uleb(enc, len, &i, &skip) < 0 || get_uleb(enc, len, &i, &n) < 0)
            return -EINVAL;
        /* A zero skip is only meaningful first; a literal has a byte. */
        if ((skip == 0 && pos != 0) || n == 0)
            return -EINVAL;
        if (skip > page_size - pos || n > page_size - pos - skip || n > len - i)
            return -EINVAL;
        pos += skip;
        memcpy(page + pos, enc + i, n);
        pos += n;
        i += n;
    }
    return 0;
}
