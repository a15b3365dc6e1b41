/* One migration: the pre-copy rounds (producer = the calling thread),
 * encode workers (fetch + analyze, pack + compress), the serial commit of
 * dedup decisions, and the writer thread that sends records in order.
 * See sender.c for the batch life cycle. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/internal.h"
#include "protocol/wire.h"
#include "migrate/dirty.h"
#include "migrate/engine.h"
#include "migrate/gpu.h"
#include "migrate/sender.h"
#include "migrate/stream.h"

#define API "vmio_migrate_send"
#define RESULT_TIMEOUT_MS 120000

enum { B_FREE, B_READY, B_ANALYZING, B_ANALYZED, B_COMMITTED, B_PACKING, B_PACKED };
enum { K_PAGES, K_ROUND };

struct batch {
    int state, kind;
    uint64_t seq;
    uint32_t round, round_flags;
    uint32_t region, n, nz;
    uint64_t *pidx;
    uint8_t *zero;
    uint32_t *slot;
    uint8_t *pages, *refs, *has_ref, *enc;
    struct vmio_mig_page_out *out;
    uint8_t *codec;
    uint64_t *dsrc;
    uint8_t *payload;
    size_t payload_len;
    uint8_t *rawbuf, *cbuf;
    uint64_t *rawpages;
    uint64_t codec_pages[VMIO_MIGRATE_CODEC_COUNT], codec_bytes[VMIO_MIGRATE_CODEC_COUNT];
    uint64_t encode_ns;
    int hashed;                      /* out[].hash valid for non-zero pages */
    struct vmio_mig_gpu_batch *gb;   /* GPU: pages..enc point into it */
};

struct pipe {
    struct vmio_migrate_sender *s;
    struct vmio_transport *t;
    pthread_mutex_t mx;
    pthread_cond_t cv_work, cv_send, cv_free;
    struct batch *pool;
    unsigned npool;
    uint64_t next_seq, next_commit, next_send;
    int committing, stop, failed;
    struct vmio_error_copy err;
    size_t bb;                  /* bytes per batch */
    uint32_t cap_pages;         /* pages per batch at the smallest page size */
    size_t payload_cap, cbuf_cap;
    uint32_t codecs, aflags;
    int use_hash, comp_any;
    struct vmio_mig_dedup dd;
    struct vmio_mig_policy pol;
    struct vmio_mig_ratelimit rl;
    uint64_t rec_seq;
    pthread_t *workers;
    unsigned nworkers;
    struct vmio_mig_comp_ctx *cctx;
    pthread_t writer;
    int writer_started;
    struct vmio_mig_gpu *gpu;       /* NULL: analysis on CPU threads */
};

static int allowed(const struct pipe *p, int codec)
{
    return (p->codecs & VMIO_MIGRATE_MASK(codec)) != 0;
}

static struct batch *slot_of(struct pipe *p, uint64_t seq)
{
    return &p->pool[seq % p->npool];
}

/* Record the first failure (mx held) and wake everyone. */
static void fail_locked(struct pipe *p)
{
    if (!p->failed) {
        p->failed = 1;
        vmio_error_save(&p->err);
    }
    pthread_cond_broadcast(&p->cv_work);
    pthread_cond_broadcast(&p->cv_send);
    pthread_cond_broadcast(&p->cv_free);
}

static void fail(struct pipe *p)
{
    pthread_mutex_lock(&p->mx);
    fail_locked(p);
    pthread_mutex_unlock(&p->mx);
    vmio_transport_shutdown(p->t);
}

/* ---- stage 1: fetch + analyze (parallel) --------------------------------- */

static void analyze(struct pipe *p, struct batch *b)
{
    if (b->kind != K_PAGES)
        return;
    uint64_t t0 = vmio_now_ns();
    struct vmio_mig_sregion *g = &p->s->regions[b->region];
    uint32_t ps = g->page_size;
    int zero_ok = allowed(p, VMIO_MIGRATE_CODEC_ZERO);
    int delta = allowed(p, VMIO_MIGRATE_CODEC_DELTA) && g->dc.nslots;
    b->nz = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const uint8_t *src = g->base + b->pidx[i] * ps;
        uint64_t loc = g->loc0 + b->pidx[i];
        /* A page found zero in live memory and written right after is
         * dirty again, so the check need not use a snapshot. */
        if (zero_ok && vmio_mig_is_zero(src, ps)) {
            b->zero[i] = 1;
            if (delta)
                vmio_mig_dcache_swap(&g->dc, loc, NULL, NULL);
            continue;
        }
        b->zero[i] = 0;
        uint32_t k = b->nz++;
        b->slot[i] = k;
        uint8_t *snap = b->pages + (size_t)k * ps;
        memcpy(snap, src, ps);
        /* Round 0 fills the cache only with its first slots' worth of
         * memory: the direct-mapped cache would keep just one page per slot
         * anyway, and copying every page in costs more than it brings. */
        int keep = b->round > 0 || loc < g->dc.nslots;
        b->has_ref[k] = delta ? (uint8_t)vmio_mig_dcache_swap(&g->dc, loc, keep ? snap : NULL,
                                                              b->refs + (size_t)k * ps)
                              : 0;
    }
    b->hashed = 0;
    if (b->nz && b->gb) {
        b->gb->batch.n = b->nz;
        b->gb->batch.flags = p->aflags;
        b->hashed = p->use_hash;        /* the GPU hashes for free */
        int r = vmio_mig_gpu_analyze(p->gpu, b->gb);
        if (r >= 0)
            r = vmio_mig_gpu_wait(p->gpu, b->gb);
        if (r < 0) {
            vmio_set_error(API, -r, "GPU analysis failed: %s", vmio_errmsg());
            fail(p);
        }
    } else if (b->nz) {
        /* While the policy compresses, RLE pages would join the block
         * anyway: skip the RLE attempt. */
        uint32_t fl = p->aflags & ~VMIO_MIG_A_HASH;
        if (vmio_mig_policy_compressing(&p->pol))
            fl &= ~VMIO_MIG_A_RLE;
        struct vmio_mig_batch vb = {
            .page_size = ps, .n = b->nz, .flags = fl,
            .pages = b->pages, .refs = b->refs, .has_ref = b->has_ref, .out = b->out,
            .enc = b->enc,
        };
        vmio_mig_analyze_cpu(&vb);
        /* The hash only where the policy says it pays (the same digest
         * analyze_cpu would compute with VMIO_MIG_A_HASH). */
        int probe;
        if (p->use_hash && vmio_mig_policy_hash(&p->pol, (uint64_t)b->nz * ps, &probe)) {
            uint64_t h0 = vmio_now_ns(), hb = 0;
            for (uint32_t k = 0; k < b->nz; k++) {
                if (b->out[k].kind == VMIO_MIG_KIND_ZERO)
                    continue;
                vmio_mig_hash(b->pages + (size_t)k * ps, ps, b->out[k].hash);
                hb += ps;
            }
            vmio_mig_policy_note_hash(&p->pol, hb, vmio_now_ns() - h0);
            b->hashed = 1;
        }
    }
    b->encode_ns = vmio_now_ns() - t0;
}

/* ---- stage 2: commit (serial, in stream order) ------------------------ */

/* The receiver applies a record's compressed block first, then its
 * entries in order; so a DEDUP source may be an earlier page of the batch
 * (its new bytes are in place by then) but not a later one. */
static int later_in_batch(const struct vmio_mig_sregion *g, const struct batch *b, uint32_t i,
                          uint64_t src)
{
    if (src <= g->loc0 + b->pidx[i] || src > g->loc0 + b->pidx[b->n - 1])
        return 0;
    uint64_t pg = src - g->loc0;
    uint32_t lo = i + 1, hi = b->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (b->pidx[mid] < pg)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < b->n && b->pidx[lo] == pg;
}

#define DEDUP_ENTRY_BYTES (2u + 3u + 4u + VMIO_MIG_HASH_SIZE)

static void commit(struct pipe *p, struct batch *b)
{
    if (b->kind != K_PAGES)
        return;
    struct vmio_mig_sregion *g = &p->s->regions[b->region];
    uint64_t hashed = 0, found = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        uint64_t loc = g->loc0 + b->pidx[i];
        b->dsrc[i] = UINT64_MAX;
        if (b->zero[i]) {
            b->codec[i] = VMIO_MIGRATE_CODEC_ZERO;
            if (p->use_hash)
                vmio_mig_dedup_set(&p->dd, loc, NULL);
            continue;
        }
        const struct vmio_mig_page_out *o = &b->out[b->slot[i]];
        int c;
        switch (o->kind) {
        case VMIO_MIG_KIND_ZERO:
            c = allowed(p, VMIO_MIGRATE_CODEC_ZERO) ? VMIO_MIGRATE_CODEC_ZERO
                                                    : VMIO_MIGRATE_CODEC_RAW;
            break;
        case VMIO_MIG_KIND_RLE:
            c = VMIO_MIGRATE_CODEC_RLE;
            break;
        case VMIO_MIG_KIND_DELTA:
            c = o->len ? VMIO_MIGRATE_CODEC_DELTA
                : allowed(p, VMIO_MIGRATE_CODEC_SKIP) ? VMIO_MIGRATE_CODEC_SKIP
                                                      : VMIO_MIGRATE_CODEC_RAW;
            break;
        default:
            c = VMIO_MIGRATE_CODEC_RAW;
        }
        if (b->hashed && c != VMIO_MIGRATE_CODEC_ZERO && c != VMIO_MIGRATE_CODEC_SKIP) {
            uint32_t cost = c == VMIO_MIGRATE_CODEC_RAW ? g->page_size : o->len + 4;
            hashed++;
            if (allowed(p, VMIO_MIGRATE_CODEC_SKIP) && vmio_mig_dedup_holds(&p->dd, loc, o->hash)) {
                c = VMIO_MIGRATE_CODEC_SKIP;
                found++;
            } else if (allowed(p, VMIO_MIGRATE_CODEC_DEDUP) && cost > DEDUP_ENTRY_BYTES) {
                uint64_t src = vmio_mig_dedup_find(&p->dd, o->hash);
                if (src != UINT64_MAX && !later_in_batch(g, b, i, src)) {
                    c = VMIO_MIGRATE_CODEC_DEDUP;
                    b->dsrc[i] = src;
                    found++;
                }
            }
        }
        /* What the receiver now holds at loc: zeros, bytes with this
         * digest, or (not hashed) bytes the table does not know. */
        if (p->use_hash)
            vmio_mig_dedup_set(&p->dd, loc, c == VMIO_MIGRATE_CODEC_ZERO || !b->hashed
                                                ? NULL : o->hash);
        b->codec[i] = (uint8_t)c;
    }
    vmio_mig_policy_note_dedup(&p->pol, hashed, found);
}

/* ---- stage 3: pack + compress (parallel) -------------------------------- */

static void loc_to_region(struct pipe *p, uint64_t loc, uint32_t *region, uint64_t *page)
{
    uint32_t lo = 0, hi = p->s->nregions - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (p->s->regions[mid].loc0 <= loc)
            lo = mid;
        else
            hi = mid - 1;
    }
    *region = lo;
    *page = loc - p->s->regions[lo].loc0;
}

static int in_block(int codec)
{
    return codec == VMIO_MIGRATE_CODEC_RAW || codec == VMIO_MIGRATE_CODEC_RLE;
}

static void pack(struct pipe *p, struct batch *b, struct vmio_mig_comp_ctx *cc)
{
    memset(b->codec_pages, 0, sizeof(b->codec_pages));
    memset(b->codec_bytes, 0, sizeof(b->codec_bytes));
    if (b->kind == K_ROUND) {
        vmio_put_le32(b->payload, b->round);
        vmio_put_le32(b->payload + 4, b->round_flags);
        b->payload_len = VMIO_MIG_ROUND_BODY;
        return;
    }
    uint64_t t0 = vmio_now_ns();
    struct vmio_mig_sregion *g = &p->s->regions[b->region];
    uint32_t ps = g->page_size;

    /* Compress the pages still raw when the policy says it pays; RLE pages
     * join them (a compressor does better on a sparse page than RLE). */
    uint32_t nraw = 0;
    uint64_t other = 0;   /* wire bytes of the other entries, roughly */
    for (uint32_t i = 0; i < b->n; i++) {
        int c = b->codec[i];
        nraw += in_block(c);
        other += c == VMIO_MIGRATE_CODEC_DELTA ? b->out[b->slot[i]].len + 4u
                 : c == VMIO_MIGRATE_CODEC_DEDUP ? DEDUP_ENTRY_BYTES
                 : in_block(c) ? 0 : 1;
    }
    int comp = VMIO_MIG_COMP_NONE, choice = VMIO_MIG_COMP_NONE, probe = 0;
    int level = p->s->o.zstd_level;
    long clen = 0;
    if (p->comp_any)
        choice = vmio_mig_policy_choose(&p->pol, (uint64_t)nraw * ps, other, b->encode_ns,
                                        &probe);
    comp = choice;
    if (choice == VMIO_MIG_CHOICE_ZSTD_FAST) {
        comp = VMIO_MIG_COMP_ZSTD;
        level = VMIO_MIG_ZSTD_FAST_LEVEL;
    }
    if (comp != VMIO_MIG_COMP_NONE) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < b->n; i++) {
            if (!in_block(b->codec[i]))
                continue;
            b->rawpages[k] = b->pidx[i];
            memcpy(b->rawbuf + (size_t)k * ps, b->pages + (size_t)b->slot[i] * ps, ps);
            k++;
        }
        uint64_t c0 = vmio_now_ns();
        clen = vmio_mig_compress(cc, comp, level, b->rawbuf, (size_t)nraw * ps, b->cbuf,
                                 p->cbuf_cap);
        vmio_mig_policy_note_comp(&p->pol, choice, (uint64_t)nraw * ps,
                                  clen > 0 ? (uint64_t)clen : (uint64_t)nraw * ps,
                                  vmio_now_ns() - c0);
        if (clen <= 0 || (uint64_t)clen >= (uint64_t)nraw * ps / 100 * 95)
            comp = VMIO_MIG_COMP_NONE;
    }

    uint8_t *out = b->payload;
    size_t n = 0;
    uint64_t cursor = 0;
    if (comp != VMIO_MIG_COMP_NONE) {
        /* first: see later_in_batch() */
        int codec = comp == VMIO_MIG_COMP_ZSTD ? VMIO_MIGRATE_CODEC_ZSTD : VMIO_MIGRATE_CODEC_LZ4;
        size_t m = vmio_mig_block_put(out, (uint8_t)codec, b->rawpages, nraw, b->cbuf,
                                      (size_t)clen);
        n += m;
        b->codec_pages[codec] += nraw;
        b->codec_bytes[codec] += m;
    }
    for (uint32_t i = 0; i < b->n;) {
        int c = b->codec[i];
        struct vmio_mig_entry e = { .codec = (uint8_t)c, .page = b->pidx[i], .count = 1 };
        uint32_t j = i + 1;
        if (in_block(c) && comp != VMIO_MIG_COMP_NONE) {
            i = j;
            continue;                    /* in the compressed block */
        }
        if (c == VMIO_MIGRATE_CODEC_ZERO || c == VMIO_MIGRATE_CODEC_SKIP) {
            while (j < b->n && b->codec[j] == c && b->pidx[j] == b->pidx[j - 1] + 1)
                j++;
            e.count = j - i;
        } else if (c == VMIO_MIGRATE_CODEC_RAW) {
            /* zero[i] implies the ZERO codec, so a RAW page has a snapshot */
            e.data = b->pages + (size_t)b->slot[i] * ps;
        } else if (c == VMIO_MIGRATE_CODEC_RLE || c == VMIO_MIGRATE_CODEC_DELTA) {
            e.data = b->enc + (size_t)b->slot[i] * ps;
            e.len = b->out[b->slot[i]].len;
        } else if (c == VMIO_MIGRATE_CODEC_DEDUP) {
            loc_to_region(p, b->dsrc[i], &e.src_region, &e.src_page);
            e.hash = b->out[b->slot[i]].hash;
        }
        size_t m = vmio_mig_entry_put(out + n, &cursor, &e, ps);
        n += m;
        b->codec_pages[c] += e.count;
        b->codec_bytes[c] += m;
        i = j;
    }
    b->payload_len = n;
    b->encode_ns += vmio_now_ns() - t0;
}

/* ---- workers ----------------------------------------------------------- */

struct worker_arg {
    struct pipe *p;
    unsigned id;
};

static struct batch *find_state(struct pipe *p, int state)
{
    struct batch *best = NULL;
    for (unsigned i = 0; i < p->npool; i++) {
        struct batch *b = &p->pool[i];
        if (b->state == state && (!best || b->seq < best->seq))
            best = b;
    }
    return best;
}

static void try_commit_locked(struct pipe *p)
{
    if (p->committing)
        return;
    p->committing = 1;
    for (;;) {
        struct batch *b = slot_of(p, p->next_commit);
        if (p->next_commit >= p->next_seq || b->seq != p->next_commit ||
            b->state != B_ANALYZED || p->failed)
            break;
        pthread_mutex_unlock(&p->mx);
        commit(p, b);
        pthread_mutex_lock(&p->mx);
        b->state = B_COMMITTED;
        p->next_commit++;
        pthread_cond_broadcast(&p->cv_work);
    }
    p->committing = 0;
}

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    struct pipe *p = wa->p;
    struct vmio_mig_comp_ctx *cc = &p->cctx[wa->id];
    pthread_mutex_lock(&p->mx);
    while (!p->failed && !p->stop) {
        struct batch *b = find_state(p, B_COMMITTED);
        if (b) {
            b->state = B_PACKING;
            pthread_mutex_unlock(&p->mx);
            pack(p, b, cc);
            pthread_mutex_lock(&p->mx);
            b->state = B_PACKED;
            pthread_cond_broadcast(&p->cv_send);
            continue;
        }
        b = find_state(p, B_READY);
        if (b) {
            b->state = B_ANALYZING;
            pthread_mutex_unlock(&p->mx);
            analyze(p, b);
            pthread_mutex_lock(&p->mx);
            b->state = B_ANALYZED;
            try_commit_locked(p);
            continue;
        }
        pthread_cond_wait(&p->cv_work, &p->mx);
    }
    pthread_mutex_unlock(&p->mx);
    return NULL;
}

/* ---- writer ------------------------------------------------------------- */

/* Record a failed send of what ("round 3", "the stream header") to the
 * peer; returns r. The transport leaves no message for a closed
 * connection, so say it. */
static int send_failed(struct pipe *p, int r, const char *what)
{
    const char *why = r == -EPIPE || r == -ECONNRESET ? "the receiver closed the connection"
                      : vmio_errmsg()[0]                ? vmio_errmsg()
                                                        : strerror(-r);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", why);
    vmio_set_error(API, -r, "sending %s to %s: %s", what, p->t->peer, copy);
    return r;
}

static int send_record(struct pipe *p, int type, uint32_t region, const void *payload,
                       size_t len, uint64_t *wire)
{
    uint8_t hdr[VMIO_MIG_REC_HDR];
    struct vmio_mig_rec rec = { .type = (uint8_t)type, .region = region, .seq = p->rec_seq++,
                                .wire_len = (uint32_t)len, .raw_len = (uint32_t)len };
    vmio_mig_rec_pack(hdr, &rec, payload);
    uint64_t t0 = vmio_now_ns();
    struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)payload, len } };
    int r = vmio_transport_sendv(p->t, iov, len ? 2 : 1);
    if (r == 0)   /* the emulated link carries it meanwhile */
        vmio_mig_ratelimit_wait(&p->rl, t0, VMIO_MIG_REC_HDR + len);
    uint64_t dt = vmio_now_ns() - t0;
    if (r < 0)
        return r;
    vmio_mig_policy_note_link(&p->pol, VMIO_MIG_REC_HDR + len, dt);
    if (wire)
        *wire = dt;
    return 0;
}

static void *writer_main(void *arg)
{
    struct pipe *p = arg;
    struct vmio_migrate_sender *s = p->s;
    pthread_mutex_lock(&p->mx);
    for (;;) {
        struct batch *b = slot_of(p, p->next_send);
        if (!p->failed && p->next_send < p->next_seq && b->seq == p->next_send &&
            b->state == B_PACKED) {
            pthread_mutex_unlock(&p->mx);
            uint64_t dt = 0;
            int r = send_record(p, b->kind == K_ROUND ? VMIO_MIG_REC_ROUND : VMIO_MIG_REC_PAGES,
                                b->kind == K_ROUND ? 0 : b->region, b->payload,
                                b->payload_len, &dt);
            if (r < 0) {
                char what[32];
                snprintf(what, sizeof what, "round %u", b->round);
                send_failed(p, r, what);
                fail(p);
                pthread_mutex_lock(&p->mx);
                break;
            }
            pthread_mutex_lock(&p->mx);
            struct vmio_migrate_round_stats *st = &s->stats[b->round];
            st->wire_bytes += VMIO_MIG_REC_HDR + b->payload_len;
            st->send_ns += dt;
            st->encode_ns += b->encode_ns;
            if (b->kind == K_PAGES) {
                st->pages += b->n;
                st->raw_bytes += (uint64_t)b->n * s->regions[b->region].page_size;
                for (int c = 0; c < VMIO_MIGRATE_CODEC_COUNT; c++) {
                    st->codec_pages[c] += b->codec_pages[c];
                    st->codec_bytes[c] += b->codec_bytes[c];
                }
            }
            b->state = B_FREE;
            p->next_send++;
            pthread_cond_broadcast(&p->cv_free);
            continue;
        }
        if (p->failed || p->stop)
            break;
        pthread_cond_wait(&p->cv_send, &p->mx);
    }
    pthread_mutex_unlock(&p->mx);
    return NULL;
}

/* ---- producer ------------------------------------------------------------ */

/* Take the next pool slot (waits for the writer to free it). */
static struct batch *next_batch(struct pipe *p)
{
    pthread_mutex_lock(&p->mx);
    struct batch *b = slot_of(p, p->next_seq);
    while (!p->failed && b->state != B_FREE) {
        if (atomic_load(&p->s->cancel)) {
            vmio_set_error(API, ECANCELED, "cancelled");
            fail_locked(p);
            break;
        }
        pthread_cond_wait(&p->cv_free, &p->mx);
    }
    if (p->failed) {
        pthread_mutex_unlock(&p->mx);
        return NULL;
    }
    pthread_mutex_unlock(&p->mx);
    return b;
}

static void submit(struct pipe *p, struct batch *b)
{
    pthread_mutex_lock(&p->mx);
    b->seq = p->next_seq++;
    b->state = B_READY;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mx);
}

static int dispatch_round(struct pipe *p, uint32_t round, int final, int all)
{
    struct vmio_migrate_sender *s = p->s;
    struct batch *b = next_batch(p);
    if (!b)
        return -1;
    b->kind = K_ROUND;
    b->round = round;
    b->round_flags = final ? VMIO_MIG_ROUND_FINAL : 0;
    b->n = 0;
    submit(p, b);
    for (uint32_t ri = 0; ri < s->nregions; ri++) {
        struct vmio_mig_sregion *g = &s->regions[ri];
        uint32_t per = (uint32_t)VMIO_MAX(p->bb / g->page_size, 1);
        b = NULL;
        for (uint64_t pg = 0; pg < g->npages; pg++) {
            if (!all) {
                uint64_t w = g->bitmap[pg / 64];
                if (!w) {
                    pg |= 63;
                    continue;
                }
                if (!(w >> (pg % 64) & 1))
                    continue;
            }
            if (!b) {
                if (!(b = next_batch(p)))
                    return -1;
                b->kind = K_PAGES;
                b->round = round;
                b->region = ri;
                b->n = 0;
            }
            b->pidx[b->n++] = pg;
            if (b->n == per) {
                submit(p, b);
                b = NULL;
            }
        }
        if (b)
            submit(p, b);
    }
    return 0;
}

static int wait_drained(struct pipe *p)
{
    pthread_mutex_lock(&p->mx);
    while (!p->failed && p->next_send < p->next_seq)
        pthread_cond_wait(&p->cv_free, &p->mx);
    int failed = p->failed;
    pthread_mutex_unlock(&p->mx);
    return failed ? -1 : 0;
}

static void free_pool(struct pipe *p)
{
    for (unsigned i = 0; p->pool && i < p->npool; i++) {
        struct batch *b = &p->pool[i];
        free(b->pidx);
        free(b->zero);
        free(b->slot);
        if (b->gb) {
            vmio_mig_gpu_free_batch(p->gpu, b->gb);
        } else {
            free(b->pages);
            free(b->refs);
            free(b->has_ref);
            free(b->enc);
            free(b->out);
        }
        free(b->codec);
        free(b->dsrc);
        free(b->payload);
        free(b->rawbuf);
        free(b->cbuf);
        free(b->rawpages);
    }
    free(p->pool);
    p->pool = NULL;
}

static int alloc_pool(struct pipe *p)
{
    p->npool = 2 * p->nworkers + 4;
    p->pool = calloc(p->npool, sizeof(*p->pool));
    if (!p->pool)
        return -ENOMEM;
    uint32_t cp = p->cap_pages;
    for (unsigned i = 0; i < p->npool; i++) {
        struct batch *b = &p->pool[i];
        b->pidx = malloc(cp * sizeof(uint64_t));
        b->zero = malloc(cp);
        b->slot = malloc(cp * sizeof(uint32_t));
        if (p->gpu) {
            int r = vmio_mig_gpu_alloc_batch(p->gpu, p->s->regions[0].page_size, cp, &b->gb);
            if (r < 0)
                return r;
            b->pages = b->gb->pages;
            b->refs = b->gb->refs;
            b->has_ref = b->gb->has_ref;
            b->enc = b->gb->batch.enc;
            b->out = b->gb->batch.out;
        } else {
            b->pages = malloc(p->bb);
            b->refs = malloc(p->bb);
            b->has_ref = malloc(cp);
            b->enc = malloc(p->bb);
            b->out = malloc(cp * sizeof(*b->out));
        }
        b->codec = malloc(cp);
        b->dsrc = malloc(cp * sizeof(uint64_t));
        b->payload = malloc(p->payload_cap);
        b->rawbuf = malloc(p->bb);
        b->cbuf = malloc(p->cbuf_cap);
        b->rawpages = malloc(cp * sizeof(uint64_t));
        if (!b->pidx || !b->zero || !b->slot || !b->pages || !b->refs || !b->has_ref ||
            !b->enc || !b->out || !b->codec || !b->dsrc || !b->payload || !b->rawbuf ||
            !b->cbuf || !b->rawpages)
            return -ENOMEM;
    }
    return 0;
}

/* After a failure: the receiver may have said why (RESULT or ABORT). */
static void peer_verdict(struct pipe *p, char *msg, size_t len)
{
    msg[0] = 0;
    uint8_t hdr[VMIO_MIG_REC_HDR];
    vmio_transport_set_recv_timeout(p->t, 1000);
    if (vmio_transport_recv(p->t, hdr, sizeof hdr) < 0)
        return;
    struct vmio_mig_rec rec;
    char err[128];
    if (vmio_mig_rec_parse(hdr, 0, &rec, err, sizeof err) < 0 ||
        (rec.type != VMIO_MIG_REC_RESULT && rec.type != VMIO_MIG_REC_ABORT) ||
        rec.wire_len > VMIO_MIG_RESULT_MIN + VMIO_MIG_MAX_MSG)
        return;
    uint8_t body[VMIO_MIG_RESULT_MIN + VMIO_MIG_MAX_MSG];
    if (vmio_transport_recv(p->t, body, rec.wire_len) < 0 ||
        !vmio_mig_rec_check(hdr, body, rec.wire_len))
        return;
    size_t off = rec.type == VMIO_MIG_REC_RESULT ? VMIO_MIG_RESULT_MIN : 0;
    if (rec.wire_len < off)
        return;
    size_t m = VMIO_MIN(len - 1, rec.wire_len - off);
    memcpy(msg, body + off, m);
    msg[m] = 0;
}

static int collect(struct pipe *p, uint64_t *count)
{
    struct vmio_migrate_sender *s = p->s;
    *count = 0;
    for (uint32_t ri = 0; ri < s->nregions; ri++) {
        struct vmio_mig_sregion *g = &s->regions[ri];
        size_t words = (g->npages + 63) / 64;
        memset(g->bitmap, 0, words * 8);
        int r = s->dirty->ops->collect(s->dirty, ri, g->bitmap, g->npages);
        if (r < 0)
            return vmio_set_error(API, -r, "collecting dirty pages (%s): %s",
                                  s->dirty->ops->name, vmio_errmsg());
        if (g->npages % 64)
            g->bitmap[words - 1] &= (1ull << (g->npages % 64)) - 1;
        for (size_t w = 0; w < words; w++)
            *count += (uint64_t)__builtin_popcountll(g->bitmap[w]);
    }
    return 0;
}

static int collect_more(struct pipe *p, uint64_t *count)
{
    /* OR a second collection into the bitmaps (after the VM stopped). */
    struct vmio_migrate_sender *s = p->s;
    uint64_t **keep = calloc(s->nregions, sizeof(uint64_t *));
    if (!keep)
        return vmio_set_error(API, ENOMEM, "out of memory");
    int r = 0;
    for (uint32_t ri = 0; ri < s->nregions && !r; ri++) {
        size_t words = (s->regions[ri].npages + 63) / 64;
        keep[ri] = malloc(words * 8);
        if (!keep[ri])
            r = vmio_set_error(API, ENOMEM, "out of memory");
        else
            memcpy(keep[ri], s->regions[ri].bitmap, words * 8);
    }
    if (!r)
        r = collect(p, count);
    if (!r) {
        *count = 0;
        for (uint32_t ri = 0; ri < s->nregions; ri++) {
            size_t words = (s->regions[ri].npages + 63) / 64;
            for (size_t w = 0; w < words; w++) {
                s->regions[ri].bitmap[w] |= keep[ri][w];
                *count += (uint64_t)__builtin_popcountll(s->regions[ri].bitmap[w]);
            }
        }
    }
    for (uint32_t ri = 0; ri < s->nregions; ri++)
        free(keep[ri]);
    free(keep);
    return r;
}

static int stop_vm(struct pipe *p)
{
    struct vmio_migrate_sender *s = p->s;
    int r = 0;
    if (s->stop_fn)
        r = s->stop_fn(s->stop_opaque);
    else if (s->dirty && s->dirty->ops->pause)
        r = s->dirty->ops->pause(s->dirty);
    if (r < 0)
        return vmio_set_error(API, -r, "the stop callback failed (%s)", vmio_errmsg());
    return 0;
}

static int setup(struct pipe *p)
{
    struct vmio_migrate_sender *s = p->s;
    const struct vmio_migrate_options *o = &s->o;
    p->codecs = o->codecs;
    if (!vmio_mig_comp_available(VMIO_MIG_COMP_ZSTD))
        p->codecs &= ~VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_ZSTD);
    if (!vmio_mig_comp_available(VMIO_MIG_COMP_LZ4))
        p->codecs &= ~VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_LZ4);
    p->aflags = (allowed(p, VMIO_MIGRATE_CODEC_RLE) ? VMIO_MIG_A_RLE : 0) |
                (allowed(p, VMIO_MIGRATE_CODEC_DELTA) ? VMIO_MIG_A_DELTA : 0);
    p->use_hash = allowed(p, VMIO_MIGRATE_CODEC_DEDUP) || allowed(p, VMIO_MIGRATE_CODEC_SKIP);
    if (p->use_hash)
        p->aflags |= VMIO_MIG_A_HASH;
    int comp_ok[VMIO_MIG_CHOICES] = { 1, allowed(p, VMIO_MIGRATE_CODEC_ZSTD),
                                      allowed(p, VMIO_MIGRATE_CODEC_LZ4),
                                      allowed(p, VMIO_MIGRATE_CODEC_ZSTD) };
    p->comp_any = comp_ok[1] || comp_ok[2];
    p->nworkers = o->threads;
    vmio_mig_policy_init(&p->pol, o->policy == VMIO_MIGRATE_ADAPTIVE, p->nworkers, comp_ok);
    p->rl.rate = o->link_rate;
    if (o->link_rate)
        vmio_mig_policy_pin_link(&p->pol, (double)o->link_rate);

    uint64_t nloc = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < s->nregions; i++) {
        s->regions[i].loc0 = nloc;
        nloc += s->regions[i].npages;
        total += s->regions[i].length;
    }
    p->bb = (size_t)o->batch_pages * VMIO_MIG_PAGE_MIN;
    uint32_t minps = VMIO_MIG_PAGE_MAX;
    for (uint32_t i = 0; i < s->nregions; i++) {
        minps = VMIO_MIN(minps, s->regions[i].page_size);
        if (p->bb < s->regions[i].page_size)
            p->bb = s->regions[i].page_size;
    }
    p->cap_pages = (uint32_t)(p->bb / minps);
    p->cbuf_cap = vmio_mig_compress_bound(VMIO_MIG_COMP_ZSTD, p->bb);
    p->cbuf_cap = VMIO_MAX(p->cbuf_cap, vmio_mig_compress_bound(VMIO_MIG_COMP_LZ4, p->bb));
    p->payload_cap = p->bb + (size_t)p->cap_pages * 48 + p->cbuf_cap + 64;

    if (p->use_hash && vmio_mig_dedup_init(&p->dd, nloc) < 0)
        return vmio_set_error(API, ENOMEM, "out of memory for the dedup table");
    for (uint32_t i = 0; i < s->nregions; i++) {
        struct vmio_mig_sregion *g = &s->regions[i];
        g->bitmap = calloc((g->npages + 63) / 64, 8);
        if (!g->bitmap)
            return vmio_set_error(API, ENOMEM, "out of memory");
        if (allowed(p, VMIO_MIGRATE_CODEC_DELTA)) {
            uint64_t share = (uint64_t)((double)o->delta_cache_bytes * (double)g->length /
                                        (double)total);
            if (vmio_mig_dcache_init(&g->dc, VMIO_MIN(share, g->length), g->page_size) < 0)
                return vmio_set_error(API, ENOMEM, "out of memory for the delta cache");
        }
    }
    if (o->gpu != VMIO_MIGRATE_GPU_OFF) {
        int same_ps = 1;
        for (uint32_t i = 1; i < s->nregions; i++)
            same_ps &= s->regions[i].page_size == s->regions[0].page_size;
        int r = same_ps ? vmio_mig_gpu_open(API, &p->gpu)
                        : vmio_set_error(API, ENOTSUP, "regions of different page sizes: "
                                         "the GPU path takes one page size");
        if (r < 0 && o->gpu == VMIO_MIGRATE_GPU_REQUIRE)
            return r;
        if (r < 0)
            vmio_clear_error();    /* auto: CPU threads */
    }
    p->cctx = calloc(p->nworkers, sizeof(*p->cctx));
    p->workers = calloc(p->nworkers, sizeof(pthread_t));
    int ar = p->cctx && p->workers ? alloc_pool(p) : -ENOMEM;
    if (ar < 0)
        return ar == -ENOMEM ? vmio_set_error(API, ENOMEM, "out of memory for %u batches",
                                              p->npool)
                             : vmio_error_reprefix(API, -ar);
    uint32_t rounds = o->max_rounds + 1;
    free(s->stats);
    s->stats = calloc(rounds, sizeof(*s->stats));
    s->nstats = 0;
    if (!s->stats)
        return vmio_set_error(API, ENOMEM, "out of memory");
    return 0;
}

static void teardown(struct pipe *p)
{
    struct vmio_migrate_sender *s = p->s;
    for (uint32_t i = 0; i < s->nregions; i++) {
        free(s->regions[i].bitmap);
        s->regions[i].bitmap = NULL;
        vmio_mig_dcache_free(&s->regions[i].dc);
    }
    if (p->use_hash)
        vmio_mig_dedup_free(&p->dd);
    for (unsigned i = 0; p->cctx && i < p->nworkers; i++)
        vmio_mig_comp_ctx_free(&p->cctx[i]);
    free(p->cctx);
    free(p->workers);
    free_pool(p);
    vmio_mig_gpu_close(p->gpu);
    vmio_mig_policy_destroy(&p->pol);
    pthread_mutex_destroy(&p->mx);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_send);
    pthread_cond_destroy(&p->cv_free);
}

static int send_hello(struct pipe *p)
{
    struct vmio_migrate_sender *s = p->s;
    struct vmio_mig_region_info *ri = calloc(s->nregions, sizeof(*ri));
    size_t len = vmio_mig_hello_size(s->nregions);
    uint8_t *buf = malloc(len);
    if (!ri || !buf) {
        free(ri);
        free(buf);
        return vmio_set_error(API, ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < s->nregions; i++) {
        ri[i].length = s->regions[i].length;
        ri[i].page_size = s->regions[i].page_size;
        memcpy(ri[i].name, s->regions[i].name, VMIO_MIG_NAME_MAX);
    }
    struct vmio_mig_hello h = { VMIO_MIG_VERSION, 0, s->nregions, ri };
    vmio_mig_hello_encode(&h, buf);
    int r = send_record(p, VMIO_MIG_REC_HELLO, 0, buf, len, NULL);
    free(ri);
    free(buf);
    return r < 0 ? send_failed(p, r, "the stream header") : 0;
}

static int finish(struct pipe *p, uint32_t rounds, uint64_t pages_total)
{
    struct vmio_migrate_sender *s = p->s;
    uint8_t body[VMIO_MIG_END_BODY];
    memset(body, 0, sizeof body);
    int no_digest = (s->o.flags & VMIO_MIGRATE_F_NO_DIGEST) != 0;
    uint8_t digest[VMIO_MIG_DIGEST] = { 0 };
    if (!no_digest)
        VMIO_MIG_DIGEST_OF(s->regions, s->nregions, struct vmio_mig_sregion, digest);
    memcpy(body, digest, VMIO_MIG_DIGEST);
    vmio_put_le64(body + VMIO_MIG_DIGEST, pages_total);
    vmio_put_le32(body + VMIO_MIG_DIGEST + 8, rounds | (no_digest ? 0x80000000u : 0));
    int r = send_record(p, VMIO_MIG_REC_END, 0, body, sizeof body, NULL);
    if (r < 0)
        return send_failed(p, r, "the end of the stream");

    /* The receiver's verdict. */
    uint8_t hdr[VMIO_MIG_REC_HDR];
    vmio_transport_set_recv_timeout(p->t, RESULT_TIMEOUT_MS);
    r = vmio_transport_recv(p->t, hdr, sizeof hdr);
    if (r < 0)
        return vmio_set_error(API, r == -EPIPE ? EPIPE : -r,
                              "no result from the receiver %s (%s)", p->t->peer,
                              r == -EPIPE ? "connection closed" : vmio_errmsg());
    struct vmio_mig_rec rec;
    char err[160];
    if ((r = vmio_mig_rec_parse(hdr, 0, &rec, err, sizeof err)) < 0)
        return vmio_set_error(API, EPROTO, "receiver's result: %s", err);
    uint8_t resp[VMIO_MIG_RESULT_MIN + VMIO_MIG_MAX_MSG + 1];
    if ((rec.type != VMIO_MIG_REC_RESULT && rec.type != VMIO_MIG_REC_ABORT) ||
        rec.wire_len > VMIO_MIG_RESULT_MIN + VMIO_MIG_MAX_MSG ||
        (rec.type == VMIO_MIG_REC_RESULT && rec.wire_len < VMIO_MIG_RESULT_MIN))
        return vmio_set_error(API, EPROTO, "receiver sent a type %u record of %u bytes "
                              "instead of its result", rec.type, rec.wire_len);
    if ((r = vmio_transport_recv(p->t, resp, rec.wire_len)) < 0)
        return vmio_set_error(API, EPROTO, "receiver's result truncated");
    if (!vmio_mig_rec_check(hdr, resp, rec.wire_len))
        return vmio_set_error(API, EPROTO, "receiver's result: checksum mismatch");
    size_t off = rec.type == VMIO_MIG_REC_RESULT ? VMIO_MIG_RESULT_MIN : 0;
    resp[rec.wire_len] = 0;
    const char *msg = (const char *)resp + off;
    if (rec.type == VMIO_MIG_REC_ABORT)
        return vmio_set_error(API, EPROTO, "receiver aborted: %s", msg);
    uint32_t status = vmio_get_le32(resp);
    if (status)
        return vmio_set_error(API, (int)VMIO_MIN(status, 4095u), "receiver: %s", msg);
    if (!no_digest && memcmp(resp + 4, digest, VMIO_MIG_DIGEST))
        return vmio_set_error(API, EIO, "receiver's memory digest differs from ours "
                              "(the VM kept running during the final round?)");
    return 0;
}

int vmio_mig_run(struct vmio_migrate_sender *s, struct vmio_transport *t)
{
    if (!s->nregions)
        return vmio_set_error(API, EINVAL, "no memory regions to send");
    struct pipe *p = calloc(1, sizeof(*p));
    if (!p)
        return vmio_set_error(API, ENOMEM, "out of memory");
    p->s = s;
    p->t = t;
    pthread_mutex_init(&p->mx, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_send, NULL);
    pthread_cond_init(&p->cv_free, NULL);
    atomic_store(&s->cancel, 0);
    pthread_mutex_lock(&s->cancel_mx);
    s->t = t;
    pthread_mutex_unlock(&s->cancel_mx);
    vmio_transport_set_recv_timeout(t, (int)s->o.timeout_ms);

    int r = setup(p);
    struct worker_arg *wargs = NULL;
    unsigned started = 0;
    int tracking = 0;
    if (r < 0)
        goto out;
    if ((r = send_hello(p)) < 0)
        goto out;
    wargs = calloc(p->nworkers, sizeof(*wargs));
    if (!wargs) {
        r = vmio_set_error(API, ENOMEM, "out of memory");
        goto out;
    }
    for (; started < p->nworkers; started++) {
        wargs[started] = (struct worker_arg){ p, started };
        if (pthread_create(&p->workers[started], NULL, worker_main, &wargs[started])) {
            r = vmio_set_error(API, EAGAIN, "cannot start encode threads");
            goto out;
        }
    }
    if (pthread_create(&p->writer, NULL, writer_main, p)) {
        r = vmio_set_error(API, EAGAIN, "cannot start the writer thread");
        goto out;
    }
    p->writer_started = 1;

    if (s->dirty) {
        if ((r = s->dirty->ops->start(s->dirty)) < 0) {
            r = vmio_set_error(API, -r, "starting dirty tracking (%s): %s",
                               s->dirty->ops->name, vmio_errmsg());
            goto out;
        }
        tracking = 1;
    }
    int final = !s->dirty;            /* nothing tracks writes: one round, VM stopped */
    if (final && (r = stop_vm(p)) < 0)
        goto out;
    uint64_t pages_total = 0, dirty = 0;
    uint64_t collect_ns = vmio_now_ns(), dirty_interval = 0;
    uint32_t round = 0;
    for (;;) {
        uint64_t t0 = vmio_now_ns();
        s->nstats = round + 1;
        struct vmio_migrate_round_stats *st = &s->stats[round];
        memset(st, 0, sizeof(*st));
        st->struct_size = sizeof(*st);
        st->round = round;
        st->gpu = p->gpu != NULL;
        if (round == 0) {
            for (uint32_t i = 0; i < s->nregions; i++)
                dirty += s->regions[i].npages;
        }
        st->dirty_pages = dirty;
        if (dispatch_round(p, round, final, round == 0) < 0 || wait_drained(p) < 0) {
            r = -1;
            goto out;
        }
        uint64_t t1 = vmio_now_ns();
        pthread_mutex_lock(&p->mx);
        st->round_ns = t1 - t0;
        st->bandwidth = st->send_ns ? (uint64_t)((double)st->wire_bytes * 1e9 /
                                                 (double)st->send_ns) : 0;
        pages_total += st->pages;
        pthread_mutex_unlock(&p->mx);
        if (round > 0 && dirty_interval)
            st->dirty_rate = (uint64_t)((double)dirty * 1e9 / (double)dirty_interval);
        if (s->round_fn)
            s->round_fn(s->round_opaque, st);
        if (final)
            break;
        if (atomic_load(&s->cancel)) {
            r = vmio_set_error(API, ECANCELED, "cancelled after round %u", round);
            goto out;
        }
        uint64_t now = vmio_now_ns();
        dirty_interval = now - collect_ns;
        collect_ns = now;
        if ((r = collect(p, &dirty)) < 0)
            goto out;
        /* Stop when the rest fits the downtime at the rate of this round. */
        uint64_t ps_bytes = 0;
        for (uint32_t i = 0; i < s->nregions; i++)
            ps_bytes = VMIO_MAX(ps_bytes, s->regions[i].page_size);
        double rate = st->round_ns ? (double)st->raw_bytes * 1e9 / (double)st->round_ns : 0;
        double est_ns = rate > 0 ? (double)dirty * (double)ps_bytes * 1e9 / rate : 1e18;
        round++;
        if (est_ns <= (double)s->o.downtime_ns || round >= s->o.max_rounds) {
            if ((r = stop_vm(p)) < 0)
                goto out;
            if ((r = collect_more(p, &dirty)) < 0)
                goto out;
            final = 1;
        }
    }
    if (tracking) {
        s->dirty->ops->stop(s->dirty);
        tracking = 0;
    }
    /* Everything is sent: stop the threads, then end the stream. */
    pthread_mutex_lock(&p->mx);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_cond_broadcast(&p->cv_send);
    pthread_mutex_unlock(&p->mx);
    pthread_join(p->writer, NULL);
    p->writer_started = 0;
    for (unsigned i = 0; i < started; i++)
        pthread_join(p->workers[i], NULL);
    started = 0;
    r = finish(p, s->nstats, pages_total);

out:
    if (r < 0 || p->failed) {
        if (p->failed) {
            vmio_error_restore(&p->err);
            r = -p->err.err;
        }
        struct vmio_error_copy keep;
        vmio_error_save(&keep);
        if (r >= 0)
            r = -keep.err;
        /* Stop the threads (a send in progress completes or fails), tell
         * the receiver why, and ask it what it saw. */
        pthread_mutex_lock(&p->mx);
        p->stop = 1;
        fail_locked(p);
        pthread_mutex_unlock(&p->mx);
        if (p->writer_started)
            pthread_join(p->writer, NULL);
        p->writer_started = 0;
        for (unsigned i = 0; i < started; i++)
            pthread_join(p->workers[i], NULL);
        started = 0;
        const char *m = keep.msg;
        if (!strncmp(m, API ": ", strlen(API) + 2))
            m += strlen(API) + 2;
        send_record(p, VMIO_MIG_REC_ABORT, 0, m, VMIO_MIN(strlen(m), VMIO_MIG_MAX_MSG), NULL);
        char why[VMIO_MIG_MAX_MSG + 1];
        peer_verdict(p, why, sizeof why);
        if (why[0])
            vmio_set_error(API, keep.err, "%s; the receiver said: %s", m, why);
        else
            vmio_error_restore(&keep);
        vmio_transport_shutdown(t);
    }
    if (tracking)
        s->dirty->ops->stop(s->dirty);
    free(wargs);
    pthread_mutex_lock(&s->cancel_mx);
    s->t = NULL;
    pthread_mutex_unlock(&s->cancel_mx);
    teardown(p);
    free(p);
    return r;
}
