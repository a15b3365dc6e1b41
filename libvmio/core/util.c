/* Small helpers: clocks, full-length fd I/O, secret files. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

uint64_t vmio_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int vmio_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int vmio_write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#define SECRET_MAX 4096

int vmio_read_small_file(const char *path, char *buf, size_t len)
{
    if (len < 2)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, len - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got == len - 1) {
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    buf[got] = '\0';
    return 0;
}

int vmio_read_secret_file(const char *api, const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "secret file %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return vmio_set_error_errno(api, e, "secret file %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vmio_set_error(api, EINVAL, "secret file %s is not a regular file", path);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return vmio_set_error(api, EPERM,
                              "secret file %s is accessible by group or others (chmod 600 it)",
                              path);
    }
    if (st.st_size > SECRET_MAX) {
        close(fd);
        return vmio_set_error(api, EINVAL, "secret file %s is larger than %d bytes", path,
                              SECRET_MAX);
    }
    uint8_t *buf = malloc(SECRET_MAX + 1);
    if (!buf) {
        close(fd);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    ssize_t n;
    size_t got = 0;
    while ((n = read(fd, buf + got, SECRET_MAX + 1 - got)) > 0)
        got += (size_t)n;
    int e = errno;
    close(fd);
    if (n < 0) {
        free(buf);
        return vmio_set_error_errno(api, e, "reading secret file %s", path);
    }
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
        got--;
    if (got == 0) {
        free(buf);
        return vmio_set_error(api, EINVAL, "secret file %s is empty", path);
    }
    *out = buf;
    *len = got;
    return 0;
}

void vmio_iov_to_buf(void *dst, const struct iovec *iov, int iovcnt, size_t skip, size_t n)
{
    uint8_t *d = dst;
    for (int i = 0; i < iovcnt && n > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t k = VMIO_MIN(iov[i].iov_len - skip, n);
        memcpy(d, (const uint8_t *)iov[i].iov_base + skip, k);
        d += k;
        n -= k;
        skip = 0;
    }
}

void vmio_buf_to_iov(const struct iovec *iov, int iovcnt, size_t skip, const void *src, size_t n)
{
    const uint8_t *s = src;
    for (int i = 0; i < iovcnt && n > 0; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t k = VMIO_MIN(iov[i].iov_len - skip, n);
        memcpy((uint8_t *)iov[i].iov_base + skip, s, k);
        s += k;
        n -= k;
        skip = 0;
    }
}
