/* Read-ahead and write-behind for sequential streams; see gfarm-stream.h. */
#include <stdlib.h>
#include <string.h>

#include <vmio/storage.h>

#include "storage/gfarm-stream.h"

#define API "gfarm"
#define STREAM_BUF (1u << 20)      /* write-behind and read-ahead unit */
#define STREAM_SMALL (64u << 10)   /* larger requests go straight through */

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

static void copy_in(uint8_t *dst, const struct iovec *iov, int iovcnt, size_t total)
{
    for (int i = 0; i < iovcnt && total > 0; i++) {
        size_t k = VMIO_MIN(iov[i].iov_len, total);
        memcpy(dst, iov[i].iov_base, k);
        dst += k;
        total -= k;
    }
}

static void copy_out(const struct iovec *iov, int iovcnt, const uint8_t *src, size_t total)
{
    for (int i = 0; i < iovcnt && total > 0; i++) {
        size_t k = VMIO_MIN(iov[i].iov_len, total);
        memcpy(iov[i].iov_base, src, k);
        src += k;
        total -= k;
    }
}

static void *writer(void *arg)
{
    struct gfstream *st = arg;
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (!st->fl_pending && !st->quit)
            pthread_cond_wait(&st->cond, &st->lock);
        if (!st->fl_pending)
            break;
        st->fl_pending = 0;
        struct iovec v = { st->wb[!st->cur], st->fl_len };
        uint64_t off = st->fl_off;
        pthread_mutex_unlock(&st->lock);
        int r = st->io.write(st->io.ctx, &v, 1, v.iov_len, off, 0);
        struct vmio_error_copy e;
        if (r < 0)
            vmio_error_save(&e);
        pthread_mutex_lock(&st->lock);
        if (r < 0 && !st->werr) {
            st->werr = r;
            st->wmsg = e;
        }
        st->fl_busy = 0;
        pthread_cond_broadcast(&st->cond);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* Hand the filling buffer to the writer thread. Lock held. */
static int push(struct gfstream *st)
{
    if (st->wlen == 0)
        return 0;
    while (st->fl_busy)
        pthread_cond_wait(&st->cond, &st->lock);
    if (!st->thr_started) {
        int e = pthread_create(&st->thr, NULL, writer, st);
        if (e) {
            /* No thread: write it here, synchronously. */
            struct iovec v = { st->wb[st->cur], st->wlen };
            int r = st->io.write(st->io.ctx, &v, 1, st->wlen, st->woff, 0);
            st->wlen = 0;
            if (r < 0 && !st->werr) {
                /* Acknowledged data was lost: the next flush must say so. */
                st->werr = r;
                vmio_error_save(&st->wmsg);
            }
            return r;
        }
        st->thr_started = 1;
    }
    st->fl_off = st->woff;
    st->fl_len = st->wlen;
    st->fl_busy = st->fl_pending = 1;
    st->cur ^= 1;
    st->wlen = 0;
    pthread_cond_broadcast(&st->cond);
    return 0;
}

/* Everything buffered reaches gfsd. Lock held. */
static int drain_locked(struct gfstream *st)
{
    int r = push(st);
    while (st->fl_busy)
        pthread_cond_wait(&st->cond, &st->lock);
    return r;
}

static int take_error(struct gfstream *st)
{
    int r = st->werr;
    if (r < 0) {
        vmio_error_restore(&st->wmsg);
        st->werr = 0;
    }
    return r;
}

int gfstream_init(struct gfstream *st, const struct gfstream_io *io, uint64_t size)
{
    memset(st, 0, sizeof *st);
    st->io = *io;
    st->size = size;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    st->wb[0] = malloc(STREAM_BUF);
    st->wb[1] = malloc(STREAM_BUF);
    st->rb = malloc(STREAM_BUF);
    if (!st->wb[0] || !st->wb[1] || !st->rb) {
        free(st->wb[0]);
        free(st->wb[1]);
        free(st->rb);
        pthread_mutex_destroy(&st->lock);
        pthread_cond_destroy(&st->cond);
        return vmio_set_error(API, ENOMEM, "out of memory for stream buffers");
    }
    return 0;
}

int gfstream_destroy(struct gfstream *st)
{
    pthread_mutex_lock(&st->lock);
    int r = drain_locked(st);
    if (r == 0)
        r = take_error(st);
    st->quit = 1;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    if (st->thr_started)
        pthread_join(st->thr, NULL);
    free(st->wb[0]);
    free(st->wb[1]);
    free(st->rb);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    return r;
}

int gfstream_read(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                  uint64_t off)
{
    pthread_mutex_lock(&st->lock);
    /* Buffered writes first, so that reads see them. */
    if (overlaps(off, total, st->woff, st->wlen) ||
        (st->fl_busy && overlaps(off, total, st->fl_off, st->fl_len))) {
        int r = drain_locked(st);
        if (r == 0 && st->werr) {
            /* The data here may be stale: say so, and leave the error
             * for the next flush (a read does not clear it). */
            r = st->werr;
            vmio_error_restore(&st->wmsg);
        }
        if (r < 0) {
            pthread_mutex_unlock(&st->lock);
            return r;
        }
    }
    if (st->rlen && off >= st->roff && off + total <= st->roff + st->rlen) {
        copy_out(iov, iovcnt, st->rb + (off - st->roff), total);
        st->rend = off + total;
        st->ra_hits++;
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    if (total <= STREAM_SMALL && off == st->rend && off < st->size) {
        size_t len = (size_t)VMIO_MIN((uint64_t)STREAM_BUF, st->size - off);
        if (len >= total && (overlaps(off, len, st->woff, st->wlen) ||
                             (st->fl_busy && overlaps(off, len, st->fl_off, st->fl_len)))) {
            /* The window must not read around buffered writes. Draining
             * waits unlocked: if another thread staged one there
             * meanwhile, read only what was asked this time. */
            if (drain_locked(st) < 0 || st->werr || overlaps(off, len, st->woff, st->wlen))
                len = 0;
        }
        if (len >= total) {
            struct iovec v = { st->rb, len };
            st->rlen = 0;
            int r = st->io.read(st->io.ctx, &v, 1, len, off);
            if (r == 0) {
                st->roff = off;
                st->rlen = len;
                copy_out(iov, iovcnt, st->rb, total);
                st->rend = off + total;
                pthread_mutex_unlock(&st->lock);
                return 0;
            }
            /* e.g. another client shrank the file: read only what was asked */
        }
    }
    st->rend = off + total;
    pthread_mutex_unlock(&st->lock);
    return st->io.read(st->io.ctx, iov, iovcnt, total, off);
}

int gfstream_write(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                   uint64_t off, int fua)
{
    pthread_mutex_lock(&st->lock);
    if (st->werr) {
        /* A background write failed: report it now (flush reports it too). */
        int r = st->werr;
        vmio_error_restore(&st->wmsg);
        pthread_mutex_unlock(&st->lock);
        return r;
    }
    if (overlaps(off, total, st->roff, st->rlen))
        st->rlen = 0;
    int small = total <= STREAM_SMALL && !fua;
    if (small && st->wlen && off == st->woff + st->wlen && st->wlen + total <= STREAM_BUF) {
        copy_in(st->wb[st->cur] + st->wlen, iov, iovcnt, total);
        st->wlen += total;
        st->wend = off + total;
        st->staged++;
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    if (small && off == st->wend) {
        int r = push(st);
        if (r < 0) {
            pthread_mutex_unlock(&st->lock);
            return r;
        }
        /* push() may have waited unlocked while a read-ahead filled a
         * window over this range. */
        if (overlaps(off, total, st->roff, st->rlen))
            st->rlen = 0;
        copy_in(st->wb[st->cur], iov, iovcnt, total);
        st->woff = off;
        st->wlen = total;
        st->wend = off + total;
        st->staged++;
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    /* Straight through, after any buffered write it overlaps. */
    if (overlaps(off, total, st->woff, st->wlen) ||
        (st->fl_busy && overlaps(off, total, st->fl_off, st->fl_len))) {
        int r = drain_locked(st);
        if (r == 0 && st->werr) {
            r = st->werr;
            vmio_error_restore(&st->wmsg);
        }
        if (r < 0) {
            pthread_mutex_unlock(&st->lock);
            return r;
        }
    }
    st->wend = off + total;
    pthread_mutex_unlock(&st->lock);
    int r = st->io.write(st->io.ctx, iov, iovcnt, total, off, fua ? VMIO_REQ_FUA : 0);
    /* A read-ahead that ran while this write was on its way may hold the
     * old bytes. */
    pthread_mutex_lock(&st->lock);
    if (overlaps(off, total, st->roff, st->rlen))
        st->rlen = 0;
    pthread_mutex_unlock(&st->lock);
    return r;
}

int gfstream_drain(struct gfstream *st)
{
    pthread_mutex_lock(&st->lock);
    int r = drain_locked(st);
    if (r == 0)
        r = take_error(st);
    pthread_mutex_unlock(&st->lock);
    return r;
}

int gfstream_resize_begin(struct gfstream *st)
{
    pthread_mutex_lock(&st->lock);
    int r = drain_locked(st);
    if (r == 0)
        r = take_error(st);
    st->rlen = 0;
    pthread_mutex_unlock(&st->lock);
    return r;
}

void gfstream_resize_end(struct gfstream *st, uint64_t size)
{
    pthread_mutex_lock(&st->lock);
    st->size = size;
    st->rlen = 0;
    pthread_mutex_unlock(&st->lock);
}
