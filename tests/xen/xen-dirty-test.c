/* xen-dirty-test: checks the migration sender's Xen dirty source
 * (libvmio/migrate/dirty-xen.c) against a live PVH domU that keeps writing
 * its memory (tests/xen/domu-init). Runs in dom0, as root.
 *
 *   xen-dirty-test DOMID [ROUNDS]
 *       maps the domain, finds the domU's marker page, then does what a
 *       pre-copy does: copy every region, then ROUNDS times (default 4,
 *       one second apart) collect the dirty pages and copy them again;
 *       pauses the domain, collects and copies a last time, and compares
 *       the copy with the paused domain's memory page by page. Every round
 *       must report dirty pages, the marker's counter must grow, and the
 *       copy must equal the memory (a page written but not reported
 *       would differ). The domain is unpaused at the end.
 *   xen-dirty-test --expect ERRNO DOMID
 *       vmio_mig_dirty_xen_new (and start) must fail with -ERRNO
 *       (a number); prints the error message.
 * Exit status 0 when every check passed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "migrate/dirty.h"

#undef __STRICT_ANSI__ /* Xen's headers need GNU C (see dirty-xen.c) */
#include <xenctrl.h>

#define MARK "VMIO-XEN-MARK "

static int fails;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok)
        fails++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Highest counter of the domU's marker in the mapped memory, -1 if none. */
static long find_mark(const struct vmio_mig_region_desc *r, uint32_t n)
{
    long best = -1;
    size_t ml = strlen(MARK);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = r[i].base, *end = r[i].base + r[i].length;
        while ((p = memmem(p, (size_t)(end - p), MARK, ml)) != NULL) {
            const uint8_t *q = p + ml;
            long v = 0;
            int digits = 0;
            while (q < end && *q >= '0' && *q <= '9' && digits < 8) {
                v = v * 10 + (*q - '0');
                q++;
                digits++;
            }
            if (digits == 8 && v > best)
                best = v;
            p += ml;
        }
    }
    return best;
}

/* Collect every region and copy the reported pages into copy; returns the
 * number of pages reported (or -1), adds to *changed those whose bytes
 * differed from the copy. */
static int64_t round_copy(struct vmio_mig_dirty *d, const struct vmio_mig_region_desc *r,
                          uint32_t n, uint8_t **copy, uint64_t *changed)
{
    int64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t pages = r[i].length / r[i].page_size;
        uint64_t *bm = calloc((pages + 63) / 64, 8);
        if (!bm)
            return -1;
        int rc = d->ops->collect(d, i, bm, pages);
        if (rc < 0) {
            printf("collect(region %u): %s\n", i, vmio_errmsg());
            free(bm);
            return -1;
        }
        for (uint64_t p = 0; p < pages; p++) {
            if (!(bm[p / 64] >> (p % 64) & 1))
                continue;
            total++;
            uint64_t off = p * r[i].page_size;
            if (memcmp(copy[i] + off, r[i].base + off, r[i].page_size)) {
                memcpy(copy[i] + off, r[i].base + off, r[i].page_size);
                (*changed)++;
            }
        }
        free(bm);
    }
    return total;
}

static int expect_error(int want, uint32_t domid)
{
    struct vmio_mig_region_desc *regs;
    uint32_t n;
    struct vmio_mig_dirty *d = NULL;
    int rc = vmio_mig_dirty_xen_new("xen-dirty-test", domid, &regs, &n, &d);
    if (rc == 0) {
        rc = d->ops->start(d);
        d->ops->free(d);
    }
    printf("domain %u: rc=%d (%s) message: %s\n", domid, rc, strerror(rc < 0 ? -rc : 0),
           rc < 0 ? vmio_errmsg() : "");
    check(rc == -want, "fails with the expected error");
    check(rc == 0 || strlen(vmio_errmsg()) > 0, "the error has a message");
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "--expect"))
        return expect_error(atoi(argv[2]), (uint32_t)strtoul(argv[3], NULL, 0));
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: xen-dirty-test DOMID [ROUNDS] | --expect ERRNO DOMID\n");
        return 2;
    }
    uint32_t domid = (uint32_t)strtoul(argv[1], NULL, 0);
    int rounds = argc > 2 ? atoi(argv[2]) : 4;

    double t0 = now();
    struct vmio_mig_region_desc *r;
    uint32_t n;
    struct vmio_mig_dirty *d;
    if (vmio_mig_dirty_xen_new("xen-dirty-test", domid, &r, &n, &d) < 0) {
        printf("FAILED: vmio_mig_dirty_xen_new: %s\n", vmio_errmsg());
        return 1;
    }
    uint64_t mapped = 0;
    for (uint32_t i = 0; i < n; i++) {
        mapped += r[i].length / r[i].page_size;
        printf("region %u: %" PRIu64 " pages of %u bytes\n", i, r[i].length / r[i].page_size,
               r[i].page_size);
    }
    printf("mapped %" PRIu64 " pages in %u regions in %.2fs\n", mapped, n, now() - t0);
    check(strcmp(d->ops->name, "xen") == 0 && d->ops->pause != NULL, "the source is xen and can pause");

    /* What Xen says the domain has, independently of the source. */
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xc_dominfo_t info;
    memset(&info, 0, sizeof info);
    if (!xch || xc_domain_getinfo(xch, domid, 1, &info) != 1) {
        printf("FAILED: xc_domain_getinfo\n");
        return 1;
    }
    printf("Xen: domain %u has %lu pages\n", domid, info.nr_pages);
    check(mapped >= info.nr_pages * 9 / 10 && mapped <= info.nr_pages + 1024,
          "the regions cover the domain's pages");

    long m0 = find_mark(r, n);
    printf("marker counter before: %ld\n", m0);
    check(m0 >= 0, "the domU's marker is in the mapped memory");

    uint8_t **copy = calloc(n, sizeof *copy);
    for (uint32_t i = 0; i < n; i++) {
        copy[i] = malloc(r[i].length);
        if (!copy[i]) {
            printf("FAILED: out of memory\n");
            return 1;
        }
    }
    int rc = d->ops->start(d);
    if (rc < 0) {
        printf("FAILED: start: %s\n", vmio_errmsg());
        return 1;
    }
    t0 = now();
    for (uint32_t i = 0; i < n; i++)
        memcpy(copy[i], r[i].base, r[i].length);
    printf("round 0: copied %" PRIu64 " pages in %.2fs\n", mapped, now() - t0);

    uint64_t changed = 0;
    int dirty_rounds = 0;
    for (int k = 1; k <= rounds; k++) {
        sleep(1);
        t0 = now();
        int64_t got = round_copy(d, r, n, copy, &changed);
        printf("round %d: %" PRId64 " dirty pages (%" PRIu64 " changed so far) in %.2fs\n", k, got,
               changed, now() - t0);
        if (got > 0)
            dirty_rounds++;
        if (got < 0)
            fails++;
    }
    check(dirty_rounds == rounds, "every round reported dirty pages");
    long m1 = find_mark(r, n);
    printf("marker counter after %d rounds: %ld\n", rounds, m1);
    check(m1 > m0, "the marker's counter grew: the mapping shows the domU's writes");

    check(d->ops->pause(d) == 0, "pause");
    if (xc_domain_getinfo(xch, domid, 1, &info) == 1)
        check(info.paused, "Xen says the domain is paused");
    int64_t last = round_copy(d, r, n, copy, &changed);
    printf("final round: %" PRId64 " dirty pages; %" PRIu64 " pages changed since round 0\n", last,
           changed);
    check(last >= 0, "final collect");
    check(changed > 0, "pages changed during the rounds (the comparison below can fail)");

    uint64_t diff = 0;
    for (uint32_t i = 0; i < n; i++)
        for (uint64_t off = 0; off < r[i].length; off += r[i].page_size)
            if (memcmp(copy[i] + off, r[i].base + off, r[i].page_size)) {
                if (diff < 5)
                    printf("page %" PRIu64 " of region %u differs but was never reported\n",
                           off / r[i].page_size, i);
                diff++;
            }
    printf("pages that differ from the paused memory: %" PRIu64 "\n", diff);
    check(diff == 0, "the copy made from the dirty pages equals the paused domain's memory");

    d->ops->stop(d);
    d->ops->free(d);
    for (uint32_t i = 0; i < n; i++)
        free(copy[i]);
    free(copy);
    check(xc_domain_unpause(xch, domid) == 0, "unpause");
    xc_interface_close(xch);
    printf("%s\n", fails ? "FAILED" : "all checks passed");
    return fails ? 1 : 0;
}
