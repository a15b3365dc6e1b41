/* Latency of vmio_group_apply() on libvirt's test driver, for groups of 1,
 * 100 and 1000 VMs (the measurement). The host XML is generated
 * at run time in a temporary directory: 2 NUMA nodes x 64 cores and 1010
 * domains of 1-2 vCPUs. Per group size: the time to add the members, the
 * first apply (every member changes: loose pinning on one socket, emulator
 * on a housekeeping CPU, weight, NUMA binding, metadata), a dry run, and
 * the second apply (nothing to change: reading every member back), in
 * wall-clock time and in this process's CPU time, median of --reps runs (each on a fresh connection, so the first apply always
 * finds unconfigured VMs).
 *
 *   build-dir/bench/group-apply [--reps N] [--sizes 1,100,1000] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmio/group.h>

#define NDOMAINS 1010
#define MAXREPS 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The test driver runs inside this process: its CPU time is the cost of
 * an apply without the waits a loaded machine adds. */
static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int write_host(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "<node>\n  <cpu><mhz>2400</mhz><model>x86_64</model><nodes>2</nodes>"
               "<sockets>1</sockets><cores>64</cores><threads>1</threads>"
               "<active>128</active></cpu>\n  <memory>%llu</memory>\n",
            512ull << 20);
    for (int i = 0; i < NDOMAINS; i++)
        fprintf(f, "  <domain type='test'><name>vm%04d</name><memory unit='MiB'>512</memory>"
                   "<vcpu>%d</vcpu><os><type>hvm</type></os></domain>\n",
                i, 1 + i % 2);
    fprintf(f, "</node>\n");
    return fclose(f);
}

static void rmrf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "group-apply: could not remove %s\n", dir);
}

#define TRY(call)                                                                   \
    do {                                                                            \
        if ((call) < 0) {                                                           \
            fprintf(stderr, "group-apply: %s: %s\n", #call, vmio_errmsg());         \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

int main(int argc, char **argv)
{
    int reps = 5;
    const char *sizes = "1,100,1000";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            sizes = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--reps N] [--sizes 1,100,1000]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > MAXREPS)
        reps = 5;
    char tmp[] = "/tmp/vmio-group-bench-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char host[300], uri[320];
    snprintf(host, sizeof host, "%s/host.xml", tmp);
    snprintf(uri, sizeof uri, "test://%s", host);
    if (write_host(host) < 0) {
        perror(host);
        rmrf(tmp);
        return 1;
    }
    printf("vmio_group_apply on libvirt's test driver: 128 CPUs (2 nodes x 64), %d domains,\n"
           "loose pinning near one socket, housekeeping CPU 0, weight, metadata; median of %d\n\n",
           NDOMAINS, reps);
    printf("| VMs | add all (ms) | first apply (ms) | CPU (ms) | changes | dry run (ms) "
           "| second apply (ms) | CPU (ms) | changes |\n"
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    char list[64];
    snprintf(list, sizeof list, "%s", sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int n = atoi(tok);
        if (n < 1 || n > NDOMAINS)
            continue;
        double t_add[MAXREPS], t_first[MAXREPS], t_dry[MAXREPS], t_second[MAXREPS];
        double c_first[MAXREPS], c_second[MAXREPS];
        size_t ch_first = 0, ch_second = 0;
        for (int rep = 0; rep < reps; rep++) {
            char state[320];
            snprintf(state, sizeof state, "%s/state-%d-%d", tmp, n, rep);
            struct vmio_group_connect_opts o = { .struct_size = sizeof o, .uri = uri,
                                                 .state_dir = state };
            vmio_group_conn *c;
            vmio_group *g;
            vmio_group_report *r;
            TRY(vmio_group_connect(&o, &c));
            TRY(vmio_group_create(c, "bench", &g));
            double t0 = now();
            for (int i = 0; i < n; i++) {
                char vm[16];
                snprintf(vm, sizeof vm, "vm%04d", i);
                TRY(vmio_group_add(g, vm));
            }
            t_add[rep] = now() - t0;
            struct vmio_group_policy p = { .struct_size = sizeof p,
                                           .pin = VMIO_GROUP_PIN_LOOSE,
                                           .locality = VMIO_GROUP_NEAR_SOCKET,
                                           .housekeeping = "0",
                                           .ncpus = 32,
                                           .weight = 100000 };
            TRY(vmio_group_set_policy(g, &p));
            t0 = now();
            TRY(vmio_group_apply(g, VMIO_GROUP_DRY_RUN, &r));
            t_dry[rep] = now() - t0;
            vmio_group_report_free(r);
            t0 = now();
            double c0 = cpu();
            TRY(vmio_group_apply(g, 0, &r));
            t_first[rep] = now() - t0;
            c_first[rep] = cpu() - c0;
            ch_first = vmio_group_report_count(r);
            vmio_group_report_free(r);
            t0 = now();
            c0 = cpu();
            TRY(vmio_group_apply(g, 0, &r));
            t_second[rep] = now() - t0;
            c_second[rep] = cpu() - c0;
            ch_second = vmio_group_report_count(r);
            vmio_group_report_free(r);
            vmio_group_close(g);
            vmio_group_disconnect(c);
        }
        printf("| %d | %.1f | %.1f | %.1f | %zu | %.1f | %.1f | %.1f | %zu |\n", n,
               median(t_add, reps) * 1e3, median(t_first, reps) * 1e3,
               median(c_first, reps) * 1e3, ch_first, median(t_dry, reps) * 1e3,
               median(t_second, reps) * 1e3, median(c_second, reps) * 1e3, ch_second);
        fflush(stdout);
        if (ch_second != 0) {
            fprintf(stderr, "group-apply: the second apply changed %zu things\n", ch_second);
            rmrf(tmp);
            return 1;
        }
    }
    rmrf(tmp);
    return 0;
}
