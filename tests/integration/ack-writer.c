/* vmio-test-ack: checks that nothing acknowledged is lost when a peer dies
 * mid-transfer.
 *
 *   vmio-test-ack write URI BLOCKS [PAUSE-MS]
 *                                    write 1 MiB block i (a pattern made of
 *                                    i), flush, print "acked i", pause;
 *                                    stop at the first error (exit 1)
 *   vmio-test-ack verify URI N       blocks 0..N-1 hold their patterns
 *
 * Failures print "ERRNAME: <vmio_errmsg()>" on stderr. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmio/vmio.h>

#define BLOCK (1u << 20)

static void pattern(uint8_t *b, uint64_t i)
{
    for (size_t k = 0; k < BLOCK; k += 8) {
        uint64_t v = (i << 32) ^ (k * 0x9e3779b97f4a7c15ull);
        memcpy(b + k, &v, 8);
    }
}

static int fail(int r)
{
    const char *name = strerrorname_np(-r);
    fprintf(stderr, "%s: %s\n", name ? name : "E?", vmio_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify"))) {
        fprintf(stderr, "usage: vmio-test-ack write|verify URI N [PAUSE-MS]\n");
        return 2;
    }
    long pause_ms = argc == 5 ? strtol(argv[4], NULL, 0) : 0;
    int writing = argv[1][0] == 'w';
    uint64_t n = strtoull(argv[3], NULL, 0);
    uint8_t *b = malloc(BLOCK), *want = malloc(BLOCK);
    if (!b || !want)
        return 1;
    vmio_file *f;
    int r = vmio_open(argv[2], writing ? VMIO_O_RDWR : VMIO_O_RDONLY, &f);
    if (r < 0)
        return fail(r);
    if (writing) {
        uint64_t size;
        if ((r = vmio_get_size(f, &size)) < 0)
            return fail(r);
        if (size < n * BLOCK && (r = vmio_truncate(f, n * BLOCK)) < 0)
            return fail(r);
    }
    for (uint64_t i = 0; i < n; i++) {
        pattern(want, i);
        if (writing) {
            if ((r = vmio_pwrite(f, want, BLOCK, i * BLOCK, 0)) < 0 || (r = vmio_flush(f)) < 0) {
                fail(r);
                vmio_close(f);
                return 1;
            }
            printf("acked %" PRIu64 "\n", i);
            fflush(stdout);
            if (pause_ms > 0) {
                struct timespec ts = { pause_ms / 1000, (pause_ms % 1000) * 1000000L };
                nanosleep(&ts, NULL);
            }
        } else {
            if ((r = vmio_pread(f, b, BLOCK, i * BLOCK)) < 0)
                return fail(r);
            if (memcmp(b, want, BLOCK) != 0) {
                fprintf(stderr, "block %" PRIu64 " lost or corrupted\n", i);
                return 1;
            }
        }
    }
    if (!writing)
        printf("verified %" PRIu64 " blocks\n", n);
    r = vmio_close(f);
    free(b);
    free(want);
    return r < 0 ? fail(r) : 0;
}
