/* Fuzz target for the migration delta/RLE decoder
 * (vmio_mig_delta_decode in libvmio/migrate/codec.c), which parses page
 * encodings received from the peer, and for the encoder's round trip.
 *
 * 1. The input is decoded as an encoding onto a 4 KiB page (a fixed
 *    pattern, and a zero page as for RLE) with guard bytes around it: the
 *    result is 0 or -EINVAL, nothing outside the page changes, and a
 *    decode that succeeds again on an encoding of its result agrees.
 * 2. The input is read as a (reference, page) pair: byte 0 chooses the
 *    layout, the first half of the rest is the reference (repeated to
 *    4 KiB), the second half either the page (repeated) or a list of
 *    3-byte edits (offset high, offset low, value) applied to a copy of
 *    the reference. decode(encode(page)) must give the page back, for
 *    DELTA against the reference and for RLE against zeros. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/codec.h"
#include "fuzz-check.h"

#define PS 4096u
#define GUARD 64u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[GUARD + PS + GUARD];
static uint8_t ref[PS], page[PS], enc[2 * PS];

static void check_guards(void)
{
    for (unsigned k = 0; k < GUARD; k++)
        CHECK(buf[k] == 0xa5 && buf[GUARD + PS + k] == 0xa5);
}

/* Decodes data onto base (NULL: zeros) inside the guarded buffer. */
static void decode_guarded(const uint8_t *base, const uint8_t *data, size_t size)
{
    memset(buf, 0xa5, sizeof buf);
    if (base)
        memcpy(buf + GUARD, base, PS);
    else
        memset(buf + GUARD, 0, PS);
    int r = vmio_mig_delta_decode(buf + GUARD, PS, data, size);
    CHECK(r == 0 || r == -EINVAL);
    check_guards();
    if (r == 0) {
        /* The result re-encodes and decodes to itself. */
        long n = vmio_mig_delta_encode(buf + GUARD, base, PS, enc, sizeof enc);
        CHECK(n >= 0 && (size_t)n <= PS + 16);
        uint8_t *again = page;
        if (base)
            memcpy(again, base, PS);
        else
            memset(again, 0, PS);
        CHECK(vmio_mig_delta_decode(again, PS, enc, (size_t)n) == 0);
        CHECK(memcmp(again, buf + GUARD, PS) == 0);
    }
}

static void fill_repeat(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n == 0) {
        memset(dst, 0, PS);
        return;
    }
    for (size_t k = 0; k < PS; k++)
        dst[k] = src[k % n];
}

static void round_trip(const uint8_t *r)
{
    long n = vmio_mig_delta_encode(page, r, PS, enc, sizeof enc);
    CHECK(n >= 0 && (size_t)n <= PS + 16);
    memset(buf, 0xa5, sizeof buf);
    if (r)
        memcpy(buf + GUARD, r, PS);
    else
        memset(buf + GUARD, 0, PS);
    CHECK(vmio_mig_delta_decode(buf + GUARD, PS, enc, (size_t)n) == 0);
    CHECK(memcmp(buf + GUARD, page, PS) == 0);
    check_guards();
    /* A capacity one byte short fails cleanly. */
    if (n > 0)
        CHECK(vmio_mig_delta_encode(page, r, PS, enc, (size_t)n - 1) == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (unsigned k = 0; k < PS; k++)
        ref[k] = (uint8_t)(k * 7 + (k >> 8));
    decode_guarded(ref, data, size);
    decode_guarded(NULL, data, size);

    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *rest = data + 1;
    size_t n = size - 1, h = n / 2;
    fill_repeat(ref, rest, h);
    if (mode & 1) {
        fill_repeat(page, rest + h, n - h);
    } else {
        memcpy(page, ref, PS);
        for (size_t k = h; k + 3 <= n; k += 3)
            page[((unsigned)rest[k] << 8 | rest[k + 1]) % PS] = rest[k + 2];
    }
    round_trip(ref);
    round_trip(NULL);
    return 0;
}
