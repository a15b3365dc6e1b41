/* vmio-memlend lender: the lender daemon, a thin wrapper around
 * vmio_memlend_lender_* (libvmio/memlend/lender.c). One line per event on
 * stdout ("EVENT text"), errors on stderr; SIGTERM/SIGINT stop it cleanly,
 * SIGUSR1 asks every lease back (and stops lending). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmio/memlend.h>

#include "cli-util.h"
#include "memlend-cmd.h"

#define PROG "vmio-memlend"

static vmio_memlend_lender *running;

static void on_stop(int sig)
{
    (void)sig;
    vmio_memlend_lender_stop(running);
}

static void on_reclaim(int sig)
{
    (void)sig;
    vmio_memlend_lender_reclaim_all(running);
}

static void on_event(void *opaque, const struct vmio_memlend_lender_event *ev)
{
    (void)opaque;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    printf("%s.%03ld %s %s\n", when, ts.tv_nsec / 1000000, vmio_memlend_lender_event_name(ev->type),
           ev->text);
    fflush(stdout);
}

static void lender_usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " lender --manager HOST:PORT --secret-file FILE --name NAME\n"
            "                    --portal ADDR:PORT --backend tgt|lio [options]\n"
            "Lends this host's spare memory as iSCSI LUNs backed by tmpfs/ramfs.\n"
            "  -m, --manager HOST:PORT      the manager\n"
            "  -s, --secret-file FILE       shared secret (mode 0600)\n"
            "  -n, --name NAME              lender name (a-z 0-9 - .; default: host name)\n"
            "  -p, --portal ADDR:PORT       iSCSI portal borrowers log in to\n"
            "  -b, --backend tgt|lio        iSCSI target (default tgt)\n"
            "      --tgt-control-port N     tgtd's management port (tgtadm -C)\n"
            "      --configfs DIR           LIO: configfs mount (default /sys/kernel/config)\n"
            "      --state-dir DIR          lease memory is mounted at DIR/mem\n"
            "                               (default /var/lib/vmio-memlend)\n"
            "      --ramfs                  ramfs instead of tmpfs\n"
            "      --reserve SIZE           MemAvailable never lent (default 10%%, >= 512M)\n"
            "      --max-lend SIZE          never lend more than this in total\n"
            "      --psi-limit PCT          memory pressure (some avg10) that reclaims\n"
            "                               (default 10)\n"
            "      --hysteresis SIZE        smallest offer growth (default 64M)\n"
            "      --growth SIZE            offer growth per second at most (default 256M)\n"
            "      --calm S                 after pressure, wait S s before offering (30)\n"
            "      --reclaim-deadline S     wait S s for the borrower's release (300)\n"
            "      --on-unresponsive keep|force  past the deadline: keep the LUN and stop\n"
            "                               lending (default), or remove it when no\n"
            "                               initiator is logged in\n"
            "      --reclaim-now            reclaim every lease, exit once all are freed\n"
            "      --interval MS            memory sampling interval (default 1000)\n"
            "      --lease-seconds N        heartbeat every N/3 s (match the manager; 30)\n"
            "      --timeout MS             manager calls and tools (default 30000)\n"
            "      --libvirt URI            also watch these libvirt guests\n"
            "      --meminfo FILE, --psi FILE  read memory state there (tests)\n"
            "  -h, --help                   this help\n"
            "SIGTERM/SIGINT: stop (withdraw when nothing is lent); SIGUSR1: reclaim all.\n"
            "See vmio-memlend(8).\n");
}

int memlend_cmd_lender(int argc, char **argv)
{
    enum {
        O_TGT_PORT = 256, O_CONFIGFS, O_STATE, O_RAMFS, O_RESERVE, O_MAXLEND, O_PSI, O_HYST,
        O_GROWTH, O_CALM, O_DEADLINE, O_UNRESP, O_NOW, O_INTERVAL, O_LEASE, O_TIMEOUT,
        O_LIBVIRT, O_MEMINFO, O_PSIFILE
    };
    static const struct option longopts[] = {
        {"manager", required_argument, NULL, 'm'},
        {"secret-file", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"portal", required_argument, NULL, 'p'},
        {"backend", required_argument, NULL, 'b'},
        {"tgt-control-port", required_argument, NULL, O_TGT_PORT},
        {"configfs", required_argument, NULL, O_CONFIGFS},
        {"state-dir", required_argument, NULL, O_STATE},
        {"ramfs", no_argument, NULL, O_RAMFS},
        {"reserve", required_argument, NULL, O_RESERVE},
        {"max-lend", required_argument, NULL, O_MAXLEND},
        {"psi-limit", required_argument, NULL, O_PSI},
        {"hysteresis", required_argument, NULL, O_HYST},
        {"growth", required_argument, NULL, O_GROWTH},
        {"calm", required_argument, NULL, O_CALM},
        {"reclaim-deadline", required_argument, NULL, O_DEADLINE},
        {"on-unresponsive", required_argument, NULL, O_UNRESP},
        {"reclaim-now", no_argument, NULL, O_NOW},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"lease-seconds", required_argument, NULL, O_LEASE},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"libvirt", required_argument, NULL, O_LIBVIRT},
        {"meminfo", required_argument, NULL, O_MEMINFO},
        {"psi", required_argument, NULL, O_PSIFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct vmio_memlend_lender_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    char host[64] = "";
    uint32_t calm_s = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:n:p:b:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.manager = optarg; break;
        case 's': o.secret_file = optarg; break;
        case 'n': o.name = optarg; break;
        case 'p': o.portal = optarg; break;
        case 'b':
            if (strcmp(optarg, "tgt") && strcmp(optarg, "lio"))
                return cli_usage_error(PROG, "--backend: tgt or lio, not '%s'", optarg);
            o.backend = optarg;
            break;
        case O_TGT_PORT:
            if (cli_parse_u32(optarg, 65535, &o.tgt_control_port) < 0)
                return cli_usage_error(PROG, "--tgt-control-port: bad port '%s'", optarg);
            break;
        case O_CONFIGFS: o.configfs = optarg; break;
        case O_STATE: o.state_dir = optarg; break;
        case O_RAMFS: o.use_ramfs = 1; break;
        case O_RESERVE:
        case O_MAXLEND:
        case O_HYST:
        case O_GROWTH: {
            uint64_t v;
            if (cli_parse_size(optarg, &v) < 0 || v == 0)
                return cli_usage_error(PROG, "bad size '%s'", optarg);
            if (c == O_RESERVE)
                o.reserve = v;
            else if (c == O_MAXLEND)
                o.max_lend = v;
            else if (c == O_HYST)
                o.hysteresis = v;
            else
                o.growth_per_s = v;
            break;
        }
        case O_PSI: {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(v > 0.0) || v > 100.0)
                return cli_usage_error(PROG, "--psi-limit: a percentage in (0, 100], not '%s'",
                                       optarg);
            o.psi_limit_x100 = (uint32_t)(v * 100.0 + 0.5);
            break;
        }
        case O_CALM:
            if (cli_parse_u32(optarg, 86400, &calm_s) < 0 || calm_s == 0)
                return cli_usage_error(PROG, "--calm: seconds, not '%s'", optarg);
            o.calm_ms = calm_s * 1000;
            break;
        case O_DEADLINE:
            if (cli_parse_u32(optarg, 86400 * 7, &o.reclaim_deadline_s) < 0 || !o.reclaim_deadline_s)
                return cli_usage_error(PROG, "--reclaim-deadline: seconds, not '%s'", optarg);
            break;
        case O_UNRESP:
            if (strcmp(optarg, "keep") == 0)
                o.on_unresponsive = VMIO_MEMLEND_UNRESPONSIVE_KEEP;
            else if (strcmp(optarg, "force") == 0)
                o.on_unresponsive = VMIO_MEMLEND_UNRESPONSIVE_FORCE;
            else
                return cli_usage_error(PROG, "--on-unresponsive: keep or force, not '%s'", optarg);
            break;
        case O_NOW: o.reclaim_now = 1; break;
        case O_INTERVAL:
            if (cli_parse_u32(optarg, 3600000, &o.watch_interval_ms) < 0 || o.watch_interval_ms < 10)
                return cli_usage_error(PROG, "--interval: milliseconds >= 10, not '%s'", optarg);
            break;
        case O_LEASE:
            if (cli_parse_u32(optarg, 86400, &o.lease_seconds) < 0 || o.lease_seconds < 3)
                return cli_usage_error(PROG, "--lease-seconds: >= 3, not '%s'", optarg);
            break;
        case O_TIMEOUT:
            if (cli_parse_u32(optarg, 3600000, &o.timeout_ms) < 0 || !o.timeout_ms)
                return cli_usage_error(PROG, "--timeout: milliseconds, not '%s'", optarg);
            break;
        case O_LIBVIRT: o.libvirt_uri = optarg; break;
        case O_MEMINFO: o.meminfo_path = optarg; break;
        case O_PSIFILE: o.psi_path = optarg; break;
        case 'h': lender_usage(stdout); return 0;
        default: return cli_usage_error(PROG, "lender: bad option");
        }
    }
    if (optind != argc)
        return cli_usage_error(PROG, "lender: unexpected argument '%s'", argv[optind]);
    if (!o.manager || !o.secret_file || !o.portal)
        return cli_usage_error(PROG, "lender: --manager, --secret-file and --portal are required");
    if (!o.name) {
        if (gethostname(host, sizeof host - 1) < 0 || !host[0])
            return cli_usage_error(PROG, "lender: no --name and no host name");
        for (char *p = host; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        o.name = host;
    }
    o.on_event = on_event;

    vmio_memlend_lender *l;
    if (vmio_memlend_lender_new(&o, &l) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    running = l;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reclaim;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int r = vmio_memlend_lender_run(l);
    int status = 0;
    if (r < 0)
        status = cli_fail(PROG, 1, "%s", vmio_errmsg());
    struct vmio_memlend_lender_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    if (vmio_memlend_lender_get_stats(l, &st) == 0) {
        printf("stats leases=%u lent=%" PRIu64 " provisioned=%" PRIu64 " refused=%" PRIu64
               " reclaims=%" PRIu64 " removed=%" PRIu64 " unresponsive=%" PRIu64
               " forced=%" PRIu64 " reclaim_latency_ms_last=%.1f max=%.1f mean=%.1f\n",
               st.leases, st.lent, st.provisioned, st.refused, st.reclaims, st.removed,
               st.unresponsive, st.forced, (double)st.reclaim_last_ns / 1e6,
               (double)st.reclaim_max_ns / 1e6,
               st.reclaim_count ? (double)st.reclaim_total_ns / 1e6 / (double)st.reclaim_count
                                : 0.0);
        fflush(stdout);
    }
    running = NULL;
    vmio_memlend_lender_free(l);
    return status;
}
