/* The lender's surplus decision (libvmio/memlend/surplus.c): reserve floor,
 * unwritten lent bytes counted as used, pressure (PSI, guests) -> reclaim
 * and a calm period, hysteresis, growth rate limit, max-lend cap, and a
 * randomized check that an offer never plans MemAvailable under the floor. */
#include "test-common.h"

#include "memlend/surplus.h"

#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)
#define SEC 1000000000ull

static struct vmio_ml_surplus_cfg cfg_std(void)
{
    struct vmio_ml_surplus_cfg c;
    memset(&c, 0, sizeof c);
    c.reserve = 2 * GIB;
    c.hysteresis = 64 * MIB;
    c.growth_per_s = 256 * MIB;
    c.quantum = MIB;
    c.psi_limit_x100 = 1000;
    c.calm_ms = 30000;
    return c;
}

static struct vmio_ml_mem_sample sample(uint64_t t_ns, uint64_t avail, uint32_t psi)
{
    struct vmio_ml_mem_sample s;
    memset(&s, 0, sizeof s);
    s.t_ns = t_ns;
    s.mem_total = 32 * GIB;
    s.mem_available = avail;
    s.psi_valid = 1;
    s.psi_some_avg10_x100 = psi;
    return s;
}

START_TEST(defaults)
{
    struct vmio_ml_surplus_cfg c;
    memset(&c, 0, sizeof c);
    vmio_ml_surplus_cfg_defaults(&c, 32 * GIB);
    ck_assert_uint_eq(c.reserve, 32 * GIB / 10);
    ck_assert_uint_eq(c.psi_limit_x100, 1000);
    memset(&c, 0, sizeof c);
    vmio_ml_surplus_cfg_defaults(&c, 1 * GIB); /* small machine: 512 MiB floor */
    ck_assert_uint_eq(c.reserve, 512 * MIB);
    c.reserve = 3 * GIB; /* set fields are kept */
    vmio_ml_surplus_cfg_defaults(&c, 1 * GIB);
    ck_assert_uint_eq(c.reserve, 3 * GIB);
}
END_TEST

START_TEST(rate_limited_growth)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s = sample(100 * SEC, 10 * GIB, 0);
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    /* First decision: one second's worth. */
    ck_assert_uint_eq(d.offer, 256 * MIB);
    ck_assert_uint_eq(d.reclaim, 0);
    /* Half a second later: +128 MiB. */
    s.t_ns += SEC / 2;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.offer, 384 * MIB);
    /* Much later: the whole surplus, 10 GiB - 2 GiB reserve. */
    s.t_ns += 100 * SEC;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.offer, 8 * GIB);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_OK);
}
END_TEST

START_TEST(hysteresis)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s = sample(SEC, 6 * GIB, 0);
    for (int i = 0; i < 40; i++) { /* settle at 4 GiB */
        s.t_ns += SEC;
        vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    }
    ck_assert_uint_eq(d.offer, 4 * GIB);
    /* Up by less than the hysteresis: no change. */
    s.t_ns += SEC;
    s.mem_available += 63 * MIB;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.offer, 4 * GIB);
    /* Up by the hysteresis: grows. */
    s.t_ns += SEC;
    s.mem_available += 1 * MIB;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.offer, 4 * GIB + 64 * MIB);
    /* Down by 1 MiB: shrinks at once, no hysteresis downward. */
    s.t_ns += SEC;
    s.mem_available -= 1 * MIB;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.offer, 4 * GIB + 63 * MIB);
}
END_TEST

START_TEST(floor_reclaims)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {1 * GIB, SEC, 0};
    struct vmio_ml_surplus_decision d;
    /* 4 GiB lent, all written; MemAvailable 1.5 GiB < 2 GiB reserve. */
    struct vmio_ml_mem_sample s = sample(2 * SEC, 1536 * MIB, 0);
    vmio_ml_surplus_decide(&c, &st, &s, 4 * GIB, 4 * GIB, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_FLOOR);
    ck_assert_uint_eq(d.offer, 0);
    ck_assert_uint_eq(d.reclaim, 512 * MIB);
    ck_assert_uint_eq(st.offer, 0);
}
END_TEST

START_TEST(unwritten_counts_as_used)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    /* 5 GiB available, 4 GiB lent of which 1 GiB written: 3 GiB will
     * still be taken, so 5 - 2 - 3 = 0 may be offered. */
    struct vmio_ml_mem_sample s = sample(SEC, 5 * GIB, 0);
    vmio_ml_surplus_decide(&c, &st, &s, 4 * GIB, 1 * GIB, &d);
    ck_assert_uint_eq(d.offer, 0);
    ck_assert_uint_eq(d.reclaim, 0);
    /* 4.5 GiB available: the floor would be broken once written. */
    s.t_ns += SEC;
    s.mem_available = 4 * GIB + 512 * MIB;
    vmio_ml_surplus_decide(&c, &st, &s, 4 * GIB, 1 * GIB, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_FLOOR);
    ck_assert_uint_eq(d.reclaim, 512 * MIB);
}
END_TEST

START_TEST(psi_reclaims_then_calm)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s = sample(10 * SEC, 20 * GIB, 0);
    for (int i = 0; i < 100; i++) {
        s.t_ns += SEC;
        vmio_ml_surplus_decide(&c, &st, &s, 1 * GIB, 1 * GIB, &d);
    }
    ck_assert_uint_gt(d.offer, 10 * GIB);
    /* Stalls above 10 %: everything offered is withdrawn, at least one
     * lease goes back, although MemAvailable is high. */
    s.t_ns += SEC;
    s.psi_some_avg10_x100 = 1001;
    vmio_ml_surplus_decide(&c, &st, &s, 1 * GIB, 1 * GIB, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_PSI);
    ck_assert_uint_eq(d.offer, 0);
    ck_assert_uint_ge(d.reclaim, 1);
    ck_assert_uint_le(d.reclaim, 1 * GIB);
    /* Exactly at the limit is not pressure; but calm lasts 30 s. */
    s.psi_some_avg10_x100 = 1000;
    for (int i = 0; i < 29; i++) {
        s.t_ns += SEC;
        vmio_ml_surplus_decide(&c, &st, &s, 1 * GIB, 1 * GIB, &d);
        ck_assert_uint_eq(d.offer, 0);
        ck_assert_uint_eq(d.reclaim, 0);
        ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_CALM);
    }
    s.t_ns += 2 * SEC;
    vmio_ml_surplus_decide(&c, &st, &s, 1 * GIB, 1 * GIB, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_OK);
    ck_assert_uint_eq(d.offer, 512 * MIB); /* 2 s at 256 MiB/s */
    /* With nothing lent, pressure asks for nothing back. */
    s.t_ns += SEC;
    s.psi_some_avg10_x100 = 5000;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.reclaim, 0);
    ck_assert_uint_eq(d.offer, 0);
    /* PSI not available (psi_valid 0): ignored. */
    s.t_ns += 100 * SEC;
    s.psi_valid = 0;
    vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_OK);
    ck_assert_uint_gt(d.offer, 0);
}
END_TEST

START_TEST(guests_swapping)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s = sample(SEC, 20 * GIB, 0);
    s.guests = 3;
    s.guests_swapping = 1;
    vmio_ml_surplus_decide(&c, &st, &s, 2 * GIB, 0, &d);
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_GUESTS);
    ck_assert_uint_eq(d.offer, 0);
    ck_assert_uint_ge(d.reclaim, 1);
}
END_TEST

START_TEST(max_lend_and_quantum)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    c.max_lend = 3 * GIB;
    c.quantum = 64 * MIB;
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s = sample(SEC, 20 * GIB, 0);
    for (int i = 0; i < 100; i++) {
        s.t_ns += SEC;
        vmio_ml_surplus_decide(&c, &st, &s, 1 * GIB, 1 * GIB, &d);
    }
    ck_assert_uint_eq(d.offer, 2 * GIB); /* 3 GiB cap - 1 GiB lent */
    ck_assert_uint_eq(d.reason, VMIO_ML_SURPLUS_CAP);
    /* Above the cap already: nothing, nothing reclaimed for it. */
    s.t_ns += SEC;
    vmio_ml_surplus_decide(&c, &st, &s, 4 * GIB, 4 * GIB, &d);
    ck_assert_uint_eq(d.offer, 0);
    ck_assert_uint_eq(d.reclaim, 0);
    /* Quantum: 2 GiB + 100 MiB of surplus is offered as 2 GiB + 64 MiB. */
    c.max_lend = 0;
    st.offer = 0;
    s.t_ns += 100 * SEC;
    s.mem_available = 4 * GIB + 100 * MIB;
    for (int i = 0; i < 20; i++) {
        s.t_ns += SEC;
        vmio_ml_surplus_decide(&c, &st, &s, 0, 0, &d);
    }
    ck_assert_uint_eq(d.offer, 2 * GIB + 64 * MIB);
    ck_assert_uint_eq(d.offer % c.quantum, 0);
}
END_TEST

/* Random walks of MemAvailable, PSI and lending: an offer is never more
 * than MemAvailable - reserve - unwritten lent bytes, and whenever that
 * is negative, or PSI is above the limit with something lent, a reclaim
 * is asked for. */
START_TEST(never_plans_below_floor)
{
    struct vmio_ml_surplus_cfg c = cfg_std();
    struct vmio_ml_surplus_state st = {0, 0, 0};
    struct vmio_ml_surplus_decision d;
    uint64_t seed = 0x1234567;
    struct vmio_ml_mem_sample s = sample(SEC, 8 * GIB, 0);
    uint64_t lent = 0, written = 0;
    for (int i = 0; i < 40000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t r = seed >> 33;
        s.t_ns += (r % 2000) * 1000000ull;
        s.mem_available = (r * 7919) % (16 * GIB);
        s.psi_some_avg10_x100 = (r % 10 == 0) ? (uint32_t)(r % 3000) : 0;
        lent = (r % 5 == 0) ? (r % 8) * GIB : lent;
        written = lent ? (r * 31) % (lent + 1) : 0;
        vmio_ml_surplus_decide(&c, &st, &s, lent, written, &d);
        uint64_t need = c.reserve + (lent - written);
        uint64_t room = s.mem_available > need ? s.mem_available - need : 0;
        ck_assert_msg(d.offer <= room, "offer %llu > room %llu at step %d",
                      (unsigned long long)d.offer, (unsigned long long)room, i);
        if (s.mem_available < need && lent)
            ck_assert_uint_gt(d.reclaim, 0);
        if (s.psi_some_avg10_x100 > c.psi_limit_x100 && lent)
            ck_assert_uint_gt(d.reclaim, 0);
        ck_assert_uint_le(d.reclaim, lent); /* only what is lent can come back */
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlend-surplus");
    TCase *tc = tcase_create("surplus");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, rate_limited_growth);
    tcase_add_test(tc, hysteresis);
    tcase_add_test(tc, floor_reclaims);
    tcase_add_test(tc, unwritten_counts_as_used);
    tcase_add_test(tc, psi_reclaims_then_calm);
    tcase_add_test(tc, guests_swapping);
    tcase_add_test(tc, max_lend_and_quantum);
    tcase_add_test(tc, never_plans_below_floor);
    suite_add_tcase(s, tc);
    return test_run(s);
}
