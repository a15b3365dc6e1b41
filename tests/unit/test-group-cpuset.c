/* CPU sets of VM groups (libvmio/group/cpuset.c): the cpulist text form
 * (accepted and rejected lists, canonical output, truncation like
 * snprintf, round trips of random sets), the set algebra and the
 * libvirt/Xen byte maps. */
#include "test-common.h"

#include "group/cpuset.h"

static struct vmio_cpuset parse_ok(const char *text)
{
    struct vmio_cpuset s;
    int r = vmio_cpuset_parse(text, &s);
    ck_assert_msg(r == 0, "'%s' rejected: %s", text, vmio_errmsg());
    return s;
}

static const char *fmt(const struct vmio_cpuset *s)
{
    static char buf[8192];
    int n = vmio_cpuset_format(s, buf, sizeof buf);
    ck_assert_int_eq((size_t)n, strlen(buf));
    return buf;
}

START_TEST(parse_accepts)
{
    struct vmio_cpuset s = parse_ok("");
    ck_assert(vmio_cpuset_empty(&s));
    ck_assert_str_eq(fmt(&s), "");
    s = parse_ok("0-3,8");
    ck_assert_uint_eq(vmio_cpuset_count(&s), 5);
    for (unsigned c = 0; c < 16; c++)
        ck_assert_int_eq(vmio_cpuset_test(&s, c), c <= 3 || c == 8);
    ck_assert_str_eq(fmt(&s), "0-3,8");
    /* sysfs files end in a newline; surrounding blanks are ignored */
    s = parse_ok(" 4-7\n");
    ck_assert_str_eq(fmt(&s), "4-7");
    s = parse_ok("\t\n ");
    ck_assert(vmio_cpuset_empty(&s));
    /* unordered, overlapping, single-CPU ranges: normalised */
    s = parse_ok("8,3-5,4,0-0,1023");
    ck_assert_str_eq(fmt(&s), "0,3-5,8,1023");
    s = parse_ok("0-1023");
    ck_assert_uint_eq(vmio_cpuset_count(&s), VMIO_CPUSET_MAX);
    ck_assert_str_eq(fmt(&s), "0-1023");
    s = parse_ok("007");
    ck_assert_str_eq(fmt(&s), "7");
}
END_TEST

START_TEST(parse_rejects)
{
    static const char *const bad[] = {
        "3-1", "1024", "0-1024", "0,,1", "0,", ",0", ",", "0 ,1", "0, 1", "0 1", "a", "-1",
        "1-", "-", "0-3:2", "^1", "0x1", "+1", "1-2-3", "99999999999999999999", "0\n,1",
        "0;1", "1,2,3,a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct vmio_cpuset s;
        vmio_cpuset_zero(&s);
        vmio_cpuset_set(&s, 77);
        int r = vmio_cpuset_parse(bad[i], &s);
        ck_assert_msg(r == -EINVAL, "'%s' accepted (%d)", bad[i], r);
        ck_assert_vmio_err(r, EINVAL, "vmio_cpuset_parse");
        ck_assert_msg(strstr(vmio_errmsg(), "bad CPU list") || strstr(vmio_errmsg(), "no CPU"),
                      "message: %s", vmio_errmsg());
        /* the output is only written on success */
        ck_assert_uint_eq(vmio_cpuset_count(&s), 1);
        ck_assert(vmio_cpuset_test(&s, 77));
    }
    struct vmio_cpuset s;
    ck_assert_vmio_err_msg(vmio_cpuset_parse("3-1", &s), EINVAL, "vmio_cpuset_parse",
                           "backwards");
    ck_assert_vmio_err_msg(vmio_cpuset_parse("1024", &s), EINVAL, "vmio_cpuset_parse",
                           "below 1024");
    ck_assert_vmio_err(vmio_cpuset_parse(NULL, &s), EINVAL, "vmio_cpuset_parse");
}
END_TEST

START_TEST(format_truncates_like_snprintf)
{
    struct vmio_cpuset s = parse_ok("0-3,8,10-11");
    char buf[6];
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(vmio_cpuset_format(&s, buf, sizeof buf), 11);
    ck_assert_str_eq(buf, "0-3,8");
    ck_assert_int_eq(vmio_cpuset_format(&s, NULL, 0), 11);
    char one[1] = { 'x' };
    ck_assert_int_eq(vmio_cpuset_format(&s, one, 1), 11);
    ck_assert_int_eq(one[0], '\0');
}
END_TEST

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

START_TEST(round_trip_random)
{
    for (int i = 0; i < 2000; i++) {
        struct vmio_cpuset s;
        vmio_cpuset_zero(&s);
        unsigned density = (unsigned)(next_rand() % 8);
        for (unsigned c = 0; c < VMIO_CPUSET_MAX; c++)
            if (next_rand() % 8 < density)
                vmio_cpuset_set(&s, c);
        char text[8192];
        strcpy(text, fmt(&s));
        struct vmio_cpuset back = parse_ok(text);
        ck_assert_msg(vmio_cpuset_equal(&s, &back), "round trip of '%s' differs", text);
        ck_assert_str_eq(fmt(&back), text);
        /* byte maps round trip too */
        unsigned char map[VMIO_CPUSET_MAX / 8];
        vmio_cpuset_to_map(&s, map, sizeof map);
        vmio_cpuset_from_map(&back, map, sizeof map);
        ck_assert(vmio_cpuset_equal(&s, &back));
    }
}
END_TEST

START_TEST(algebra)
{
    struct vmio_cpuset a = parse_ok("0-7"), b = parse_ok("4-11"), d;
    d = a;
    vmio_cpuset_and(&d, &b);
    ck_assert_str_eq(fmt(&d), "4-7");
    d = a;
    vmio_cpuset_or(&d, &b);
    ck_assert_str_eq(fmt(&d), "0-11");
    d = a;
    vmio_cpuset_andnot(&d, &b);
    ck_assert_str_eq(fmt(&d), "0-3");
    ck_assert(!vmio_cpuset_equal(&a, &b));
    ck_assert_int_eq(vmio_cpuset_next(&b, 0), 4);
    ck_assert_int_eq(vmio_cpuset_next(&b, 11), 11);
    ck_assert_int_eq(vmio_cpuset_next(&b, 12), -1);
    ck_assert_int_eq(vmio_cpuset_next(&b, VMIO_CPUSET_MAX), -1);
    struct vmio_cpuset hi = parse_ok("63-64,1023");
    ck_assert_int_eq(vmio_cpuset_next(&hi, 0), 63);
    ck_assert_int_eq(vmio_cpuset_next(&hi, 64), 64);
    ck_assert_int_eq(vmio_cpuset_next(&hi, 65), 1023);
    /* out-of-range CPUs are ignored, never written past the bitmap */
    vmio_cpuset_set(&hi, VMIO_CPUSET_MAX);
    vmio_cpuset_clear(&hi, VMIO_CPUSET_MAX + 5);
    ck_assert(!vmio_cpuset_test(&hi, VMIO_CPUSET_MAX));
    ck_assert_uint_eq(vmio_cpuset_count(&hi), 3);
    vmio_cpuset_clear(&hi, 64);
    ck_assert_str_eq(fmt(&hi), "63,1023");
}
END_TEST

START_TEST(maps)
{
    /* libvirt cpumaps: byte i bit j is CPU 8i+j */
    unsigned char map[3] = { 0x81, 0x00, 0x06 };
    struct vmio_cpuset s;
    vmio_cpuset_from_map(&s, map, sizeof map);
    ck_assert_str_eq(fmt(&s), "0,7,17-18");
    unsigned char out[2];
    vmio_cpuset_to_map(&s, out, sizeof out); /* a short map keeps what fits */
    ck_assert_uint_eq(out[0], 0x81);
    ck_assert_uint_eq(out[1], 0x00);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("group-cpuset");
    TCase *tc = tcase_create("cpuset");
    tcase_add_test(tc, parse_accepts);
    tcase_add_test(tc, parse_rejects);
    tcase_add_test(tc, format_truncates_like_snprintf);
    tcase_add_test(tc, round_trip_random);
    tcase_add_test(tc, algebra);
    tcase_add_test(tc, maps);
    suite_add_tcase(s, tc);
    return test_run(s);
}
