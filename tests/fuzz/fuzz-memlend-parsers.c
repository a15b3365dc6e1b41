/* Fuzz target for the lender's text parsers (libvmio/memlend/watch.c,
 * target-tgt.c): /proc/meminfo, /proc/pressure/memory and `tgtadm --op
 * show`. Input: one selector byte (mod 3) then the text (NUL-terminated
 * copy, as the lender reads it).
 *
 * Beyond "no crash, no sanitizer report", it checks the contracts and
 * aborts on a violation: failure is -EINVAL (-EPROTO for tgtadm, or
 * -ENOMEM) with the caller's prefix and the outputs untouched; success
 * gives MemAvailable <= MemTotal, PSI averages <= 100.00 %, and tgt
 * entries with NUL-terminated fields. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "memlend/target.h"
#include "memlend/watch.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_failure(int r, int err)
{
    CHECK(r == -err || r == -ENOMEM);
    CHECK(vmio_errno() == -r);
    CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 3) {
    case 0: {
        uint64_t t = 7, a = 7;
        int r = vmio_ml_parse_meminfo(API, text, &t, &a);
        if (r < 0) {
            check_failure(r, EINVAL);
            CHECK(t == 7 && a == 7);
        } else {
            CHECK(r == 0 && a <= t && t % 1024 == 0 && a % 1024 == 0);
        }
        break;
    }
    case 1: {
        struct vmio_ml_mem_sample s;
        memset(&s, 0, sizeof s);
        int r = vmio_ml_parse_psi(API, text, &s);
        if (r < 0) {
            check_failure(r, EINVAL);
            CHECK(s.psi_valid == 0 && s.psi_some_avg10_x100 == 0);
        } else {
            CHECK(s.psi_valid == 1);
            CHECK(s.psi_some_avg10_x100 <= 10000 && s.psi_full_avg10_x100 <= 10000);
        }
        break;
    }
    default: {
        struct vmio_ml_target_entry *e = (void *)1;
        uint32_t *tids = (void *)1;
        size_t n = 99;
        int r = vmio_ml_tgt_parse_show(API, text, &e, &tids, &n);
        if (r < 0) {
            check_failure(r, EPROTO);
            CHECK(n == 99 && e == (void *)1 && tids == (void *)1);
        } else {
            for (size_t i = 0; i < n; i++) {
                CHECK(memchr(e[i].iqn, '\0', sizeof e[i].iqn) != NULL && e[i].iqn[0]);
                CHECK(memchr(e[i].backing, '\0', sizeof e[i].backing) != NULL);
                CHECK(!e[i].backing[0] || e[i].lun != 0);
            }
            free(e);
            free(tids);
        }
        break;
    }
    }
    free(text);
    return 0;
}
