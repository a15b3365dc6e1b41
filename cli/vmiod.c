/* vmiod: serve directories of VM images to vmio:// clients. A thin
 * command-line wrapper around the embeddable server (<vmio/server.h>);
 * everything it does is visible through that API. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <vmio/vmio.h>

#include "cli-util.h"

#define MAX_LISTEN 16
#define MAX_EXPORTS 256

struct listen_addr {
    char *host;          /* NULL = every address */
    uint16_t port;
};

struct export_spec {
    char *name;
    char *dir;
    unsigned flags;
};

static int use_syslog;

static void log_cb(void *opaque, int level, const char *msg)
{
    (void)opaque;
    if (use_syslog) {
        int pri = level == VMIO_LOG_ERROR ? LOG_ERR
                : level == VMIO_LOG_WARNING ? LOG_WARNING
                : level == VMIO_LOG_INFO ? LOG_INFO : LOG_DEBUG;
        syslog(pri, "%s", msg);
        return;
    }
    const char *tag = level == VMIO_LOG_ERROR ? "error: "
                    : level == VMIO_LOG_WARNING ? "warning: "
                    : level == VMIO_LOG_DEBUG ? "debug: " : "";
    fprintf(stderr, "vmiod: %s%s\n", tag, msg);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vmiod --export NAME=DIR[,ro][,nolocal] --secret-file FILE [OPTIONS]\n"
            "Serve the image files below DIR to vmio://HOST:PORT/NAME/PATH clients.\n"
            "\n"
            "  -l, --listen HOST:PORT    address to listen on (repeatable; HOST may be\n"
            "                            [IPv6], '*' or empty for all addresses;\n"
            "                            PORT 0 picks a free port; default *:%d)\n"
            "  -e, --export NAME=DIR[,ro][,nolocal]\n"
            "                            export DIR as NAME (repeatable; ',ro' makes it\n"
            "                            read-only; ',nolocal' refuses clients on this\n"
            "                            host the local data path)\n"
            "  -s, --secret-file FILE    shared secret clients must prove (mode 0600)\n"
            "  -f, --foreground          do not daemonize; log to stderr\n"
            "  -w, --workers N           request threads per connection (default 8)\n"
            "      --poll-us N           spin up to N microseconds for the next request\n"
            "                            before sleeping (adaptive; 0 = off; default 200)\n"
            "      --splice auto|on|off  large writes go socket -> pipe -> file, one copy\n"
            "                            (auto: when vmiod may run on one CPU only;\n"
            "                            default auto)\n"
            "      --rdma auto|on|off    also accept RDMA connections on each listen\n"
            "                            address and port (auto: where an RDMA device\n"
            "                            serves it; on: fail otherwise; default auto)\n"
            "      --port-file FILE      write the bound port there once listening\n"
            "      --pid-file FILE       write the server's process id there\n"
            "  -v, --verbose             debug logging\n"
            "  -h, --help                this help\n"
            "  -V, --version             print the version\n",
            VMIO_DEFAULT_PORT);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vmiod: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'vmiod --help' for more information.\n");
    exit(1);
}

/* A decimal count 0..max given to option name; dies on anything else. */
/* "auto", "on" or "off" as 0, 1 or 2 (the values of VMIO_SERVER_SPLICE_*). */
static int parse_auto_on_off(const char *arg, const char *name)
{
    static const char *const words[] = { "auto", "on", "off" };
    for (int i = 0; i < 3; i++)
        if (strcmp(arg, words[i]) == 0)
            return i;
    die_usage("bad %s '%s' (expected auto, on or off)", name, arg);
}

static unsigned parse_count(const char *arg, const char *name, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v > max)
        die_usage("bad %s '%s' (expected 0..%lu)", name, arg, max);
    return (unsigned)v;
}

static int parse_port(const char *s, uint16_t *port)
{
    if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
        return -1;
    unsigned long v = strtoul(s, NULL, 10);
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

static void parse_listen(const char *arg, struct listen_addr *la)
{
    const char *port;
    char *host;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (!close || close[1] != ':' || close == arg + 1)
            die_usage("bad --listen '%s' (expected [IPV6]:PORT)", arg);
        host = strndup(arg + 1, (size_t)(close - arg - 1));
        port = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (!colon)
            die_usage("bad --listen '%s' (expected HOST:PORT)", arg);
        if (memchr(arg, ':', (size_t)(colon - arg)))
            die_usage("bad --listen '%s' (put IPv6 addresses in brackets: [ADDR]:PORT)",
                      arg);
        host = strndup(arg, (size_t)(colon - arg));
        port = colon + 1;
    }
    if (!host) {
        fprintf(stderr, "vmiod: out of memory\n");
        exit(1);
    }
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        free(host);
        host = NULL;
    }
    if (parse_port(port, &la->port) < 0)
        die_usage("bad port in --listen '%s' (expected 0..65535)", arg);
    la->host = host;
}

static void parse_export(const char *arg, struct export_spec *ex)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || eq[1] == '\0')
        die_usage("bad --export '%s' (expected NAME=DIR[,ro][,nolocal])", arg);
    ex->name = strndup(arg, (size_t)(eq - arg));
    ex->dir = strdup(eq + 1);
    if (!ex->name || !ex->dir) {
        fprintf(stderr, "vmiod: out of memory\n");
        exit(1);
    }
    ex->flags = 0;
    /* Only trailing ",ro", ",rw" and ",nolocal" are options: other commas
     * belong to DIR. */
    for (;;) {
        size_t n = strlen(ex->dir);
        if (n > 3 && strcmp(ex->dir + n - 3, ",ro") == 0) {
            ex->flags |= VMIO_EXPORT_RDONLY;
            ex->dir[n - 3] = '\0';
        } else if (n > 3 && strcmp(ex->dir + n - 3, ",rw") == 0) {
            ex->dir[n - 3] = '\0';
        } else if (n > 8 && strcmp(ex->dir + n - 8, ",nolocal") == 0) {
            ex->flags |= VMIO_EXPORT_NOLOCAL;
            ex->dir[n - 8] = '\0';
        } else {
            break;
        }
    }
    if (ex->dir[0] == '\0')
        die_usage("bad --export '%s' (empty directory)", arg);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "export", required_argument, NULL, 'e' },
        { "secret-file", required_argument, NULL, 's' },
        { "foreground", no_argument, NULL, 'f' },
        { "workers", required_argument, NULL, 'w' },
        { "rdma", required_argument, NULL, 'R' },
        { "poll-us", required_argument, NULL, 'Q' },
        { "splice", required_argument, NULL, 'S' },
        { "port-file", required_argument, NULL, 'P' },
        { "pid-file", required_argument, NULL, 'p' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    struct listen_addr listens[MAX_LISTEN];
    struct export_spec exports[MAX_EXPORTS];
    int nlisten = 0, nexports = 0;
    const char *secret_file = NULL, *port_file = NULL, *pid_file = NULL;
    int foreground = 0, verbose = 0;
    unsigned workers = 0;
    long poll_us = -1;
    int splice = VMIO_SERVER_SPLICE_AUTO;
    const char *rdma = "auto";
    int c;

    while ((c = getopt_long(argc, argv, "l:e:s:fw:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (nlisten == MAX_LISTEN)
                die_usage("too many --listen options (at most %d)", MAX_LISTEN);
            parse_listen(optarg, &listens[nlisten++]);
            break;
        case 'e':
            if (nexports == MAX_EXPORTS)
                die_usage("too many --export options (at most %d)", MAX_EXPORTS);
            parse_export(optarg, &exports[nexports++]);
            break;
        case 's':
            secret_file = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'w':
            workers = parse_count(optarg, "--workers", 1024);
            break;
        case 'Q':
            poll_us = parse_count(optarg, "--poll-us", 10000);
            break;
        case 'S':
            splice = parse_auto_on_off(optarg, "--splice");
            break;
        case 'R':
            parse_auto_on_off(optarg, "--rdma");
            rdma = optarg;
            break;
        case 'P':
            port_file = optarg;
            break;
        case 'p':
            pid_file = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("vmiod (libvmio) %s\n", vmio_version_string());
            return 0;
        default:
            fprintf(stderr, "Try 'vmiod --help' for more information.\n");
            return 1;
        }
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (!secret_file)
        die_usage("%s", "--secret-file is required");
    if (nexports == 0)
        die_usage("%s", "at least one --export NAME=DIR is required");
    if (nlisten == 0)
        listens[nlisten++] = (struct listen_addr){ NULL, VMIO_DEFAULT_PORT };

    vmio_set_log(log_cb, NULL, verbose ? VMIO_LOG_DEBUG : VMIO_LOG_INFO);
    signal(SIGPIPE, SIG_IGN);

    /* Everything that can fail because of the arguments fails here, in
     * the foreground, before we detach. */
    vmio_server *srv;
    if (vmio_server_new(&srv) < 0 || vmio_server_set_secret_file(srv, secret_file) < 0 ||
        vmio_server_set_workers(srv, workers) < 0 ||
        (poll_us >= 0 && vmio_server_set_poll(srv, (unsigned)poll_us) < 0) ||
        vmio_server_set_splice(srv, splice) < 0) {
        fprintf(stderr, "vmiod: %s\n", vmio_errmsg());
        return 1;
    }
    for (int i = 0; i < nexports; i++) {
        if (vmio_server_add_export(srv, exports[i].name, exports[i].dir, exports[i].flags) < 0) {
            fprintf(stderr, "vmiod: %s\n", vmio_errmsg());
            vmio_server_free(srv);
            return 1;
        }
    }
    int first_port = -1;
    for (int i = 0; i < nlisten; i++) {
        if (vmio_server_listen(srv, listens[i].host, listens[i].port) < 0) {
            fprintf(stderr, "vmiod: %s\n", vmio_errmsg());
            vmio_server_free(srv);
            return 1;
        }
        int port = vmio_server_port(srv);
        if (i == 0)
            first_port = port;
        if (strcmp(rdma, "off") != 0 &&
            vmio_server_listen_rdma(srv, listens[i].host, (uint16_t)port) < 0) {
            if (strcmp(rdma, "on") == 0) {
                fprintf(stderr, "vmiod: %s\n", vmio_errmsg());
                vmio_server_free(srv);
                return 1;
            }
            if (verbose)
                fprintf(stderr, "vmiod: RDMA not used: %s\n", vmio_errmsg());
        }
    }

    /* Daemonize: the parent waits for the child to be serving (and to have
     * written its files), so that "vmiod ... && client" never races. */
    int ready_fd = -1;
    if (!foreground) {
        int pfd[2];
        if (pipe(pfd) < 0) {
            perror("vmiod: pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("vmiod: fork");
            return 1;
        }
        if (pid > 0) {
            close(pfd[1]);
            char st = 1;
            ssize_t n;
            do
                n = read(pfd[0], &st, 1);
            while (n < 0 && errno == EINTR);
            _exit(n == 1 && st == 0 ? 0 : 1);
        }
        close(pfd[0]);
        ready_fd = pfd[1];
        setsid();
        openlog("vmiod", LOG_PID, LOG_DAEMON);
        use_syslog = 1;
    }

    /* Signals are taken synchronously by this thread only: block them
     * before any server thread exists so that all threads inherit it. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (!foreground)
        sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (vmio_server_start(srv) < 0) {
        fprintf(stderr, "vmiod: %s\n", vmio_errmsg());
        vmio_server_free(srv);
        return 1;
    }
    if (port_file) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d\n", first_port);
        int r = cli_write_file_atomic(port_file, buf);
        if (r < 0) {
            fprintf(stderr, "vmiod: cannot write port file %s: %s\n", port_file, strerror(-r));
            vmio_server_free(srv);
            return 1;
        }
    }
    if (pid_file) {
        char buf[24];
        snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        int r = cli_write_file_atomic(pid_file, buf);
        if (r < 0) {
            fprintf(stderr, "vmiod: cannot write pid file %s: %s\n", pid_file, strerror(-r));
            vmio_server_free(srv);
            return 1;
        }
    }
    char *pid_path = NULL;
    if (pid_file)
        pid_path = realpath(pid_file, NULL);
    if (!foreground) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
            dup2(nul, STDOUT_FILENO);
            dup2(nul, STDERR_FILENO);
            if (nul > STDERR_FILENO)
                close(nul);
        }
        if (chdir("/") < 0) {
            /* Not fatal: nothing below uses relative paths. */
        }
        char ok = 0;
        ssize_t n = write(ready_fd, &ok, 1);
        (void)n;
        close(ready_fd);
    }

    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            continue;       /* detached: nothing to reload */
        break;
    }
    log_cb(NULL, VMIO_LOG_INFO, sig == SIGINT ? "SIGINT received, shutting down"
                                              : "SIGTERM received, shutting down");
    vmio_server_stop(srv);
    vmio_server_free(srv);
    if (pid_path) {
        unlink(pid_path);
        free(pid_path);
    }
    for (int i = 0; i < nlisten; i++)
        free(listens[i].host);
    for (int i = 0; i < nexports; i++) {
        free(exports[i].name);
        free(exports[i].dir);
    }
    if (use_syslog)
        closelog();
    return 0;
}
