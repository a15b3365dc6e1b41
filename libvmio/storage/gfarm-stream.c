/* Read-ahead and write-behind for sequential streams; see gfarm-stream.h. */
#include <stdlib.h>
#include <string.h>

#include <vmio/storage.h>

#include "storage/gfarm-stream.h"

#define API "gfarm"
#define STREAM_BUF (1u << 20)      /* write-behind and read-ahead unit */
#define STREAM_SMALL (64u << 10)   /* larger writes go straight through */
#define STREAM_MAX_READ (4u << 20) /* larger reads go straight through */

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
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
    int ok = st->wb[0] && st->wb[1];
    for (int i = 0; i < GFSTREAM_WINDOWS; i++)
        ok = ok && (st->win[i].buf = malloc(STREAM_BUF)) != NULL;
    if (!ok) {
        free(st->wb[0]);
        free(st->wb[1]);
        for (int i = 0; i < GFSTREAM_WINDOWS; i++)
            free(st->win[i].buf);
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
    for (int i = 0; i < st->ra_threads; i++)
        pthread_join(st->ra_thr[i], NULL);
    free(st->wb[0]);
    free(st->wb[1]);
    for (int i = 0; i < GFSTREAM_WINDOWS; i++)
        free(st->win[i].buf);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    return r;
}

/* ---- read-ahead windows ---- */

static int buffered_overlap(const struct gfstream *st, uint64_t off, uint64_t len)
{
    return overlaps(off, len, st->woff, st->wlen) ||
           (st->fl_busy && overlaps(off, len, st->fl_off, st->fl_len));
}

/* Forget the windows overlapping [off, off+len); one being fetched is
 * marked stale and dropped when its fetch completes, and a reader waiting
 * for it reads directly at once. Lock held. */
static void invalidate(struct gfstream *st, uint64_t off, uint64_t len)
{
    int wake = 0;
    for (int i = 0; i < GFSTREAM_WINDOWS; i++) {
        struct gfstream_win *w = &st->win[i];
        if (w->state == GFSTREAM_WIN_EMPTY || !overlaps(off, len, w->off, w->len))
            continue;
        if (w->state == GFSTREAM_WIN_FETCHING) {
            wake |= !w->stale;
            w->stale = 1;
        } else {
            w->state = GFSTREAM_WIN_EMPTY;
        }
    }
    if (wake)
        pthread_cond_broadcast(&st->cond);
}

static void *fetcher(void *arg)
{
    struct gfstream *st = arg;
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (!st->ra_nq && !st->quit)
            pthread_cond_wait(&st->cond, &st->lock);
        if (!st->ra_nq)
            break;
        struct gfstream_win *w = &st->win[st->ra_queue[--st->ra_nq]];
        struct iovec v = { w->buf, w->len };
        uint64_t off = w->off;
        pthread_mutex_unlock(&st->lock);
        int r = st->io.read(st->io.ctx, &v, 1, v.iov_len, off);
        pthread_mutex_lock(&st->lock);
        w->state = (r == 0 && !w->stale) ? GFSTREAM_WIN_READY : GFSTREAM_WIN_EMPTY;
        w->stale = 0;
        pthread_cond_broadcast(&st->cond);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* The usable window starting at woff, or -1. */
static int find_win(const struct gfstream *st, uint64_t woff)
{
    for (int i = 0; i < GFSTREAM_WINDOWS; i++) {
        const struct gfstream_win *w = &st->win[i];
        if (w->state != GFSTREAM_WIN_EMPTY && !w->stale && w->off == woff)
            return i;
    }
    return -1;
}

/* Start fetching the window at woff in the background. A prefetch only
 * takes an empty window or one behind the reader (at < cur); a demand
 * fetch may take any window not being fetched. Returns its index or -1.
 * Lock held. */
static int start_fetch(struct gfstream *st, uint64_t woff, uint64_t cur, int demand)
{
    if (woff >= st->size)
        return -1;
    size_t len = (size_t)VMIO_MIN((uint64_t)STREAM_BUF, st->size - woff);
    if (buffered_overlap(st, woff, len))
        return -1;       /* never read around buffered writes */
    int victim = -1;
    for (int i = 0; i < GFSTREAM_WINDOWS; i++) {
        const struct gfstream_win *w = &st->win[i];
        if (w->state == GFSTREAM_WIN_EMPTY) {
            victim = i;
            break;
        }
        if (w->state != GFSTREAM_WIN_READY || (!demand && w->off >= cur))
            continue;
        if (victim < 0 || w->used < st->win[victim].used)
            victim = i;
    }
    if (victim < 0)
        return -1;
    if (st->ra_threads < GFSTREAM_WINDOWS &&
        pthread_create(&st->ra_thr[st->ra_threads], NULL, fetcher, st) == 0)
        st->ra_threads++;
    if (st->ra_threads == 0)
        return -1;
    struct gfstream_win *w = &st->win[victim];
    w->off = woff;
    w->len = len;
    w->state = GFSTREAM_WIN_FETCHING;
    w->stale = 0;
    w->used = ++st->tick;
    st->ra_queue[st->ra_nq++] = victim;
    pthread_cond_broadcast(&st->cond);
    return victim;
}

/* Write out buffered data overlapping [off, off+len) before a request
 * that must see or order after it. A deferred write error is returned
 * (message restored) but left for the next flush. Lock held. */
static int drain_overlap(struct gfstream *st, uint64_t off, uint64_t len)
{
    if (!buffered_overlap(st, off, len))
        return 0;
    int r = drain_locked(st);
    if (r == 0 && st->werr) {
        r = st->werr;
        vmio_error_restore(&st->wmsg);
    }
    return r;
}

/* Serve [off, off+total) from windows, fetching the missing ones and
 * prefetching those after it. 0 when served, 1 to read directly. */
static int read_windows(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                        uint64_t off)
{
    size_t done = 0;
    while (done < total) {
        uint64_t pos = off + done;
        uint64_t woff = pos - pos % STREAM_BUF;
        int i = find_win(st, woff);
        if (i < 0) {
            size_t len = (size_t)VMIO_MIN((uint64_t)STREAM_BUF, st->size - woff);
            if (buffered_overlap(st, woff, len) && (drain_locked(st) < 0 || st->werr))
                return 1;
            if ((i = start_fetch(st, woff, woff, 1)) < 0)
                return 1;
        }
        for (int k = 1; k < GFSTREAM_WINDOWS; k++) {
            uint64_t next = woff + (uint64_t)k * STREAM_BUF;
            if (next >= st->size)
                break;
            if (find_win(st, next) < 0 && start_fetch(st, next, woff, 0) < 0)
                break;
        }
        struct gfstream_win *w = &st->win[i];
        while (w->state == GFSTREAM_WIN_FETCHING && !w->stale)
            pthread_cond_wait(&st->cond, &st->lock);
        if (w->state != GFSTREAM_WIN_READY || w->stale || w->off != woff ||
            pos >= w->off + w->len)
            return 1;      /* failed, invalidated or reused: read directly */
        size_t n = (size_t)VMIO_MIN((uint64_t)(total - done), w->off + w->len - pos);
        vmio_buf_to_iov(iov, iovcnt, done, w->buf + (pos - w->off), n);
        w->used = ++st->tick;
        done += n;
    }
    return 0;
}

int gfstream_read(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                  uint64_t off)
{
    pthread_mutex_lock(&st->lock);
    /* Buffered writes first, so that reads see them; if one of them
     * failed, the data here may be stale: say so. */
    int r = drain_overlap(st, off, total);
    if (r < 0) {
        pthread_mutex_unlock(&st->lock);
        return r;
    }
    uint64_t woff = off - off % STREAM_BUF;
    int in_window = find_win(st, woff) >= 0;
    int sequential = off == st->rend || in_window;
    if (sequential && total <= STREAM_MAX_READ && off + total <= st->size &&
        (total <= STREAM_SMALL || off == st->rend) &&
        read_windows(st, iov, iovcnt, total, off) == 0) {
        st->rend = off + total;
        st->ra_hits++;
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    st->rend = off + total;
    pthread_mutex_unlock(&st->lock);
    return st->io.read(st->io.ctx, iov, iovcnt, total, off);
}

int gfstream_read_bypass(struct gfstream *st, size_t total, uint64_t off)
{
    pthread_mutex_lock(&st->lock);
    int in_window = find_win(st, off - off % STREAM_BUF) >= 0;
    int ok = off != st->rend && !in_window && !buffered_overlap(st, off, total);
    if (ok)
        st->rend = off + total;
    pthread_mutex_unlock(&st->lock);
    return ok;
}

int gfstream_write_bypass(struct gfstream *st, size_t total, uint64_t off, int fua)
{
    pthread_mutex_lock(&st->lock);
    int small_seq = total <= STREAM_SMALL && !fua &&
                    (off == st->wend || (st->wlen && off == st->woff + st->wlen));
    int ok = !st->werr && !small_seq && !buffered_overlap(st, off, total);
    if (ok) {
        invalidate(st, off, total);
        st->wend = off + total;
    }
    pthread_mutex_unlock(&st->lock);
    return ok;
}

void gfstream_write_bypassed(struct gfstream *st, size_t total, uint64_t off)
{
    pthread_mutex_lock(&st->lock);
    invalidate(st, off, total);
    pthread_mutex_unlock(&st->lock);
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
    invalidate(st, off, total);
    int small = total <= STREAM_SMALL && !fua;
    if (small && st->wlen && off == st->woff + st->wlen && st->wlen + total <= STREAM_BUF) {
        vmio_iov_to_buf(st->wb[st->cur] + st->wlen, iov, iovcnt, 0, total);
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
        invalidate(st, off, total);
        vmio_iov_to_buf(st->wb[st->cur], iov, iovcnt, 0, total);
        st->woff = off;
        st->wlen = total;
        st->wend = off + total;
        st->staged++;
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    /* Straight through, after any buffered write it overlaps. */
    int dr = drain_overlap(st, off, total);
    if (dr < 0) {
        pthread_mutex_unlock(&st->lock);
        return dr;
    }
    st->wend = off + total;
    pthread_mutex_unlock(&st->lock);
    int r = st->io.write(st->io.ctx, iov, iovcnt, total, off, fua ? VMIO_REQ_FUA : 0);
    /* A read-ahead that ran while this write was on its way may hold the
     * old bytes. */
    pthread_mutex_lock(&st->lock);
    invalidate(st, off, total);
    pthread_mutex_unlock(&st->lock);
    return r;
}

int gfstream_drain(struct gfstream *st)
{
    pthread_mutex_lock(&st->lock);
    int r = drain_locked(st);
    if (r == 0)
        r = take_error(st);
    /* A flush also forgets the read-ahead: writes of other clients are
     * seen from here on. */
    invalidate(st, 0, UINT64_MAX);
    pthread_mutex_unlock(&st->lock);
    return r;
}

int gfstream_resize_begin(struct gfstream *st)
{
    return gfstream_drain(st);      /* also drops every window */
}

void gfstream_resize_end(struct gfstream *st, uint64_t size)
{
    pthread_mutex_lock(&st->lock);
    st->size = size;
    invalidate(st, 0, UINT64_MAX);
    pthread_mutex_unlock(&st->lock);
}
