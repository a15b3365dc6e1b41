/* vmio-memlend: the memory-lending daemons (manager, lender) and the
 * manager's view (status). The borrower's tool is vmio-swap. */
#include <stdio.h>
#include <string.h>

#include "cli-util.h"
#include "memlend-cmd.h"

static void usage(FILE *fp)
{
    fprintf(fp,
            "Usage: vmio-memlend manager --listen HOST:PORT --db FILE --secret-file FILE [...]\n"
            "       vmio-memlend lender --manager HOST:PORT --secret-file FILE --portal ADDR:PORT [...]\n"
            "       vmio-memlend status --manager HOST:PORT --secret-file FILE [--json]\n"
            "       vmio-memlend SUBCOMMAND --help\n"
            "See vmio-memlend(8).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "manager") == 0)
        return memlend_cmd_manager(argc - 1, argv + 1);
    if (strcmp(cmd, "lender") == 0)
        return memlend_cmd_lender(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return memlend_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    return cli_usage_error("vmio-memlend", "unknown subcommand '%s'", cmd);
}
