/* Helpers shared by the command-line tools. */
#ifndef VMIO_CLI_UTIL_H
#define VMIO_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "16", "4k", "1M", "1MiB", "2G": binary multiples. 0, -EINVAL or -ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);
/* A decimal integer from 0 to max, nothing else ("-1", "1x", "" are
 * refused): 0 or -1. */
int cli_parse_u32(const char *s, uint32_t max, uint32_t *out);
/* Write s as a JSON string literal. */
void cli_json_string(FILE *fp, const char *s);

/* Nearest-rank percentile p (0..100] of n sorted values, 0 when n is 0. */
uint64_t cli_percentile(const uint64_t *sorted, size_t n, double p);

/* Write content to path atomically (a temporary file renamed over it):
 * readers see the old file, no file, or the whole new one. 0 or -errno. */
int cli_write_file_atomic(const char *path, const char *content);

/* Exit status for usage errors, shared by every tool. */
#define CLI_EXIT_USAGE 2

/* Print "PROG: message" and a --help hint on stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "PROG: message" on stderr; returns status (the tool's exit status
 * for a failure). */
int cli_fail(const char *prog, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
