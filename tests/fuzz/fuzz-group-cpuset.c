/* Fuzz target for the cpulist parser of VM groups (libvmio/group/cpuset.c),
 * which reads user options (housekeeping lists), sysfs local_cpulist and
 * libvirt capabilities' siblings. The input, cut at its first NUL, is
 * parsed; a failure is -EINVAL with the parser's prefix and leaves the
 * output alone; a success formats to a canonical list that parses back to
 * the same set and formats identically. The raw bytes also go through the
 * byte-map conversions, which must round trip. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/cpuset.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    struct vmio_cpuset set, back, guard;
    memset(&set, 0x5a, sizeof set);
    guard = set;
    int r = vmio_cpuset_parse(s, &set);
    if (r < 0) {
        CHECK(r == -EINVAL);
        CHECK(vmio_errno() == EINVAL);
        CHECK(strncmp(vmio_errmsg(), "vmio_cpuset_parse: ", 19) == 0);
        CHECK(memcmp(&set, &guard, sizeof set) == 0);
    } else {
        CHECK(r == 0);
        static char text[8192], again[8192];
        int n = vmio_cpuset_format(&set, text, sizeof text);
        CHECK(n >= 0 && (size_t)n < sizeof text && strlen(text) == (size_t)n);
        CHECK(vmio_cpuset_parse(text, &back) == 0);
        CHECK(vmio_cpuset_equal(&set, &back));
        CHECK(vmio_cpuset_format(&back, again, sizeof again) == n);
        CHECK(strcmp(text, again) == 0);
        /* the count agrees with walking the set */
        unsigned k = 0;
        for (int c = vmio_cpuset_next(&set, 0); c >= 0; c = vmio_cpuset_next(&set, (unsigned)c + 1))
            k++;
        CHECK(k == vmio_cpuset_count(&set));
        CHECK((k == 0) == (n == 0));
    }

    unsigned char map[VMIO_CPUSET_MAX / 8], out[VMIO_CPUSET_MAX / 8];
    size_t mlen = size < sizeof map ? size : sizeof map;
    memcpy(map, data, mlen);
    vmio_cpuset_from_map(&set, map, mlen);
    vmio_cpuset_to_map(&set, out, mlen);
    CHECK(memcmp(map, out, mlen) == 0);
    free(s);
    return 0;
}
