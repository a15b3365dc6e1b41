/*
 * QEMU block driver for libvmio: VM images named by libvmio URIs.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built inside the QEMU tree as block/vmio.c (see examples/qemu/README.md of
 * libvmio). Filenames it accepts:
 *
 *   vmio://host[:port]/export/path[?secret-file=PATH&...]  image behind vmiod
 *   vmio:URI       any other URI libvmio opens: vmio:/var/lib/x.raw,
 *                  vmio:file:///var/lib/x.raw, vmio:gfarm:///dir/x.raw
 *   gfarm:///path  the same as vmio:gfarm:///path, registered only when the
 *                  loaded libvmio has its gfarm:// backend
 *
 * Options (-drive, --image-opts, json:): uri=URI (the image, instead of a
 * filename), secret-file=PATH (vmio:// shared secret; otherwise the URI's
 * secret-file= or $VMIO_SECRET_FILE), connect-timeout and reconnect-timeout
 * (seconds; 0 keeps libvmio's defaults). qemu-img create takes size and
 * secret-file.
 *
 * I/O goes through libvmio's asynchronous API: each request is submitted
 * from its coroutine, which yields; vmio_aio_fd() is registered in the
 * node's AioContext, whose handler runs vmio_aio_run_completions() on the
 * AioContext's thread, and each completion callback wakes its coroutine.
 * The calls libvmio offers only synchronously (block status, truncate) run
 * in the AioContext's thread pool so that a vmio:// round trip never stalls
 * the event loop.
 */

#include "qemu/osdep.h"

#include "block/block_int.h"
#include "block/thread-pool.h"
#include "qapi/error.h"
#include "qapi/qmp/qdict.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/memalign.h"
#include "qemu/module.h"
#include "qemu/option.h"

#include <vmio/vmio.h>

#define VMIO_OPT_URI "uri"
#define VMIO_OPT_SECRET_FILE "secret-file"
#define VMIO_OPT_CONNECT_TIMEOUT "connect-timeout"
#define VMIO_OPT_RECONNECT_TIMEOUT "reconnect-timeout"

/* libvmio takes its timeouts in milliseconds as uint32_t. */
#define VMIO_MAX_TIMEOUT_S (UINT32_MAX / 1000)

typedef struct BDRVVmioState {
    vmio_file *file;
    unsigned caps;
    unsigned open_flags;        /* VMIO_O_* the file was opened with */
    uint64_t size;              /* image size as this node last saw it */
    CoMutex resize_lock;        /* serialises growing and truncating */
    AioContext *aio_context;
    char *uri;                  /* what vmio_open_ex() got */
    char *secret_file;
    uint32_t connect_timeout_ms;
    uint32_t reconnect_timeout_ms;
} BDRVVmioState;

/* One asynchronous request, on the stack of the coroutine waiting for it. */
typedef struct VmioTask {
    Coroutine *co;
    int ret;
    bool complete;
    char *errmsg;               /* libvmio's message for a failure */
} VmioTask;

/* One synchronous libvmio call run in the thread pool. */
typedef enum VmioSyncOp {
    VMIO_SYNC_BLOCK_STATUS,
    VMIO_SYNC_TRUNCATE,
    VMIO_SYNC_GET_SIZE,
} VmioSyncOp;

typedef struct VmioSyncReq {
    vmio_file *file;
    VmioSyncOp op;
    uint64_t offset;            /* block status: start; truncate: new size */
    uint64_t length;            /* block status: at most this much */
    uint64_t out_length;        /* block status: run length; get size: size */
    int out_type;               /* block status: VMIO_EXTENT_* */
    char *errmsg;
} VmioSyncReq;

static QemuOptsList vmio_runtime_opts = {
    .name = "vmio",
    .head = QTAILQ_HEAD_INITIALIZER(vmio_runtime_opts.head),
    .desc = {
        {
            .name = VMIO_OPT_URI,
            .type = QEMU_OPT_STRING,
            .help = "libvmio URI of the image (vmio://host:port/export/path, "
                    "/path, file:///path, gfarm:///path)",
        },
        {
            .name = VMIO_OPT_SECRET_FILE,
            .type = QEMU_OPT_STRING,
            .help = "file holding the vmio:// shared secret (mode 0600)",
        },
        {
            .name = VMIO_OPT_CONNECT_TIMEOUT,
            .type = QEMU_OPT_NUMBER,
            .help = "vmio:// connect timeout in seconds (0: default)",
        },
        {
            .name = VMIO_OPT_RECONNECT_TIMEOUT,
            .type = QEMU_OPT_NUMBER,
            .help = "seconds a lost vmio:// connection is retried before "
                    "requests fail (0: default)",
        },
        { /* end of list */ }
    },
};

static QemuOptsList vmio_create_opts = {
    .name = "vmio-create-opts",
    .head = QTAILQ_HEAD_INITIALIZER(vmio_create_opts.head),
    .desc = {
        {
            .name = BLOCK_OPT_SIZE,
            .type = QEMU_OPT_SIZE,
            .help = "Virtual disk size",
        },
        {
            .name = VMIO_OPT_SECRET_FILE,
            .type = QEMU_OPT_STRING,
            .help = "file holding the vmio:// shared secret (mode 0600)",
        },
        { /* end of list */ }
    },
};

static const char *const vmio_strong_runtime_opts[] = {
    VMIO_OPT_URI,

    NULL
};

/*
 * The libvmio URI named by a filename: "vmio://..." is one already,
 * "vmio:URI" stands for URI, and anything else (a gfarm:// URI given to the
 * gfarm protocol, a plain path given with driver=vmio) is taken as it is.
 */
static const char *vmio_uri_of_filename(const char *filename)
{
    const char *rest;

    if (strstart(filename, "vmio:", &rest) && !strstart(rest, "//", NULL)) {
        return rest;
    }
    return filename;
}

static void vmio_parse_filename(const char *filename, QDict *options,
                                Error **errp)
{
    const char *uri = vmio_uri_of_filename(filename);

    if (qdict_haskey(options, VMIO_OPT_URI)) {
        error_setg(errp, "vmio: the uri option cannot be used with a filename");
        return;
    }
    if (!*uri) {
        error_setg(errp, "vmio: '%s' names no image (use vmio://host/export/"
                   "path or vmio:URI)", filename);
        return;
    }
    qdict_put_str(options, VMIO_OPT_URI, uri);
}

/* Opens uri with libvmio; on failure sets errp to libvmio's message. */
static int vmio_open_uri(const char *uri, unsigned flags,
                         const char *secret_file, uint32_t connect_timeout_ms,
                         uint32_t reconnect_timeout_ms, uint64_t create_size,
                         vmio_file **file, Error **errp)
{
    struct vmio_open_options o;
    int ret;

    memset(&o, 0, sizeof(o));
    o.struct_size = sizeof(o);
    o.secret_file = secret_file;
    o.connect_timeout_ms = connect_timeout_ms;
    o.reconnect_timeout_ms = reconnect_timeout_ms;
    o.create_size = create_size;

    ret = vmio_open_ex(uri, flags, &o, file);
    if (ret < 0) {
        error_setg(errp, "%s", vmio_errmsg());
    }
    return ret;
}

static int vmio_timeout_ms(QemuOpts *opts, const char *name, uint32_t *ms,
                           Error **errp)
{
    uint64_t s = qemu_opt_get_number(opts, name, 0);

    if (s > VMIO_MAX_TIMEOUT_S) {
        error_setg(errp, "vmio: %s must be at most %u seconds", name,
                   (unsigned)VMIO_MAX_TIMEOUT_S);
        return -EINVAL;
    }
    *ms = (uint32_t)(s * 1000);
    return 0;
}

/* ---- event loop integration ---------------------------------------- */

/*
 * The fd of libvmio became readable: replies arrived or another thread
 * queued completions. Their callbacks run here, on this thread.
 */
static void vmio_fd_read(void *opaque)
{
    BDRVVmioState *s = opaque;

    vmio_aio_run_completions(s->file);
}

static void vmio_set_handler(BDRVVmioState *s, bool on)
{
    aio_set_fd_handler(s->aio_context, vmio_aio_fd(s->file), false,
                       on ? vmio_fd_read : NULL, NULL, NULL, NULL,
                       on ? s : NULL);
}

static void vmio_detach_aio_context(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;

    vmio_set_handler(s, false);
}

static void vmio_attach_aio_context(BlockDriverState *bs,
                                    AioContext *new_context)
{
    BDRVVmioState *s = bs->opaque;

    s->aio_context = new_context;
    vmio_set_handler(s, true);
}

/* ---- open and close ------------------------------------------------- */

static void vmio_set_capabilities(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;

    bs->supported_write_flags = 0;
    bs->supported_zero_flags = 0;
    if (s->caps & VMIO_CAP_FUA) {
        bs->supported_write_flags |= BDRV_REQ_FUA;
        bs->supported_zero_flags |= BDRV_REQ_FUA;
    }
    if (s->caps & VMIO_CAP_WRITE_ZEROES) {
        bs->supported_zero_flags |= BDRV_REQ_MAY_UNMAP;
    }
    /* Growing a file (local or behind vmiod) adds a hole. */
    bs->supported_truncate_flags = BDRV_REQ_ZERO_WRITE;
}

static void vmio_free_state(BDRVVmioState *s)
{
    g_free(s->uri);
    g_free(s->secret_file);
    s->uri = NULL;
    s->secret_file = NULL;
}

static int vmio_file_open(BlockDriverState *bs, QDict *options, int flags,
                          Error **errp)
{
    BDRVVmioState *s = bs->opaque;
    QemuOpts *opts;
    Error *local_err = NULL;
    const char *uri;
    unsigned vflags;
    int ret;

    opts = qemu_opts_create(&vmio_runtime_opts, NULL, 0, &error_abort);
    if (!qemu_opts_absorb_qdict(opts, options, errp)) {
        ret = -EINVAL;
        goto out;
    }

    uri = qemu_opt_get(opts, VMIO_OPT_URI);
    if (!uri || !*uri) {
        error_setg(errp, "vmio: an image is required: a filename "
                   "(vmio://host:port/export/path, vmio:URI) or the uri option");
        ret = -EINVAL;
        goto out;
    }
    s->uri = g_strdup(uri);
    s->secret_file = g_strdup(qemu_opt_get(opts, VMIO_OPT_SECRET_FILE));
    ret = vmio_timeout_ms(opts, VMIO_OPT_CONNECT_TIMEOUT,
                          &s->connect_timeout_ms, errp);
    if (ret < 0) {
        goto out;
    }
    ret = vmio_timeout_ms(opts, VMIO_OPT_RECONNECT_TIMEOUT,
                          &s->reconnect_timeout_ms, errp);
    if (ret < 0) {
        goto out;
    }

    vflags = (flags & BDRV_O_RDWR) ? VMIO_O_RDWR : VMIO_O_RDONLY;
    if (flags & BDRV_O_NOCACHE) {
        vflags |= VMIO_O_DIRECT;
    }
    ret = vmio_open_uri(s->uri, vflags, s->secret_file, s->connect_timeout_ms,
                        s->reconnect_timeout_ms, 0, &s->file, &local_err);
    if (ret < 0 && (vflags & VMIO_O_RDWR) && (flags & BDRV_O_AUTO_RDONLY) &&
        (ret == -EACCES || ret == -EROFS || ret == -EPERM) &&
        vmio_open_uri(s->uri, vflags & ~VMIO_O_RDWR, s->secret_file,
                      s->connect_timeout_ms, s->reconnect_timeout_ms, 0,
                      &s->file, NULL) == 0) {
        /*
         * auto-read-only=on: the image is writable for nobody, or not for
         * us; go on read-only.
         */
        error_free(local_err);
        local_err = NULL;
        vflags &= ~VMIO_O_RDWR;
        ret = bdrv_apply_auto_read_only(bs, "vmio: image is read-only", errp);
        if (ret < 0) {
            vmio_close(s->file);
            s->file = NULL;
        }
    }
    if (local_err) {
        error_propagate(errp, local_err);
    }
    if (ret < 0) {
        goto out;
    }
    s->open_flags = vflags;
    vmio_get_caps(s->file, &s->caps);
    vmio_set_capabilities(bs);
    if (vmio_get_size(s->file, &s->size) < 0) {
        error_setg(errp, "%s", vmio_errmsg());
        vmio_close(s->file);
        s->file = NULL;
        ret = -EIO;
        goto out;
    }
    qemu_co_mutex_init(&s->resize_lock);

    s->aio_context = bdrv_get_aio_context(bs);
    vmio_set_handler(s, true);
    ret = 0;

out:
    qemu_opts_del(opts);
    if (ret < 0) {
        vmio_free_state(s);
    }
    return ret;
}

static void vmio_close_bs(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;

    if (s->file) {
        vmio_set_handler(s, false);
        /* The block layer drained the node: nothing is in flight. */
        vmio_close(s->file);
        s->file = NULL;
    }
    vmio_free_state(s);
}

/*
 * Reopening read-write an image that was opened read-only needs a new
 * libvmio handle; it is opened in prepare and swapped in at commit. The
 * other way round keeps the read-write handle (the block layer stops the
 * writes).
 */
static int vmio_reopen_prepare(BDRVReopenState *state,
                               BlockReopenQueue *queue, Error **errp)
{
    BDRVVmioState *s = state->bs->opaque;
    vmio_file *file = NULL;
    int ret;

    state->opaque = NULL;
    if (!(state->flags & BDRV_O_RDWR) || (s->open_flags & VMIO_O_RDWR)) {
        return 0;
    }
    ret = vmio_open_uri(s->uri, (s->open_flags & VMIO_O_DIRECT) | VMIO_O_RDWR,
                        s->secret_file, s->connect_timeout_ms,
                        s->reconnect_timeout_ms, 0, &file, errp);
    if (ret < 0) {
        return ret;
    }
    state->opaque = file;
    return 0;
}

static void vmio_reopen_commit(BDRVReopenState *state)
{
    BDRVVmioState *s = state->bs->opaque;
    vmio_file *file = state->opaque;

    if (!file) {
        return;
    }
    vmio_set_handler(s, false);
    vmio_close(s->file);
    s->file = file;
    s->open_flags = (s->open_flags & VMIO_O_DIRECT) | VMIO_O_RDWR;
    vmio_get_caps(s->file, &s->caps);
    vmio_get_size(s->file, &s->size);
    vmio_set_capabilities(state->bs);
    vmio_set_handler(s, true);
    state->opaque = NULL;
}

static void vmio_reopen_abort(BDRVReopenState *state)
{
    vmio_close(state->opaque);
    state->opaque = NULL;
}

static void vmio_refresh_filename(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;

    if (strstart(s->uri, "vmio://", NULL) ||
        (bs->drv->protocol_name &&
         strcmp(bs->drv->protocol_name, "vmio") != 0)) {
        pstrcpy(bs->exact_filename, sizeof(bs->exact_filename), s->uri);
    } else {
        snprintf(bs->exact_filename, sizeof(bs->exact_filename), "vmio:%s",
                 s->uri);
    }
}

static char *vmio_dirname(BlockDriverState *bs, Error **errp)
{
    BDRVVmioState *s = bs->opaque;
    const char *slash = strrchr(s->uri, '/');

    if (strchr(s->uri, '?') || !slash) {
        error_setg(errp, "Cannot generate a base directory for vmio node '%s'",
                   bs->filename);
        return NULL;
    }
    if (strstart(s->uri, "vmio://", NULL) ||
        strcmp(bs->drv->protocol_name, "vmio") != 0) {
        return g_strndup(s->uri, slash + 1 - s->uri);
    }
    return g_strdup_printf("vmio:%.*s", (int)(slash + 1 - s->uri), s->uri);
}

/* ---- synchronous calls, in the thread pool ---------------------------- */

static int vmio_sync_worker(void *opaque)
{
    VmioSyncReq *req = opaque;
    int ret = -EINVAL;

    switch (req->op) {
    case VMIO_SYNC_BLOCK_STATUS:
        ret = vmio_block_status(req->file, req->offset, req->length,
                                &req->out_length, &req->out_type);
        break;
    case VMIO_SYNC_TRUNCATE:
        ret = vmio_truncate(req->file, req->offset);
        break;
    case VMIO_SYNC_GET_SIZE:
        ret = vmio_get_size(req->file, &req->out_length);
        break;
    }
    if (ret < 0) {
        /* The message is per thread: take it with the result. */
        req->errmsg = g_strdup(vmio_errmsg());
    }
    return ret;
}

static int coroutine_fn vmio_co_run_sync(BlockDriverState *bs,
                                         VmioSyncReq *req)
{
    BDRVVmioState *s = bs->opaque;
    ThreadPool *pool = aio_get_thread_pool(bdrv_get_aio_context(bs));

    req->file = s->file;
    return thread_pool_submit_co(pool, vmio_sync_worker, req);
}

/*
 * libvmio refuses I/O past the end of the image, whereas QEMU's protocol
 * drivers are expected to grow the image on writes past the end (qcow2
 * allocates that way). Grows the image to at least end, never shrinks it.
 */
static int coroutine_fn vmio_co_grow(BlockDriverState *bs, uint64_t end)
{
    BDRVVmioState *s = bs->opaque;
    int ret = 0;

    if (end <= s->size) {
        return 0;
    }
    qemu_co_mutex_lock(&s->resize_lock);
    if (end > s->size) {
        VmioSyncReq req = { .op = VMIO_SYNC_TRUNCATE, .offset = end };

        ret = vmio_co_run_sync(bs, &req);
        if (ret < 0) {
            error_report("vmio: %s", req.errmsg ? req.errmsg : strerror(-ret));
        } else {
            s->size = end;
        }
        g_free(req.errmsg);
    }
    qemu_co_mutex_unlock(&s->resize_lock);
    return ret;
}

/* Reads the size again (another client may have grown the image). */
static void coroutine_fn vmio_co_refresh_size(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;
    VmioSyncReq req = { .op = VMIO_SYNC_GET_SIZE };

    qemu_co_mutex_lock(&s->resize_lock);
    if (vmio_co_run_sync(bs, &req) == 0) {
        s->size = req.out_length;
    }
    qemu_co_mutex_unlock(&s->resize_lock);
    g_free(req.errmsg);
}

/* ---- asynchronous requests ------------------------------------------- */

/*
 * Completion callback: runs on the AioContext's thread, inside
 * vmio_aio_run_completions().
 */
static void vmio_task_done(void *opaque, int result)
{
    VmioTask *task = opaque;

    task->ret = result;
    if (result < 0) {
        task->errmsg = g_strdup(vmio_errmsg());
    }
    task->complete = true;
    aio_co_wake(task->co);
}

/*
 * Waits for a submitted request (submitted says whether the submission
 * succeeded: if not, the callback never runs).
 */
static int coroutine_fn vmio_co_wait(VmioTask *task, int submitted)
{
    if (submitted < 0) {
        task->ret = submitted;
        task->errmsg = g_strdup(vmio_errmsg());
    } else {
        while (!task->complete) {
            qemu_coroutine_yield();
        }
    }
    /* ENOTSUP is expected (discard, write zeroes): the block layer copes. */
    if (task->ret < 0 && task->ret != -ENOTSUP) {
        error_report("vmio: %s", task->errmsg && *task->errmsg ?
                     task->errmsg : strerror(-task->ret));
    }
    g_free(task->errmsg);
    return task->ret;
}

/*
 * Reads or writes qiov at offset (a bounce buffer when qiov has more
 * segments than libvmio takes).
 */
static int coroutine_fn vmio_co_rw(BlockDriverState *bs, bool write,
                                   uint64_t offset, QEMUIOVector *qiov,
                                   unsigned req_flags)
{
    BDRVVmioState *s = bs->opaque;
    VmioTask task = { .co = qemu_coroutine_self() };
    const struct iovec *iov = qiov->iov;
    int niov = qiov->niov;
    struct iovec bounce = { .iov_base = NULL };
    int ret;

    if (qiov->size == 0) {
        return 0;
    }
    if (niov > IOV_MAX) {
        bounce.iov_len = qiov->size;
        bounce.iov_base = qemu_try_blockalign(bs, qiov->size);
        if (!bounce.iov_base) {
            return -ENOMEM;
        }
        if (write) {
            qemu_iovec_to_buf(qiov, 0, bounce.iov_base, qiov->size);
        }
        iov = &bounce;
        niov = 1;
    }
    if (write) {
        ret = vmio_aio_pwritev(s->file, iov, niov, offset, req_flags,
                               vmio_task_done, &task);
    } else {
        ret = vmio_aio_preadv(s->file, iov, niov, offset, vmio_task_done,
                              &task);
    }
    ret = vmio_co_wait(&task, ret);
    if (bounce.iov_base) {
        if (ret == 0 && !write) {
            qemu_iovec_from_buf(qiov, 0, bounce.iov_base, qiov->size);
        }
        qemu_vfree(bounce.iov_base);
    }
    return ret;
}

static int coroutine_fn vmio_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QEMUIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    BDRVVmioState *s = bs->opaque;
    QEMUIOVector head;
    uint64_t valid;
    int ret;

    if (offset + bytes <= s->size) {
        return vmio_co_rw(bs, false, offset, qiov, 0);
    }
    /*
     * Past the end, as the block layer asks for the last partial sector
     * of an image whose size is not a multiple of 512: read what there is,
     * the rest reads as zeroes.
     */
    vmio_co_refresh_size(bs);
    valid = s->size > offset ? MIN(s->size - offset, (uint64_t)bytes) : 0;
    ret = 0;
    if (valid > 0) {
        qemu_iovec_init_slice(&head, qiov, 0, valid);
        ret = vmio_co_rw(bs, false, offset, &head, 0);
        qemu_iovec_destroy(&head);
    }
    if (ret == 0 && valid < bytes) {
        qemu_iovec_memset(qiov, valid, 0, bytes - valid);
    }
    return ret;
}

static int coroutine_fn vmio_co_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, QEMUIOVector *qiov,
                                        BdrvRequestFlags flags)
{
    int ret = vmio_co_grow(bs, offset + bytes);

    if (ret < 0) {
        return ret;
    }
    return vmio_co_rw(bs, true, offset, qiov,
                      (flags & BDRV_REQ_FUA) ? VMIO_REQ_FUA : 0);
}

static int coroutine_fn vmio_co_flush(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;
    VmioTask task = { .co = qemu_coroutine_self() };

    if (!(s->caps & VMIO_CAP_FLUSH)) {
        /* Nothing to flush: the backend has no volatile cache. */
        return 0;
    }
    return vmio_co_wait(&task, vmio_aio_flush(s->file, vmio_task_done, &task));
}

static int coroutine_fn vmio_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes)
{
    BDRVVmioState *s = bs->opaque;
    VmioTask task = { .co = qemu_coroutine_self() };

    if (!(s->caps & VMIO_CAP_DISCARD)) {
        return -ENOTSUP;
    }
    /* Nothing to discard past the end. */
    if (offset >= s->size) {
        return 0;
    }
    bytes = MIN((uint64_t)bytes, s->size - offset);
    if (bytes == 0) {
        return 0;
    }
    return vmio_co_wait(&task, vmio_aio_discard(s->file, offset, bytes,
                                                vmio_task_done, &task));
}

static int coroutine_fn vmio_co_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    BDRVVmioState *s = bs->opaque;
    VmioTask task = { .co = qemu_coroutine_self() };
    unsigned req_flags = 0;
    int ret;

    if (!(s->caps & VMIO_CAP_WRITE_ZEROES)) {
        return -ENOTSUP;        /* the block layer writes zeroed buffers */
    }
    if (bytes == 0) {
        return 0;
    }
    ret = vmio_co_grow(bs, offset + bytes);
    if (ret < 0) {
        return ret;
    }
    if (flags & BDRV_REQ_MAY_UNMAP) {
        req_flags |= VMIO_REQ_MAY_TRIM;
    }
    if (flags & BDRV_REQ_FUA) {
        req_flags |= VMIO_REQ_FUA;
    }
    return vmio_co_wait(&task, vmio_aio_write_zeroes(s->file, offset, bytes,
                                                     req_flags, vmio_task_done,
                                                     &task));
}

static int coroutine_fn vmio_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    BDRVVmioState *s = bs->opaque;
    VmioSyncReq req = {
        .op = VMIO_SYNC_BLOCK_STATUS,
        .offset = offset,
        .length = bytes,
    };
    int ret;

    *pnum = bytes;
    *map = offset;
    *file = bs;
    if (offset >= s->size) {
        /* The tail of the last sector, past the end: reads as zeroes. */
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    if (!want_zero || !(s->caps & VMIO_CAP_BLOCK_STATUS) || bytes == 0) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    ret = vmio_co_run_sync(bs, &req);
    g_free(req.errmsg);
    if (ret < 0) {
        /* "All data" is always a correct answer. */
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    *pnum = MIN((int64_t)req.out_length, bytes);
    if (req.out_type == VMIO_EXTENT_HOLE) {
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int coroutine_fn vmio_co_truncate(BlockDriverState *bs, int64_t offset,
                                         bool exact, PreallocMode prealloc,
                                         BdrvRequestFlags flags, Error **errp)
{
    BDRVVmioState *s = bs->opaque;
    VmioSyncReq req = { .op = VMIO_SYNC_TRUNCATE, .offset = offset };
    int ret;

    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "vmio: unsupported preallocation mode '%s'",
                   PreallocMode_str(prealloc));
        return -ENOTSUP;
    }
    qemu_co_mutex_lock(&s->resize_lock);
    ret = vmio_co_run_sync(bs, &req);
    if (ret == 0) {
        s->size = offset;
    } else if (ret == -ENOTSUP && !exact) {
        /* A device that cannot be resized is fine if it is large enough. */
        VmioSyncReq sz = { .op = VMIO_SYNC_GET_SIZE };

        if (vmio_co_run_sync(bs, &sz) == 0 && sz.out_length >= offset) {
            s->size = sz.out_length;
            ret = 0;
        }
        g_free(sz.errmsg);
    }
    qemu_co_mutex_unlock(&s->resize_lock);
    if (ret < 0) {
        error_setg(errp, "%s", req.errmsg ? req.errmsg : strerror(-ret));
    }
    g_free(req.errmsg);
    return ret;
}

/* ---- metadata --------------------------------------------------------- */

static int64_t vmio_getlength(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;
    uint64_t size;
    int ret = vmio_get_size(s->file, &size);

    if (ret < 0) {
        error_report("vmio: %s", vmio_errmsg());
        return ret;
    }
    if (size > INT64_MAX) {
        return -EFBIG;
    }
    s->size = size;
    return size;
}

/*
 * 1 only if the image reads as zeroes now, from the extents libvmio
 * reports: true for an image qemu-img has just created (a hole), false for
 * a block device or a backend without extent information.
 */
static int vmio_has_zero_init(BlockDriverState *bs)
{
    BDRVVmioState *s = bs->opaque;
    uint64_t size, offset = 0, len;
    int type;

    if (!(s->caps & VMIO_CAP_BLOCK_STATUS) ||
        vmio_get_size(s->file, &size) < 0) {
        return 0;
    }
    while (offset < size) {
        if (vmio_block_status(s->file, offset, size - offset, &len,
                              &type) < 0 || type != VMIO_EXTENT_HOLE) {
            return 0;
        }
        offset += len;
    }
    return 1;
}

static void vmio_refresh_limits(BlockDriverState *bs, Error **errp)
{
    /*
     * Byte granularity (libvmio bounces unaligned O_DIRECT requests itself)
     * and no transfer limit: vmio:// splits large requests to the server's
     * maximum. libvmio takes at most IOV_MAX segments per request.
     */
    bs->bl.request_alignment = 1;
    bs->bl.max_iov = IOV_MAX;
}

/* ---- create ------------------------------------------------------------ */

static int coroutine_fn vmio_co_create_opts(BlockDriver *drv,
                                            const char *filename,
                                            QemuOpts *opts, Error **errp)
{
    const char *uri = vmio_uri_of_filename(filename);
    uint64_t size, cur;
    char *secret_file;
    vmio_file *file = NULL;
    int ret;

    size = ROUND_UP(qemu_opt_get_size_del(opts, BLOCK_OPT_SIZE, 0),
                    BDRV_SECTOR_SIZE);
    secret_file = qemu_opt_get_del(opts, VMIO_OPT_SECRET_FILE);
    if (!*uri) {
        error_setg(errp, "vmio: '%s' names no image", filename);
        ret = -EINVAL;
        goto out;
    }

    ret = vmio_open_uri(uri, VMIO_O_CREATE | VMIO_O_TRUNC, secret_file, 0, 0,
                        size, &file, errp);
    if (ret < 0) {
        goto out;
    }
    /* create_size sizes new files only; an existing one was truncated. */
    ret = vmio_get_size(file, &cur);
    if (ret == 0 && cur != size) {
        ret = vmio_truncate(file, size);
    }
    if (ret < 0) {
        error_setg(errp, "%s", vmio_errmsg());
    }

out:
    if (file) {
        vmio_close(file);
    }
    g_free(secret_file);
    return ret;
}

/* ---- registration ------------------------------------------------------ */

#define VMIO_DRIVER_COMMON                                              \
    .instance_size              = sizeof(BDRVVmioState),                \
    .bdrv_parse_filename        = vmio_parse_filename,                  \
    .bdrv_file_open             = vmio_file_open,                       \
    .bdrv_close                 = vmio_close_bs,                        \
    .bdrv_reopen_prepare        = vmio_reopen_prepare,                  \
    .bdrv_reopen_commit         = vmio_reopen_commit,                   \
    .bdrv_reopen_abort          = vmio_reopen_abort,                    \
    .bdrv_co_create_opts        = vmio_co_create_opts,                  \
    .create_opts                = &vmio_create_opts,                    \
    .bdrv_has_zero_init         = vmio_has_zero_init,                   \
    .bdrv_getlength             = vmio_getlength,                       \
    .bdrv_co_truncate           = vmio_co_truncate,                     \
    .bdrv_refresh_limits        = vmio_refresh_limits,                  \
    .bdrv_co_preadv             = vmio_co_preadv,                       \
    .bdrv_co_pwritev            = vmio_co_pwritev,                      \
    .bdrv_co_flush_to_disk      = vmio_co_flush,                        \
    .bdrv_co_pdiscard           = vmio_co_pdiscard,                     \
    .bdrv_co_pwrite_zeroes      = vmio_co_pwrite_zeroes,                \
    .bdrv_co_block_status       = vmio_co_block_status,                 \
    .bdrv_detach_aio_context    = vmio_detach_aio_context,              \
    .bdrv_attach_aio_context    = vmio_attach_aio_context,              \
    .bdrv_refresh_filename      = vmio_refresh_filename,                \
    .bdrv_dirname               = vmio_dirname,                         \
    .strong_runtime_opts        = vmio_strong_runtime_opts

static BlockDriver bdrv_vmio = {
    .format_name    = "vmio",
    .protocol_name  = "vmio",
    VMIO_DRIVER_COMMON,
};

/* gfarm:///path, served by libvmio's gfarm:// backend. */
static BlockDriver bdrv_vmio_gfarm = {
    .format_name    = "vmio-gfarm",
    .protocol_name  = "gfarm",
    VMIO_DRIVER_COMMON,
};

static void bdrv_vmio_init(void)
{
    bdrv_register(&bdrv_vmio);
    if (vmio_supports(VMIO_FEATURE_GFARM) == 1) {
        bdrv_register(&bdrv_vmio_gfarm);
    }
}

block_init(bdrv_vmio_init);
