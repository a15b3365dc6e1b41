/* CHECK(cond) for the fuzz harnesses: a property that must hold for every
 * input; on violation, say which and abort so that libFuzzer keeps the
 * input as a crash. */
#ifndef VMIO_FUZZ_CHECK_H
#define VMIO_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <vmio/core.h>

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n",       \
                    __FILE__, __LINE__, #cond, vmio_errmsg());                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

#endif
