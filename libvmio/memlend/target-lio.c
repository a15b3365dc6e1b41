/* Lender target backend for the kernel's LIO target, written directly
 * through configfs (no targetcli): a fileio backstore on the lease's
 * tmpfs/ramfs file, an iSCSI target with TPG 1, LUN lun linked to the
 * backstore, a network portal, CHAP in the TPG's auth (demo mode with
 * generate_node_acls, so any initiator with the right CHAP gets in), then
 * enable. Teardown goes in the reverse order; sessions are read from the
 * TPG's dynamic_sessions (and per-initiator ACLs' info, if an operator
 * added some). Needs target_core_mod, target_core_file and
 * iscsi_target_mod (loaded by the first mkdir when missing). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "memlend/target.h"

/* One HBA for all our backstores; the number is ours by convention. */
#define LIO_HBA "fileio_8646"

static int cfs_path(struct vmio_ml_target *t, char *buf, size_t n, const char *fmt, ...)
    VMIO_PRINTF(4, 5);
static int cfs_path(struct vmio_ml_target *t, char *buf, size_t n, const char *fmt, ...)
{
    int w = snprintf(buf, n, "%s/target/", t->configfs);
    if (w < 0 || (size_t)w >= n)
        return -ENAMETOOLONG;
    va_list ap;
    va_start(ap, fmt);
    int w2 = vsnprintf(buf + w, n - (size_t)w, fmt, ap);
    va_end(ap);
    if (w2 < 0 || (size_t)w2 >= n - (size_t)w)
        return -ENAMETOOLONG;
    return 0;
}

static int wr(const char *api, const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "LIO: %s", path);
    size_t len = strlen(val);
    ssize_t w = write(fd, val, len);
    int e = errno;
    close(fd);
    if (w < 0)
        return vmio_set_error_errno(api, e, "LIO: writing '%s' to %s",
                                    strncmp(path + strlen(path) - 8, "password", 8) ? val : "***",
                                    path);
    if ((size_t)w != len)
        return vmio_set_error(api, EIO, "LIO: short write to %s", path);
    return 0;
}

static int rd(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (r < 0)
        return -e;
    buf[r] = '\0';
    return (int)r;
}

static int mkd(const char *api, const char *path)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return vmio_set_error_errno(api, errno, "LIO: mkdir %s", path);
    return 0;
}

/* The backstore's name: the IQN's part after the last ':'. */
static const char *store_name(const char *iqn)
{
    const char *c = strrchr(iqn, ':');
    return c ? c + 1 : iqn;
}

static int lio_sessions(struct vmio_ml_target *t, const char *api, const char *iqn)
{
    char p[512], buf[4096];
    if (cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1", iqn) < 0)
        return vmio_set_error(api, ENAMETOOLONG, "LIO: name too long");
    struct stat st;
    if (stat(p, &st) < 0)
        return vmio_set_error(api, ENOENT, "LIO: no target %s", iqn);
    int n = 0;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/dynamic_sessions", iqn);
    int r = rd(p, buf, sizeof buf);
    if (r < 0)
        return vmio_set_error_errno(api, -r, "LIO: %s", p);
    for (char *s = buf; *s;) {
        char *e = strchr(s, '\n');
        if (e != s && *s)
            n++;
        if (!e)
            break;
        s = e + 1;
    }
    /* Explicit per-initiator ACLs (operators may add some). */
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/acls", iqn);
    DIR *d = opendir(p);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char ip[768];
            snprintf(ip, sizeof ip, "%s/%s/info", p, de->d_name);
            if (rd(ip, buf, sizeof buf) > 0 && strncmp(buf, "No active", 9) != 0)
                n++;
        }
        closedir(d);
    }
    return n;
}

/* Undo everything create may have made; missing pieces are fine. */
static void teardown(struct vmio_ml_target *t, const char *iqn, uint32_t lun)
{
    char p[512];
    const char *name = store_name(iqn);
    if (cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/enable", iqn) == 0) {
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, "0", 1);
            close(fd);
        }
    }
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/lun/lun_%u/%s", iqn, lun, name);
    unlink(p);
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/lun/lun_%u", iqn, lun);
    rmdir(p);
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/np", iqn);
    DIR *d = opendir(p);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char np[768];
            snprintf(np, sizeof np, "%s/%s", p, de->d_name);
            rmdir(np);
        }
        closedir(d);
    }
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1", iqn);
    rmdir(p);
    cfs_path(t, p, sizeof p, "iscsi/%s", iqn);
    rmdir(p);
    cfs_path(t, p, sizeof p, "core/" LIO_HBA "/%s", name);
    rmdir(p);
}

static int lio_create(struct vmio_ml_target *t, const char *api, const char *iqn, uint32_t lun,
                      const char *backing, uint64_t size, const struct vmio_memlend_chap *chap)
{
    char p[512], q[512], v[768];
    const char *name = store_name(iqn);
    int r;
    if (cfs_path(t, p, sizeof p, "iscsi/%s", iqn) < 0 || strlen(backing) > 400)
        return vmio_set_error(api, ENAMETOOLONG, "LIO: name too long");
    struct stat st;
    if (stat(p, &st) == 0)
        return vmio_set_error(api, EEXIST, "LIO: target %s exists already", iqn);
    cfs_path(t, p, sizeof p, "core");
    if (stat(p, &st) < 0)
        return vmio_set_error(api, ENOTSUP,
                              "LIO: %s missing (configfs not mounted on %s, or target_core_mod "
                              "not loaded)", p, t->configfs);
    /* The backstore. */
    cfs_path(t, p, sizeof p, "core/" LIO_HBA);
    if ((r = mkd(api, p)) < 0)
        return r;
    cfs_path(t, p, sizeof p, "core/" LIO_HBA "/%s", name);
    if ((r = mkd(api, p)) < 0)
        goto undo;
    snprintf(v, sizeof v, "fd_dev_name=%s,fd_dev_size=%" PRIu64, backing, size);
    cfs_path(t, q, sizeof q, "core/" LIO_HBA "/%s/control", name);
    if ((r = wr(api, q, v)) < 0)
        goto undo;
    cfs_path(t, q, sizeof q, "core/" LIO_HBA "/%s/udev_path", name);
    if ((r = wr(api, q, backing)) < 0)
        goto undo;
    cfs_path(t, q, sizeof q, "core/" LIO_HBA "/%s/enable", name);
    if ((r = wr(api, q, "1")) < 0)
        goto undo;
    /* The iSCSI target, TPG 1, the LUN. */
    cfs_path(t, p, sizeof p, "iscsi");
    if ((r = mkd(api, p)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s", iqn);
    if ((r = mkd(api, p)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1", iqn);
    if ((r = mkd(api, p)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/lun/lun_%u", iqn, lun);
    if ((r = mkd(api, p)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/lun/lun_%u/%s", iqn, lun, name);
    cfs_path(t, q, sizeof q, "core/" LIO_HBA "/%s", name);
    if (symlink(q, p) < 0) {
        r = vmio_set_error_errno(api, errno, "LIO: symlink %s -> %s", p, q);
        goto undo;
    }
    /* The portal: IPv6 addresses go in brackets. */
    if (strchr(t->portal_addr, ':'))
        cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/np/[%s]:%u", iqn, t->portal_addr,
                 t->portal_port);
    else
        cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/np/%s:%u", iqn, t->portal_addr,
                 t->portal_port);
    if ((r = mkd(api, p)) < 0)
        goto undo;
    /* CHAP for every initiator (demo mode: node ACLs are generated at
     * login, so the borrower's initiator name need not be known). */
    static const char *const attrs[][2] = {
        {"attrib/authentication", "1"},
        {"attrib/generate_node_acls", "1"},
        {"attrib/demo_mode_write_protect", "0"},
    };
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(attrs); i++) {
        cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/%s", iqn, attrs[i][0]);
        if ((r = wr(api, p, attrs[i][1])) < 0)
            goto undo;
    }
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/auth/userid", iqn);
    if ((r = wr(api, p, chap->user)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/auth/password", iqn);
    if ((r = wr(api, p, chap->secret)) < 0)
        goto undo;
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/enable", iqn);
    if ((r = wr(api, p, "1")) < 0)
        goto undo;
    return 0;
undo:;
    struct vmio_error_copy saved;
    vmio_error_save(&saved);
    teardown(t, iqn, lun);
    vmio_error_restore(&saved);
    return r;
}

/* LUN number of target iqn's first lun_N, or -ENOENT. */
static int first_lun(struct vmio_ml_target *t, const char *iqn, uint32_t *lun)
{
    char p[512];
    cfs_path(t, p, sizeof p, "iscsi/%s/tpgt_1/lun", iqn);
    DIR *d = opendir(p);
    if (!d)
        return -ENOENT;
    struct dirent *de;
    int r = -ENOENT;
    while ((de = readdir(d))) {
        unsigned v;
        char extra;
        if (sscanf(de->d_name, "lun_%u%c", &v, &extra) == 1) {
            *lun = v;
            r = 0;
            break;
        }
    }
    closedir(d);
    return r;
}

static int lio_remove(struct vmio_ml_target *t, const char *api, const char *iqn)
{
    int s = lio_sessions(t, api, iqn);
    if (s < 0)
        return s;
    if (s > 0)
        return vmio_set_error(api, EBUSY, "LIO: target %s: %d initiator(s) logged in", iqn, s);
    uint32_t lun = 0;
    first_lun(t, iqn, &lun);
    teardown(t, iqn, lun);
    char p[512];
    struct stat st;
    cfs_path(t, p, sizeof p, "iscsi/%s", iqn);
    if (stat(p, &st) == 0)
        return vmio_set_error(api, EBUSY, "LIO: %s could not be removed", p);
    cfs_path(t, p, sizeof p, "core/" LIO_HBA "/%s", store_name(iqn));
    if (stat(p, &st) == 0)
        return vmio_set_error(api, EBUSY, "LIO: backstore %s could not be removed", p);
    return 0;
}

static int lio_list(struct vmio_ml_target *t, const char *api, const char *prefix,
                    struct vmio_ml_target_entry **out, size_t *n_out)
{
    char p[512];
    cfs_path(t, p, sizeof p, "iscsi");
    struct vmio_ml_target_entry *e = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(p);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 ||
                strlen(de->d_name) >= sizeof e->iqn)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                void *ne = realloc(e, cap * sizeof *e);
                if (!ne) {
                    closedir(d);
                    free(e);
                    return vmio_set_error(api, ENOMEM, "out of memory");
                }
                e = ne;
            }
            memset(&e[n], 0, sizeof e[n]);
            snprintf(e[n].iqn, sizeof e[n].iqn, "%s", de->d_name);
            first_lun(t, de->d_name, &e[n].lun);
            int s = lio_sessions(t, api, de->d_name);
            e[n].sessions = s > 0 ? (uint32_t)s : 0;
            char q[512];
            cfs_path(t, q, sizeof q, "core/" LIO_HBA "/%s/udev_path", store_name(de->d_name));
            if (rd(q, e[n].backing, sizeof e[n].backing) > 0)
                e[n].backing[strcspn(e[n].backing, "\n")] = '\0';
            n++;
        }
        closedir(d);
    }
    *out = e;
    *n_out = n;
    return 0;
}

static void lio_close(struct vmio_ml_target *t)
{
    free(t);
}

static const struct vmio_ml_target_ops lio_ops = {
    .struct_size = sizeof(struct vmio_ml_target_ops),
    .name = "lio",
    .create = lio_create,
    .remove = lio_remove,
    .sessions = lio_sessions,
    .list = lio_list,
    .close = lio_close,
};

int vmio_ml_target_lio_new(const char *api, const char *configfs, struct vmio_ml_target **out)
{
    (void)configfs; /* recorded by vmio_ml_target_open() */
    struct vmio_ml_target *t = calloc(1, sizeof *t);
    if (!t)
        return vmio_set_error(api, ENOMEM, "out of memory");
    t->ops = &lio_ops;
    *out = t;
    return 0;
}
