/* Running external tools (tgtadm, iscsiadm, lvm, ...) from library code:
 * argv only (never a shell), a timeout after which the child is killed,
 * stdout and stderr captured, and failures turned into the library's error
 * convention with the tool's own stderr in the message. */
#ifndef VMIO_CORE_SPAWN_H
#define VMIO_CORE_SPAWN_H

#include <stddef.h>
#include <stdint.h>

struct vmio_spawn_result {
    int status;         /* exit code; 128 + signal when killed by one */
    int timed_out;      /* 1 when the timeout killed it */
    char *out;          /* stdout, NUL terminated (never NULL after a run) */
    size_t out_len;
    char *err;          /* stderr, NUL terminated */
    size_t err_len;
};

/* Run argv[0] (searched in PATH) with argv, stdin from input (NULL: empty),
 * extra environment entries "NAME=value" (NULL-terminated, may be NULL) on
 * top of the caller's, at most timeout_ms (0 = 60000) before SIGKILL of
 * the child's process group. Output beyond 16 MiB per stream is dropped.
 * Returns 0 when the tool ran (whatever its exit status; see r->status),
 * or -errno when it could not be started or waited for (message recorded
 * under api). Free r with vmio_spawn_result_free(). */
int vmio_spawn(const char *api, const char *const argv[], const char *const env[],
               const char *input, uint32_t timeout_ms, struct vmio_spawn_result *r);

/* vmio_spawn() and require exit status 0. Otherwise record
 * "api: <argv0> <argv1> failed (exit status N|timed out after S s): <stderr>"
 * and return -EIO (-ETIMEDOUT on timeout). r may be NULL when the output is
 * not needed; when given, it is filled in either case and must be freed. */
int vmio_spawn_check(const char *api, const char *const argv[], uint32_t timeout_ms,
                     struct vmio_spawn_result *r);

void vmio_spawn_result_free(struct vmio_spawn_result *r);

#endif
