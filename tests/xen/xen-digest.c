/* xen-digest: the digest of a Xen domain's memory, computed independently
 * of libvmio to check what vmio-migrate's receiver confirms. Runs in dom0.
 *
 *   xen-digest DOMID
 *
 * Maps the domain's frames 0..max_gpfn in chunks with libxenforeignmemory,
 * keeps the frames that map (holes and unpopulated frames fail and are
 * left out, as the migration source does) and hashes their bytes in
 * ascending frame order with XXH3-128 from libxxhash. Prints
 * "digest <32 hex digits, canonical (big-endian) form> pages <N>".
 * The domain should be paused, or the digest means little. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <xxhash.h>

#undef __STRICT_ANSI__ /* Xen's headers need GNU C */
#include <xenctrl.h>
#include <xenforeignmemory.h>

#define CHUNK 4096u
#define PAGE 4096u

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: xen-digest DOMID\n");
        return 2;
    }
    uint32_t domid = (uint32_t)strtoul(argv[1], NULL, 0);
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
    if (!xch || !fm) {
        fprintf(stderr, "xen-digest: cannot open the Xen interfaces: %s\n", strerror(errno));
        return 1;
    }
    xc_dominfo_t info;
    if (xc_domain_getinfo(xch, domid, 1, &info) != 1 || info.domid != domid) {
        fprintf(stderr, "xen-digest: no domain %u\n", domid);
        return 1;
    }
    if (!info.paused)
        fprintf(stderr, "xen-digest: warning: domain %u is running\n", domid);
    xen_pfn_t maxgpfn;
    if (xc_domain_maximum_gpfn(xch, domid, &maxgpfn) < 0) {
        fprintf(stderr, "xen-digest: xc_domain_maximum_gpfn: %s\n", strerror(errno));
        return 1;
    }
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    unsigned long long pages = 0;
    xen_pfn_t gfn[CHUNK];
    int err[CHUNK];
    for (unsigned long long g0 = 0; g0 <= maxgpfn; g0 += CHUNK) {
        size_t n = maxgpfn + 1 - g0 < CHUNK ? (size_t)(maxgpfn + 1 - g0) : CHUNK;
        for (size_t i = 0; i < n; i++)
            gfn[i] = g0 + i;
        memset(err, 0, sizeof err);
        uint8_t *m = xenforeignmemory_map(fm, domid, PROT_READ, n, gfn, err);
        if (!m) {
            fprintf(stderr, "xen-digest: mapping frames %llu..: %s\n", g0, strerror(errno));
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            if (err[i])
                continue;
            XXH3_128bits_update(st, m + i * PAGE, PAGE);
            pages++;
        }
        xenforeignmemory_unmap(fm, m, n);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    printf("digest ");
    for (int i = 0; i < 16; i++)
        printf("%02x", c.digest[i]);
    printf(" pages %llu\n", pages);
    XXH3_freeState(st);
    xenforeignmemory_close(fm);
    xc_interface_close(xch);
    return 0;
}
