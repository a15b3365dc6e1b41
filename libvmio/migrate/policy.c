/* The adaptive choice of a batch's compressor. A batch leaves analysis
 * with some pages still raw; they go out as they are, or through lz4 or
 * zstd. The pipeline's time is bounded by the encode threads and by the
 * link, so each option is scored as max(CPU time / threads, wire time)
 * with the measured link bandwidth and the measured per-thread speed and
 * ratio of each compressor, and the fastest wins. On a link faster than
 * the compressors this means "raw": compression never makes a migration
 * slower than sending raw pages. Every 16th decision explores an option
 * not chosen, so that its estimates follow the data. */
#include <string.h>

#include "migrate/engine.h"
#include "migrate/stream.h"

#define EWMA(old, new) ((old) * 0.7 + (new) * 0.3)

void vmio_mig_policy_init(struct vmio_mig_policy *p, int adaptive, unsigned workers,
                          const int allowed[3])
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
    p->analyze_bps = 2e9;
    p->comp_bps[VMIO_MIG_COMP_LZ4] = 500e6;
    p->comp_ratio[VMIO_MIG_COMP_LZ4] = 2.0;
    p->comp_bps[VMIO_MIG_COMP_ZSTD] = 300e6;
    p->comp_ratio[VMIO_MIG_COMP_ZSTD] = 3.0;
}

void vmio_mig_policy_destroy(struct vmio_mig_policy *p)
{
    pthread_mutex_destroy(&p->mx);
}

static double score(const struct vmio_mig_policy *p, int c, double raw)
{
    double cpu = raw / p->analyze_bps, wire;
    if (c == VMIO_MIG_COMP_NONE) {
        wire = raw / p->link_bps;
    } else {
        cpu += raw / p->comp_bps[c];
        wire = raw / (p->comp_ratio[c] * p->link_bps);
    }
    cpu /= p->workers;
    return cpu > wire ? cpu : wire;
}

int vmio_mig_policy_choose(struct vmio_mig_policy *p, uint64_t raw_bytes, int *probe)
{
    *probe = 0;
    if (!raw_bytes)
        return VMIO_MIG_COMP_NONE;
    pthread_mutex_lock(&p->mx);
    int best = VMIO_MIG_COMP_NONE;
    if (!p->adaptive) {
        /* fixed: the strongest compressor allowed */
        best = p->allowed[VMIO_MIG_COMP_ZSTD]  ? VMIO_MIG_COMP_ZSTD
               : p->allowed[VMIO_MIG_COMP_LZ4] ? VMIO_MIG_COMP_LZ4
                                               : VMIO_MIG_COMP_NONE;
        pthread_mutex_unlock(&p->mx);
        return best;
    }
    double t = score(p, best, (double)raw_bytes);
    for (int c = 1; c < 3; c++) {
        if (!p->allowed[c])
            continue;
        double tc = score(p, c, (double)raw_bytes);
        if (tc < t) {
            t = tc;
            best = c;
        }
    }
    uint64_t n = p->decisions++;
    if (n % 16 == 15) {
        /* explore the compressors not chosen, in turn */
        int c = 1 + (int)((n / 16) % 2);
        if (c != best && p->allowed[c]) {
            best = c;
            *probe = 1;
        }
    }
    pthread_mutex_unlock(&p->mx);
    return best;
}

void vmio_mig_policy_note_comp(struct vmio_mig_policy *p, int comp, uint64_t in, uint64_t out,
                               uint64_t ns)
{
    if (comp <= 0 || comp > 2 || !in || !ns)
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

void vmio_mig_policy_note_analyze(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns)
{
    if (!bytes || !ns)
        return;
    pthread_mutex_lock(&p->mx);
    p->analyze_bps = EWMA(p->analyze_bps, (double)bytes * 1e9 / (double)ns);
    pthread_mutex_unlock(&p->mx);
}

void vmio_mig_policy_note_link(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns)
{
    if (!bytes || !ns)
        return;
    pthread_mutex_lock(&p->mx);
    double bps = (double)bytes * 1e9 / (double)ns;
    p->link_bps = p->link_samples++ ? EWMA(p->link_bps, bps) : bps;
    pthread_mutex_unlock(&p->mx);
}

double vmio_mig_policy_link_bps(struct vmio_mig_policy *p)
{
    pthread_mutex_lock(&p->mx);
    double v = p->link_bps;
    pthread_mutex_unlock(&p->mx);
    return v;
}
