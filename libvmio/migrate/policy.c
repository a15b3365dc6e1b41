/* The adaptive choices of the sender, per batch:
 *   - whether to hash the batch's pages (the DEDUP and SKIP codecs need
 *     the SHA-256; it costs CPU time),
 *   - whether the pages still raw go out as they are or through lz4 or
 *     zstd.
 * A pipelined migration takes max(CPU time / threads, wire time) overall,
 * not per batch, so the policy keeps both totals as committed so far and
 * picks the option that keeps the larger one smallest: on a slow link it
 * spends CPU to save bytes until the CPU becomes the limit, and mixes
 * compressors to balance the two; on a link faster than the compressors it
 * sends raw pages, so compression never makes a migration slower than raw
 * pages. The link bandwidth (time spent sending, an emulated link
 * included), the per-thread speed and ratio of each compressor, the hash
 * speed and the share of hashed pages that dedup are measured as batches
 * go; every 16th decision explores an option not chosen so that its
 * estimates follow the data. */
#include <string.h>

#include "migrate/engine.h"
#include "migrate/stream.h"

#define EWMA(old, new) ((old) * 0.7 + (new) * 0.3)

void vmio_mig_policy_init(struct vmio_mig_policy *p, int adaptive, unsigned workers,
                          const int allowed[VMIO_MIG_CHOICES])
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mx, NULL);
    p->adaptive = adaptive;
    p->workers = workers ? workers : 1;
    memcpy(p->allowed, allowed, sizeof(p->allowed));
    p->allowed[VMIO_MIG_COMP_NONE] = 1;
    /* Priors, replaced by measurements as batches go out (the first link
     * measurement replaces the prior outright): a 10 Gbit/s link, so that
     * a fast link never starts with compression, and what one core of a
     * 2020s server does on guest memory. */
    p->link_bps = 1.25e9;
    p->hash_bps = 1.4e9;
    p->dup_frac = 0.1;
    p->comp_bps[VMIO_MIG_COMP_NONE] = 1e12;
    p->comp_ratio[VMIO_MIG_COMP_NONE] = 1.0;
    p->comp_bps[VMIO_MIG_COMP_LZ4] = 500e6;
    p->comp_ratio[VMIO_MIG_COMP_LZ4] = 2.0;
    p->comp_bps[VMIO_MIG_COMP_ZSTD] = 300e6;
    p->comp_ratio[VMIO_MIG_COMP_ZSTD] = 3.0;
    p->comp_bps[VMIO_MIG_CHOICE_ZSTD_FAST] = 450e6;
    p->comp_ratio[VMIO_MIG_CHOICE_ZSTD_FAST] = 2.5;
    if (!adaptive)
        p->allowed[VMIO_MIG_CHOICE_ZSTD_FAST] = 0;
}

void vmio_mig_policy_destroy(struct vmio_mig_policy *p)
{
    pthread_mutex_destroy(&p->mx);
}

/* The compressor with the best ratio allowed (what hashing competes with). */
static double best_ratio(const struct vmio_mig_policy *p)
{
    double r = 1.0;
    for (int c = 1; c < VMIO_MIG_CHOICES; c++)
        if (p->allowed[c] && p->comp_ratio[c] > r)
            r = p->comp_ratio[c];
    return r;
}

int vmio_mig_policy_hash(struct vmio_mig_policy *p, uint64_t bytes, int *probe)
{
    *probe = 0;
    if (!p->adaptive)
        return 1;
    pthread_mutex_lock(&p->mx);
    double cost = (double)bytes / p->hash_bps / p->workers;      /* CPU s per thread */
    double gain = p->dup_frac * (double)bytes / (best_ratio(p) * p->link_bps); /* wire s */
    int yes;
    if (p->wire_s > p->cpu_s + cost)
        yes = gain > 0;                  /* wire-bound: the CPU has room */
    else if (p->cpu_s > p->wire_s * 1.1)
        yes = 0;                         /* CPU-bound */
    else
        yes = gain > cost;
    if (!yes && p->hash_decisions % 16 == 15) {
        yes = 1;                         /* keep dup_frac measured */
        *probe = 1;
    }
    p->hash_decisions++;
    pthread_mutex_unlock(&p->mx);
    return yes;
}

int vmio_mig_policy_choose(struct vmio_mig_policy *p, uint64_t raw_bytes, uint64_t other_wire,
                           uint64_t batch_cpu_ns, int *probe)
{
    *probe = 0;
    pthread_mutex_lock(&p->mx);
    double base_cpu = p->cpu_s + (double)batch_cpu_ns / 1e9 / p->workers;
    double base_wire = p->wire_s + (double)other_wire / p->link_bps;
    int best = VMIO_MIG_COMP_NONE;
    if (!raw_bytes) {
        best = VMIO_MIG_COMP_NONE;
    } else if (!p->adaptive) {
        /* fixed: the strongest compressor allowed */
        best = p->allowed[VMIO_MIG_COMP_ZSTD]  ? VMIO_MIG_COMP_ZSTD
               : p->allowed[VMIO_MIG_COMP_LZ4] ? VMIO_MIG_COMP_LZ4
                                               : VMIO_MIG_COMP_NONE;
    } else {
        double t = -1, t_raw = 0;
        for (int c = 0; c < VMIO_MIG_CHOICES; c++) {
            if (!p->allowed[c])
                continue;
            double cpu = base_cpu + (c ? (double)raw_bytes / p->comp_bps[c] / p->workers : 0);
            double wire = base_wire + (double)raw_bytes / (p->comp_ratio[c] * p->link_bps);
            double tc = cpu > wire ? cpu : wire;
            if (!c)
                t_raw = tc;
            if (t < 0 || tc < t) {
                t = tc;
                best = c;
            }
        }
        /* A compressor must win clearly: the estimates leave out what the
         * model does not see (the receiver's decompression, threads that
         * share the cores), and a marginal win is a likely loss. */
        double now = base_cpu > base_wire ? base_cpu : base_wire;
        if (best != VMIO_MIG_COMP_NONE && t - now > (t_raw - now) * 0.85)
            best = VMIO_MIG_COMP_NONE;
        uint64_t n = p->decisions++;
        if (n % 16 == 15) {
            /* explore the compressors not chosen, in turn */
            int c = 1 + (int)((n / 16) % (VMIO_MIG_CHOICES - 1));
            if (c != best && p->allowed[c]) {
                best = c;
                *probe = 1;
            }
        }
    }
    if (raw_bytes && !*probe)
        p->compressing = best != VMIO_MIG_COMP_NONE;
    p->cpu_s = base_cpu + (best ? (double)raw_bytes / p->comp_bps[best] / p->workers : 0);
    p->wire_s = base_wire + (double)raw_bytes / (p->comp_ratio[best] * p->link_bps);
    pthread_mutex_unlock(&p->mx);
    return best;
}

void vmio_mig_policy_note_comp(struct vmio_mig_policy *p, int comp, uint64_t in, uint64_t out,
                               uint64_t ns)
{
    if (comp <= 0 || comp >= VMIO_MIG_CHOICES || !in || !ns)
        return;
    pthread_mutex_lock(&p->mx);
    double bps = (double)in * 1e9 / (double)ns;
    double ratio = out ? (double)in / (double)out : 1.0;
    if (ratio < 1.0)
        ratio = 1.0;
    p->comp_bps[comp] = EWMA(p->comp_bps[comp], bps);
    p->comp_ratio[comp] = EWMA(p->comp_ratio[comp], ratio);
    pthread_mutex_unlock(&p->mx);
}

void vmio_mig_policy_note_hash(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns)
{
    if (!bytes || !ns)
        return;
    pthread_mutex_lock(&p->mx);
    p->hash_bps = EWMA(p->hash_bps, (double)bytes * 1e9 / (double)ns);
    pthread_mutex_unlock(&p->mx);
}

void vmio_mig_policy_note_dedup(struct vmio_mig_policy *p, uint64_t hashed, uint64_t found)
{
    if (!hashed)
        return;
    pthread_mutex_lock(&p->mx);
    p->dup_frac = EWMA(p->dup_frac, (double)found / (double)hashed);
    pthread_mutex_unlock(&p->mx);
}

void vmio_mig_policy_pin_link(struct vmio_mig_policy *p, double bps)
{
    pthread_mutex_lock(&p->mx);
    p->link_bps = bps;
    p->link_pinned = 1;
    pthread_mutex_unlock(&p->mx);
}

void vmio_mig_policy_note_link(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns)
{
    if (!bytes || !ns || p->link_pinned)
        return;
    pthread_mutex_lock(&p->mx);
    double bps = (double)bytes * 1e9 / (double)ns;
    p->link_bps = p->link_samples++ ? EWMA(p->link_bps, bps) : bps;
    pthread_mutex_unlock(&p->mx);
}

int vmio_mig_policy_compressing(struct vmio_mig_policy *p)
{
    pthread_mutex_lock(&p->mx);
    int v = p->adaptive && p->compressing;
    pthread_mutex_unlock(&p->mx);
    return v;
}
