/* Fuzz target for the VM-group state files (libvmio/group/state.c): the
 * files of the state directory may have been edited by hand or cut short
 * by a full disk, so the parser sees arbitrary bytes.
 *
 * Beyond "no crash, no sanitizer report", it checks the contract: a
 * failure is -EINVAL (or -ENOMEM) with the caller's prefix, the origin in
 * the message and an empty result; a success has a valid name, an id > 0,
 * valid member names, and formats to a text that parses back to the same
 * text (what is loaded is what would be saved). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/state.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vmio_group_state st;
    int r = vmio_group_state_parse(API, "in.group", (const char *)data, size, &st);
    if (r < 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        CHECK(vmio_errno() == -r);
        CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
        CHECK(r == -ENOMEM || strstr(vmio_errmsg(), "in.group") != NULL);
        CHECK(st.members == NULL && st.nmembers == 0 && st.id == 0);
        CHECK(st.saved == NULL && st.nsaved == 0);
        return 0;
    }
    CHECK(st.id > 0);
    CHECK(vmio_group_name_valid(st.name));
    CHECK(!strcmp(st.backend, "libvirt") || !strcmp(st.backend, "xen"));
    CHECK(st.pin >= 0 && st.pin <= 3 && st.locality >= 0 && st.locality <= 3);
    for (size_t i = 0; i < st.nmembers; i++) {
        CHECK(vmio_group_vm_name_valid(st.members[i]));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(st.members[i], st.members[j]) != 0);
    }
    for (size_t i = 0; i < st.nsaved; i++) {
        CHECK(vmio_group_vm_name_valid(st.saved[i].vm));
        CHECK(vmio_group_state_saved(&st, st.saved[i].vm) == &st.saved[i]);
    }
    char *text = NULL, *again = NULL;
    if (vmio_group_state_format(API, &st, &text) == 0) {
        struct vmio_group_state back;
        CHECK(vmio_group_state_parse(API, "again", text, strlen(text), &back) == 0);
        CHECK(vmio_group_state_format(API, &back, &again) == 0);
        CHECK(strcmp(text, again) == 0);
        CHECK(back.nmembers == st.nmembers && back.id == st.id && back.nsaved == st.nsaved);
        vmio_group_state_clear(&back);
    }
    free(text);
    free(again);
    vmio_group_state_clear(&st);
    return 0;
}
