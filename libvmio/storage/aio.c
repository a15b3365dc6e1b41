/* The asynchronous storage interface: requests go to the backend's native
 * submit or to a small pool of worker threads; completions are queued on the
 * file and run on the caller's thread by vmio_aio_run_completions().
 *
 * vmio_aio_fd() is an epoll set holding an eventfd (written when another
 * thread queued a completion) and, for backends with native async I/O, the
 * backend's own input (the vmio:// socket): replies are then read on the
 * event loop's thread inside vmio_aio_run_completions(), with no thread
 * hand-off and no eventfd traffic. */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "storage/internal.h"

/* The file whose completions this thread is running, if any: completions
 * queued from inside need no eventfd wake-up. */
static _Thread_local struct vmio_file *running_completions;

int vmio_aio_init(struct vmio_file *f)
{
    f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (f->efd < 0)
        return -errno;
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (f->epfd < 0)
        return -errno;
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = f->efd };
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->efd, &ev) < 0)
        return -errno;
    f->ops.attach_aio(f->state, f->epfd, f->efd);
    return 0;
}

/* Called exactly once per request, on any thread. */
static void aio_complete(struct vmio_req *req, int result)
{
    struct vmio_aio_req *ar = (struct vmio_aio_req *)req;
    struct vmio_file *f = ar->file;
    ar->result = result;
    if (result < 0) {
        vmio_error_reprefix(ar->api, result);
        vmio_error_save(&ar->err);
    } else {
        vmio_count(f, req);
    }
    ar->next = NULL;
    pthread_mutex_lock(&f->cq_lock);
    if (f->cq_tail)
        f->cq_tail->next = ar;
    else
        f->cq_head = ar;
    f->cq_tail = ar;
    pthread_mutex_unlock(&f->cq_lock);
    if (running_completions != f &&
        !__atomic_exchange_n(&f->efd_armed, 1, __ATOMIC_ACQ_REL)) {
        uint64_t one = 1;
        ssize_t n = write(f->efd, &one, sizeof one);
        (void)n;
    }
    if (__atomic_load_n(&f->draining, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&f->drain_lock);
        pthread_cond_broadcast(&f->drain_cond);
        pthread_mutex_unlock(&f->drain_lock);
    }
}

static void *worker_main(void *arg)
{
    struct vmio_file *f = arg;
    pthread_mutex_lock(&f->wq_lock);
    for (;;) {
        while (!f->wq_head && !f->stopping)
            pthread_cond_wait(&f->wq_cond, &f->wq_lock);
        struct vmio_aio_req *ar = f->wq_head;
        if (!ar)
            break;      /* stopping and nothing left */
        f->wq_head = ar->next;
        if (!f->wq_head)
            f->wq_tail = NULL;
        pthread_mutex_unlock(&f->wq_lock);
        vmio_clear_error();
        int r = vmio_run_sync(f, &ar->req);
        aio_complete(&ar->req, r < 0 ? r : 0);
        pthread_mutex_lock(&f->wq_lock);
    }
    pthread_mutex_unlock(&f->wq_lock);
    return NULL;
}

/* Start workers lazily: most handles never use the async API. */
static int start_workers(struct vmio_file *f)
{
    if (f->nworkers)
        return 0;
    f->workers = calloc(f->workers_wanted, sizeof *f->workers);
    if (!f->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < f->workers_wanted; i++) {
        int r = pthread_create(&f->workers[i], NULL, worker_main, f);
        if (r != 0) {
            if (f->nworkers == 0) {
                free(f->workers);
                f->workers = NULL;
                return -r;
            }
            break;
        }
        f->nworkers++;
    }
    return 0;
}

int vmio_aio_submit(struct vmio_aio_req *ar)
{
    struct vmio_file *f = ar->file;
    ar->req.complete = aio_complete;
    __atomic_add_fetch(&f->in_flight, 1, __ATOMIC_SEQ_CST);
    int r = f->ops.submit(f->state, &ar->req);
    if (r == 0)
        return 0;
    if (r != -ENOTSUP) {
        __atomic_sub_fetch(&f->in_flight, 1, __ATOMIC_SEQ_CST);
        return r;
    }
    pthread_mutex_lock(&f->wq_lock);
    r = start_workers(f);
    if (r < 0) {
        pthread_mutex_unlock(&f->wq_lock);
        __atomic_sub_fetch(&f->in_flight, 1, __ATOMIC_SEQ_CST);
        return vmio_set_error_errno(ar->api, -r, "cannot start worker threads");
    }
    ar->next = NULL;
    if (f->wq_tail)
        f->wq_tail->next = ar;
    else
        f->wq_head = ar;
    f->wq_tail = ar;
    pthread_cond_signal(&f->wq_cond);
    pthread_mutex_unlock(&f->wq_lock);
    return 0;
}

void vmio_aio_shutdown(struct vmio_file *f)
{
    /* Wait until every submitted request has completed, reading replies
     * ourselves when the backend needs a receiver. */
    __atomic_store_n(&f->draining, 1, __ATOMIC_RELEASE);
    for (;;) {
        pthread_mutex_lock(&f->cq_lock);
        int pending = 0;
        for (struct vmio_aio_req *a = f->cq_head; a; a = a->next)
            pending++;
        pthread_mutex_unlock(&f->cq_lock);
        if (__atomic_load_n(&f->in_flight, __ATOMIC_SEQ_CST) <= pending)
            break;
        if (f->ops.progress(f->state, 1) > 0)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&f->drain_lock);
        pthread_cond_timedwait(&f->drain_cond, &f->drain_lock, &ts);
        pthread_mutex_unlock(&f->drain_lock);
    }
    pthread_mutex_lock(&f->wq_lock);
    f->stopping = 1;
    pthread_cond_broadcast(&f->wq_cond);
    pthread_mutex_unlock(&f->wq_lock);
    for (unsigned i = 0; i < f->nworkers; i++)
        pthread_join(f->workers[i], NULL);
    f->nworkers = 0;
}

static int aio_common(const char *api, vmio_file *f, struct vmio_req *proto, vmio_aio_cb cb,
                      void *opaque)
{
    vmio_clear_error();
    VMIO_CHECK_ARG(api, f != NULL, EFAULT);
    VMIO_CHECK_ARG(api, cb != NULL, EFAULT);
    int r = vmio_check_req(api, f, proto);
    if (r < 0)
        return r;
    struct vmio_aio_req *ar = calloc(1, sizeof *ar);
    if (!ar)
        return vmio_set_error(api, ENOMEM, "out of memory");
    ar->req = *proto;
    ar->file = f;
    ar->api = api;
    ar->cb = cb;
    ar->opaque = opaque;
    if (proto->iovcnt > 0) {
        /* Callers may reuse their iovec array once submit returns. */
        struct iovec *v = ar->iov_inline;
        if (proto->iovcnt > (int)VMIO_ARRAY_SIZE(ar->iov_inline)) {
            v = ar->iov_copy = malloc(sizeof *v * (size_t)proto->iovcnt);
            if (!v) {
                free(ar);
                return vmio_set_error(api, ENOMEM, "out of memory");
            }
        }
        memcpy(v, proto->iov, sizeof *v * (size_t)proto->iovcnt);
        ar->req.iov = v;
    }
    r = vmio_aio_submit(ar);
    if (r < 0) {
        free(ar->iov_copy);
        free(ar);
        return vmio_error_reprefix(api, r);
    }
    return 0;
}

VMIO_API int vmio_aio_preadv(vmio_file *f, const struct iovec *iov, int iovcnt, uint64_t offset,
                             vmio_aio_cb cb, void *opaque)
{
    struct vmio_req r = { .op = VMIO_OP_READ, .iov = iov, .iovcnt = iovcnt, .offset = offset };
    return aio_common("vmio_aio_preadv", f, &r, cb, opaque);
}

VMIO_API int vmio_aio_pwritev(vmio_file *f, const struct iovec *iov, int iovcnt,
                              uint64_t offset, unsigned flags, vmio_aio_cb cb, void *opaque)
{
    struct vmio_req r = { .op = VMIO_OP_WRITE, .iov = iov, .iovcnt = iovcnt, .offset = offset,
                          .flags = flags };
    return aio_common("vmio_aio_pwritev", f, &r, cb, opaque);
}

VMIO_API int vmio_aio_flush(vmio_file *f, vmio_aio_cb cb, void *opaque)
{
    struct vmio_req r = { .op = VMIO_OP_FLUSH };
    return aio_common("vmio_aio_flush", f, &r, cb, opaque);
}

VMIO_API int vmio_aio_discard(vmio_file *f, uint64_t offset, uint64_t length, vmio_aio_cb cb,
                              void *opaque)
{
    struct vmio_req r = { .op = VMIO_OP_DISCARD, .offset = offset, .length = length };
    if (length == 0)
        return vmio_set_error("vmio_aio_discard", EINVAL, "zero length");
    return aio_common("vmio_aio_discard", f, &r, cb, opaque);
}

VMIO_API int vmio_aio_write_zeroes(vmio_file *f, uint64_t offset, uint64_t length,
                                   unsigned flags, vmio_aio_cb cb, void *opaque)
{
    struct vmio_req r = { .op = VMIO_OP_WRITE_ZEROES, .offset = offset, .length = length,
                          .flags = flags };
    if (length == 0)
        return vmio_set_error("vmio_aio_write_zeroes", EINVAL, "zero length");
    return aio_common("vmio_aio_write_zeroes", f, &r, cb, opaque);
}

VMIO_API int vmio_aio_fd(vmio_file *f)
{
    vmio_clear_error();
    VMIO_CHECK_ARG("vmio_aio_fd", f != NULL, EFAULT);
    return f->epfd;
}

VMIO_API int vmio_aio_run_completions(vmio_file *f)
{
    vmio_clear_error();
    VMIO_CHECK_ARG("vmio_aio_run_completions", f != NULL, EFAULT);
    /* Drain the eventfd before disarming: disarming first would let a
     * completer re-arm and write in between, the read would swallow that
     * write, and the next completer (seeing it armed) would not write:
     * a completion left queued with nothing to wake the event loop. */
    if (__atomic_load_n(&f->efd_armed, __ATOMIC_ACQUIRE)) {
        uint64_t v;
        ssize_t n = read(f->efd, &v, sizeof v);
        (void)n;
        __atomic_store_n(&f->efd_armed, 0, __ATOMIC_SEQ_CST);
    }
    running_completions = f;
    f->ops.progress(f->state, 0);
    running_completions = NULL;
    pthread_mutex_lock(&f->cq_lock);
    struct vmio_aio_req *list = f->cq_head;
    f->cq_head = f->cq_tail = NULL;
    pthread_mutex_unlock(&f->cq_lock);
    int ran = 0;
    while (list) {
        struct vmio_aio_req *ar = list;
        list = ar->next;
        __atomic_sub_fetch(&f->in_flight, 1, __ATOMIC_SEQ_CST);
        if (ar->result < 0)
            vmio_error_restore(&ar->err);
        else
            vmio_clear_error();
        ar->cb(ar->opaque, ar->result);
        free(ar->iov_copy);
        free(ar);
        ran++;
    }
    return ran;
}

VMIO_API int vmio_aio_in_flight(vmio_file *f)
{
    if (!f)
        return vmio_set_error("vmio_aio_in_flight", EFAULT, "file is NULL");
    return __atomic_load_n(&f->in_flight, __ATOMIC_SEQ_CST);
}
