/* The lender's surplus decision (see surplus.h). Pure: no I/O, no clock. */
#include "memlend/surplus.h"

#define MIB (1024ull * 1024ull)

void vmio_ml_surplus_cfg_defaults(struct vmio_ml_surplus_cfg *cfg, uint64_t mem_total)
{
    if (!cfg->reserve) {
        /* A tenth of the machine, at least 512 MiB. */
        uint64_t r = mem_total / 10;
        cfg->reserve = r < 512 * MIB ? 512 * MIB : r;
    }
    if (!cfg->hysteresis)
        cfg->hysteresis = 64 * MIB;
    if (!cfg->growth_per_s)
        cfg->growth_per_s = 256 * MIB;
    if (!cfg->quantum)
        cfg->quantum = MIB;
    if (!cfg->psi_limit_x100)
        cfg->psi_limit_x100 = 1000; /* 10 % of the time some task stalled */
    if (!cfg->calm_ms)
        cfg->calm_ms = 30000;
}

const char *vmio_ml_surplus_reason_name(uint32_t reason)
{
    switch (reason) {
    case VMIO_ML_SURPLUS_OK: return "ok";
    case VMIO_ML_SURPLUS_FLOOR: return "below-reserve";
    case VMIO_ML_SURPLUS_PSI: return "memory-pressure";
    case VMIO_ML_SURPLUS_GUESTS: return "guests-swapping";
    case VMIO_ML_SURPLUS_CALM: return "waiting-for-calm";
    case VMIO_ML_SURPLUS_CAP: return "at-max-lend";
    default: return "unknown";
    }
}

void vmio_ml_surplus_decide(const struct vmio_ml_surplus_cfg *cfg,
                            struct vmio_ml_surplus_state *st,
                            const struct vmio_ml_mem_sample *s, uint64_t lent,
                            uint64_t lent_resident, struct vmio_ml_surplus_decision *d)
{
    uint64_t quantum = cfg->quantum ? cfg->quantum : MIB;
    /* Lent bytes the borrower has not written yet will still be taken
     * from MemAvailable: count them as used already. */
    uint64_t unwritten = lent > lent_resident ? lent - lent_resident : 0;
    uint64_t need = cfg->reserve + unwritten;
    uint64_t dt_ns = st->last_ns && s->t_ns > st->last_ns ? s->t_ns - st->last_ns : 0;

    d->offer = 0;
    d->reclaim = 0;
    d->reason = VMIO_ML_SURPLUS_OK;

    int pressure = 0;
    if (s->mem_available < need) {
        d->reclaim = need - s->mem_available;
        d->reason = VMIO_ML_SURPLUS_FLOOR;
        pressure = 1;
    } else if (s->psi_valid && s->psi_some_avg10_x100 > cfg->psi_limit_x100) {
        d->reason = VMIO_ML_SURPLUS_PSI;
        pressure = 1;
    } else if (s->guests_swapping > 0) {
        d->reason = VMIO_ML_SURPLUS_GUESTS;
        pressure = 1;
    }
    if (pressure) {
        /* Stalls are not measured in bytes: give back at least one lease
         * (the caller reclaims the newest whose size covers this). */
        if (lent && d->reclaim == 0)
            d->reclaim = 1;
        if (d->reclaim > lent)
            d->reclaim = lent;
        st->pressure_ns = s->t_ns ? s->t_ns : 1;
        st->offer = 0;
        st->last_ns = s->t_ns;
        return;
    }

    uint64_t target = s->mem_available - need;
    if (cfg->max_lend) {
        uint64_t room = cfg->max_lend > lent ? cfg->max_lend - lent : 0;
        if (target >= room) {
            target = room;
            d->reason = VMIO_ML_SURPLUS_CAP;
        }
    }
    target -= target % quantum;

    uint64_t offer = st->offer;
    if (target <= offer) {
        offer = target; /* shrinking is immediate */
    } else if (st->pressure_ns &&
               s->t_ns - st->pressure_ns < (uint64_t)cfg->calm_ms * 1000000ull) {
        d->reason = VMIO_ML_SURPLUS_CALM; /* hold what is offered */
    } else if (target - offer >= cfg->hysteresis ||
               (d->reason == VMIO_ML_SURPLUS_CAP && target > offer)) {
        /* Grow, at most growth_per_s over the time since the last decision
         * (the very first decision may offer one second's worth). */
        uint64_t dt_ms = (st->last_ns ? dt_ns : 1000000000ull) / 1000000ull;
        uint64_t step = dt_ms && cfg->growth_per_s > UINT64_MAX / dt_ms
                            ? UINT64_MAX
                            : cfg->growth_per_s * dt_ms / 1000ull;
        uint64_t grow = target - offer;
        if (grow > step)
            grow = step;
        offer += grow;
        offer -= offer % quantum;
    }
    st->offer = offer;
    st->last_ns = s->t_ns;
    d->offer = offer;
}
