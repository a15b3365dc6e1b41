/* Sequential-stream buffering of the gfarm:// backend (cache=stream):
 * read-ahead for small sequential reads and write-behind for small
 * sequential writes, the two things libgfarm's own buffered mode (and so
 * gfarm2fs) does well, without its cost for random I/O: anything that is
 * not a small sequential access goes straight to gfsd, concurrently.
 *
 * Read-ahead keeps up to GFSTREAM_WINDOWS windows of 1 MiB: a sequential
 * read (one that starts where the previous one ended, up to 4 MiB long)
 * is served from them, and the windows after it are fetched in the
 * background, in parallel, while the reader consumes the current one.
 *
 * Semantics (those of QEMU's cache=writeback): a write acknowledged from
 * the write-behind buffer is visible to every later read through this
 * handle at once, reaches gfsd in the background, and is durable after
 * the next flush, which also returns the error of any background write
 * that failed (the next write returns it too). vmio_close() writes out
 * what is buffered and returns such an error. Writes by other clients are
 * seen by reads outside the 1 MiB read-ahead window at once and inside it
 * once this handle writes or flushes; use cache=none for images shared
 * with concurrent writers. */
#ifndef VMIO_STORAGE_GFARM_STREAM_H
#define VMIO_STORAGE_GFARM_STREAM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/internal.h"

#define GFSTREAM_WINDOWS 4
enum { GFSTREAM_WIN_EMPTY, GFSTREAM_WIN_FETCHING, GFSTREAM_WIN_READY };

/* What the stream layer calls below itself. */
struct gfstream_io {
    void *ctx;
    int (*read)(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off);
    int (*write)(void *ctx, const struct iovec *iov, int iovcnt, size_t total, uint64_t off,
                 unsigned req_flags);
};

struct gfstream {
    struct gfstream_io io;
    pthread_mutex_t lock;
    pthread_cond_t cond;

    /* write-behind: wb[cur] is filling; wb[!cur] may be in flight */
    uint8_t *wb[2];
    int cur;
    uint64_t woff;
    size_t wlen;
    int fl_busy, fl_pending;
    uint64_t fl_off;
    size_t fl_len;
    uint64_t wend;            /* end of the last write (sequence detection) */
    int werr;
    struct vmio_error_copy wmsg;
    pthread_t thr;
    int thr_started, quit;

    /* read-ahead */
    struct gfstream_win {
        uint8_t *buf;
        uint64_t off;
        size_t len;
        int state;          /* GFSTREAM_WIN_* */
        int stale;          /* invalidated while being fetched */
        uint64_t used;      /* LRU stamp */
    } win[GFSTREAM_WINDOWS];
    int ra_queue[GFSTREAM_WINDOWS];
    int ra_nq;
    pthread_t ra_thr[GFSTREAM_WINDOWS];
    int ra_threads;
    uint64_t rend, size, tick;

    uint64_t staged, ra_hits;   /* counters (for tests and stats) */
};

int gfstream_init(struct gfstream *st, const struct gfstream_io *io, uint64_t size);
/* Write out what is buffered, stop the thread, free. Returns the error of
 * a background write nobody collected yet. */
int gfstream_destroy(struct gfstream *st);

int gfstream_read(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                  uint64_t off);
/* fua: bypass the buffer (after draining anything it overlaps). */
int gfstream_write(struct gfstream *st, const struct iovec *iov, int iovcnt, size_t total,
                   uint64_t off, int fua);
/* May a read of [off, off+total) go around the stream layer (an
 * asynchronous path of its own)? 1 when it is not part of a sequential
 * stream and no buffered or in-flight write overlaps it; the layer then
 * counts it as the last read for sequence detection. 0: use
 * gfstream_read. */
int gfstream_read_bypass(struct gfstream *st, size_t total, uint64_t off);
/* The same for a write: 1 when it is not a small sequential one and no
 * buffered or in-flight write overlaps it; the windows over it are
 * dropped now, and the caller calls gfstream_write_bypassed() once the
 * write completed (a read-ahead that ran meanwhile may hold old bytes). */
int gfstream_write_bypass(struct gfstream *st, size_t total, uint64_t off, int fua);
void gfstream_write_bypassed(struct gfstream *st, size_t total, uint64_t off);
/* Push everything to gfsd and return (and clear) a deferred error. The
 * caller then syncs. */
int gfstream_drain(struct gfstream *st);
/* Before a truncate: drain and forget the read-ahead; after: new size. */
int gfstream_resize_begin(struct gfstream *st);
void gfstream_resize_end(struct gfstream *st, uint64_t size);

#endif
