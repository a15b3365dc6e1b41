/* vmio-memlend manager: the memory-lending manager daemon (a thin wrapper
 * around vmio_memlend_manager_*), and vmio-memlend status: the manager's
 * view of lenders and leases for people (a table) and scripts (--json). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <vmio/memlend.h>

#include "cli-util.h"
#include "memlend-cmd.h"

#define PROG "vmio-memlend"

static int use_syslog;
static vmio_memlend_manager *running;

static void log_cb(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (use_syslog) {
        int pri = level == VMIO_LOG_ERROR     ? LOG_ERR
                  : level == VMIO_LOG_WARNING ? LOG_WARNING
                  : level == VMIO_LOG_INFO    ? LOG_INFO
                                              : LOG_DEBUG;
        syslog(pri, "%s", msg);
        return;
    }
    const char *tag = level == VMIO_LOG_ERROR     ? "error: "
                      : level == VMIO_LOG_WARNING ? "warning: "
                      : level == VMIO_LOG_DEBUG   ? "debug: "
                                                  : "";
    fprintf(stderr, PROG ": %s%s\n", tag, msg);
}

static void on_signal(int sig)
{
    (void)sig;
    vmio_memlend_manager_stop(running);   /* async-signal-safe */
}

static void manager_usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " manager --listen HOST:PORT --db FILE --secret-file FILE [options]\n"
            "Keeps the lenders' database and hands out leases of remote memory.\n"
            "  -l, --listen HOST:PORT       address to listen on (port 0 picks one)\n"
            "  -d, --db FILE                SQLite database (created when missing)\n"
            "  -s, --secret-file FILE       shared secret (mode 0600)\n"
            "      --lease-seconds N        lender lease renewed by heartbeat (default 30)\n"
            "      --provision-timeout MS   time a lender has to make a LUN (default 30000)\n"
            "      --attach-timeout MS      after a restart, time a borrower has to report a\n"
            "                               READY lease ATTACHED before it is given back\n"
            "                               (default 300000)\n"
            "      --port-file FILE         write the bound port there once listening\n"
            "  -f, --foreground             do not daemonize; log to stderr\n"
            "  -v, --verbose                log debug messages\n"
            "  -h, --help                   this help\n"
            "Prints \"listening on HOST:PORT\" once it serves. See vmio-memlend(8).\n");
}

/* "listening on HOST:PORT" with the port actually bound. */
static void print_listening(const char *listen, int port)
{
    const char *colon = strrchr(listen, ':');
    int hl = colon ? (int)(colon - listen) : (int)strlen(listen);
    printf("listening on %.*s:%d\n", hl, listen, port);
    fflush(stdout);
}

int memlend_cmd_manager(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "db", required_argument, NULL, 'd' },
        { "secret-file", required_argument, NULL, 's' },
        { "lease-seconds", required_argument, NULL, 'L' },
        { "provision-timeout", required_argument, NULL, 'T' },
        { "attach-timeout", required_argument, NULL, 'A' },
        { "port-file", required_argument, NULL, 'P' },
        { "foreground", no_argument, NULL, 'f' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct vmio_memlend_manager_options o = { .struct_size = sizeof o };
    const char *port_file = NULL;
    int foreground = 0, verbose = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:d:s:fvh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 'd': o.db_path = optarg; break;
        case 's': o.secret_file = optarg; break;
        case 'L':
            if (cli_parse_u32(optarg, 86400, &o.lease_seconds) < 0 || o.lease_seconds == 0)
                return cli_usage_error(PROG, "--lease-seconds: expected 1..86400, got '%s'",
                                       optarg);
            break;
        case 'T':
            if (cli_parse_u32(optarg, 86400000, &o.provision_timeout_ms) < 0 ||
                o.provision_timeout_ms == 0)
                return cli_usage_error(PROG, "--provision-timeout: expected milliseconds, "
                                             "got '%s'",
                                       optarg);
            break;
        case 'A':
            if (cli_parse_u32(optarg, 86400000, &o.attach_timeout_ms) < 0 ||
                o.attach_timeout_ms == 0)
                return cli_usage_error(PROG, "--attach-timeout: expected milliseconds, got '%s'",
                                       optarg);
            break;
        case 'P': port_file = optarg; break;
        case 'f': foreground = 1; break;
        case 'v': verbose = 1; break;
        case 'h': manager_usage(stdout); return 0;
        default: return cli_usage_error(PROG, "bad option for 'manager'");
        }
    }
    if (optind < argc)
        return cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    if (!o.listen || !o.db_path || !o.secret_file)
        return cli_usage_error(PROG, "manager needs --listen, --db and --secret-file");

    vmio_set_log(log_cb, NULL, verbose ? VMIO_LOG_DEBUG : VMIO_LOG_INFO);
    signal(SIGPIPE, SIG_IGN);
    /* Everything that can fail because of the arguments fails here, in the
     * foreground, before we detach. */
    vmio_memlend_manager *m;
    if (vmio_memlend_manager_new(&o, &m) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    int port = vmio_memlend_manager_port(m);

    int ready_fd = -1;
    if (!foreground) {
        int pfd[2];
        if (pipe(pfd) < 0) {
            vmio_memlend_manager_free(m);
            return cli_fail(PROG, 1, "pipe: %s", strerror(errno));
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            vmio_memlend_manager_free(m);
            return cli_fail(PROG, 1, "fork: %s", strerror(errno));
        }
        if (pid > 0) {
            /* The parent reports once the child serves. */
            close(pfd[1]);
            char st = 1;
            ssize_t n;
            do
                n = read(pfd[0], &st, 1);
            while (n < 0 && errno == EINTR);
            if (n == 1 && st == 0) {
                print_listening(o.listen, port);
                _exit(0);
            }
            fprintf(stderr, PROG ": the manager failed to start (see the system log)\n");
            _exit(1);
        }
        close(pfd[0]);
        ready_fd = pfd[1];
        setsid();
        openlog("vmio-memlend-manager", LOG_PID, LOG_DAEMON);
        use_syslog = 1;
    }

    running = m;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (port_file) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d\n", port);
        int r = cli_write_file_atomic(port_file, buf);
        if (r < 0) {
            log_cb(NULL, VMIO_LOG_ERROR, "cannot write the port file");
            vmio_memlend_manager_free(m);
            return 1;
        }
    }
    if (foreground) {
        print_listening(o.listen, port);
    } else {
        char ok = 0;
        ssize_t w = write(ready_fd, &ok, 1);
        (void)w;
        close(ready_fd);
        if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
            !freopen("/dev/null", "w", stderr))
            syslog(LOG_WARNING, "cannot redirect stdio to /dev/null");
    }
    int r = vmio_memlend_manager_run(m);
    if (r < 0)
        log_cb(NULL, VMIO_LOG_ERROR, vmio_errmsg());
    running = NULL;
    vmio_memlend_manager_free(m);
    if (port_file)
        unlink(port_file);
    return r < 0 ? 1 : 0;
}

/* ---- status ---- */

static void status_usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " status --manager HOST:PORT --secret-file FILE [--json]\n"
            "Shows the manager's lenders and leases.\n"
            "  -m, --manager HOST:PORT   the manager\n"
            "  -s, --secret-file FILE    shared secret (mode 0600)\n"
            "  -j, --json                machine-readable output\n"
            "  -n, --name NAME           name to connect as (default: observer)\n"
            "  -t, --timeout MS          bound on every call (default 30000)\n"
            "  -h, --help                this help\n");
}

static void print_json(const struct vmio_memlend_lease *ls, size_t nls,
                       const struct vmio_memlend_lender_info *ld, size_t nld)
{
    printf("{\n  \"lenders\": [");
    for (size_t i = 0; i < nld; i++) {
        const struct vmio_memlend_lender_info *l = &ld[i];
        printf("%s\n    {\"name\": ", i ? "," : "");
        cli_json_string(stdout, l->name);
        printf(", \"portal\": ");
        cli_json_string(stdout, l->portal);
        printf(", \"exportable\": %" PRIu64 ", \"lent\": %" PRIu64
               ", \"available\": %s, \"expiry\": %" PRId64 "}",
               l->exportable, l->lent, l->available ? "true" : "false", l->expiry);
    }
    printf("%s],\n  \"leases\": [", nld ? "\n  " : "");
    for (size_t i = 0; i < nls; i++) {
        const struct vmio_memlend_lease *l = &ls[i];
        printf("%s\n    {\"id\": %" PRIu64 ", \"state\": \"%s\", \"size\": %" PRIu64
               ", \"lender\": ",
               i ? "," : "", l->id, vmio_memlend_state_name(l->state), l->size);
        cli_json_string(stdout, l->lender);
        printf(", \"borrower\": ");
        cli_json_string(stdout, l->borrower);
        printf(", \"portal\": ");
        cli_json_string(stdout, l->portal);
        printf(", \"target_iqn\": ");
        cli_json_string(stdout, l->target_iqn);
        printf(", \"lun\": %u, \"lender_expiry\": %" PRId64 "}", l->lun, l->lender_expiry);
    }
    printf("%s]\n}\n", nls ? "\n  " : "");
}

static void human_size(uint64_t b, char *out, size_t n)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void print_table(const struct vmio_memlend_lease *ls, size_t nls,
                        const struct vmio_memlend_lender_info *ld, size_t nld)
{
    int64_t now = (int64_t)time(NULL);
    char a[32], b[32];
    printf("LENDERS (%zu)\n", nld);
    if (nld)
        printf("  %-20s %-24s %12s %12s %-11s %s\n", "NAME", "PORTAL", "EXPORTABLE", "LENT",
               "STATE", "LEASE");
    for (size_t i = 0; i < nld; i++) {
        const struct vmio_memlend_lender_info *l = &ld[i];
        human_size(l->exportable, a, sizeof a);
        human_size(l->lent, b, sizeof b);
        printf("  %-20s %-24s %12s %12s %-11s ", l->name, l->portal, a, b,
               l->available ? "available" : "unavailable");
        if (l->available)
            printf("%+" PRId64 " s\n", l->expiry - now);
        else
            printf("-\n");
    }
    printf("LEASES (%zu)\n", nls);
    if (nls)
        printf("  %-6s %-9s %12s %-20s %-20s %s\n", "ID", "STATE", "SIZE", "LENDER", "BORROWER",
               "TARGET");
    for (size_t i = 0; i < nls; i++) {
        const struct vmio_memlend_lease *l = &ls[i];
        human_size(l->size, a, sizeof a);
        printf("  %-6" PRIu64 " %-9s %12s %-20s %-20s ", l->id,
               vmio_memlend_state_name(l->state), a, l->lender, l->borrower);
        if (l->target_iqn[0])
            printf("%s %s lun %u\n", l->portal, l->target_iqn, l->lun);
        else
            printf("%s (not exported yet)\n", l->portal);
    }
}

int memlend_cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "manager", required_argument, NULL, 'm' },
        { "secret-file", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "name", required_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *manager = NULL, *secret = NULL, *name = "observer";
    uint32_t timeout = 30000;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:jn:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': manager = optarg; break;
        case 's': secret = optarg; break;
        case 'j': json = 1; break;
        case 'n': name = optarg; break;
        case 't':
            if (cli_parse_u32(optarg, 86400000, &timeout) < 0 || timeout == 0)
                return cli_usage_error(PROG, "--timeout: expected milliseconds, got '%s'",
                                       optarg);
            break;
        case 'h': status_usage(stdout); return 0;
        default: return cli_usage_error(PROG, "bad option for 'status'");
        }
    }
    if (optind < argc)
        return cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
    if (!manager || !secret)
        return cli_usage_error(PROG, "status needs --manager and --secret-file");
    signal(SIGPIPE, SIG_IGN);
    vmio_memlend_client *cl;
    if (vmio_memlend_connect(manager, secret, VMIO_MEMLEND_ROLE_OBSERVER, name, timeout, &cl) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    struct vmio_memlend_lease *ls;
    struct vmio_memlend_lender_info *ld;
    size_t nls, nld;
    if (vmio_memlend_status(cl, &ls, &nls, &ld, &nld) < 0) {
        int r = cli_fail(PROG, 1, "%s", vmio_errmsg());
        vmio_memlend_disconnect(cl);
        return r;
    }
    vmio_memlend_disconnect(cl);
    if (json)
        print_json(ls, nls, ld, nld);
    else
        print_table(ls, nls, ld, nld);
    vmio_memlend_status_free(ls, ld);
    return fflush(stdout) == 0 ? 0 : 1;
}
