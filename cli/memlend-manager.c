/* vmio-memlend manager (being written). */
#include "cli-util.h"
#include "memlend-cmd.h"
int memlend_cmd_manager(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("vmio-memlend", 1, "not built yet"); }
int memlend_cmd_status(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("vmio-memlend", 1, "not built yet"); }
