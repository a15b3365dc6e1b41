/* Exported directories and the resolution of client paths beneath them.
 *
 * Every path a client names is resolved by the kernel relative to the
 * export's directory fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS): "..", absolute symlinks and symlinks that climb
 * out are refused atomically, with no window between check and open.
 * Kernels without openat2 (< 5.6, a seccomp filter returning ENOSYS,
 * valgrind) get an equivalent resolution in user space.
 *
 * Messages recorded here are sent to clients: they name the export and the
 * client's path, never the server-side directory. */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "protocol/wire.h"
#include "server/internal.h"
#include "storage/backend.h"

#define API VMIO_SERVER_API

static int open_error(const struct vmio_export *e, const char *path, int err);

/* A Gfarm directory as an export ("gfarm:///images", "gfarm://mds:601/x"):
 * client paths are opened through the gfarm:// backend, directly with
 * libgfarm (never routed to a vmiod: this is the vmiod), and must resolve
 * beneath the directory inside Gfarm too. */
static int gfarm_export_new(const char *api, const char *name, const char *dir, unsigned flags,
                            struct vmio_export **out)
{
    if (!vmio_supports(VMIO_FEATURE_GFARM))
        return vmio_set_error(api, ENOTSUP, "export '%s': this libvmio was built without "
                                            "gfarm:// support", name);
    struct vmio_uri u;
    int r = vmio_uri_parse(api, dir, &u);
    if (r < 0)
        return r;
    if (u.nopts || u.path[0] != '/')
        r = vmio_set_error(api, EINVAL, "export '%s': expected gfarm://[MDS[:PORT]]/DIR", name);
    vmio_uri_clear(&u);
    if (r < 0)
        return r;
    struct vmio_export *e = calloc(1, sizeof *e);
    if (e) {
        e->dirfd = -1;
        e->name = strdup(name);
        e->dir = strdup(dir);
    }
    if (!e || !e->name || !e->dir) {
        vmio_export_free(e);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    size_t n = strlen(e->dir);
    while (n > 9 && e->dir[n - 1] == '/')
        e->dir[--n] = 0;
    e->gfarm = 1;
    e->flags = flags;
    *out = e;
    return 0;
}

/* Append s percent-encoded (everything but unreserved characters and '/'). */
static void pct_append(char *dst, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    dst += strlen(dst);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            *dst++ = (char)c;
        } else {
            *dst++ = '%';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 15];
        }
    }
    *dst = 0;
}

static int gfarm_export_open(const struct vmio_export *e, const char *path, size_t len,
                             uint32_t open_flags, uint64_t create_size, vmio_file **out)
{
    /* gfarm://[mds]/DIR/PATH?route=direct&beneath=DIR */
    const char *root = strstr(e->dir + 8, "/");
    size_t cap = strlen(e->dir) + 1 + 3 * len + 32 + 3 * strlen(root) + 1;
    char *uri = malloc(cap);
    if (!uri)
        return vmio_set_error(API, ENOMEM, "out of memory");
    snprintf(uri, cap, "%s%s", e->dir, e->dir[strlen(e->dir) - 1] == '/' ? "" : "/");
    pct_append(uri, path, len);
    strcat(uri, "?route=direct&beneath=");
    pct_append(uri, root, strlen(root));

    unsigned flags = 0;
    if (open_flags & (VMIO_WIRE_OPEN_RDWR | VMIO_WIRE_OPEN_CREATE | VMIO_WIRE_OPEN_TRUNC))
        flags |= VMIO_O_RDWR;
    if (open_flags & VMIO_WIRE_OPEN_CREATE)
        flags |= VMIO_O_CREATE;
    if (open_flags & VMIO_WIRE_OPEN_TRUNC)
        flags |= VMIO_O_TRUNC;
    if (open_flags & VMIO_WIRE_OPEN_EXCL)
        flags |= VMIO_O_EXCL;
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = create_size };
    int r = vmio_open_ex(uri, flags, &o, out);
    free(uri);
    if (r < 0) {
        /* Gfarm's own text goes to the server log only: it may name
         * paths outside the export. */
        vmio_log(VMIO_LOG_INFO, "export '%s': %.*s: %s", e->name, (int)len, path, vmio_errmsg());
        char *p = strndup(path, len);
        if (!p)
            return vmio_set_error(API, ENOMEM, "out of memory");
        int escaped = -r == EACCES && strstr(vmio_errmsg(), "escapes the export");
        r = open_error(e, p, escaped ? EXDEV : -r);
        free(p);
    }
    return r;
}

int vmio_export_new(const char *api, const char *name, const char *dir, unsigned flags,
                    struct vmio_export **out)
{
    size_t nlen = strlen(name);
    if (nlen == 0)
        return vmio_set_error(api, EINVAL, "empty export name");
    if (nlen > VMIO_WIRE_MAX_NAME)
        return vmio_set_error(api, ENAMETOOLONG, "export name too long");
    if (strchr(name, '/'))
        return vmio_set_error(api, EINVAL, "export name '%s' contains '/'", name);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return vmio_set_error(api, EINVAL, "export name contains a control character");
    if (dir[0] == '\0')
        return vmio_set_error(api, EINVAL, "empty directory for export '%s'", name);

    if (strncmp(dir, "gfarm://", 8) == 0)
        return gfarm_export_new(api, name, dir, flags, out);

    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "export '%s': cannot open directory %s", name,
                                    dir);
    struct vmio_export *e = calloc(1, sizeof *e);
    if (e) {
        e->dirfd = -1;
        e->name = strdup(name);
        e->dir = strdup(dir);
    }
    if (!e || !e->name || !e->dir) {
        close(fd);
        vmio_export_free(e);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    e->dirfd = fd;
    e->flags = flags;
    *out = e;
    return 0;
}

void vmio_export_free(struct vmio_export *e)
{
    if (!e)
        return;
    if (e->dirfd >= 0)
        close(e->dirfd);
    free(e->name);
    free(e->dir);
    free(e);
}

/* Fallback for kernels without openat2 (and for valgrind, which does not
 * know the syscall): resolve the path in user space, one component at a
 * time with O_NOFOLLOW, keeping our own stack of directory fds so that ".."
 * (from symlink targets) never climbs above the export and absolute
 * targets are refused, like RESOLVE_BENEATH. Weaker than openat2 only
 * against a local user who renames directories out of the export while
 * we walk. */
#define MAX_SYMLINKS 40

static int open_walk(int rootfd, const char *path, int flags, mode_t mode)
{
    char *pending = strdup(path);
    if (!pending)
        return -ENOMEM;
    int *stack = NULL;
    size_t depth = 0, cap = 0;
    int links = 0, r;
    char *p = pending;
    for (;;) {
        int cur = depth ? stack[depth - 1] : rootfd;
        while (*p == '/')
            p++;
        if (*p == '\0') {
            r = -EISDIR;        /* the path names a directory */
            break;
        }
        char *end = strchrnul(p, '/');
        int last = *end == '\0';
        char saved = *end;
        *end = '\0';
        if (strcmp(p, ".") == 0) {
            *end = saved;
            p = end;
            continue;
        }
        if (strcmp(p, "..") == 0) {
            *end = saved;
            if (depth == 0) {
                r = -EXDEV;
                break;
            }
            close(stack[--depth]);
            p = end;
            continue;
        }
        struct stat st;
        int is_link = fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        if (is_link && !(last && (flags & O_CREAT) && (flags & O_EXCL))) {
            char target[PATH_MAX];
            ssize_t tl = ++links > MAX_SYMLINKS ? -1 : readlinkat(cur, p, target, sizeof target - 1);
            if (tl < 0) {
                r = links > MAX_SYMLINKS ? -ELOOP : -errno;
                break;
            }
            target[tl] = '\0';
            if (target[0] == '/') {
                r = -EXDEV;
                break;
            }
            /* Splice the target in front of what is left. */
            *end = saved;
            size_t n = (size_t)tl + strlen(end) + 1;
            char *np = malloc(n);
            if (!np) {
                r = -ENOMEM;
                break;
            }
            snprintf(np, n, "%s%s", target, end);
            free(pending);
            pending = p = np;
            continue;
        }
        if (last) {
            r = openat(cur, p, flags | O_NOFOLLOW, mode);
            if (r < 0)
                r = -errno;
            break;
        }
        int fd = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        *end = saved;
        if (fd < 0) {
            r = -errno;
            break;
        }
        if (depth == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            int *ns = realloc(stack, ncap * sizeof *ns);
            if (!ns) {
                close(fd);
                r = -ENOMEM;
                break;
            }
            stack = ns;
            cap = ncap;
        }
        stack[depth++] = fd;
        p = end;
    }
    while (depth > 0)
        close(stack[--depth]);
    free(stack);
    free(pending);
    return r;
}

/* Returns an fd or -errno. */
static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    /* Once the kernel said ENOSYS, don't ask again. */
    static int no_openat2;
    if (__atomic_load_n(&no_openat2, __ATOMIC_RELAXED))
        return open_walk(dirfd, path, flags, mode);
    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a concurrent rename/mount raced the resolution. */
        if (errno == EAGAIN && tries < 8)
            continue;
        if (errno == ENOSYS) {
            __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
            vmio_log(VMIO_LOG_INFO, "vmio_server: no openat2 on this kernel; resolving "
                     "paths in user space");
            return open_walk(dirfd, path, flags, mode);
        }
        return -errno;
    }
}

/* The checks the kernel would also do, done first so that the client gets
 * a precise message. */
static int check_path(const char *path, size_t len)
{
    if (len == 0)
        return vmio_set_error(API, EINVAL, "empty path");
    if (memchr(path, '\0', len))
        return vmio_set_error(API, EINVAL, "path contains a NUL byte");
    if (path[0] == '/')
        return vmio_set_error(API, EACCES, "path escapes the export (absolute path)");
    const char *p = path, *end = path + len;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *cend = slash ? slash : end;
        if (cend - p == 2 && p[0] == '.' && p[1] == '.')
            return vmio_set_error(API, EACCES, "path escapes the export ('..' component)");
        p = cend + 1;
    }
    return 0;
}

static int open_error(const struct vmio_export *e, const char *path, int err)
{
    switch (err) {
    case EXDEV:
        return vmio_set_error(API, EACCES, "path escapes the export");
    case ELOOP:
        return vmio_set_error(API, EACCES,
                              "'%s/%s': too many levels of symbolic links (or a magic link)",
                              e->name, path);
    case EEXIST:
        return vmio_set_error(API, EEXIST, "'%s/%s' already exists", e->name, path);
    case ENOENT:
        return vmio_set_error(API, ENOENT, "'%s/%s' does not exist", e->name, path);
    case EISDIR:
        return vmio_set_error(API, EISDIR, "'%s/%s' is a directory", e->name, path);
    default:
        return vmio_set_error_errno(API, err, "cannot open '%s/%s'", e->name, path);
    }
}

/* Remove a file we created but could not size. Resolved beneath the export
 * like the open, so a raced symlink cannot make us unlink elsewhere. */
static void unlink_created(const struct vmio_export *e, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        unlinkat(e->dirfd, path, 0);
        return;
    }
    char *parent = strndup(path, (size_t)(slash - path));
    if (!parent)
        return;
    int pfd = parent[0] ? open_beneath(e->dirfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
                        : -ENOENT;
    free(parent);
    if (pfd >= 0) {
        unlinkat(pfd, slash + 1, 0);
        close(pfd);
    }
}

int vmio_export_open(const struct vmio_export *e, const char *cpath, size_t len,
                     uint32_t open_flags, uint64_t create_size, vmio_file **out)
{
    int r = check_path(cpath, len);
    if (r < 0)
        return r;
    if (len > VMIO_WIRE_MAX_NAME)
        return vmio_set_error(API, ENAMETOOLONG, "path too long");
    char *path = strndup(cpath, len);
    if (!path)
        return vmio_set_error(API, ENOMEM, "out of memory");

    const uint32_t writing = VMIO_WIRE_OPEN_RDWR | VMIO_WIRE_OPEN_CREATE | VMIO_WIRE_OPEN_TRUNC;
    int rw = (open_flags & writing) != 0;
    if (rw && (e->flags & VMIO_EXPORT_RDONLY)) {
        free(path);
        return vmio_set_error(API, EROFS, "export is read-only");
    }
    if ((open_flags & VMIO_WIRE_OPEN_EXCL) && !(open_flags & VMIO_WIRE_OPEN_CREATE)) {
        free(path);
        return vmio_set_error(API, EINVAL, "EXCL needs CREATE");
    }
    if (e->gfarm) {
        r = gfarm_export_open(e, path, len, open_flags, create_size, out);
        free(path);
        return r;
    }

    /* O_NONBLOCK: opening a FIFO must not block a server thread; it is
     * cleared again once we know the file is regular. */
    int of = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (rw ? O_RDWR : O_RDONLY);
    if (open_flags & VMIO_WIRE_OPEN_TRUNC)
        of |= O_TRUNC;
    int fd = -1, created = 0;
    if (open_flags & VMIO_WIRE_OPEN_CREATE) {
        /* O_EXCL first, to size only a file we really create. */
        fd = open_beneath(e->dirfd, path, (of | O_CREAT | O_EXCL) & ~O_TRUNC, 0644);
        if (fd >= 0)
            created = 1;
        else if (fd != -EEXIST || (open_flags & VMIO_WIRE_OPEN_EXCL)) {
            r = open_error(e, path, -fd);
            free(path);
            return r;
        }
    }
    if (fd < 0) {
        fd = open_beneath(e->dirfd, path, of, 0);
        if (fd < 0) {
            r = open_error(e, path, -fd);
            free(path);
            return r;
        }
    }

    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = vmio_set_error_errno(API, errno, "cannot stat '%s/%s'", e->name, path);
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        r = vmio_set_error(API, EISDIR, "'%s/%s' is a directory", e->name, path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = vmio_set_error(API, EINVAL, "'%s/%s' is not a regular file", e->name, path);
        goto fail;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        r = vmio_set_error_errno(API, errno, "fcntl on '%s/%s'", e->name, path);
        goto fail;
    }
    if (created && create_size > 0 && ftruncate(fd, (off_t)create_size) < 0) {
        r = vmio_set_error_errno(API, errno, "cannot size new file '%s/%s'", e->name, path);
        close(fd);
        unlink_created(e, path);
        free(path);
        return r;
    }

    size_t nlen = strlen(e->name) + 1 + len + 1;
    char *name = malloc(nlen);
    if (!name) {
        r = vmio_set_error(API, ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(name, nlen, "%s/%s", e->name, path);
    free(path);
    /* fd passes to the storage layer, also on failure. */
    r = vmio_file_from_fd(API, fd, rw ? VMIO_O_RDWR : VMIO_O_RDONLY, name, out);
    free(name);
    return r;

fail:
    close(fd);
    if (created)
        unlink_created(e, path);
    free(path);
    return r;
}
