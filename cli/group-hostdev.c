/* vmio-group hostdev: InfiniBand passthrough from the command line
 * (vmio_hostdev_* of include/vmio/group.h).
 *
 *   hostdev list [--sysfs DIR]        HCAs and VFs (sysfs + libvirt)
 *   hostdev attach VM PCI [--dry-run]      (managed='yes', vfio)
 *   hostdev detach VM PCI [--dry-run]
 *   hostdev host-detach PCI | host-reattach PCI */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/group.h>

#include "cli-util.h"
#include "group-cmd.h"

static void print_dev_json(const struct vmio_hostdev *d, int first)
{
    printf("%s{\"pci\": ", first ? "" : ", ");
    gc_json_str(stdout, d->pci);
    printf(", \"name\": ");
    gc_json_str(stdout, d->name);
    printf(", \"driver\": ");
    gc_json_str(stdout, d->driver);
    printf(", \"vendor\": \"%04x\", \"device\": \"%04x\", \"is_vf\": %s, \"pf\": ", d->vendor,
           d->device, d->is_vf ? "true" : "false");
    gc_json_str(stdout, d->pf[0] ? d->pf : NULL);
    printf(", \"numa_node\": %d, \"local_cpus\": ", d->numa_node);
    gc_json_str(stdout, d->local_cpus);
    printf(", \"total_vfs\": %d, \"num_vfs\": %d}", d->total_vfs, d->num_vfs);
}

static int hostdev_list(struct group_cli *o)
{
    /* The libvirt node devices come with a connection; without one (no
     * daemon, another backend) sysfs alone still answers. */
    vmio_group_conn *conn = NULL;
    struct vmio_group_connect_opts co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.backend = o->backend;
    co.uri = o->uri;
    co.state_dir = o->state_dir;
    co.topology_xml = o->topology;
    const char *note = NULL;
    char why[300];
    if (vmio_group_connect(&co, &conn) < 0) {
        snprintf(why, sizeof why, "%s", vmio_errmsg());
        note = why;
        conn = NULL;
    }
    struct vmio_hostdev *d = NULL;
    size_t n = 0;
    int r = vmio_hostdev_list(conn, o->sysfs, &d, &n);
    if (r < 0 && conn) {
        snprintf(why, sizeof why, "%s", vmio_errmsg());
        note = why;
        r = vmio_hostdev_list(NULL, o->sysfs, &d, &n);
    }
    vmio_group_disconnect(conn);
    if (r < 0)
        return gc_fail();
    if (note)
        fprintf(stderr, PROG ": warning: sysfs only: %s\n", note);
    if (o->json) {
        printf("{\"command\": \"hostdev list\", \"sources\": \"%s\", \"devices\": [",
               note ? "sysfs" : "sysfs+libvirt");
        for (size_t i = 0; i < n; i++)
            print_dev_json(&d[i], i == 0);
        printf("]}\n");
    } else if (n == 0) {
        printf("no InfiniBand or RoCE devices found\n");
    } else {
        printf("%-13s %-18s %-12s %-10s %-18s %-5s %-12s %s\n", "PCI", "NAME", "DRIVER", "ID",
               "FUNCTION", "NUMA", "LOCAL CPUS", "VFS");
        for (size_t i = 0; i < n; i++) {
            char id[16], fn[32], numa[16], vfs[24];
            snprintf(id, sizeof id, "%04x:%04x", d[i].vendor, d[i].device);
            if (d[i].is_vf)
                snprintf(fn, sizeof fn, "VF of %s", d[i].pf);
            else
                snprintf(fn, sizeof fn, "PF");
            if (d[i].numa_node >= 0)
                snprintf(numa, sizeof numa, "%d", d[i].numa_node);
            else
                snprintf(numa, sizeof numa, "-");
            if (d[i].total_vfs)
                snprintf(vfs, sizeof vfs, "%d/%d", d[i].num_vfs, d[i].total_vfs);
            else
                snprintf(vfs, sizeof vfs, "-");
            printf("%-13s %-18s %-12s %-10s %-18s %-5s %-12s %s\n", d[i].pci,
                   d[i].name[0] ? d[i].name : "-", d[i].driver[0] ? d[i].driver : "-", id, fn,
                   numa, d[i].local_cpus[0] ? d[i].local_cpus : "-", vfs);
        }
    }
    free(d);
    return 0;
}

static int hostdev_change(struct group_cli *o, int attach)
{
    if (o->nargs != 3)
        return cli_usage_error(PROG, "usage: %s hostdev %s VM PCI", PROG,
                               attach ? "attach" : "detach");
    const char *vm = o->args[1], *pci = o->args[2];
    vmio_group_conn *conn;
    if (gc_connect(o, &conn) != 0)
        return 1;
    unsigned flags = o->dry_run ? VMIO_GROUP_DRY_RUN : 0;
    vmio_group_report *rep = NULL;
    int r = attach ? vmio_hostdev_attach(conn, vm, pci, flags, &rep)
                   : vmio_hostdev_detach(conn, vm, pci, flags, &rep);
    vmio_group_disconnect(conn);
    if (r < 0)
        return gc_fail();
    if (o->json) {
        printf("{\"command\": \"hostdev %s\", \"vm\": ", attach ? "attach" : "detach");
        gc_json_str(stdout, vm);
        printf(", \"pci\": ");
        gc_json_str(stdout, pci);
        printf(", \"dry_run\": %s, ", o->dry_run ? "true" : "false");
        gc_print_report(o, rep);
        printf("}\n");
    } else {
        if (o->dry_run)
            printf("dry run: nothing is changed\n");
        gc_print_report(o, rep);
    }
    vmio_group_report_free(rep);
    return 0;
}

static int hostdev_host(struct group_cli *o, int detach)
{
    if (o->nargs != 2)
        return cli_usage_error(PROG, "usage: %s hostdev %s PCI", PROG,
                               detach ? "host-detach" : "host-reattach");
    if (o->dry_run)
        return cli_usage_error(PROG, "--dry-run goes with 'hostdev attach|detach'");
    vmio_group_conn *conn;
    if (gc_connect(o, &conn) != 0)
        return 1;
    int r = detach ? vmio_hostdev_host_detach(conn, o->args[1])
                   : vmio_hostdev_host_reattach(conn, o->args[1]);
    vmio_group_disconnect(conn);
    if (r < 0)
        return gc_fail();
    if (o->json) {
        printf("{\"command\": \"hostdev %s\", \"pci\": ", detach ? "host-detach" : "host-reattach");
        gc_json_str(stdout, o->args[1]);
        printf("}\n");
    } else {
        printf("%s %s\n", detach ? "detached from the host (vfio):" : "given back to the host:",
               o->args[1]);
    }
    return 0;
}

int gc_hostdev(struct group_cli *o)
{
    const char *sub = o->args[0];
    if (o->sysfs && strcmp(sub, "list") != 0)
        return cli_usage_error(PROG, "--sysfs goes with 'hostdev list'");
    if (strcmp(sub, "list") == 0) {
        if (o->nargs != 1)
            return cli_usage_error(PROG, "usage: %s hostdev list [--sysfs DIR]", PROG);
        if (o->dry_run)
            return cli_usage_error(PROG, "--dry-run goes with 'hostdev attach|detach'");
        return hostdev_list(o);
    }
    if (strcmp(sub, "attach") == 0 || strcmp(sub, "detach") == 0)
        return hostdev_change(o, sub[0] == 'a');
    if (strcmp(sub, "host-detach") == 0 || strcmp(sub, "host-reattach") == 0)
        return hostdev_host(o, strcmp(sub, "host-detach") == 0);
    return cli_usage_error(PROG, "unknown hostdev command '%s' (list, attach, detach, "
                                 "host-detach, host-reattach)", sub);
}
