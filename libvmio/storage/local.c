/* The same-host data path of vmio:// (see local.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/internal.h"
#include "storage/local.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int vmio_local_identity(const char *api, uint8_t boot_id[16], uint64_t *pidns)
{
    char buf[64];
    int r = vmio_read_small_file("/proc/sys/kernel/random/boot_id", buf, sizeof buf);
    if (r < 0)
        return vmio_set_error_errno(api, -r, "cannot read the kernel's boot id");
    /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
    unsigned n = 0;
    for (const char *p = buf; *p && *p != '\n'; p++) {
        if (*p == '-')
            continue;
        int hi = hexval(p[0]), lo = p[1] ? hexval(p[1]) : -1;
        if (hi < 0 || lo < 0 || n >= 16)
            return vmio_set_error(api, EIO, "malformed kernel boot id");
        boot_id[n++] = (uint8_t)(hi << 4 | lo);
        p++;
    }
    if (n != 16)
        return vmio_set_error(api, EIO, "malformed kernel boot id");
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) < 0)
        return vmio_set_error_errno(api, errno, "cannot stat our pid namespace");
    *pidns = st.st_ino;
    return 0;
}

int vmio_local_take_fd(const char *api, const struct vmio_wire_local_reply *m, int rw,
                       char *how, size_t howlen)
{
    uint8_t boot_id[16];
    uint64_t pidns;
    int r = vmio_local_identity(api, boot_id, &pidns);
    if (r < 0)
        return r;
    if (memcmp(boot_id, m->boot_id, sizeof boot_id) != 0)
        return vmio_set_error(api, EXDEV, "the server runs on another host");
    if (pidns != m->pidns)
        return vmio_set_error(api, EXDEV, "the server runs in another pid namespace");
    if (rw && !(m->flags & VMIO_WIRE_LOCAL_RDWR))
        return vmio_set_error(api, EROFS, "the server's descriptor is read-only");

    /* The server's own open file, when the kernel lets us attach to it. */
    int fd = -1, getfd_err = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)m->pid, 0);
    if (pidfd >= 0) {
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)m->fd, 0);
        if (fd < 0)
            getfd_err = errno;
        close(pidfd);
        if (fd >= 0)
            snprintf(how, howlen, "pidfd_getfd of pid %u", m->pid);
    } else {
        getfd_err = errno;
    }
    if (fd < 0) {
        /* A new open of the same file: checked against our credentials
         * and needs only read access to the server's descriptors. */
        char path[64];
        snprintf(path, sizeof path, "/proc/%u/fd/%u", m->pid, m->fd);
        fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return vmio_set_error_errno(api, errno,
                                        "cannot take the server's descriptor (pidfd_getfd: "
                                        "%s; open %s)", strerror(getfd_err), path);
        snprintf(how, howlen, "reopened through /proc/%u/fd", m->pid);
    } else {
        /* pidfd_getfd does not set close-on-exec. */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = vmio_set_error_errno(api, errno, "stat of the server's descriptor");
        close(fd);
        return r;
    }
    if ((uint64_t)st.st_dev != m->dev || (uint64_t)st.st_ino != m->ino || !S_ISREG(st.st_mode)) {
        close(fd);
        return vmio_set_error(api, EXDEV, "the server's descriptor %u is not the image",
                              m->fd);
    }
    if (rw) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) != O_RDWR) {
            close(fd);
            return vmio_set_error(api, EROFS, "the server's descriptor is not writable");
        }
    }
    return fd;
}
