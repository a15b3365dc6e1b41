/* libgfarm wrapper for one file; see gfarm-io.h. Every libgfarm call is
 * made with gfio_lock held. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gfarm/gfarm.h>

#include "core/internal.h"
#include "storage/gfarm-io.h"

#define API "gfarm"

static pthread_mutex_t gfio_lock = PTHREAD_MUTEX_INITIALIZER;
static int gfio_users;

struct gfio {
    GFS_File gf;
    char *path;
};

int gfio_error(int e, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int err = gfarm_error_to_errno(e);
    if (err <= 0)
        err = EIO;
    return vmio_set_error(API, err, "%s: %s", what, gfarm_error_string(e));
}

int gfio_init(void)
{
    int r = 0;
    pthread_mutex_lock(&gfio_lock);
    if (gfio_users == 0) {
        gfarm_error_t e = gfarm_initialize(NULL, NULL);
        if (e != GFARM_ERR_NO_ERROR)
            r = gfio_error(e, "cannot initialise libgfarm (check GFARM_CONFIG_FILE "
                              "and the shared key)");
    }
    if (r == 0)
        gfio_users++;
    pthread_mutex_unlock(&gfio_lock);
    return r;
}

void gfio_fini(void)
{
    pthread_mutex_lock(&gfio_lock);
    if (gfio_users > 0 && --gfio_users == 0)
        gfarm_terminate();
    pthread_mutex_unlock(&gfio_lock);
}

/* Is path (a real path) equal to root or beneath it? */
static int is_beneath(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Real path of path, or of its parent when path does not exist yet. */
static int realpath_or_parent(const char *path, char **real)
{
    gfarm_error_t e = gfs_realpath(path, real);
    if (e == GFARM_ERR_NO_ERROR)
        return 0;
    if (e != GFARM_ERR_NO_SUCH_FILE_OR_DIRECTORY)
        return gfio_error(e, "realpath of %s", path);
    const char *slash = strrchr(path, '/');
    if (!slash)
        return gfio_error(e, "realpath of %s", path);
    char *parent = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    if (!parent)
        return vmio_set_error(API, ENOMEM, "out of memory");
    e = gfs_realpath(parent, real);
    free(parent);
    return e == GFARM_ERR_NO_ERROR ? 0 : gfio_error(e, "realpath of the directory of %s", path);
}

/* Checked before the open (so that neither TRUNC nor CREATE acts outside
 * the export through a symlink) and again after it. */
static int check_beneath(const char *path, const char *beneath)
{
    char *real = NULL, *rroot = NULL;
    int r = realpath_or_parent(path, &real);
    if (r < 0)
        return r;
    gfarm_error_t e = gfs_realpath(beneath, &rroot);
    if (e != GFARM_ERR_NO_ERROR) {
        free(real);
        return gfio_error(e, "realpath of %s", beneath);
    }
    int ok = is_beneath(real, rroot);
    free(real);
    free(rroot);
    return ok ? 0 : vmio_set_error(API, EACCES, "path escapes the export");
}

static int open_locked(const char *path, unsigned flags, uint64_t create_size,
                       const char *beneath, GFS_File *gf)
{
    int gflags = GFARM_FILE_UNBUFFERED | ((flags & GFIO_RDWR) ? GFARM_FILE_RDWR
                                                               : GFARM_FILE_RDONLY);
    gfarm_error_t e;
    int created = 0, r;
    if (beneath && (r = check_beneath(path, beneath)) < 0)
        return r;
    if (flags & GFIO_CREATE) {
        /* Exclusive first, so that only a file we create gets sized. */
        e = gfs_pio_create(path, gflags | GFARM_FILE_EXCLUSIVE, 0644, gf);
        if (e == GFARM_ERR_NO_ERROR)
            created = 1;
        else if (e != GFARM_ERR_ALREADY_EXISTS || (flags & GFIO_EXCL))
            return gfio_error(e, "cannot create %s", path);
    }
    if (!created) {
        e = gfs_pio_open(path, gflags, gf);
        if (e != GFARM_ERR_NO_ERROR)
            return gfio_error(e, "cannot open %s", path);
    }
    r = 0;
    if (beneath)
        r = check_beneath(path, beneath);
    if (r == 0) {
        struct gfs_stat st;
        e = gfs_pio_stat(*gf, &st);
        if (e != GFARM_ERR_NO_ERROR)
            r = gfio_error(e, "cannot stat %s", path);
        else {
            if (!GFARM_S_ISREG(st.st_mode))
                r = vmio_set_error(API, EINVAL, "%s is not a regular file", path);
            gfs_stat_free(&st);
        }
    }
    /* TRUNC only once the file is known to be the right one. */
    if (r == 0 && !created && (flags & GFIO_TRUNC)) {
        e = gfs_pio_truncate(*gf, 0);
        if (e != GFARM_ERR_NO_ERROR)
            r = gfio_error(e, "cannot truncate %s", path);
    }
    if (r == 0 && created && create_size > 0) {
        e = gfs_pio_truncate(*gf, (gfarm_off_t)create_size);
        if (e != GFARM_ERR_NO_ERROR)
            r = gfio_error(e, "cannot size new file %s", path);
    }
    if (r < 0) {
        gfs_pio_close(*gf);
        if (created)
            gfs_unlink(path);
        *gf = NULL;
    }
    return r;
}

int gfio_open(const char *path, unsigned flags, uint64_t create_size, const char *beneath,
              struct gfio **out)
{
    *out = NULL;
    struct gfio *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&gfio_lock);
    int r = open_locked(path, flags, create_size, beneath, &g->gf);
    pthread_mutex_unlock(&gfio_lock);
    if (r < 0) {
        free(g->path);
        free(g);
        return r;
    }
    *out = g;
    return 0;
}

int gfio_close(struct gfio *g)
{
    if (!g)
        return 0;
    pthread_mutex_lock(&gfio_lock);
    gfarm_error_t e = gfs_pio_close(g->gf);
    pthread_mutex_unlock(&gfio_lock);
    int r = 0;
    if (e != GFARM_ERR_NO_ERROR)
        r = gfio_error(e, "close of %s", g->path);
    free(g->path);
    free(g);
    return r;
}

/* libgfarm takes an int size: move at most 1 GiB per call. */
#define GFIO_MAX_CALL (1u << 30)

int gfio_pread(struct gfio *g, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    int r = 0;
    pthread_mutex_lock(&gfio_lock);
    while (len > 0) {
        int want = (int)VMIO_MIN(len, GFIO_MAX_CALL), got = 0;
        gfarm_error_t e = gfs_pio_pread(g->gf, p, want, (gfarm_off_t)off, &got);
        if (e != GFARM_ERR_NO_ERROR) {
            r = gfio_error(e, "Gfarm read of %s at %" PRIu64, g->path, off);
            break;
        }
        if (got <= 0) {
            r = vmio_set_error(API, EIO, "read of %s at %" PRIu64 ": unexpected end of file",
                               g->path, off);
            break;
        }
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    pthread_mutex_unlock(&gfio_lock);
    return r;
}

int gfio_pwrite(struct gfio *g, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    int r = 0;
    pthread_mutex_lock(&gfio_lock);
    while (len > 0) {
        int want = (int)VMIO_MIN(len, GFIO_MAX_CALL), put = 0;
        gfarm_error_t e = gfs_pio_pwrite(g->gf, p, want, (gfarm_off_t)off, &put);
        if (e != GFARM_ERR_NO_ERROR) {
            r = gfio_error(e, "Gfarm write of %s at %" PRIu64, g->path, off);
            break;
        }
        if (put <= 0) {
            r = vmio_set_error(API, EIO, "write of %s at %" PRIu64 ": no progress", g->path,
                               off);
            break;
        }
        p += put;
        len -= (size_t)put;
        off += (uint64_t)put;
    }
    pthread_mutex_unlock(&gfio_lock);
    return r;
}

int gfio_datasync(struct gfio *g)
{
    pthread_mutex_lock(&gfio_lock);
    gfarm_error_t e = gfs_pio_datasync(g->gf);
    pthread_mutex_unlock(&gfio_lock);
    return e == GFARM_ERR_NO_ERROR ? 0 : gfio_error(e, "sync of %s", g->path);
}

int gfio_truncate(struct gfio *g, uint64_t size)
{
    pthread_mutex_lock(&gfio_lock);
    gfarm_error_t e = gfs_pio_truncate(g->gf, (gfarm_off_t)size);
    pthread_mutex_unlock(&gfio_lock);
    return e == GFARM_ERR_NO_ERROR ? 0 : gfio_error(e, "truncate of %s", g->path);
}

int gfio_size(struct gfio *g, uint64_t *size)
{
    struct gfs_stat st;
    pthread_mutex_lock(&gfio_lock);
    gfarm_error_t e = gfs_pio_stat(g->gf, &st);
    pthread_mutex_unlock(&gfio_lock);
    if (e != GFARM_ERR_NO_ERROR)
        return gfio_error(e, "stat of %s", g->path);
    *size = st.st_size < 0 ? 0 : (uint64_t)st.st_size;
    gfs_stat_free(&st);
    return 0;
}

int gfio_replica_hosts(const char *path, char ***hosts, int *nhosts)
{
    struct gfs_replica_info *ri = NULL;
    *hosts = NULL;
    *nhosts = 0;
    pthread_mutex_lock(&gfio_lock);
    gfarm_error_t e = gfs_replica_info_by_name(path, 0, &ri);
    int r = 0;
    if (e != GFARM_ERR_NO_ERROR) {
        r = gfio_error(e, "replica list of %s", path);
    } else {
        int n = gfs_replica_info_number(ri), k = 0;
        char **h = calloc((size_t)(n > 0 ? n : 1), sizeof *h);
        if (!h)
            r = vmio_set_error(API, ENOMEM, "out of memory");
        for (int i = 0; h && i < n; i++) {
            /* flags 0 already leaves out dead hosts and incomplete or dead
             * copies; check again so a change in libgfarm cannot route us
             * to a stale replica. */
            if (gfs_replica_info_nth_is_dead_host(ri, i) ||
                gfs_replica_info_nth_is_incomplete(ri, i) ||
                gfs_replica_info_nth_is_dead_copy(ri, i))
                continue;
            if (!(h[k] = strdup(gfs_replica_info_nth_host(ri, i)))) {
                r = vmio_set_error(API, ENOMEM, "out of memory");
                break;
            }
            k++;
        }
        gfs_replica_info_free(ri);
        if (r < 0)
            gfio_free_hosts(h, k);
        else {
            *hosts = h;
            *nhosts = k;
        }
    }
    pthread_mutex_unlock(&gfio_lock);
    return r;
}

void gfio_free_hosts(char **hosts, int nhosts)
{
    for (int i = 0; hosts && i < nhosts; i++)
        free(hosts[i]);
    free(hosts);
}
