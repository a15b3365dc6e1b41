/* The vmio_file handle, shared by the public entry code (storage.c) and
 * the asynchronous machinery (aio.c). */
#ifndef VMIO_STORAGE_INTERNAL_H
#define VMIO_STORAGE_INTERNAL_H

#include <pthread.h>

#include "storage/backend.h"

struct vmio_aio_req {
    struct vmio_req req;
    struct vmio_file *file;
    const char *api;
    vmio_aio_cb cb;
    void *opaque;
    int result;
    struct vmio_error_copy err;
    struct vmio_aio_req *next;
    struct iovec *iov_copy;
    struct iovec iov_inline[4];
};

struct vmio_file {
    struct vmio_backend_ops ops;
    void *state;
    unsigned flags;
    unsigned caps;
    uint64_t size;                 /* cached; atomic access */

    /* Completions waiting for vmio_aio_run_completions(). */
    int efd;                       /* eventfd: completions queued elsewhere */
    int epfd;                      /* epoll set returned by vmio_aio_fd() */
    int draining;                  /* atomic: vmio_close waits */
    int efd_armed;                 /* atomic: efd was written, not yet read */
    pthread_mutex_t cq_lock;
    struct vmio_aio_req *cq_head, *cq_tail;
    int in_flight;                 /* atomic */
    pthread_mutex_t drain_lock;
    pthread_cond_t drain_cond;     /* signalled when a request completes */

    /* Worker threads for backends without native async submission. */
    pthread_mutex_t wq_lock;
    pthread_cond_t wq_cond;
    struct vmio_aio_req *wq_head, *wq_tail;
    pthread_t *workers;
    unsigned nworkers, workers_wanted;
    int stopping;

    /* Counters (atomic). */
    uint64_t n_reads, n_writes, n_flushes, n_discards, n_zeroes;
    uint64_t bytes_read, bytes_written;
};

/* Submit an async request (native or via workers). */
int vmio_aio_submit(struct vmio_aio_req *ar);
/* Stop the worker threads after waiting for in-flight requests. */
void vmio_aio_shutdown(struct vmio_file *f);
int vmio_aio_init(struct vmio_file *f);
/* Range check against the cached size, refreshing it once. */
int vmio_check_range(const char *api, struct vmio_file *f, uint64_t offset, uint64_t len);
/* Run one request synchronously through the backend's sync ops. */
int vmio_run_sync(struct vmio_file *f, struct vmio_req *r);
/* Argument, flag, mode and range checks shared by sync and async calls;
 * fills r->count. */
int vmio_check_req(const char *api, struct vmio_file *f, struct vmio_req *r);
void vmio_count(struct vmio_file *f, const struct vmio_req *r);

#endif
