/* vmio-swap: the borrower's tool of memory lending. Moves a swap LV that is
 * in use onto memory borrowed from another host (iSCSI LUN + LVM) and back.
 *
 *   vmio-swap attach --vg VG --lv LV [--size SIZE] [--mirror] [common]
 *   vmio-swap detach [--lease ID | --all] [--vg VG] [common]
 *   vmio-swap status [--vg VG] [--json] [common]
 *   vmio-swap agent [common]
 * common: --manager HOST:PORT --secret-file FILE [--name NAME] [--json]
 *         (VMIO_MEMLEND_MANAGER and VMIO_SECRET_FILE are the defaults)
 *
 * Exit status: 0 success; 1 failure (the library's message on stderr);
 * 2 usage; 3 (status) a swap LV has extents on a missing PV: data at risk.
 * Only the public API is used (include/vmio/memlend.h). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmio/memlend.h>

#include "cli-util.h"

#define PROG "vmio-swap"
#define EXIT_AT_RISK 3

static vmio_memlend_borrower *agent_b;

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: " PROG " attach --vg VG --lv LV [--size SIZE] [--mirror] [common]\n"
            "       " PROG " detach [--lease ID | --all] [--vg VG] [common]\n"
            "       " PROG " status [--vg VG] [--json] [common]\n"
            "       " PROG " agent [common]\n"
            "common: --manager HOST:PORT --secret-file FILE [--name NAME] [--json]\n"
            "        [--timeout-ms MS]   (defaults: $VMIO_MEMLEND_MANAGER, $VMIO_SECRET_FILE)\n"
            "exit status: 0 ok, 1 failure, 2 usage, 3 status: data at risk\n");
}

static void on_stop(int sig)
{
    (void)sig;
    vmio_memlend_swap_agent_stop(agent_b);
}

static const char *event_name(int ev)
{
    switch (ev) {
    case VMIO_MEMLEND_SWAP_EV_REVOKE: return "revoke";
    case VMIO_MEMLEND_SWAP_EV_DETACHED: return "detached";
    case VMIO_MEMLEND_SWAP_EV_LENDER_LOST: return "lender-lost";
    case VMIO_MEMLEND_SWAP_EV_DATA_LOST: return "DATA-LOST";
    case VMIO_MEMLEND_SWAP_EV_LEG_DROPPED: return "leg-dropped";
    case VMIO_MEMLEND_SWAP_EV_ERROR: return "error";
    case VMIO_MEMLEND_SWAP_EV_CONNECTED: return "connected";
    default: return "event";
    }
}

static int json_out;

static void on_event(void *ctx, int ev, uint64_t lease, const char *detail)
{
    (void)ctx;
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (json_out) {
        printf("{\"time\": \"%s\", \"event\": \"%s\", \"lease\": %" PRIu64 ", \"detail\": ", ts,
               event_name(ev), lease);
        cli_json_string(stdout, detail);
        printf("}\n");
    } else {
        printf("%s %s lease=%" PRIu64 " %s\n", ts, event_name(ev), lease, detail);
    }
    fflush(stdout);
    if (ev == VMIO_MEMLEND_SWAP_EV_DATA_LOST || ev == VMIO_MEMLEND_SWAP_EV_ERROR)
        fprintf(stderr, PROG ": %s: %s\n", ev == VMIO_MEMLEND_SWAP_EV_DATA_LOST
                ? "DATA LOST" : "error", detail);
}

static int print_status(vmio_memlend_borrower *b, const char *vg, int json)
{
    struct vmio_memlend_swap_place *p;
    size_t n;
    if (vmio_memlend_swap_status(b, vg, &p, &n) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    int risk = 0;
    if (json)
        printf("{\"places\": [");
    else
        printf("%-10s %-14s %-18s %-8s %10s %6s %-10s %-9s %s\n", "VG", "LV", "PV", "SEGTYPE",
               "MIB", "LEASE", "LENDER", "STATE", "TARGET");
    for (size_t i = 0; i < n; i++) {
        risk |= p[i].missing && p[i].lv[0];
        const char *st = p[i].state ? vmio_memlend_state_name(p[i].state)
                                    : (p[i].lease ? "?" : "local");
        if (p[i].missing)
            st = "MISSING";
        if (json) {
            printf("%s\n  {\"vg\": ", i ? "," : "");
            cli_json_string(stdout, p[i].vg);
            printf(", \"lv\": ");
            cli_json_string(stdout, p[i].lv);
            printf(", \"pv\": ");
            cli_json_string(stdout, p[i].pv);
            printf(", \"segtype\": ");
            cli_json_string(stdout, p[i].segtype);
            printf(", \"bytes\": %" PRIu64 ", \"lease\": %" PRIu64 ", \"lender\": ", p[i].bytes,
                   p[i].lease);
            cli_json_string(stdout, p[i].lender);
            printf(", \"target_iqn\": ");
            cli_json_string(stdout, p[i].target_iqn);
            printf(", \"state\": ");
            cli_json_string(stdout, st);
            printf(", \"missing\": %s}", p[i].missing ? "true" : "false");
        } else {
            printf("%-10s %-14s %-18s %-8s %10" PRIu64 " %6" PRIu64 " %-10s %-9s %s\n",
                   p[i].vg[0] ? p[i].vg : "-", p[i].lv[0] ? p[i].lv : "-", p[i].pv,
                   p[i].segtype[0] ? p[i].segtype : "-", p[i].bytes >> 20, p[i].lease,
                   p[i].lender[0] ? p[i].lender : "-", st,
                   p[i].target_iqn[0] ? p[i].target_iqn : "-");
        }
    }
    if (json)
        printf("%s], \"at_risk\": %s}\n", n ? "\n" : "", risk ? "true" : "false");
    vmio_memlend_swap_status_free(p);
    if (risk)
        fprintf(stderr, PROG ": a swap LV has extents on a missing PV: its pages there are lost\n");
    return risk ? EXIT_AT_RISK : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    enum { O_SIZE = 256, O_VG, O_LV, O_MIRROR, O_MANAGER, O_SECRET, O_NAME, O_JSON, O_LEASE,
           O_ALL, O_TIMEOUT };
    static const struct option longopts[] = {
        {"size", required_argument, NULL, O_SIZE},
        {"vg", required_argument, NULL, O_VG},
        {"lv", required_argument, NULL, O_LV},
        {"mirror", no_argument, NULL, O_MIRROR},
        {"manager", required_argument, NULL, O_MANAGER},
        {"secret-file", required_argument, NULL, O_SECRET},
        {"name", required_argument, NULL, O_NAME},
        {"json", no_argument, NULL, O_JSON},
        {"lease", required_argument, NULL, O_LEASE},
        {"all", no_argument, NULL, O_ALL},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t size = 0, lease = 0;
    const char *vg = NULL, *lv = NULL, *name = NULL;
    const char *manager = getenv("VMIO_MEMLEND_MANAGER");
    const char *secret = getenv("VMIO_SECRET_FILE");
    int mirror = 0, all = 0, json = 0;
    unsigned long timeout = 0;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case O_SIZE:
            if (cli_parse_size(optarg, &size) < 0 || !size)
                return cli_usage_error(PROG, "bad --size %s", optarg);
            break;
        case O_VG: vg = optarg; break;
        case O_LV: lv = optarg; break;
        case O_MIRROR: mirror = 1; break;
        case O_MANAGER: manager = optarg; break;
        case O_SECRET: secret = optarg; break;
        case O_NAME: name = optarg; break;
        case O_JSON: json = 1; break;
        case O_ALL: all = 1; break;
        case O_LEASE:
            errno = 0;
            lease = strtoull(optarg, &end, 10);
            if (errno || *end || !lease)
                return cli_usage_error(PROG, "bad --lease %s", optarg);
            break;
        case O_TIMEOUT:
            errno = 0;
            timeout = strtoul(optarg, &end, 10);
            if (errno || *end || timeout > 3600000)
                return cli_usage_error(PROG, "bad --timeout-ms %s", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_usage_error(PROG, "bad option");
        }
    }
    if (optind != argc)
        return cli_usage_error(PROG, "unexpected argument %s", argv[optind]);
    int is_attach = !strcmp(cmd, "attach"), is_detach = !strcmp(cmd, "detach");
    int is_status = !strcmp(cmd, "status"), is_agent = !strcmp(cmd, "agent");
    if (!is_attach && !is_detach && !is_status && !is_agent)
        return cli_usage_error(PROG, "unknown command %s", cmd);
    if (is_attach && (!vg || !lv))
        return cli_usage_error(PROG, "attach needs --vg and --lv");
    if (is_detach && !lease && !all)
        return cli_usage_error(PROG, "detach needs --lease ID or --all");
    if (is_detach && lease && all)
        return cli_usage_error(PROG, "--lease and --all exclude each other");
    if ((is_attach || is_agent) && (!manager || !secret))
        return cli_usage_error(PROG, "%s needs --manager and --secret-file", cmd);
    if (manager && !secret)
        return cli_usage_error(PROG, "--manager needs --secret-file");

    struct vmio_memlend_borrower_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.manager = manager;
    o.secret_file = secret;
    o.name = name;
    o.timeout_ms = (uint32_t)timeout;
    vmio_memlend_borrower *b;
    if (vmio_memlend_borrower_new(&o, &b) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    int rc = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (is_attach) {
        uint64_t ids[2] = {0, 0};
        int n = vmio_memlend_swap_attach(b, vg, lv, size, mirror ? VMIO_MEMLEND_SWAP_MIRROR : 0,
                                         ids);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (n < 0) {
            rc = cli_fail(PROG, 1, "%s", vmio_errmsg());
        } else if (json) {
            printf("{\"vg\": ");
            cli_json_string(stdout, vg);
            printf(", \"lv\": ");
            cli_json_string(stdout, lv);
            printf(", \"mirror\": %s, \"leases\": [%" PRIu64, mirror ? "true" : "false", ids[0]);
            if (n > 1)
                printf(", %" PRIu64, ids[1]);
            printf("], \"seconds\": %.3f}\n", secs);
        } else {
            printf("%s/%s attached to lease %" PRIu64, vg, lv, ids[0]);
            if (n > 1)
                printf(" and %" PRIu64 " (raid1)", ids[1]);
            printf(" in %.1f s\n", secs);
        }
    } else if (is_detach) {
        int n = vmio_memlend_swap_detach(b, vg, all ? 0 : lease);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (n < 0)
            rc = cli_fail(PROG, 1, "%s", vmio_errmsg());
        else if (json)
            printf("{\"detached\": %d, \"seconds\": %.3f}\n", n, secs);
        else
            printf("%d lease(s) given back in %.1f s\n", n, secs);
    } else if (is_status) {
        rc = print_status(b, vg, json);
    } else {
        json_out = json;
        agent_b = b;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        if (vmio_memlend_swap_agent(b, on_event, NULL) < 0)
            rc = cli_fail(PROG, 1, "%s", vmio_errmsg());
    }
    vmio_memlend_borrower_free(b);
    return rc;
}
