/* Helpers shared by the Check unit tests: error-convention assertions,
 * scratch directories, data patterns and the common main(). Header only,
 * so each test stays one self-contained executable. */
#ifndef VMIO_TEST_COMMON_H
#define VMIO_TEST_COMMON_H

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmio/core.h>

#define TEST_UNUSED __attribute__((unused))

/* The library's error convention: ret is -err, the thread's errno is err
 * and the message starts with "api: ". */
#define ck_assert_vmio_err(ret, err, api)                                       \
    do {                                                                        \
        int ck_r_ = (ret);                                                      \
        const char *ck_m_ = vmio_errmsg();                                      \
        ck_assert_msg(ck_r_ == -(err), "expected -%s (%d), got %d (%s)", #err,  \
                      -(err), ck_r_, ck_m_);                                    \
        ck_assert_int_eq(vmio_errno(), (err));                                  \
        ck_assert_msg(strncmp(ck_m_, api ": ", strlen(api ": ")) == 0,          \
                      "message '%s' lacks the prefix '%s: '", ck_m_, api);      \
    } while (0)

/* Same, and the message must contain needle. */
#define ck_assert_vmio_err_msg(ret, err, api, needle)                           \
    do {                                                                        \
        ck_assert_vmio_err(ret, err, api);                                      \
        ck_assert_msg(strstr(vmio_errmsg(), (needle)) != NULL,                  \
                      "message '%s' does not mention '%s'", vmio_errmsg(),      \
                      (needle));                                                \
    } while (0)

/* A call that succeeded: 0 and no error left behind. */
#define ck_assert_vmio_ok(ret)                                                  \
    do {                                                                        \
        int ck_r_ = (ret);                                                      \
        ck_assert_msg(ck_r_ == 0, "%s failed: %d (%s)", #ret, ck_r_,            \
                      vmio_errmsg());                                           \
    } while (0)

static TEST_UNUSED int rm_one(const char *path, const struct stat *st, int flag,
                              struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh scratch directory under $TMPDIR (or /tmp); out gets its path. */
static TEST_UNUSED void test_mkdtemp(char *out, size_t n)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int w = snprintf(out, n, "%s/vmio-test-XXXXXX", base);
    ck_assert(w > 0 && (size_t)w < n);
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

static TEST_UNUSED void test_rmtree(const char *path)
{
    if (path && *path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Deterministic bytes that depend on the absolute offset and a seed, so a
 * block written at the wrong place or a stale block is detected. */
static TEST_UNUSED void test_fill(void *buf, size_t len, uint64_t offset, uint32_t seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed;
        x ^= x >> 29;
        p[i] = (uint8_t)(x ^ (x >> 17));
    }
}

/* Index of the first byte that differs from test_fill(), or -1. */
static TEST_UNUSED long test_check(const void *buf, size_t len, uint64_t offset,
                                   uint32_t seed)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed;
        x ^= x >> 29;
        if (p[i] != (uint8_t)(x ^ (x >> 17)))
            return (long)i;
    }
    return -1;
}

static TEST_UNUSED int test_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

static TEST_UNUSED double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs a suite; CK_FORK, CK_RUN_CASE etc. work as usual. */
static TEST_UNUSED int test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
