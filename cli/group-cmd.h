/* What vmio-group.c (groups) and group-hostdev.c (InfiniBand passthrough)
 * share: the parsed command line and the output helpers. */
#ifndef VMIO_CLI_GROUP_CMD_H
#define VMIO_CLI_GROUP_CMD_H

#include <stdio.h>

#include <vmio/group.h>

#define PROG "vmio-group"

struct group_cli {
    const char *backend, *uri, *state_dir, *topology, *sysfs;
    int json, dry_run;
    char **args; /* positional arguments after the command */
    int nargs;
};

/* A JSON string, or null for NULL. */
void gc_json_str(FILE *fp, const char *s);
/* A report as text ("vm: what: before -> after", warnings, placement) or
 * as the JSON members "changes", "warnings", "cpus" (no braces). */
void gc_print_report(const struct group_cli *o, const vmio_group_report *r);
/* Connect as the options say: 0, or 1 after printing the error. */
int gc_connect(const struct group_cli *o, vmio_group_conn **conn);
/* "vmio-group: <vmio_errmsg()>" on stderr; returns 1. */
int gc_fail(void);

/* hostdev list|attach|detach|host-detach|host-reattach (group-hostdev.c):
 * args[0] is the subcommand. Returns the exit status. */
int gc_hostdev(struct group_cli *o);

#endif
