/* The lender's tmpfs/ramfs lease files (see backing.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/internal.h"
#include "memlend/backing.h"

#define TMPFS_MAGIC_ 0x01021994
#define RAMFS_MAGIC_ 0x858458f6

int vmio_ml_backing_open(const char *api, const char *state_dir, int ramfs,
                         struct vmio_ml_backing *b)
{
    memset(b, 0, sizeof *b);
    int w = snprintf(b->dir, sizeof b->dir, "%s/mem", state_dir);
    if (w < 0 || (size_t)w >= sizeof b->dir)
        return vmio_set_error(api, ENAMETOOLONG, "state dir too long: %s", state_dir);
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
        return vmio_set_error_errno(api, errno, "mkdir %s", state_dir);
    if (mkdir(b->dir, 0700) < 0 && errno != EEXIST)
        return vmio_set_error_errno(api, errno, "mkdir %s", b->dir);
    b->ramfs = ramfs;
    struct statfs sf;
    if (statfs(b->dir, &sf) < 0)
        return vmio_set_error_errno(api, errno, "statfs %s", b->dir);
    long want = ramfs ? RAMFS_MAGIC_ : TMPFS_MAGIC_;
    if ((long)sf.f_type == want)
        return 0; /* ours, from a previous run: leases resume */
    if ((long)sf.f_type == TMPFS_MAGIC_ || (long)sf.f_type == RAMFS_MAGIC_)
        return vmio_set_error(api, EEXIST, "%s: a %s is mounted there already", b->dir,
                              (long)sf.f_type == TMPFS_MAGIC_ ? "tmpfs" : "ramfs");
    /* tmpfs: no size limit of its own (the surplus policy is the limit),
     * mode 0700: only the lender (and the target, as root) reads it. */
    const char *fs = ramfs ? "ramfs" : "tmpfs";
    const char *opts = ramfs ? "mode=0700" : "mode=0700,size=100%,huge=never";
    if (mount("vmio-memlend", b->dir, fs, MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        return vmio_set_error_errno(api, errno, "mount %s on %s", fs, b->dir);
    return 0;
}

int vmio_ml_backing_path(const struct vmio_ml_backing *b, uint64_t lease_id, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s/lease-%" PRIu64, b->dir, lease_id);
    return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

int vmio_ml_backing_create(const char *api, const struct vmio_ml_backing *b, uint64_t lease_id,
                           uint64_t size)
{
    char p[512];
    if (vmio_ml_backing_path(b, lease_id, p, sizeof p) < 0)
        return vmio_set_error(api, ENAMETOOLONG, "path too long");
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "create %s", p);
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        unlink(p);
        return vmio_set_error_errno(api, e, "ftruncate %s to %" PRIu64, p, size);
    }
    close(fd);
    return 0;
}

int64_t vmio_ml_backing_resident(const struct vmio_ml_backing *b, uint64_t lease_id)
{
    char p[512];
    struct stat st;
    if (vmio_ml_backing_path(b, lease_id, p, sizeof p) < 0)
        return -ENAMETOOLONG;
    if (stat(p, &st) < 0)
        return -errno;
    return (int64_t)st.st_blocks * 512;
}

int vmio_ml_backing_free(const char *api, const struct vmio_ml_backing *b, uint64_t lease_id,
                         uint64_t *freed)
{
    char p[512];
    if (vmio_ml_backing_path(b, lease_id, p, sizeof p) < 0)
        return vmio_set_error(api, ENAMETOOLONG, "path too long");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "open %s", p);
    /* A write lease is granted only when no other open file description
     * refers to the file: then unlink really frees its pages. */
    if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
        int e = errno;
        close(fd);
        if (e == EAGAIN || e == EBUSY)
            return vmio_set_error(api, EBUSY, "%s is still open (the target still uses it)", p);
        return vmio_set_error_errno(api, e, "lease on %s", p);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return vmio_set_error_errno(api, e, "stat %s", p);
    }
    if (unlink(p) < 0) {
        int e = errno;
        close(fd);
        return vmio_set_error_errno(api, e, "unlink %s", p);
    }
    fcntl(fd, F_SETLEASE, F_UNLCK);
    close(fd);
    if (access(p, F_OK) == 0)
        return vmio_set_error(api, EIO, "%s still exists after unlink", p);
    *freed = (uint64_t)st.st_blocks * 512;
    return 0;
}

int vmio_ml_backing_list(const char *api, const struct vmio_ml_backing *b, uint64_t **ids,
                         size_t *n_out)
{
    DIR *d = opendir(b->dir);
    if (!d)
        return vmio_set_error_errno(api, errno, "opendir %s", b->dir);
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t id;
        char extra;
        if (sscanf(de->d_name, "lease-%" SCNu64 "%c", &id, &extra) != 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            void *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                closedir(d);
                free(v);
                return vmio_set_error(api, ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[n++] = id;
    }
    closedir(d);
    *ids = v;
    *n_out = n;
    return 0;
}

void vmio_ml_backing_close(const struct vmio_ml_backing *b)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    if (vmio_ml_backing_list("vmio_memlend_lender_free", b, &ids, &n) == 0 && n == 0)
        umount2(b->dir, MNT_DETACH);
    free(ids);
}
