/* Public entry code of the storage API: argument checks, backend choice by
 * URI scheme, range checks, counters, error prefixes. The I/O itself is the
 * backend's (file.c, remote.c). */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/internal.h"

#define ATOMIC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static const unsigned known_open_flags =
    VMIO_O_RDWR | VMIO_O_CREATE | VMIO_O_DIRECT | VMIO_O_TRUNC | VMIO_O_EXCL;

static int file_new(const struct vmio_backend_ops *be, unsigned flags, vmio_file **out)
{
    vmio_file *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    vmio_backend_fill(&f->ops, be);
    f->flags = flags;
    f->efd = -1;
    f->epfd = -1;
    pthread_mutex_init(&f->cq_lock, NULL);
    pthread_mutex_init(&f->wq_lock, NULL);
    pthread_cond_init(&f->wq_cond, NULL);
    pthread_mutex_init(&f->drain_lock, NULL);
    pthread_cond_init(&f->drain_cond, NULL);
    f->workers_wanted = 4;
    *out = f;
    return 0;
}

static void file_free(vmio_file *f)
{
    pthread_mutex_destroy(&f->cq_lock);
    pthread_mutex_destroy(&f->wq_lock);
    pthread_cond_destroy(&f->wq_cond);
    pthread_mutex_destroy(&f->drain_lock);
    pthread_cond_destroy(&f->drain_cond);
    if (f->efd >= 0)
        close(f->efd);
    if (f->epfd >= 0)
        close(f->epfd);
    free(f->workers);
    free(f);
}

/* Shared by vmio_open_ex and vmio_file_from_fd once f->state is set. */
static int file_finish_open(const char *api, vmio_file *f)
{
    uint64_t size;
    int r = f->ops.get_size(f->state, &size);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    f->size = size;
    f->caps = f->ops.caps(f->state);
    r = vmio_aio_init(f);
    if (r < 0)
        return vmio_set_error_errno(api, -r, "eventfd");
    return 0;
}

VMIO_API int vmio_open_ex(const char *uri, unsigned flags, const struct vmio_open_options *opts,
                          vmio_file **file)
{
    static const char api[] = "vmio_open";
    struct vmio_open_options o;
    struct vmio_uri u;
    vmio_file *f;
    int r;

    vmio_clear_error();
    VMIO_CHECK_ARG(api, uri != NULL, EFAULT);
    VMIO_CHECK_ARG(api, file != NULL, EFAULT);
    if (flags & ~known_open_flags)
        return vmio_set_error(api, EINVAL, "unknown flags 0x%x", flags & ~known_open_flags);
    if (flags & (VMIO_O_CREATE | VMIO_O_TRUNC))
        flags |= VMIO_O_RDWR;
    memset(&o, 0, sizeof o);
    if (opts) {
        if (opts->struct_size < offsetof(struct vmio_open_options, secret_file) + sizeof(void *))
            return vmio_set_error(api, EINVAL, "options struct_size %u too small",
                                  opts->struct_size);
        memcpy(&o, opts, VMIO_MIN(opts->struct_size, sizeof o));
        if (o.flags_reserved != 0)
            return vmio_set_error(api, EINVAL, "reserved option flags must be 0");
    }
    o.struct_size = sizeof o;

    r = vmio_uri_parse(api, uri, &u);
    if (r < 0)
        return r;
    const struct vmio_backend_ops *be = vmio_backend_find(u.scheme);
    if (!be) {
        r = vmio_set_error(api, EPROTONOSUPPORT, "unsupported URI scheme '%s://'", u.scheme);
        vmio_uri_clear(&u);
        return r;
    }
    r = file_new(be, flags, &f);
    if (r < 0) {
        vmio_uri_clear(&u);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    if (o.workers)
        f->workers_wanted = VMIO_MIN(o.workers, 64u);
    r = f->ops.open(&u, flags, &o, &f->state);
    vmio_uri_clear(&u);
    if (r < 0) {
        r = vmio_error_reprefix(api, r);
        file_free(f);
        return r;
    }
    r = file_finish_open(api, f);
    if (r < 0) {
        struct vmio_error_copy e;
        vmio_error_save(&e);
        f->ops.close(f->state);
        file_free(f);
        vmio_error_restore(&e);
        return r;
    }
    *file = f;
    return 0;
}

VMIO_API int vmio_open(const char *uri, unsigned flags, vmio_file **file)
{
    return vmio_open_ex(uri, flags, NULL, file);
}

int vmio_file_from_fd(const char *api, int fd, unsigned flags, const char *name,
                      vmio_file **out)
{
    vmio_file *f;
    if (file_new(&vmio_backend_file, flags, &f) < 0) {
        close(fd);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    int r = vmio_file_backend_adopt(fd, flags, name, &f->state);
    if (r < 0) {
        file_free(f);
        return vmio_error_reprefix(api, r);
    }
    r = file_finish_open(api, f);
    if (r < 0) {
        f->ops.close(f->state);
        file_free(f);
        return r;
    }
    *out = f;
    return 0;
}

VMIO_API int vmio_close(vmio_file *f)
{
    if (!f)
        return 0;
    vmio_aio_shutdown(f);
    int r = f->ops.finish(f->state);
    if (r < 0)
        r = vmio_error_reprefix("vmio_close", -r);
    f->ops.close(f->state);
    /* Completions nobody collected are dropped (their callbacks never run). */
    struct vmio_aio_req *ar = f->cq_head;
    while (ar) {
        struct vmio_aio_req *n = ar->next;
        free(ar->iov_copy);
        free(ar);
        ar = n;
    }
    file_free(f);
    return r;
}

int vmio_check_range(const char *api, struct vmio_file *f, uint64_t offset, uint64_t len)
{
    if (offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
        return vmio_set_error(api, EINVAL, "range %" PRIu64 "+%" PRIu64 " overflows", offset,
                              len);
    uint64_t size = ATOMIC_GET(&f->size);
    if (offset + len <= size)
        return 0;
    /* Another handle may have grown the image: look once more. */
    uint64_t fresh;
    int r = f->ops.get_size(f->state, &fresh);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    __atomic_store_n(&f->size, fresh, __ATOMIC_RELAXED);
    if (offset + len <= fresh)
        return 0;
    return vmio_set_error(api, EINVAL,
                          "range %" PRIu64 "+%" PRIu64 " is beyond the end of the image "
                          "(size %" PRIu64 ")", offset, len, fresh);
}

void vmio_count(struct vmio_file *f, const struct vmio_req *r)
{
    switch (r->op) {
    case VMIO_OP_READ:
        ATOMIC_ADD(&f->n_reads, 1);
        ATOMIC_ADD(&f->bytes_read, r->count);
        break;
    case VMIO_OP_WRITE:
        ATOMIC_ADD(&f->n_writes, 1);
        ATOMIC_ADD(&f->bytes_written, r->count);
        break;
    case VMIO_OP_FLUSH:
        ATOMIC_ADD(&f->n_flushes, 1);
        break;
    case VMIO_OP_DISCARD:
        ATOMIC_ADD(&f->n_discards, 1);
        break;
    case VMIO_OP_WRITE_ZEROES:
        ATOMIC_ADD(&f->n_zeroes, 1);
        break;
    }
}

int vmio_run_sync(struct vmio_file *f, struct vmio_req *r)
{
    switch (r->op) {
    case VMIO_OP_READ:
        return f->ops.preadv(f->state, r->iov, r->iovcnt, r->offset);
    case VMIO_OP_WRITE:
        return f->ops.pwritev(f->state, r->iov, r->iovcnt, r->offset, r->flags);
    case VMIO_OP_FLUSH:
        return f->ops.flush(f->state);
    case VMIO_OP_DISCARD:
        return f->ops.discard(f->state, r->offset, r->length);
    case VMIO_OP_WRITE_ZEROES:
        return f->ops.write_zeroes(f->state, r->offset, r->length, r->flags);
    }
    return -EINVAL;
}

/* Checks shared by the sync and async entry points. */
int vmio_check_req(const char *api, vmio_file *f, struct vmio_req *r)
{
    if (r->iovcnt < 0 || r->iovcnt > IOV_MAX)
        return vmio_set_error(api, EINVAL, "iovcnt %d out of range", r->iovcnt);
    if (r->iovcnt > 0 && !r->iov)
        return vmio_set_error(api, EFAULT, "iov is NULL");
    if (r->op == VMIO_OP_READ || r->op == VMIO_OP_WRITE) {
        r->count = vmio_iov_size(r->iov, r->iovcnt);
        for (int i = 0; i < r->iovcnt; i++)
            if (!r->iov[i].iov_base && r->iov[i].iov_len)
                return vmio_set_error(api, EFAULT, "iov[%d] has a NULL buffer", i);
    }
    unsigned allowed = 0;
    if (r->op == VMIO_OP_WRITE)
        allowed = VMIO_REQ_FUA;
    else if (r->op == VMIO_OP_WRITE_ZEROES)
        allowed = VMIO_REQ_FUA | VMIO_REQ_MAY_TRIM;
    if (r->flags & ~allowed)
        return vmio_set_error(api, EINVAL, "unsupported request flags 0x%x", r->flags);
    if (r->op != VMIO_OP_READ && r->op != VMIO_OP_FLUSH && !(f->flags & VMIO_O_RDWR))
        return vmio_set_error(api, EBADF, "image was opened read-only");
    switch (r->op) {
    case VMIO_OP_READ:
    case VMIO_OP_WRITE:
        return vmio_check_range(api, f, r->offset, r->count);
    case VMIO_OP_DISCARD:
    case VMIO_OP_WRITE_ZEROES:
        return vmio_check_range(api, f, r->offset, r->length);
    }
    return 0;
}

static int do_sync(const char *api, vmio_file *f, struct vmio_req *r)
{
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL, EFAULT);
    int ret = vmio_check_req(api, f, r);
    if (ret < 0)
        return ret;
    if ((r->op == VMIO_OP_READ || r->op == VMIO_OP_WRITE) && r->count == 0)
        return 0;
    ret = vmio_run_sync(f, r);
    if (ret < 0)
        return vmio_error_reprefix(api, ret);
    vmio_count(f, r);
    return 0;
}

VMIO_API int vmio_preadv(vmio_file *f, const struct iovec *iov, int iovcnt, uint64_t offset)
{
    struct vmio_req r = { .op = VMIO_OP_READ, .iov = iov, .iovcnt = iovcnt, .offset = offset };
    return do_sync("vmio_preadv", f, &r);
}

VMIO_API int vmio_pread(vmio_file *f, void *buf, size_t count, uint64_t offset)
{
    struct iovec iov = { buf, count };
    struct vmio_req r = { .op = VMIO_OP_READ, .iov = &iov, .iovcnt = 1, .offset = offset };
    return do_sync("vmio_pread", f, &r);
}

VMIO_API int vmio_pwritev(vmio_file *f, const struct iovec *iov, int iovcnt, uint64_t offset,
                          unsigned flags)
{
    struct vmio_req r = { .op = VMIO_OP_WRITE, .iov = iov, .iovcnt = iovcnt, .offset = offset,
                          .flags = flags };
    return do_sync("vmio_pwritev", f, &r);
}

VMIO_API int vmio_pwrite(vmio_file *f, const void *buf, size_t count, uint64_t offset,
                         unsigned flags)
{
    struct iovec iov = { (void *)buf, count };
    struct vmio_req r = { .op = VMIO_OP_WRITE, .iov = &iov, .iovcnt = 1, .offset = offset,
                          .flags = flags };
    return do_sync("vmio_pwrite", f, &r);
}

VMIO_API int vmio_flush(vmio_file *f)
{
    struct vmio_req r = { .op = VMIO_OP_FLUSH };
    return do_sync("vmio_flush", f, &r);
}

VMIO_API int vmio_discard(vmio_file *f, uint64_t offset, uint64_t length)
{
    struct vmio_req r = { .op = VMIO_OP_DISCARD, .offset = offset, .length = length };
    if (length == 0)
        return f ? 0 : vmio_set_error("vmio_discard", EFAULT, "file is NULL");
    return do_sync("vmio_discard", f, &r);
}

VMIO_API int vmio_write_zeroes(vmio_file *f, uint64_t offset, uint64_t length, unsigned flags)
{
    struct vmio_req r = { .op = VMIO_OP_WRITE_ZEROES, .offset = offset, .length = length,
                          .flags = flags };
    if (length == 0)
        return f ? 0 : vmio_set_error("vmio_write_zeroes", EFAULT, "file is NULL");
    return do_sync("vmio_write_zeroes", f, &r);
}

VMIO_API int vmio_get_size(vmio_file *f, uint64_t *size)
{
    static const char api[] = "vmio_get_size";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL, EFAULT);
    VMIO_CHECK_ARG(api, size != NULL, EFAULT);
    uint64_t s;
    int r = f->ops.get_size(f->state, &s);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    __atomic_store_n(&f->size, s, __ATOMIC_RELAXED);
    *size = s;
    return 0;
}

VMIO_API int vmio_truncate(vmio_file *f, uint64_t size)
{
    static const char api[] = "vmio_truncate";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL, EFAULT);
    if (!(f->flags & VMIO_O_RDWR))
        return vmio_set_error(api, EBADF, "image was opened read-only");
    if (size > (uint64_t)INT64_MAX)
        return vmio_set_error(api, EFBIG, "size %" PRIu64 " too large", size);
    int r = f->ops.truncate(f->state, size);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    __atomic_store_n(&f->size, size, __ATOMIC_RELAXED);
    return 0;
}

VMIO_API int vmio_block_status(vmio_file *f, uint64_t offset, uint64_t max_length,
                               uint64_t *length, int *type)
{
    static const char api[] = "vmio_block_status";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL, EFAULT);
    VMIO_CHECK_ARG(api, length != NULL && type != NULL, EFAULT);
    VMIO_CHECK_ARG(api, max_length > 0, EINVAL);
    int r = vmio_check_range(api, f, offset, 1);
    if (r < 0)
        return r;
    uint64_t size = __atomic_load_n(&f->size, __ATOMIC_RELAXED);
    if (max_length > size - offset)
        max_length = size - offset;
    uint64_t l = 0;
    int t = VMIO_EXTENT_DATA;
    r = f->ops.block_status(f->state, offset, max_length, &l, &t);
    if (r < 0)
        return vmio_error_reprefix(api, r);
    if (l == 0 || l > max_length)
        return vmio_set_error(api, EIO, "backend returned a bad extent length");
    *length = l;
    *type = t;
    return 0;
}

VMIO_API int vmio_get_caps(vmio_file *f, unsigned *caps)
{
    vmio_clear_error();
    VMIO_CHECK_ARG("vmio_get_caps", f != NULL && caps != NULL, EFAULT);
    *caps = f->caps;
    return 0;
}

VMIO_API int vmio_copy_range(vmio_file *src, uint64_t src_off, vmio_file *dst, uint64_t dst_off,
                             uint64_t len, unsigned flags)
{
    static const char api[] = "vmio_copy_range";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, src && dst, EINVAL);
    VMIO_CHECK_ARG(api, flags == 0, EINVAL);
    if (!(dst->caps & VMIO_CAP_WRITE))
        return vmio_set_error(api, EBADF, "destination is read-only");
    int r = vmio_check_range(api, src, src_off, len);
    if (r == 0)
        r = vmio_check_range(api, dst, dst_off, len);
    if (r < 0)
        return r;
    if (strcmp(src->ops.name, "file") != 0 || strcmp(dst->ops.name, "file") != 0)
        return vmio_set_error(api, ENOTSUP, "no offloaded copy from %s to %s",
                              vmio_backend_name(src), vmio_backend_name(dst));
    int in = vmio_file_backend_fd(src->state), out = vmio_file_backend_fd(dst->state);
    loff_t ioff = (loff_t)src_off, ooff = (loff_t)dst_off;
    while (len > 0) {
        size_t chunk = (size_t)VMIO_MIN(len, (uint64_t)1 << 30);
        ssize_t n = copy_file_range(in, &ioff, out, &ooff, chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                      errno == ENOSYS || errno == EBADF))
            return vmio_set_error_errno(api, ENOTSUP, "copy_file_range refused (%s)",
                                        strerror(errno));
        if (n < 0)
            return vmio_set_error_errno(api, errno, "copy_file_range");
        if (n == 0)
            return vmio_set_error(api, EIO, "copy_file_range made no progress");
        len -= (uint64_t)n;
        ATOMIC_ADD(&src->bytes_read, (uint64_t)n);
        ATOMIC_ADD(&dst->bytes_written, (uint64_t)n);
    }
    return 0;
}

VMIO_API const char *vmio_backend_name(vmio_file *f)
{
    if (!f)
        return "";
    const char *d = f->ops.describe(f->state);
    return d ? d : f->ops.name;
}

VMIO_API int vmio_register_memory(vmio_file *f, void *addr, size_t len)
{
    static const char api[] = "vmio_register_memory";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL && addr != NULL, EFAULT);
    VMIO_CHECK_ARG(api, len > 0, EINVAL);
    int r = f->ops.register_memory(f->state, addr, len);
    return r < 0 ? vmio_error_reprefix(api, -r) : r;
}

VMIO_API int vmio_unregister_memory(vmio_file *f, void *addr)
{
    static const char api[] = "vmio_unregister_memory";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL && addr != NULL, EFAULT);
    int r = f->ops.unregister_memory(f->state, addr);
    return r < 0 ? vmio_error_reprefix(api, -r) : r;
}

VMIO_API int vmio_get_stats(vmio_file *f, struct vmio_file_stats *st)
{
    static const char api[] = "vmio_get_stats";
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL && st != NULL, EFAULT);
    if (st->struct_size < sizeof(uint32_t) * 2)
        return vmio_set_error(api, EINVAL, "stats struct_size not set");
    struct vmio_file_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    s.reads = ATOMIC_GET(&f->n_reads);
    s.writes = ATOMIC_GET(&f->n_writes);
    s.flushes = ATOMIC_GET(&f->n_flushes);
    s.discards = ATOMIC_GET(&f->n_discards);
    s.write_zeroes = ATOMIC_GET(&f->n_zeroes);
    s.bytes_read = ATOMIC_GET(&f->bytes_read);
    s.bytes_written = ATOMIC_GET(&f->bytes_written);
    f->ops.stats(f->state, &s);
    size_t n = VMIO_MIN((size_t)st->struct_size, sizeof s);
    uint32_t caller_size = st->struct_size;
    memcpy(st, &s, n);
    st->struct_size = caller_size;
    return 0;
}

int vmio_file_local_fd(vmio_file *f)
{
    if (strcmp(f->ops.name, "file") != 0)
        return -ENOTSUP;
    return vmio_file_backend_fd(f->state);
}
