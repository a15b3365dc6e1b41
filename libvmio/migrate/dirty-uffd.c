/* Dirty source 2: this process's own private anonymous memory, tracked
 * with userfaultfd write-protect in asynchronous mode and the PAGEMAP_SCAN
 * ioctl of /proc/self/pagemap (both Linux 6.7).
 *
 * With UFFD_FEATURE_WP_ASYNC a write to a write-protected page is never
 * delivered as an event: the kernel lifts the protection of that page and
 * lets the write proceed, so "not write-protected" means "written since
 * protected". UFFD_FEATURE_WP_UNPOPULATED makes the protection cover pages
 * never touched yet (the kernel leaves a marker in their page-table entry),
 * so the first write to fresh memory is caught too and nothing has to be
 * pre-faulted.
 *
 *   new      checks the regions (private anonymous, aligned), creates the
 *            userfaultfd and registers every region in write-protect mode;
 *   start    write-protects every region entirely;
 *   collect  one PAGEMAP_SCAN walk (restarted where it stopped when the
 *            output vector fills up) that returns the written ranges and
 *            write-protects them again in the same page-table walk, under
 *            the page-table lock: a write racing with it lands either
 *            before (reported now) or after (reported next time);
 *   stop     unregisters the regions (the kernel drops the protection) and
 *            closes the userfaultfd; a later start registers them again
 *            (another send), collect before that start fails.
 *
 * The scan works in system pages; a region page (page_size, may be larger
 * or smaller than the system page) is dirty when any byte of it lies in a
 * written system page. Collects of different regions may run concurrently
 * (each region has its own output vector); one region must not be
 * collected from two threads at once. Errors of new are recorded under the
 * api given to it; those of start and collect under "vmio_migrate_send",
 * the call they happen in. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/userfaultfd.h>

#include "core/internal.h"
#include "migrate/dirty.h"

/* ---- kernel ABI newer than some distributions' headers ----------------
 * Written from the documented ABI (Documentation/admin-guide/mm/pagemap.rst
 * and userfaultfd.rst, PAGEMAP_SCAN(2const)); the values are fixed UAPI. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1ull << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ull << 15)
#endif

#ifdef PAGEMAP_SCAN
typedef struct pm_scan_arg mig_pm_scan_arg;
typedef struct page_region mig_page_region;
#else
typedef struct {
    uint64_t size;              /* sizeof this struct */
    uint64_t flags;             /* PM_SCAN_* */
    uint64_t start, end;        /* virtual range to walk */
    uint64_t walk_end;          /* out: where the walk stopped */
    uint64_t vec;               /* user pointer to page_region[vec_len] */
    uint64_t vec_len;
    uint64_t max_pages;         /* 0 = no limit */
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
} mig_pm_scan_arg;
typedef struct {
    uint64_t start, end;        /* [start, end) */
    uint64_t categories;        /* PAGE_IS_* of the range, & return_mask */
} mig_page_region;
#define PAGEMAP_SCAN _IOWR('f', 16, mig_pm_scan_arg)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1ull << 0)     /* write-protect what matched */
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1ull << 1)   /* fail on memory without wp-async */
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1ull << 1)
#endif

_Static_assert(sizeof(mig_pm_scan_arg) == 96, "struct pm_scan_arg is 96 bytes");
_Static_assert(sizeof(mig_page_region) == 24, "struct page_region is 24 bytes");

/* Errors of start/collect happen inside a send. */
#define RUN_API "vmio_migrate_send"
/* Written ranges returned per PAGEMAP_SCAN call (24 bytes each). */
#define VEC_MAX 1024u

struct uffd_region {
    uint64_t start, end;        /* addresses, system-page aligned */
    uint64_t npages;            /* region pages */
    unsigned shift;             /* log2(page_size) */
    uint32_t vec_len;
    mig_page_region *vec;
};

struct dirty_uffd {
    struct vmio_mig_dirty base;
    int uffd;                   /* -1 once stopped */
    int pagemap;
    uint32_t nr;
    uint32_t registered;        /* regions 0..registered-1 are registered */
    struct uffd_region r[];
};

/* ---- creation checks --------------------------------------------------- */

static int is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* An anonymous mapping as /proc/self/maps names it: no file behind it. */
static int anon_name(unsigned long inode, const char *path)
{
    if (inode != 0)
        return 0;
    return path[0] == '\0' || strcmp(path, "[heap]") == 0 || strcmp(path, "[stack]") == 0 ||
           strncmp(path, "[anon:", 6) == 0;
}

/* Every byte of each region must be mapped private and anonymous. */
static int check_maps(const char *api, const struct vmio_mig_region_desc *r, uint32_t nr)
{
    if (nr == 0)
        return 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return vmio_set_error_errno(api, errno, "cannot open /proc/self/maps");
    /* covered[i]: how far from its start region i is known to be fine. */
    uint64_t *covered = calloc(nr, sizeof *covered);
    if (!covered) {
        fclose(f);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        unsigned long lo, hi, inode;
        char perms[8];
        int pos = 0;
        if (sscanf(line, "%lx-%lx %7s %*x %*s %lu %n", &lo, &hi, perms, &inode, &pos) < 4)
            continue;
        char *path = line + pos;
        path[strcspn(path, "\n")] = '\0';
        for (uint32_t i = 0; i < nr && rc == 0; i++) {
            uint64_t s = (uint64_t)(uintptr_t)r[i].base, e = s + r[i].length;
            if (hi <= s || lo >= e)
                continue;
            if (perms[3] != 'p' || !anon_name(inode, path))
                rc = vmio_set_error(api, EINVAL,
                                    "region %u at %p is not private anonymous memory "
                                    "(mapping %lx-%lx %s %s); userfaultfd tracking needs "
                                    "MAP_PRIVATE|MAP_ANONYMOUS memory of this process",
                                    i, (void *)r[i].base, lo, hi, perms,
                                    path[0] ? path : "[anonymous, shared]");
            else if (lo <= s + covered[i])
                covered[i] = VMIO_MIN((uint64_t)hi, e) - s;
        }
    }
    for (uint32_t i = 0; i < nr && rc == 0; i++)
        if (covered[i] < r[i].length)
            rc = vmio_set_error(api, EINVAL,
                                "region %u: %p+%" PRIu64 " is not mapped (hole at %p)", i,
                                (void *)r[i].base, r[i].length,
                                (void *)(r[i].base + covered[i]));
    free(line);
    free(covered);
    fclose(f);
    return rc;
}

static int check_regions(const char *api, const struct vmio_mig_region_desc *r, uint32_t nr,
                         uint64_t sys_page)
{
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t s = (uint64_t)(uintptr_t)r[i].base;
        if (!r[i].base || !r[i].length)
            return vmio_set_error(api, EINVAL, "region %u is empty", i);
        if (!is_pow2(r[i].page_size) || r[i].page_size < 4096 || r[i].page_size > 65536)
            return vmio_set_error(api, EINVAL,
                                  "region %u: page size %u is not a power of two "
                                  "from 4096 to 65536", i, r[i].page_size);
        if (s % r[i].page_size || r[i].length % r[i].page_size)
            return vmio_set_error(api, EINVAL,
                                  "region %u: base %p or length %" PRIu64
                                  " not a multiple of its page size %u", i,
                                  (void *)r[i].base, r[i].length, r[i].page_size);
        if (s % sys_page || r[i].length % sys_page)
            return vmio_set_error(api, EINVAL,
                                  "region %u: base %p or length %" PRIu64
                                  " not a multiple of the system page size %" PRIu64, i,
                                  (void *)r[i].base, r[i].length, sys_page);
        if (s + r[i].length < s)
            return vmio_set_error(api, EINVAL, "region %u wraps around", i);
        for (uint32_t j = 0; j < i; j++) {
            uint64_t t = (uint64_t)(uintptr_t)r[j].base;
            if (s < t + r[j].length && t < s + r[i].length)
                return vmio_set_error(api, EINVAL, "regions %u and %u overlap", j, i);
        }
    }
    return check_maps(api, r, nr);
}

/* ---- userfaultfd ------------------------------------------------------- */

static int perm_err(int e)
{
    return e == EPERM || e == EACCES;
}

/* A userfaultfd: the syscall, then the syscall limited to user-mode faults
 * (allowed to unprivileged processes when vm.unprivileged_userfaultfd is
 * 0; enough here, since asynchronous write-protect faults, from the kernel
 * too, are resolved without ever reaching the userfaultfd), then
 * /dev/userfaultfd (Linux 6.1, access governed by the node's mode). */
static int uffd_create(const char *api)
{
    const int flags = O_CLOEXEC | O_NONBLOCK;
    int e_sys = ENOSYS, e_dev;
#ifdef SYS_userfaultfd
    int fd = (int)syscall(SYS_userfaultfd, flags);
    if (fd >= 0)
        return fd;
    e_sys = errno;
    if (e_sys == EPERM) {
        fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
        if (fd >= 0)
            return fd;
        e_sys = errno;
    }
#endif
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        int nfd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        e_dev = errno;
        close(dev);
        if (nfd >= 0)
            return nfd;
    } else {
        e_dev = errno;
    }
    if (perm_err(e_sys) || perm_err(e_dev))
        return vmio_set_error_errno(api, perm_err(e_sys) ? e_sys : e_dev,
                                    "cannot create a userfaultfd (allow it with sysctl "
                                    "vm.unprivileged_userfaultfd=1, CAP_SYS_PTRACE, or "
                                    "read-write access to /dev/userfaultfd)");
    if (e_sys == ENOSYS && e_dev == ENOENT)
        return vmio_set_error(api, ENOTSUP,
                              "kernel lacks userfaultfd (CONFIG_USERFAULTFD), needed to "
                              "track dirty pages");
    return vmio_set_error_errno(api, e_sys != ENOSYS ? e_sys : e_dev,
                                "cannot create a userfaultfd");
}

/* The features this kernel's userfaultfd offers (a throw-away fd: the
 * handshake can be done once per fd), 0 when unknown. */
static uint64_t uffd_probe_features(void)
{
    int fd = uffd_create("probe");
    if (fd < 0)
        return 0;
    struct uffdio_api a = { .api = UFFD_API, .features = 0 };
    uint64_t f = ioctl(fd, UFFDIO_API, &a) == 0 ? a.features : 0;
    close(fd);
    return f;
}

static int uffd_handshake(const char *api, int fd)
{
    const uint64_t want = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    struct uffdio_api a = { .api = UFFD_API, .features = want };
    if (ioctl(fd, UFFDIO_API, &a) == 0) {
        if ((a.features & want) != want)
            return vmio_set_error(api, ENOTSUP,
                                  "kernel lacks userfaultfd asynchronous write-protect "
                                  "(UFFD_FEATURE_WP_ASYNC, needs Linux 6.7)");
        return 0;
    }
    int err = errno;
    if (err != EINVAL)
        return vmio_set_error_errno(api, err, "UFFDIO_API handshake failed");
    /* Unknown feature bits: say which one is missing. */
    uint64_t have = uffd_probe_features();
    if ((have & want) == want)
        return vmio_set_error_errno(api, err, "UFFDIO_API handshake failed");
    if (have && !(have & UFFD_FEATURE_WP_UNPOPULATED))
        return vmio_set_error(api, ENOTSUP,
                              "kernel lacks UFFD_FEATURE_WP_UNPOPULATED and "
                              "UFFD_FEATURE_WP_ASYNC (userfaultfd asynchronous "
                              "write-protect needs Linux 6.7)");
    return vmio_set_error(api, ENOTSUP,
                          "kernel lacks UFFD_FEATURE_WP_ASYNC (userfaultfd asynchronous "
                          "write-protect needs Linux 6.7)");
}

static int uffd_register(const char *api, int fd, uint32_t i, const struct uffd_region *r)
{
    struct uffdio_register reg = {
        .range = { .start = r->start, .len = r->end - r->start },
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
        int err = errno;
        if (err == EBUSY)
            return vmio_set_error_errno(api, err,
                                        "region %u at %p is already tracked by another "
                                        "userfaultfd", i, (void *)(uintptr_t)r->start);
        return vmio_set_error_errno(api, err,
                                    "cannot register region %u at %p for write-protect "
                                    "tracking", i, (void *)(uintptr_t)r->start);
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
        struct uffdio_range rg = reg.range;
        ioctl(fd, UFFDIO_UNREGISTER, &rg);
        return vmio_set_error(api, ENOTSUP,
                              "kernel cannot write-protect region %u at %p "
                              "(UFFDIO_WRITEPROTECT not offered)", i,
                              (void *)(uintptr_t)r->start);
    }
    return 0;
}

/* ---- PAGEMAP_SCAN ------------------------------------------------------ */

static void scan_arg_init(mig_pm_scan_arg *a, uint64_t start, uint64_t end,
                          mig_page_region *vec, uint64_t vec_len)
{
    memset(a, 0, sizeof *a);
    a->size = sizeof *a;
    a->flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
    a->start = start;
    a->end = end;
    a->vec = (uint64_t)(uintptr_t)vec;
    a->vec_len = vec_len;
    a->category_mask = PAGE_IS_WRITTEN;
    a->return_mask = PAGE_IS_WRITTEN;
}

/* The kernel validates the arguments (size, flags, masks) before walking:
 * an empty range tells whether PAGEMAP_SCAN and our flags are known. */
static int pagemap_open(const char *api)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "cannot open /proc/self/pagemap");
    mig_page_region one;
    mig_pm_scan_arg a;
    scan_arg_init(&a, 0, 0, &one, 1);
    if (ioctl(fd, PAGEMAP_SCAN, &a) < 0) {
        int err = errno;
        close(fd);
        if (err == ENOTTY || err == EINVAL || err == EOPNOTSUPP)
            return vmio_set_error(api, ENOTSUP, "kernel lacks PAGEMAP_SCAN (needs Linux 6.7)");
        return vmio_set_error_errno(api, err, "PAGEMAP_SCAN on /proc/self/pagemap failed");
    }
    return fd;
}

/* Set bits first..last (inclusive). */
static void set_bits(uint64_t *bm, uint64_t first, uint64_t last)
{
    uint64_t w0 = first / 64, w1 = last / 64;
    uint64_t m0 = ~UINT64_C(0) << (first % 64);
    uint64_t m1 = ~UINT64_C(0) >> (63 - last % 64);
    if (w0 == w1) {
        bm[w0] |= m0 & m1;
        return;
    }
    bm[w0] |= m0;
    for (uint64_t w = w0 + 1; w < w1; w++)
        bm[w] = ~UINT64_C(0);
    bm[w1] |= m1;
}

/* ---- vtable ------------------------------------------------------------ */

static void uffd_stop(struct vmio_mig_dirty *d);

/* A userfaultfd with every region registered: at creation, and again when
 * start follows a stop. */
static int uffd_arm(const char *api, struct dirty_uffd *u)
{
    int rc = u->uffd = uffd_create(api);
    if (rc >= 0)
        rc = uffd_handshake(api, u->uffd);
    for (uint32_t i = 0; rc >= 0 && i < u->nr; i++) {
        rc = uffd_register(api, u->uffd, i, &u->r[i]);
        if (rc == 0)
            u->registered = i + 1;
    }
    if (rc < 0) {
        struct vmio_error_copy e;
        vmio_error_save(&e);
        uffd_stop(&u->base);
        vmio_error_restore(&e);
    }
    return rc;
}

static int uffd_start(struct vmio_mig_dirty *d)
{
    struct dirty_uffd *u = (struct dirty_uffd *)d;
    if (u->uffd < 0) {
        int rc = uffd_arm(RUN_API, u);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < u->nr; i++) {
        struct uffdio_writeprotect wp = {
            .range = { .start = u->r[i].start, .len = u->r[i].end - u->r[i].start },
            .mode = UFFDIO_WRITEPROTECT_MODE_WP,
        };
        int rc;
        while ((rc = ioctl(u->uffd, UFFDIO_WRITEPROTECT, &wp)) != 0 &&
               (errno == EAGAIN || errno == EINTR))
            ;
        if (rc != 0)
            return vmio_set_error_errno(RUN_API, errno,
                                        "cannot write-protect region %u to track writes", i);
    }
    return 0;
}

static int uffd_collect(struct vmio_mig_dirty *d, uint32_t region, uint64_t *bitmap,
                        uint64_t npages)
{
    struct dirty_uffd *u = (struct dirty_uffd *)d;
    if (u->uffd < 0)
        return vmio_set_error(RUN_API, EINVAL, "userfaultfd dirty tracking was stopped");
    if (region >= u->nr)
        return vmio_set_error(RUN_API, EINVAL, "no region %u (%u tracked)", region, u->nr);
    struct uffd_region *r = &u->r[region];
    if (npages != r->npages)
        return vmio_set_error(RUN_API, EINVAL,
                              "region %u has %" PRIu64 " pages, bitmap of %" PRIu64, region,
                              r->npages, npages);
    uint64_t base = r->start, cur = r->start;
    while (cur < r->end) {
        mig_pm_scan_arg a;
        scan_arg_init(&a, cur, r->end, r->vec, r->vec_len);
        long n = ioctl(u->pagemap, PAGEMAP_SCAN, &a);
        if (n < 0) {
            int err = errno;
            if (err == EPERM)
                return vmio_set_error(RUN_API, EPERM,
                                      "region %u at %p is no longer tracked by the "
                                      "userfaultfd (unmapped or remapped while migrating?)",
                                      region, (void *)(uintptr_t)base);
            return vmio_set_error_errno(RUN_API, err, "PAGEMAP_SCAN of region %u failed",
                                        region);
        }
        for (long k = 0; k < n; k++) {
            uint64_t s = VMIO_MAX(r->vec[k].start, base);
            uint64_t e = VMIO_MIN(r->vec[k].end, r->end);
            if (s >= e)
                continue;
            set_bits(bitmap, (s - base) >> r->shift, (e - 1 - base) >> r->shift);
        }
        if (a.walk_end <= cur)
            return vmio_set_error(RUN_API, EIO,
                                  "PAGEMAP_SCAN of region %u made no progress at %p", region,
                                  (void *)(uintptr_t)cur);
        cur = a.walk_end;
    }
    return 0;
}

static void uffd_stop(struct vmio_mig_dirty *d)
{
    struct dirty_uffd *u = (struct dirty_uffd *)d;
    if (u->uffd < 0)
        return;    /* never armed, or stopped already */
    /* Unregistering drops the write protection of the range (Linux 6.2+);
     * closing would too. */
    for (uint32_t i = 0; i < u->registered; i++) {
        struct uffdio_range rg = { .start = u->r[i].start,
                                   .len = u->r[i].end - u->r[i].start };
        ioctl(u->uffd, UFFDIO_UNREGISTER, &rg);
    }
    u->registered = 0;
    close(u->uffd);
    u->uffd = -1;
}

static void uffd_free(struct vmio_mig_dirty *d)
{
    struct dirty_uffd *u = (struct dirty_uffd *)d;
    if (!u)
        return;
    uffd_stop(d);
    if (u->pagemap >= 0)
        close(u->pagemap);
    for (uint32_t i = 0; i < u->nr; i++)
        free(u->r[i].vec);
    free(u);
}

static const struct vmio_mig_dirty_ops uffd_ops = {
    .name = "uffd",
    .start = uffd_start,
    .collect = uffd_collect,
    .stop = uffd_stop,
    .free = uffd_free,
    .pause = NULL,
};

int vmio_mig_dirty_uffd_new(const char *api, const struct vmio_mig_region_desc *r,
                            uint32_t nr, struct vmio_mig_dirty **out)
{
    if (!api)
        api = "vmio_migrate_track_uffd";
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    VMIO_CHECK_ARG(api, r != NULL || nr == 0, EFAULT);
    long ps = sysconf(_SC_PAGESIZE);
    uint64_t sys_page = ps > 0 ? (uint64_t)ps : 4096;
    int rc = check_regions(api, r, nr, sys_page);
    if (rc < 0)
        return rc;

    struct dirty_uffd *u = calloc(1, sizeof *u + (size_t)nr * sizeof u->r[0]);
    if (!u)
        return vmio_set_error(api, ENOMEM, "out of memory");
    u->base.ops = &uffd_ops;
    u->uffd = -1;
    u->pagemap = -1;
    u->nr = nr;
    for (uint32_t i = 0; i < nr; i++) {
        struct uffd_region *ur = &u->r[i];
        ur->start = (uint64_t)(uintptr_t)r[i].base;
        ur->end = ur->start + r[i].length;
        ur->shift = (unsigned)__builtin_ctz(r[i].page_size);
        ur->npages = r[i].length >> ur->shift;
        /* Output vector: a full one only costs another call. Written
         * ranges are maximal, so a region never needs more than one
         * per two system pages. */
        uint64_t most = (r[i].length / sys_page + 1) / 2;
        ur->vec_len = (uint32_t)VMIO_MIN((uint64_t)VEC_MAX, VMIO_MAX(most, 1));
        ur->vec = calloc(ur->vec_len, sizeof *ur->vec);
        if (!ur->vec) {
            uffd_free(&u->base);
            return vmio_set_error(api, ENOMEM, "out of memory");
        }
    }

    rc = u->pagemap = pagemap_open(api);
    if (rc >= 0)
        rc = uffd_arm(api, u);
    if (rc < 0) {
        struct vmio_error_copy e;
        vmio_error_save(&e);
        uffd_free(&u->base);
        vmio_error_restore(&e);
        return rc;
    }
    *out = &u->base;
    return 0;
}
