/* The lender's surplus judgement: how many more bytes it may lend now, and
 * whether it must take some back. A pure function of one memory sample,
 * what is lent, and a little state (for hysteresis and the growth rate
 * limit), so that it can be tested without a machine under pressure.
 *
 * Rules (all conservative, so lending never makes the lender thrash):
 *   - never plan MemAvailable below the reserve floor; lent bytes that the
 *     borrower has not written yet still count as used (tmpfs fills later);
 *   - MemAvailable under the floor, or memory pressure (PSI some avg10, or
 *     guests swapping) above the limit: reclaim at once, offer nothing,
 *     and offer again only after a calm period;
 *   - the offer shrinks at once but grows only when the new value exceeds
 *     the old one by the hysteresis, and at most growth_per_s per second. */
#ifndef VMIO_MEMLEND_SURPLUS_H
#define VMIO_MEMLEND_SURPLUS_H

#include <stdint.h>

struct vmio_ml_surplus_cfg {
    uint64_t reserve;           /* MemAvailable kept free, bytes */
    uint64_t hysteresis;        /* growth smaller than this is ignored */
    uint64_t growth_per_s;      /* offer grows at most this fast */
    uint64_t max_lend;          /* lent + offered never above; 0 = no cap */
    uint64_t quantum;           /* offers are multiples of this (0 = 1 MiB) */
    uint32_t psi_limit_x100;    /* some avg10 in hundredths of a percent */
    uint32_t calm_ms;           /* quiet time after pressure before growing */
};

struct vmio_ml_mem_sample {
    uint64_t t_ns;              /* monotonic time of the sample */
    uint64_t mem_total;         /* bytes */
    uint64_t mem_available;     /* bytes */
    uint32_t psi_valid;         /* 1 when the PSI fields are meaningful */
    uint32_t psi_some_avg10_x100;
    uint32_t psi_full_avg10_x100;
    uint64_t psi_some_total_us;
    uint64_t psi_full_total_us;
    uint32_t guests;            /* libvirt guests sampled (0: none) */
    uint32_t guests_swapping;   /* of which swapped in since last sample */
};

struct vmio_ml_surplus_state {
    uint64_t offer;             /* bytes offered after the last decision */
    uint64_t last_ns;           /* time of the last decision (0: none) */
    uint64_t pressure_ns;       /* time of the last pressure (0: never) */
};

enum vmio_ml_surplus_reason {
    VMIO_ML_SURPLUS_OK = 0,         /* offer computed normally */
    VMIO_ML_SURPLUS_FLOOR = 1,      /* MemAvailable under the floor */
    VMIO_ML_SURPLUS_PSI = 2,        /* pressure stall above the limit */
    VMIO_ML_SURPLUS_GUESTS = 3,     /* libvirt guests swapping */
    VMIO_ML_SURPLUS_CALM = 4,       /* recovering: waiting for calm */
    VMIO_ML_SURPLUS_CAP = 5         /* at max_lend */
};

struct vmio_ml_surplus_decision {
    uint64_t offer;             /* more bytes that may be lent now */
    uint64_t reclaim;           /* bytes to take back now (0: none) */
    uint32_t reason;            /* enum vmio_ml_surplus_reason */
};

/* Defaults for unset fields, from the machine's size. */
void vmio_ml_surplus_cfg_defaults(struct vmio_ml_surplus_cfg *cfg, uint64_t mem_total);

/* lent: bytes in leases; lent_resident: how much of them the borrowers
 * have written (the backing files' allocated bytes). */
void vmio_ml_surplus_decide(const struct vmio_ml_surplus_cfg *cfg,
                            struct vmio_ml_surplus_state *st,
                            const struct vmio_ml_mem_sample *s, uint64_t lent,
                            uint64_t lent_resident, struct vmio_ml_surplus_decision *d);

const char *vmio_ml_surplus_reason_name(uint32_t reason);

#endif
