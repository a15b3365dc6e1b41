/* Subcommands of vmio-memlend, one file each: the manager daemon and the
 * observer's status view (memlend-manager.c), the lender daemon
 * (memlend-lender.c). Each returns the process exit status. */
#ifndef VMIO_CLI_MEMLEND_CMD_H
#define VMIO_CLI_MEMLEND_CMD_H

int memlend_cmd_manager(int argc, char **argv);
int memlend_cmd_status(int argc, char **argv);
int memlend_cmd_lender(int argc, char **argv);

#endif
