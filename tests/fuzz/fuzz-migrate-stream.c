/* Fuzz target for the migration receiver (libvmio/migrate/receiver.c and
 * stream.c): the input is a whole stream from a sender, fed through a
 * memory transport into the receiver, whose destination is two regions
 * (16 pages of 4 KiB, 4 pages of 16 KiB) with guard pages around them.
 *
 * Byte 0 selects a mode: bit 0 set = "repair" — the records' sequence
 * numbers and checksums are rewritten as a sender would, so that the
 * fuzzer reaches the entry parser, the decoders and the DEDUP checks
 * instead of stopping at a checksum; bit 0 clear = the bytes as they are
 * (checksums, truncation, sequence checks). Whatever the input, the
 * receiver returns 0 or a negative errno with a message, and the guard
 * pages stay untouched (it never writes outside its regions). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vmio/migrate.h>

#include "migrate/engine.h"
#include "migrate/stream.h"
#include "protocol/wire.h"
#include "transport/transport.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct memt {
    struct vmio_transport t;
    const uint8_t *p;
    size_t len, off;
};

static int m_sendv(struct vmio_transport *t, struct iovec *iov, int n)
{
    (void)t;
    (void)iov;
    (void)n;
    return 0;
}

static int m_recv(struct vmio_transport *t, void *buf, size_t len)
{
    struct memt *m = (struct memt *)t;
    if (m->len - m->off < len) {
        m->off = m->len;
        return -EPIPE;
    }
    memcpy(buf, m->p + m->off, len);
    m->off += len;
    return 0;
}

static long m_recv_some(struct vmio_transport *t, void *buf, size_t len)
{
    struct memt *m = (struct memt *)t;
    size_t n = m->len - m->off < len ? m->len - m->off : len;
    if (!n)
        return -EPIPE;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (long)n;
}

static int m_readable(struct vmio_transport *t)
{
    (void)t;
    return 1;
}

static void m_nop(struct vmio_transport *t)
{
    (void)t;
}

static void m_timeout(struct vmio_transport *t, int ms)
{
    (void)t;
    (void)ms;
}

static const struct vmio_transport_ops mem_ops = {
    .struct_size = sizeof(struct vmio_transport_ops),
    .name = "memory",
    .sendv = m_sendv,
    .recv = m_recv,
    .recv_some = m_recv_some,
    .readable = m_readable,
    .shutdown = m_nop,
    .shutdown_read = m_nop,
    .set_recv_timeout = m_timeout,
    .close = m_nop,
};

/* Rewrite sequence numbers and checksums record by record. */
static void repair(uint8_t *p, size_t len)
{
    uint64_t seq = 0;
    size_t off = 0;
    while (len - off >= VMIO_MIG_REC_HDR) {
        uint8_t *h = p + off;
        uint32_t wl = vmio_get_le32(h + 16);
        size_t avail = len - off - VMIO_MIG_REC_HDR;
        if (wl > avail)
            wl = (uint32_t)avail;
        struct vmio_mig_rec r = { .type = h[0], .comp = h[1], .region = vmio_get_le32(h + 4),
                                  .seq = seq++, .wire_len = wl,
                                  .raw_len = h[1] ? vmio_get_le32(h + 20) : wl };
        h[2] = h[3] = 0;
        vmio_mig_rec_pack(h, &r, h + VMIO_MIG_REC_HDR);
        off += VMIO_MIG_REC_HDR + wl;
    }
}

#define GUARD 4096u
#define L0 (16u * 4096u)
#define L1 (4u * 16384u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fix = data[0] & 1;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    if (fix)
        repair(copy, size - 1);

    size_t total = GUARD + L0 + GUARD + L1 + GUARD;
    uint8_t *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 0xa5, total);
    uint8_t *r0 = m + GUARD, *r1 = m + GUARD + L0 + GUARD;
    memset(r0, 0, L0);
    memset(r1, 0, L1);

    vmio_migrate_receiver *rc;
    CHECK(vmio_migrate_receiver_new(NULL, &rc) == 0);
    struct vmio_migrate_region a = { sizeof(a), 4096, r0, L0, "low" };
    struct vmio_migrate_region b = { sizeof(b), 16384, r1, L1, "high" };
    CHECK(vmio_migrate_receiver_add_region(rc, &a) == 0);
    CHECK(vmio_migrate_receiver_add_region(rc, &b) == 1);
    struct memt t = { { &mem_ops, -1, "fuzz", NULL }, copy, size - 1, 0 };
    int r = vmio_mig_receive_on(rc, &t.t);
    CHECK(r == 0 || (r < 0 && r > -4096 && vmio_errmsg()[0] != 0));
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "receive: %d %s\n", r, r < 0 ? vmio_errmsg() : "ok");
    vmio_migrate_receiver_free(rc);

    for (size_t i = 0; i < GUARD; i++) {
        CHECK(m[i] == 0xa5);
        CHECK(m[GUARD + L0 + i] == 0xa5);
        CHECK(m[total - GUARD + i] == 0xa5);
    }
    munmap(m, total);
    free(copy);
    return 0;
}
