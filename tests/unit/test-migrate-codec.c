/* Unit tests of the migration page codecs (libvmio/migrate/codec.c and the
 * per-page logic shared with the GPU, page-codec.h): delta/RLE round trips
 * over random and adversarial page pairs, the encoding checked against
 * the format rules by a parser written here, an independent byte-at-a-time
 * reference decoder that must agree with vmio_mig_delta_decode on valid
 * and malformed input, the shared SHA-256 against nettle, the zero test,
 * and the batch analysis against the shared per-page analysis. */
#include "test-common.h"

#include <nettle/sha2.h>

#include "migrate/codec.h"
#include "migrate/page-codec.h"

/* Assertions that only talk to Check when they fail: these tests make
 * millions of checks, and a passing ck_assert() costs a write in fork
 * mode. */
#define CHECK_MSG(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond))                                                            \
            ck_abort_msg(__VA_ARGS__);                                          \
    } while (0)
#define CHECK(cond) CHECK_MSG(cond, "check failed: %s", #cond)
#define CHECK_OP(a, op, b)                                                      \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        CHECK_MSG(a_ op b_, "%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);     \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)
#define CHECK_LE(a, b) CHECK_OP(a, <=, b)
#define CHECK_GT(a, b) CHECK_OP(a, >, b)
#define CHECK_GE(a, b) CHECK_OP(a, >=, b)
#define CHECK_NONNULL(p) CHECK((p) != NULL)

static const uint32_t page_sizes[] = {4096, 8192, 16384, 65536, 4100, 5003};
#define NSIZES (sizeof page_sizes / sizeof page_sizes[0])
#define MAXPS 65536u

/* xorshift64*: reproducible pseudo-random bytes. */
static uint64_t rng_state;
static void rng_seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng() % n);
}
static void rng_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng();
}

/* ---- independent reference decoder --------------------------------- */

/* Reads one uleb128 byte by byte; the same acceptance rules as the
 * format (at most 32 bits, 5 bytes, no redundant last group). */
static int ref_uleb(const uint8_t *enc, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    int nbytes = 0;
    for (;;) {
        if (*i == len)
            return -1;
        uint8_t b = enc[(*i)++];
        nbytes++;
        if (nbytes > 5)
            return -1;
        v += (uint64_t)(b & 0x7f) << (7 * (nbytes - 1));
        if ((b & 0x80) == 0) {
            if (nbytes > 1 && b == 0)
                return -1;
            break;
        }
    }
    if (v > 0xffffffffull)
        return -1;
    *out = v;
    return 0;
}

/* Applies enc to page one byte at a time into a scratch copy, and only
 * commits it when the whole encoding is valid. 0 or -1. */
static int ref_decode(uint8_t *page, uint32_t ps, const uint8_t *enc, size_t len)
{
    uint8_t *tmp = malloc(ps);
    CHECK_NONNULL(tmp);
    for (uint32_t k = 0; k < ps; k++)
        tmp[k] = page[k];
    uint64_t at = 0;
    size_t i = 0;
    int first = 1, ok = 0;
    while (i < len) {
        uint64_t skip, n;
        if (ref_uleb(enc, len, &i, &skip) || ref_uleb(enc, len, &i, &n))
            goto out;
        if (n == 0 || (skip == 0 && !first))
            goto out;
        at += skip;
        for (uint64_t k = 0; k < n; k++) {
            if (at >= ps || i >= len)
                goto out;
            tmp[at++] = enc[i++];
        }
        first = 0;
    }
    ok = 1;
    for (uint32_t k = 0; k < ps; k++)
        page[k] = tmp[k];
out:
    free(tmp);
    return ok ? 0 : -1;
}

/* Checks that enc is THE encoding of page against ref (NULL = zeros)
 * that codec.h defines: every literal starts and ends on a differing
 * byte, holds no run of 3 equal bytes, and every gap between literals is
 * at least 3 equal bytes; all differing bytes are covered; nothing
 * follows the last literal. */
static void check_canonical(const uint8_t *page, const uint8_t *ref, uint32_t ps,
                            const uint8_t *enc, size_t len)
{
#define R(k) (ref ? ref[k] : 0)
    size_t i = 0;
    uint64_t at = 0;
    int first = 1;
    while (i < len) {
        uint64_t skip, n;
        CHECK_EQ(ref_uleb(enc, len, &i, &skip), 0);
        CHECK_EQ(ref_uleb(enc, len, &i, &n), 0);
        CHECK_MSG(first || skip >= 3, "gap of %llu at %llu", (unsigned long long)skip,
                      (unsigned long long)at);
        for (uint64_t k = at; k < at + skip; k++)
            CHECK_MSG(page[k] == R(k), "differing byte %llu skipped",
                          (unsigned long long)k);
        at += skip;
        CHECK(n >= 1 && at + n <= ps);
        CHECK(page[at] != R(at));
        CHECK(page[at + n - 1] != R(at + n - 1));
        int eqrun = 0;
        for (uint64_t k = at; k < at + n; k++) {
            CHECK_EQ(enc[i + (k - at)], page[k]);
            eqrun = page[k] == R(k) ? eqrun + 1 : 0;
            CHECK_MSG(eqrun < 3, "literal holds 3 equal bytes at %llu",
                          (unsigned long long)k);
        }
        at += n;
        i += n;
        first = 0;
    }
    for (uint64_t k = at; k < ps; k++)
        CHECK_MSG(page[k] == R(k), "differing byte %llu not encoded",
                      (unsigned long long)k);
#undef R
}

/* ---- page pairs ---------------------------------------------------- */

enum pattern {
    P_SAME, P_ZERO_PAGE, P_ONES, P_FIRST, P_LAST, P_FIRST_LAST, P_ALTERNATE,
    P_EVERY_THIRD, P_EVERY_FOURTH, P_PAIRS_GAP2, P_SPARSE, P_WORDS, P_RUNS,
    P_RANDOM, P_TAIL_RUN, P_COUNT
};

/* Fills ref and page (ps bytes) for pattern pat. */
static void make_pair(enum pattern pat, uint32_t ps, uint8_t *ref, uint8_t *page)
{
    if (rng() & 1)
        rng_fill(ref, ps);
    else
        memset(ref, (int)(rng() & 0xff), ps);
    memcpy(page, ref, ps);
    switch (pat) {
    case P_SAME:
        break;
    case P_ZERO_PAGE:
        memset(page, 0, ps);
        break;
    case P_ONES:
        memset(page, 0xff, ps);
        break;
    case P_FIRST:
        page[0] ^= 1;
        break;
    case P_LAST:
        page[ps - 1] ^= 0x80;
        break;
    case P_FIRST_LAST:
        page[0] ^= 0xff;
        page[ps - 1] ^= 0xff;
        break;
    case P_ALTERNATE:
        for (uint32_t k = 0; k < ps; k += 2)
            page[k] ^= 0x5a;
        break;
    case P_EVERY_THIRD:
        for (uint32_t k = rng_below(3); k < ps; k += 3)
            page[k] ^= 0x01;
        break;
    case P_EVERY_FOURTH:
        for (uint32_t k = rng_below(4); k < ps; k += 4)
            page[k] ^= 0x10;
        break;
    case P_PAIRS_GAP2:
        /* changes separated by exactly 2 and exactly 3 equal bytes */
        for (uint32_t k = 0; k + 7 < ps; k += 64) {
            page[k] ^= 1;
            page[k + 3] ^= 1;
            page[k + 7] ^= 1;
        }
        break;
    case P_SPARSE: {
        uint32_t n = 1 + rng_below(ps / 64);
        for (uint32_t k = 0; k < n; k++)
            page[rng_below(ps)] ^= (uint8_t)(1 + rng_below(255));
        break;
    }
    case P_WORDS: {
        /* 1-5 % of the 8-byte words rewritten */
        uint32_t nw = ps / 8, n = nw * (1 + rng_below(5)) / 100;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t w = rng_below(nw);
            for (uint32_t b = 0; b < 8; b++)
                page[w * 8 + b] = (uint8_t)rng();
        }
        break;
    }
    case P_RUNS: {
        uint32_t n = 1 + rng_below(20);
        for (uint32_t k = 0; k < n; k++) {
            uint32_t at = rng_below(ps), l = 1 + rng_below(300);
            for (uint32_t b = at; b < ps && b < at + l; b++)
                page[b] = (uint8_t)~ref[b];
        }
        break;
    }
    case P_RANDOM:
        rng_fill(page, ps);
        break;
    case P_TAIL_RUN:
        /* a change 1 and 2 bytes before the end, and at the end */
        page[ps - 3] ^= 1;
        page[ps - 1 - rng_below(2)] ^= 2;
        break;
    case P_COUNT:
        break;
    }
}

/* Encodes page against ref (NULL: RLE), checks the encoding and both
 * decoders. Returns the encoded length. */
static long round_trip(const uint8_t *page, const uint8_t *ref, uint32_t ps)
{
    size_t cap = (size_t)ps * 2 + 16;
    uint8_t *enc = malloc(cap);
    uint8_t *a = malloc(ps + 64), *b = malloc(ps);
    CHECK(enc && a && b);
    long n = vmio_mig_delta_encode(page, ref, ps, enc, cap);
    CHECK_MSG(n >= 0, "encode failed for page size %u", ps);
    CHECK_LE(n, (long)ps + 16);
    check_canonical(page, ref, ps, enc, (size_t)n);

    /* The library decoder, with guard bytes around the page. */
    memset(a, 0xa5, ps + 64);
    if (ref)
        memcpy(a + 32, ref, ps);
    else
        memset(a + 32, 0, ps);
    CHECK_EQ(vmio_mig_delta_decode(a + 32, ps, enc, (size_t)n), 0);
    CHECK(memcmp(a + 32, page, ps) == 0);
    for (int k = 0; k < 32; k++)
        CHECK(a[k] == 0xa5 && a[ps + 32 + k] == 0xa5);

    /* The reference decoder agrees. */
    if (ref)
        memcpy(b, ref, ps);
    else
        memset(b, 0, ps);
    CHECK_EQ(ref_decode(b, ps, enc, (size_t)n), 0);
    CHECK(memcmp(b, page, ps) == 0);

    /* The byte-at-a-time shared encoder agrees with the block one. */
    {
        uint8_t *enc3 = malloc(cap);
        CHECK_NONNULL(enc3);
        long n3 = vmio_pc_delta_encode_bytes(page, ref, ps, enc3, (uint32_t)cap);
        CHECK_EQ(n3, n);
        CHECK(memcmp(enc, enc3, (size_t)n) == 0);
        free(enc3);
    }
    /* The shared encoder called directly gives the same bytes. */
    uint8_t *enc2 = malloc(cap);
    CHECK_NONNULL(enc2);
    long n2 = vmio_pc_delta_encode(page, ref, ps, enc2, (uint32_t)cap);
    CHECK_EQ(n2, n);
    CHECK(memcmp(enc, enc2, (size_t)n) == 0);
    free(enc2);
    free(enc);
    free(a);
    free(b);
    return n;
}

START_TEST(test_round_trips)
{
    uint8_t *ref = malloc(MAXPS), *page = malloc(MAXPS);
    CHECK(ref && page);
    rng_seed(1);
    long total = 0;
    for (size_t s = 0; s < NSIZES; s++) {
        uint32_t ps = page_sizes[s];
        for (int pat = 0; pat < P_COUNT; pat++) {
            for (int rep = 0; rep < 4; rep++) {
                make_pair((enum pattern)pat, ps, ref, page);
                long n = round_trip(page, ref, ps);
                total += n;
                if (pat == P_SAME)
                    CHECK_EQ(n, 0);
                round_trip(page, NULL, ps);
                round_trip(ref, NULL, ps);
            }
        }
    }
    CHECK_GT(total, 0);
    free(ref);
    free(page);
}
END_TEST

/* Hand-checked encodings of small cases (4096-byte pages). */
START_TEST(test_known_encodings)
{
    uint32_t ps = 4096;
    uint8_t *ref = calloc(1, ps), *page = calloc(1, ps), enc[64];
    CHECK(ref && page);
    /* unchanged: empty */
    CHECK_EQ(vmio_mig_delta_encode(page, ref, ps, enc, sizeof enc), 0);
    /* first byte: skip 0, n 1 */
    page[0] = 7;
    CHECK_EQ(vmio_mig_delta_encode(page, ref, ps, enc, sizeof enc), 3);
    CHECK(enc[0] == 0 && enc[1] == 1 && enc[2] == 7);
    /* + bytes 2 (gap 1, merged) and 6 (gap 3, new pair) */
    page[2] = 9;
    page[6] = 1;
    CHECK_EQ(vmio_mig_delta_encode(page, ref, ps, enc, sizeof enc), 8);
    const uint8_t want[] = {0, 3, 7, 0, 9, 3, 1, 1};
    CHECK(memcmp(enc, want, sizeof want) == 0);
    /* last byte only: skip 4095 = uleb ff 1f */
    memset(page, 0, ps);
    page[ps - 1] = 0x42;
    CHECK_EQ(vmio_mig_delta_encode(page, ref, ps, enc, sizeof enc), 4);
    const uint8_t want2[] = {0xff, 0x1f, 1, 0x42};
    CHECK(memcmp(enc, want2, sizeof want2) == 0);
    free(ref);
    free(page);
}
END_TEST

/* cap is honoured exactly: nothing written at or past it, -1 when the
 * encoding does not fit, success when it fits exactly. */
START_TEST(test_encode_cap)
{
    uint32_t ps = 4096;
    uint8_t *ref = malloc(ps), *page = malloc(ps), *enc = malloc(2 * ps);
    CHECK(ref && page && enc);
    rng_seed(7);
    for (int pat = 0; pat < P_COUNT; pat++) {
        make_pair((enum pattern)pat, ps, ref, page);
        long full = vmio_mig_delta_encode(page, ref, ps, enc, 2 * ps);
        CHECK_GE(full, 0);
        size_t caps[] = {0, 1, 2, (size_t)full / 2, full > 0 ? (size_t)full - 1 : 0,
                         (size_t)full};
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            memset(enc, 0xee, 2 * ps);
            long n = vmio_mig_delta_encode(page, ref, ps, enc, caps[c]);
            if ((size_t)full <= caps[c])
                CHECK_EQ(n, full);
            else
                CHECK_EQ(n, -1);
            for (size_t k = caps[c]; k < 2 * ps; k++)
                CHECK_MSG(enc[k] == 0xee, "byte %zu written past cap %zu", k, caps[c]);
        }
    }
    free(ref);
    free(page);
    free(enc);
}
END_TEST

/* Decodes enc into a guarded copy of base with both decoders: they must
 * agree on acceptance and on the result, and nothing outside the page
 * changes. Returns the library's result. */
static int decode_both(const uint8_t *base, uint32_t ps, const uint8_t *enc, size_t len)
{
    uint8_t *a = malloc(ps + 64), *b = malloc(ps);
    CHECK(a && b);
    memset(a, 0x3c, ps + 64);
    memcpy(a + 32, base, ps);
    memcpy(b, base, ps);
    int r = vmio_mig_delta_decode(a + 32, ps, enc, len);
    int rr = ref_decode(b, ps, enc, len);
    CHECK_MSG(r == 0 || r == -EINVAL, "decode returned %d", r);
    CHECK_MSG((r == 0) == (rr == 0), "decoders disagree: library %d, reference %d", r,
                  rr);
    if (r == 0)
        CHECK(memcmp(a + 32, b, ps) == 0);
    for (int k = 0; k < 32; k++)
        CHECK(a[k] == 0x3c && a[ps + 32 + k] == 0x3c);
    free(a);
    free(b);
    return r;
}

START_TEST(test_malformed)
{
    uint32_t ps = 4096;
    uint8_t *base = malloc(ps);
    CHECK_NONNULL(base);
    rng_seed(3);
    rng_fill(base, ps);
    struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
        int ok;
    } cases[] = {
        {"empty", {0}, 0, 1},
        {"one literal", {0, 1, 9}, 3, 1},
        {"skip only", {5}, 1, 0},
        {"truncated uleb skip", {0x80}, 1, 0},
        {"truncated uleb n", {0, 0x81}, 2, 0},
        {"overlong uleb skip", {0x80, 0x00, 1, 9}, 4, 0},
        {"overlong uleb n", {0, 0x81, 0x00, 9}, 4, 0},
        {"uleb over 5 bytes", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 9}, 8, 0},
        {"uleb over 32 bits", {0xff, 0xff, 0xff, 0xff, 0x1f, 1, 9}, 7, 0},
        {"uleb 2^32-1 skip", {0xff, 0xff, 0xff, 0xff, 0x0f, 1, 9}, 7, 0},
        {"zero-length literal", {3, 0}, 2, 0},
        {"zero-length literal then data", {0, 0, 0, 1, 9}, 5, 0},
        {"skip to the end", {0x80, 0x20, 1, 9}, 4, 0},
        {"skip past the end", {0x81, 0x20, 1, 9}, 4, 0},
        {"last byte", {0xff, 0x1f, 1, 9}, 4, 1},
        {"literal past the end", {0xff, 0x1f, 2, 9, 9}, 5, 0},
        {"literal past the input", {0, 4, 1, 2, 3}, 5, 0},
        {"second skip 0", {0, 1, 9, 0, 1, 9}, 6, 0},
        {"second skip 1", {0, 1, 9, 1, 1, 9}, 6, 1},
        {"data after the page end", {0xff, 0x1f, 1, 9, 0}, 5, 0},
        {"data after the page end 2", {0xff, 0x1f, 1, 9, 1, 1, 9}, 7, 0},
        {"trailing half pair", {0, 1, 9, 4}, 4, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int r = decode_both(base, ps, cases[c].bytes, cases[c].len);
        CHECK_MSG(cases[c].ok ? r == 0 : r == -EINVAL, "%s: got %d", cases[c].what, r);
    }
    /* A whole-page literal is fine; one byte more is not. */
    uint8_t *big = malloc(ps + 8);
    CHECK_NONNULL(big);
    big[0] = 0;
    big[1] = 0x80;
    big[2] = 0x20;
    rng_fill(big + 3, ps + 1);
    CHECK_EQ(decode_both(base, ps, big, 3 + ps), 0);
    big[1] = 0x81;
    CHECK_EQ(decode_both(base, ps, big, 3 + ps + 1), -EINVAL);
    free(big);
    free(base);
}
END_TEST

/* Random and mutated encodings: the two decoders agree on every one. */
START_TEST(test_decode_random)
{
    uint32_t ps = 4096;
    uint8_t *base = malloc(ps), *page = malloc(ps), *enc = malloc(2 * ps);
    CHECK(base && page && enc);
    rng_seed(11);
    rng_fill(base, ps);
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len;
        if (it % 3 == 0) {
            /* random short garbage, biased to small bytes */
            len = rng_below(40);
            for (size_t k = 0; k < len; k++)
                enc[k] = (uint8_t)(rng() & (rng() & 1 ? 0x0f : 0xff));
        } else {
            /* a valid encoding with one or two bytes mutated or cut */
            make_pair((enum pattern)rng_below(P_COUNT), ps, base, page);
            long n = vmio_mig_delta_encode(page, base, ps, enc, 2 * ps);
            CHECK_GE(n, 0);
            len = (size_t)n;
            if (len && rng() & 1)
                enc[rng_below((uint32_t)len)] ^= (uint8_t)(1u << rng_below(8));
            if (len && rng() & 1)
                len = rng_below((uint32_t)len);
        }
        if (decode_both(base, ps, enc, len) == 0)
            accepted++;
        else
            rejected++;
    }
    CHECK_GT(accepted, 100);
    CHECK_GT(rejected, 100);
    free(base);
    free(page);
    free(enc);
}
END_TEST

/* The encoder's 64-byte "equal" masks: the portable word form (the one
 * the GPU runs) and the host's SIMD form give the same bits. */
START_TEST(test_eqmask)
{
    uint8_t a[192], b[192];
    rng_seed(21);
    for (int it = 0; it < 20000; it++) {
        /* small alphabets make many equal bytes and runs */
        unsigned mask = it % 4 == 0 ? 0xff : it % 4 == 1 ? 0x3 : it % 4 == 2 ? 0x1 : 0x0;
        for (int k = 0; k < 192; k++) {
            a[k] = (uint8_t)(rng() & mask);
            b[k] = (uint8_t)(rng() & mask);
        }
        if (it % 7 == 0)
            memcpy(b, a, sizeof b);
        if (it % 11 == 0)
            b[rng_below(192)] ^= 0x80;
        uint32_t off = rng_below(129);
        uint64_t want = 0;
        for (int k = 0; k < 64; k++)
            want |= (uint64_t)(a[off + k] == b[off + k]) << k;
        CHECK_EQ(vmio_pc_eqmask_words(a, b, off, 1), want);
        uint64_t wz = 0;
        for (int k = 0; k < 64; k++)
            wz |= (uint64_t)(a[off + k] == 0) << k;
        CHECK_EQ(vmio_pc_eqmask_words(a, NULL, off, 0), wz);
#ifdef VMIO_PC_HAVE_SSE2
        CHECK_EQ(vmio_pc_eqmask_sse2(a, b, off, 1), want);
        CHECK_EQ(vmio_pc_eqmask_sse2(a, NULL, off, 0), wz);
#endif
    }
}
END_TEST

/* ---- zero test ----------------------------------------------------- */

START_TEST(test_zero_test)
{
    size_t max = 3 * 4096 + 77;
    uint8_t *buf = calloc(1, max + 64);
    CHECK_NONNULL(buf);
    size_t lens[] = {0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 4096, 4100, 3 * 4096 + 77};
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        for (size_t shift = 0; shift < 9; shift++) {
            uint8_t *p = buf + shift;
            size_t len = lens[l];
            CHECK_EQ(vmio_mig_is_zero(p, len), 1);
            CHECK_EQ(vmio_pc_is_zero(p, (uint32_t)len), 1);
            for (size_t k = 0; k < len; k += (len > 300 ? 37 : 1)) {
                p[k] = (uint8_t)(1u << (k % 8));
                CHECK_MSG(vmio_mig_is_zero(p, len) == 0, "len %zu byte %zu", len, k);
                CHECK_EQ(vmio_pc_is_zero(p, (uint32_t)len), 0);
                p[k] = 0;
            }
            if (len) {
                p[len - 1] = 0x80;
                CHECK_EQ(vmio_mig_is_zero(p, len), 0);
                CHECK_EQ(vmio_pc_is_zero(p, (uint32_t)len), 0);
                p[len - 1] = 0;
            }
            /* bytes just outside do not count */
            p[len] = 1;
            if (shift)
                p[-1] = 1;
            CHECK_EQ(vmio_mig_is_zero(p, len), 1);
            CHECK_EQ(vmio_pc_is_zero(p, (uint32_t)len), 1);
            p[len] = 0;
            if (shift)
                p[-1] = 0;
        }
    }
    free(buf);
}
END_TEST

/* ---- SHA-256 ------------------------------------------------------- */

static void nettle_sha256(const uint8_t *p, size_t len, uint8_t out[32])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, p);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

START_TEST(test_sha256)
{
    /* FIPS 180-4 example "abc" (the known answer of the standard). */
    static const uint8_t abc[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t h1[32], h2[32];
    vmio_pc_sha256((const uint8_t *)"abc", 3, h1);
    CHECK(memcmp(h1, abc, 32) == 0);

    size_t max = 70000;
    uint8_t *buf = malloc(max);
    CHECK_NONNULL(buf);
    rng_seed(5);
    rng_fill(buf, max);
    /* every length around the padding boundaries, then random ones */
    for (uint32_t len = 0; len < 300; len++) {
        vmio_pc_sha256(buf, len, h1);
        nettle_sha256(buf, len, h2);
        CHECK_MSG(memcmp(h1, h2, 32) == 0, "length %u", len);
    }
    for (int it = 0; it < 200; it++) {
        uint32_t len = rng_below((uint32_t)max);
        uint32_t off = rng_below(16);
        if (len + off > max)
            len = (uint32_t)max - off;
        vmio_pc_sha256(buf + off, len, h1);
        nettle_sha256(buf + off, len, h2);
        CHECK_MSG(memcmp(h1, h2, 32) == 0, "length %u", len);
    }
    for (size_t s = 0; s < NSIZES; s++) {
        vmio_pc_sha256(buf, page_sizes[s], h1);
        vmio_mig_hash(buf, page_sizes[s], h2);
        CHECK(memcmp(h1, h2, 32) == 0);
    }
    free(buf);
}
END_TEST

/* ---- analysis ------------------------------------------------------ */

/* The batch analysis equals the shared per-page analysis with the shared
 * SHA-256, for every flag combination and a mix of page kinds. */
START_TEST(test_analyze_matches_shared)
{
    for (size_t s = 0; s < NSIZES; s++) {
        uint32_t ps = page_sizes[s], n = 2 * P_COUNT + 4;
        uint8_t *pages = malloc((size_t)n * ps), *refs = malloc((size_t)n * ps);
        uint8_t *has_ref = malloc(n), *enc = malloc((size_t)n * ps);
        uint8_t *enc2 = malloc(ps);
        struct vmio_mig_page_out *out = malloc(n * sizeof *out);
        CHECK(pages && refs && has_ref && enc && enc2 && out);
        rng_seed(100 + s);
        for (uint32_t i = 0; i < n; i++) {
            make_pair((enum pattern)(i % P_COUNT), ps, refs + (size_t)i * ps,
                      pages + (size_t)i * ps);
            has_ref[i] = (uint8_t)(i < P_COUNT || (i & 1));
        }
        /* all-zero pages, with and without reference; a near-zero page */
        memset(pages + (size_t)(n - 1) * ps, 0, ps);
        memset(pages + (size_t)(n - 2) * ps, 0, ps);
        has_ref[n - 2] = 0;
        memset(pages + (size_t)(n - 3) * ps, 0, ps);
        pages[(size_t)(n - 3) * ps + ps / 2] = 1;
        has_ref[n - 3] = 0;
        for (uint32_t flags = 0; flags < 8; flags++) {
            memset(out, 0x77, n * sizeof *out);
            struct vmio_mig_batch b = {
                .page_size = ps, .n = n, .flags = flags, .pages = pages,
                .refs = refs, .has_ref = has_ref, .out = out, .enc = enc,
            };
            vmio_mig_analyze_cpu(&b);
            for (uint32_t i = 0; i < n; i++) {
                struct vmio_mig_page_out want;
                memset(&want, 0x55, sizeof want);
                const uint8_t *pg = pages + (size_t)i * ps;
                const uint8_t *rf = has_ref[i] ? refs + (size_t)i * ps : NULL;
                vmio_pc_analyze_page(pg, rf, ps, flags, &want, enc2);
                CHECK_MSG(memcmp(&want, &out[i], sizeof want) == 0,
                              "page %u flags %u: kind %d/%d len %u/%u", i, flags, want.kind,
                              out[i].kind, want.len, out[i].len);
                /* the encoding is there and decodes to the page */
                if (want.kind == VMIO_MIG_KIND_DELTA || want.kind == VMIO_MIG_KIND_RLE) {
                    CHECK_LE(want.len, vmio_mig_enc_limit(ps));
                    CHECK(memcmp(enc + (size_t)i * ps, enc2, want.len) == 0);
                    uint8_t *tmp = malloc(ps);
                    CHECK_NONNULL(tmp);
                    if (want.kind == VMIO_MIG_KIND_DELTA)
                        memcpy(tmp, rf, ps);
                    else
                        memset(tmp, 0, ps);
                    CHECK_EQ(ref_decode(tmp, ps, enc + (size_t)i * ps, want.len), 0);
                    CHECK(memcmp(tmp, pg, ps) == 0);
                    free(tmp);
                }
                /* the decisions codec.h describes */
                int zero = test_is_zero(pg, ps);
                if (zero) {
                    CHECK_EQ(want.kind, VMIO_MIG_KIND_ZERO);
                    CHECK_EQ(want.len, 0);
                } else if (want.kind == VMIO_MIG_KIND_RAW) {
                    CHECK_EQ(want.len, ps);
                    uint8_t *e = malloc(2 * ps);
                    CHECK_NONNULL(e);
                    if (rf && (flags & VMIO_MIG_A_DELTA))
                        CHECK_GT(vmio_mig_delta_encode(pg, rf, ps, e, 2 * ps),
                                         vmio_mig_enc_limit(ps));
                    if (flags & VMIO_MIG_A_RLE)
                        CHECK_GT(vmio_mig_delta_encode(pg, NULL, ps, e, 2 * ps),
                                         vmio_mig_enc_limit(ps));
                    free(e);
                } else if (want.kind == VMIO_MIG_KIND_DELTA) {
                    CHECK(rf && (flags & VMIO_MIG_A_DELTA));
                } else {
                    CHECK_EQ(want.kind, VMIO_MIG_KIND_RLE);
                    CHECK(flags & VMIO_MIG_A_RLE);
                }
                if (!zero && (flags & VMIO_MIG_A_HASH)) {
                    uint8_t h[32];
                    nettle_sha256(pg, ps, h);
                    CHECK(memcmp(h, out[i].hash, 32) == 0);
                }
            }
            /* unchanged page with a reference: an empty DELTA */
            if ((flags & VMIO_MIG_A_DELTA) && !test_is_zero(pages, ps)) {
                CHECK_EQ(out[P_SAME].kind, VMIO_MIG_KIND_DELTA);
                CHECK_EQ(out[P_SAME].len, 0);
            }
        }
        free(pages);
        free(refs);
        free(has_ref);
        free(enc);
        free(enc2);
        free(out);
    }
}
END_TEST

/* An encoding of exactly the limit is kept, one byte more is RAW. */
START_TEST(test_analyze_limit)
{
    uint32_t ps = 4096, limit = vmio_mig_enc_limit(ps);
    CHECK_EQ(limit, 3584);
    uint8_t *ref = calloc(1, ps), *page = calloc(1, ps), *enc = malloc(ps);
    CHECK(ref && page && enc);
    /* one literal of L bytes at offset 0: 1 + 2 + L bytes */
    for (uint32_t L = limit - 4; L <= limit - 1; L++) {
        memset(page, 0, ps);
        memset(page, 0xab, L);
        struct vmio_mig_page_out o;
        vmio_pc_analyze_page(page, ref, ps, VMIO_MIG_A_DELTA | VMIO_MIG_A_RLE, &o, enc);
        if (3 + L <= limit) {
            CHECK_EQ(o.kind, VMIO_MIG_KIND_DELTA);
            CHECK_EQ(o.len, 3 + L);
        } else {
            CHECK_EQ(o.kind, VMIO_MIG_KIND_RAW);
            CHECK_EQ(o.len, ps);
        }
        /* without a reference the same bytes are RLE or RAW */
        vmio_pc_analyze_page(page, NULL, ps, VMIO_MIG_A_DELTA | VMIO_MIG_A_RLE, &o, enc);
        CHECK_EQ(o.kind, 3 + L <= limit ? VMIO_MIG_KIND_RLE : VMIO_MIG_KIND_RAW);
        /* RLE not allowed: RAW */
        vmio_pc_analyze_page(page, NULL, ps, VMIO_MIG_A_DELTA, &o, enc);
        CHECK_EQ(o.kind, VMIO_MIG_KIND_RAW);
    }
    /* a delta that does not pay falls back to RLE when that does */
    memset(page, 0, ps);
    page[100] = 1;
    memset(ref, 0xcd, ps);
    struct vmio_mig_page_out o;
    vmio_pc_analyze_page(page, ref, ps, VMIO_MIG_A_DELTA | VMIO_MIG_A_RLE, &o, enc);
    CHECK_EQ(o.kind, VMIO_MIG_KIND_RLE);
    CHECK_EQ(o.len, 3);
    free(ref);
    free(page);
    free(enc);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("migrate-codec");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_known_encodings);
    tcase_add_test(tc, test_round_trips);
    tcase_add_test(tc, test_eqmask);
    tcase_add_test(tc, test_encode_cap);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_decode_random);
    tcase_add_test(tc, test_zero_test);
    tcase_add_test(tc, test_sha256);
    tcase_add_test(tc, test_analyze_matches_shared);
    tcase_add_test(tc, test_analyze_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(codec_suite());
}
