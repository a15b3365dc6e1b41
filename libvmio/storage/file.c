/* file:// backend, the embedded default: a local image file or block
 * device. Positional I/O (thread-safe on one fd), hole-aware extents
 * (SEEK_DATA/SEEK_HOLE), discard and write-zeroes through fallocate, FUA
 * through RWF_DSYNC, optional O_DIRECT with a buffered fd for requests that
 * are not aligned. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/backend.h"

#define API "file"
#define DIRECT_ALIGN 4096u

struct file_state {
    int fd;
    int fd_buffered;     /* O_DIRECT handles: for unaligned requests, else -1 */
    int is_blockdev;
    unsigned flags;
    char *path;
};

static int err_io(const struct file_state *s, const char *what, int e)
{
    return vmio_set_error_errno(API, e, "%s %s", what, s->path);
}

static int adopt(int fd, int fd_buffered, unsigned flags, const char *name, void **state)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        if (fd_buffered >= 0)
            close(fd_buffered);
        return vmio_set_error_errno(API, e, "stat %s", name);
    }
    if (S_ISDIR(st.st_mode) || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        close(fd);
        if (fd_buffered >= 0)
            close(fd_buffered);
        return vmio_set_error(API, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
                              "%s is not a regular file or block device", name);
    }
    struct file_state *s = calloc(1, sizeof *s);
    char *p = strdup(name);
    if (!s || !p) {
        free(s);
        free(p);
        close(fd);
        if (fd_buffered >= 0)
            close(fd_buffered);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    s->fd = fd;
    s->fd_buffered = fd_buffered;
    s->is_blockdev = S_ISBLK(st.st_mode);
    s->flags = flags;
    s->path = p;
    *state = s;
    return 0;
}

int vmio_file_backend_adopt(int fd, unsigned flags, const char *name, void **state)
{
    return adopt(fd, -1, flags & ~VMIO_O_DIRECT, name, state);
}

static int file_open(const struct vmio_uri *u, unsigned flags,
                     const struct vmio_open_options *opts, void **state)
{
    static const char *const allowed[] = { NULL };
    int r = vmio_uri_check_opts(API, u, allowed);
    if (r < 0)
        return r;
    if (u->host && u->host[0] && strcmp(u->host, "localhost") != 0)
        return vmio_set_error(API, EINVAL, "file:// URIs cannot name a remote host ('%s')",
                              u->host);
    if (u->path[0] == '\0')
        return vmio_set_error(API, EINVAL, "empty path");
    int oflags = O_CLOEXEC | ((flags & VMIO_O_RDWR) ? O_RDWR : O_RDONLY);
    if (flags & VMIO_O_CREATE)
        oflags |= O_CREAT;
    if (flags & VMIO_O_EXCL)
        oflags |= O_EXCL;
    if (flags & VMIO_O_TRUNC)
        oflags |= O_TRUNC;
    int created = 0;
    int fd = -1;
    if ((flags & VMIO_O_CREATE) && !(flags & VMIO_O_EXCL)) {
        /* Learn whether we create it, to size only new files. */
        fd = open(u->path, (oflags | O_EXCL) & ~O_TRUNC, 0644);
        if (fd >= 0)
            created = 1;
        else if (errno != EEXIST)
            return vmio_set_error_errno(API, errno, "cannot create %s", u->path);
    }
    if (fd < 0) {
        fd = open(u->path, oflags, 0644);
        if (fd < 0)
            return vmio_set_error_errno(API, errno, "cannot open %s", u->path);
        created = (flags & VMIO_O_EXCL) != 0;
    }
    if (created && opts->create_size > 0 && ftruncate(fd, (off_t)opts->create_size) < 0) {
        int e = errno;
        close(fd);
        unlink(u->path);
        return vmio_set_error_errno(API, e, "cannot size new file %s", u->path);
    }
    int fd_buffered = -1;
    if (flags & VMIO_O_DIRECT) {
        fd_buffered = fd;
        fd = open(u->path, (oflags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_DIRECT);
        if (fd < 0) {
            int e = errno;
            close(fd_buffered);
            return vmio_set_error_errno(API, e, "cannot open %s with O_DIRECT", u->path);
        }
    }
    return adopt(fd, fd_buffered, flags, u->path, state);
}

static void file_close(void *state)
{
    struct file_state *s = state;
    close(s->fd);
    if (s->fd_buffered >= 0)
        close(s->fd_buffered);
    free(s->path);
    free(s);
}

static unsigned file_caps(void *state)
{
    struct file_state *s = state;
    unsigned c = VMIO_CAP_FLUSH | VMIO_CAP_BLOCK_STATUS | VMIO_CAP_MULTI_CONN;
    if (s->flags & VMIO_O_RDWR)
        c |= VMIO_CAP_WRITE | VMIO_CAP_DISCARD | VMIO_CAP_WRITE_ZEROES | VMIO_CAP_FUA;
    return c;
}

/* The fd to use for this request: O_DIRECT needs aligned buffers, lengths
 * and offsets; anything else takes the buffered fd. */
static int pick_fd(const struct file_state *s, const struct iovec *iov, int n, uint64_t off)
{
    if (s->fd_buffered < 0)
        return s->fd;
    if (off % DIRECT_ALIGN)
        return s->fd_buffered;
    for (int i = 0; i < n; i++)
        if ((uintptr_t)iov[i].iov_base % DIRECT_ALIGN || iov[i].iov_len % DIRECT_ALIGN)
            return s->fd_buffered;
    return s->fd;
}

/* Advance an iovec array by done bytes (modifies a private copy). */
static int iov_advance(struct iovec **iov, int *n, size_t done)
{
    while (*n > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*n)--;
    }
    if (*n > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
    return *n;
}

static int rw_loop(struct file_state *s, int write, const struct iovec *iov0, int n,
                   uint64_t off, int rwf)
{
    struct iovec stackv[16];
    struct iovec *copy = n <= 16 ? stackv : malloc(sizeof *copy * (size_t)n);
    if (!copy)
        return vmio_set_error(API, ENOMEM, "out of memory");
    memcpy(copy, iov0, sizeof *copy * (size_t)n);
    struct iovec *iov = copy;
    int fd = pick_fd(s, iov0, n, off);
    int r = 0;
    while (n > 0) {
        int cnt = n > IOV_MAX ? IOV_MAX : n;
        ssize_t got = write ? pwritev2(fd, iov, cnt, (off_t)off, rwf)
                            : preadv(fd, iov, cnt, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EOPNOTSUPP && write && rwf) {
                /* Kernel without RWF_DSYNC: write, then fdatasync below. */
                rwf = 0;
                continue;
            }
            r = err_io(s, write ? "write to" : "read from", errno);
            break;
        }
        if (got == 0) {
            r = vmio_set_error(API, EIO, "unexpected end of file in %s at %" PRIu64, s->path,
                               off);
            break;
        }
        off += (uint64_t)got;
        iov_advance(&iov, &n, (size_t)got);
    }
    if (copy != stackv)
        free(copy);
    return r;
}

static int file_preadv(void *state, const struct iovec *iov, int n, uint64_t off)
{
    return rw_loop(state, 0, iov, n, off, 0);
}

static int file_flush(void *state)
{
    struct file_state *s = state;
    if (fdatasync(s->fd) < 0)
        return err_io(s, "fdatasync", errno);
    return 0;
}

static int file_pwritev(void *state, const struct iovec *iov, int n, uint64_t off,
                        unsigned flags)
{
    int r = rw_loop(state, 1, iov, n, off, (flags & VMIO_REQ_FUA) ? RWF_DSYNC : 0);
    return r;
}

static int punch(struct file_state *s, uint64_t off, uint64_t len)
{
    if (s->is_blockdev) {
        uint64_t range[2] = { off, len };
        if (ioctl(s->fd, BLKDISCARD, range) < 0)
            return -errno;
        return 0;
    }
    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        return -errno;
    return 0;
}

static int file_discard(void *state, uint64_t off, uint64_t len)
{
    struct file_state *s = state;
    int r = punch(s, off, len);
    if (r == -EOPNOTSUPP || r == -ENOTTY)
        return vmio_set_error(API, ENOTSUP, "%s cannot deallocate blocks", s->path);
    if (r < 0)
        return err_io(s, "discard in", -r);
    return 0;
}

static int write_zero_buffer(struct file_state *s, uint64_t off, uint64_t len)
{
    static const size_t chunk = 1 << 20;
    void *z = NULL;
    if (posix_memalign(&z, DIRECT_ALIGN, chunk) != 0)
        return vmio_set_error(API, ENOMEM, "out of memory");
    memset(z, 0, chunk);
    int r = 0;
    while (len > 0 && r == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        struct iovec v = { z, n };
        r = rw_loop(s, 1, &v, 1, off, 0);
        off += n;
        len -= n;
    }
    free(z);
    return r;
}

static int file_write_zeroes(void *state, uint64_t off, uint64_t len, unsigned flags)
{
    struct file_state *s = state;
    int r = -EOPNOTSUPP;
    if ((flags & VMIO_REQ_MAY_TRIM) && !s->is_blockdev)
        r = punch(s, off, len);
    if (r < 0 && !s->is_blockdev &&
        fallocate(s->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        r = 0;
    if (r < 0 && s->is_blockdev) {
        uint64_t range[2] = { off, len };
        if (ioctl(s->fd, BLKZEROOUT, range) == 0)
            r = 0;
    }
    if (r < 0)
        r = write_zero_buffer(s, off, len);
    if (r == 0 && (flags & VMIO_REQ_FUA))
        r = file_flush(s);
    return r;
}

static int file_get_size(void *state, uint64_t *size)
{
    struct file_state *s = state;
    if (s->is_blockdev) {
        uint64_t b;
        if (ioctl(s->fd, BLKGETSIZE64, &b) < 0)
            return err_io(s, "size of", errno);
        *size = b;
        return 0;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return err_io(s, "stat", errno);
    *size = (uint64_t)st.st_size;
    return 0;
}

static int file_truncate(void *state, uint64_t size)
{
    struct file_state *s = state;
    if (s->is_blockdev)
        return vmio_set_error(API, ENOTSUP, "cannot resize block device %s", s->path);
    if (ftruncate(s->fd, (off_t)size) < 0)
        return err_io(s, "truncate", errno);
    return 0;
}

static int file_block_status(void *state, uint64_t off, uint64_t max, uint64_t *len, int *type)
{
    struct file_state *s = state;
    if (s->is_blockdev) {
        *len = max;
        *type = VMIO_EXTENT_DATA;
        return 0;
    }
    off_t d = lseek(s->fd, (off_t)off, SEEK_DATA);
    if (d < 0 && errno == ENXIO) {
        /* No data at or after off: the rest is a hole. */
        *len = max;
        *type = VMIO_EXTENT_HOLE;
        return 0;
    }
    if (d < 0) {
        if (errno == EINVAL || errno == EOPNOTSUPP) {  /* fs without SEEK_DATA */
            *len = max;
            *type = VMIO_EXTENT_DATA;
            return 0;
        }
        return err_io(s, "SEEK_DATA in", errno);
    }
    if ((uint64_t)d > off) {
        *len = VMIO_MIN((uint64_t)d - off, max);
        *type = VMIO_EXTENT_HOLE;
        return 0;
    }
    off_t h = lseek(s->fd, (off_t)off, SEEK_HOLE);
    if (h < 0)
        return err_io(s, "SEEK_HOLE in", errno);
    *len = VMIO_MIN((uint64_t)h - off, max);
    if (*len == 0)
        *len = max;
    *type = VMIO_EXTENT_DATA;
    return 0;
}

int vmio_file_backend_fd(void *state)
{
    const struct file_state *s = state;
    return s->fd_buffered >= 0 ? s->fd_buffered : s->fd;
}

const struct vmio_backend_ops vmio_backend_file = {
    .struct_size = sizeof(struct vmio_backend_ops),
    .name = "file",
    .scheme = "file",
    .open = file_open,
    .close = file_close,
    .caps = file_caps,
    .preadv = file_preadv,
    .pwritev = file_pwritev,
    .flush = file_flush,
    .discard = file_discard,
    .write_zeroes = file_write_zeroes,
    .get_size = file_get_size,
    .truncate = file_truncate,
    .block_status = file_block_status,
};
