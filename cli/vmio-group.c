/* vmio-group: VM groups from the command line (include/vmio/group.h).
 *
 *   vmio-group [--backend libvirt|xen] [--connect URI] [--state-dir DIR]
 *              [--topology HWLOC.xml] [--json] [--dry-run] COMMAND ...
 *   create NAME | add NAME VM... | remove NAME VM... | destroy NAME
 *   apply NAME [policy options] | show [NAME] | list | caps
 *   hostdev list [--sysfs DIR] | hostdev attach|detach VM PCI
 *   hostdev host-detach|host-reattach PCI
 *
 * Options may come before or after the command. --json prints one JSON
 * object per command. Exit status: 0 ok, 1 failure ("vmio-group: " and the
 * library's message), 2 usage. Only the public API is used. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/group.h>

#include "cli-util.h"
#include "group-cmd.h"

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: " PROG " [--backend libvirt|xen] [--connect URI] [--state-dir DIR]\n"
            "                  [--topology HWLOC.xml] [--json] [--dry-run] COMMAND\n"
            "commands:\n"
            "  create NAME                 a new, empty group\n"
            "  add NAME VM...              add domains to it\n"
            "  remove NAME VM...           take them out (undoing what apply set)\n"
            "  apply NAME [--pin auto|none|strict|loose] [--locality any|node|socket|pci:ADDR]\n"
            "             [--dedicated|--shared] [--cpus N] [--housekeeping LIST] [--weight N]\n"
            "             [--cap PCT] [--scheduler credit|credit2] [--shmem SIZE]\n"
            "                              store the options given, then bring every member\n"
            "                              to the policy (--dry-run: say what would change)\n"
            "  show [NAME]                 members, policy and the backend's capabilities\n"
            "  list                        the groups\n"
            "  destroy NAME                undo the policy and forget the group\n"
            "  caps                        what the backend can do, and why not\n"
            "  hostdev list [--sysfs DIR]  InfiniBand/RoCE HCAs and their VFs\n"
            "  hostdev attach VM PCI       pass a device through (vfio, managed)\n"
            "  hostdev detach VM PCI\n"
            "  hostdev host-detach PCI | hostdev host-reattach PCI\n"
            "exit status: 0 ok, 1 failure, 2 usage\n");
}

/* ---- shared helpers (group-cmd.h) ------------------------------------- */

void gc_json_str(FILE *fp, const char *s)
{
    if (s)
        cli_json_string(fp, s);
    else
        fputs("null", fp);
}

int gc_fail(void)
{
    return cli_fail(PROG, 1, "%s", vmio_errmsg());
}

int gc_connect(const struct group_cli *o, vmio_group_conn **conn)
{
    struct vmio_group_connect_opts co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.backend = o->backend;
    co.uri = o->uri;
    co.state_dir = o->state_dir;
    co.topology_xml = o->topology;
    if (vmio_group_connect(&co, conn) < 0)
        return gc_fail();
    return 0;
}

void gc_print_report(const struct group_cli *o, const vmio_group_report *r)
{
    size_t n = r ? vmio_group_report_count(r) : 0;
    size_t nw = r ? vmio_group_report_warning_count(r) : 0;
    const char *cpus = r ? vmio_group_report_cpus(r) : NULL;
    if (o->json) {
        printf("\"changes\": [");
        for (size_t i = 0; i < n; i++) {
            const struct vmio_group_change *c = vmio_group_report_change(r, i);
            printf("%s{\"vm\": ", i ? ", " : "");
            gc_json_str(stdout, c->vm);
            printf(", \"what\": ");
            gc_json_str(stdout, c->what);
            printf(", \"before\": ");
            gc_json_str(stdout, c->before);
            printf(", \"after\": ");
            gc_json_str(stdout, c->after);
            printf("}");
        }
        printf("], \"warnings\": [");
        for (size_t i = 0; i < nw; i++) {
            printf("%s", i ? ", " : "");
            gc_json_str(stdout, vmio_group_report_warning(r, i));
        }
        printf("], \"cpus\": ");
        gc_json_str(stdout, cpus);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct vmio_group_change *c = vmio_group_report_change(r, i);
        if (c->what && strcmp(c->what, "domain xml") == 0) {
            /* A dry run's new domain definition: printed as is. */
            printf("%s: new domain XML:\n%s", c->vm ? c->vm : "group", c->after);
            continue;
        }
        printf("%s: %s: %s -> %s\n", c->vm ? c->vm : "group", c->what,
               c->before && c->before[0] ? c->before : "(none)",
               c->after && c->after[0] ? c->after : "(none)");
    }
    if (n == 0)
        printf("nothing to change\n");
    for (size_t i = 0; i < nw; i++)
        printf("warning: %s\n", vmio_group_report_warning(r, i));
    if (cpus)
        printf("placement: %s\n", cpus);
}

/* ---- names of policy values ------------------------------------------- */

static const char *const pin_names[] = { "auto", "none", "strict", "loose" };
static const char *const loc_names[] = { "any", "node", "socket", "pci" };

static const char *pin_name(int p)
{
    return p >= 0 && p < 4 ? pin_names[p] : "?";
}

static const char *loc_name(int l)
{
    return l >= 0 && l < 4 ? loc_names[l] : "?";
}

/* ---- commands ----------------------------------------------------------- */

static int cmd_create(struct group_cli *o, vmio_group_conn *conn)
{
    vmio_group *g;
    if (vmio_group_create(conn, o->args[0], &g) < 0)
        return gc_fail();
    if (o->json) {
        printf("{\"command\": \"create\", \"group\": ");
        gc_json_str(stdout, vmio_group_name(g));
        printf(", \"id\": %" PRIu32 "}\n", vmio_group_id(g));
    } else {
        printf("created group %s (id %" PRIu32 ")\n", vmio_group_name(g), vmio_group_id(g));
    }
    vmio_group_close(g);
    return 0;
}

/* add/remove: stops at the first VM that fails (those before it stay). */
static int cmd_members(struct group_cli *o, vmio_group_conn *conn, int add)
{
    vmio_group *g;
    if (vmio_group_open(conn, o->args[0], &g) < 0)
        return gc_fail();
    int rc = 0, done = 0;
    for (int i = 1; i < o->nargs; i++, done++) {
        int r = add ? vmio_group_add(g, o->args[i]) : vmio_group_remove(g, o->args[i]);
        if (r < 0) {
            rc = gc_fail();
            break;
        }
        if (!o->json)
            printf("%s %s %s %s\n", add ? "added" : "removed", o->args[i],
                   add ? "to" : "from", vmio_group_name(g));
    }
    if (o->json && rc == 0) {
        printf("{\"command\": \"%s\", \"group\": ", add ? "add" : "remove");
        gc_json_str(stdout, vmio_group_name(g));
        printf(", \"vms\": [");
        for (int i = 0; i < done; i++) {
            printf("%s", i ? ", " : "");
            gc_json_str(stdout, o->args[i + 1]);
        }
        printf("], \"members\": %zu}\n", vmio_group_member_count(g));
    }
    vmio_group_close(g);
    return rc;
}

/* Policy options given on the command line; NULL/-1: not given. */
struct policy_args {
    const char *pin, *locality, *housekeeping, *scheduler, *cpus, *weight, *cap, *shmem;
    int dedicated; /* -1 not given */
};

/* Parse the given options over *p (strings point into argv). 0 or the
 * usage exit status. */
static int merge_policy(const struct policy_args *a, struct vmio_group_policy *p)
{
    if (a->pin) {
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(a->pin, pin_names[i]) == 0)
                k = i;
        if (k < 0)
            return cli_usage_error(PROG, "bad --pin '%s' (auto, none, strict or loose)", a->pin);
        p->pin = k;
    }
    if (a->locality) {
        if (strncmp(a->locality, "pci:", 4) == 0 && a->locality[4]) {
            p->locality = VMIO_GROUP_NEAR_PCI;
            p->pci = a->locality + 4;
        } else {
            int k = -1;
            for (int i = 0; i < 3; i++)
                if (strcmp(a->locality, loc_names[i]) == 0)
                    k = i;
            if (k < 0)
                return cli_usage_error(PROG,
                                       "bad --locality '%s' (any, node, socket or pci:ADDR)",
                                       a->locality);
            p->locality = k;
            p->pci = NULL;
        }
    }
    uint32_t v;
    if (a->cpus) {
        if (cli_parse_u32(a->cpus, 1u << 20, &v) < 0)
            return cli_usage_error(PROG, "bad --cpus '%s'", a->cpus);
        p->ncpus = v;
    }
    if (a->weight) {
        if (cli_parse_u32(a->weight, UINT32_MAX, &v) < 0)
            return cli_usage_error(PROG, "bad --weight '%s'", a->weight);
        p->weight = v;
    }
    if (a->cap) {
        if (cli_parse_u32(a->cap, UINT32_MAX, &v) < 0)
            return cli_usage_error(PROG, "bad --cap '%s'", a->cap);
        p->cap = v;
    }
    if (a->shmem) {
        uint64_t b;
        if (cli_parse_size(a->shmem, &b) < 0)
            return cli_usage_error(PROG, "bad --shmem '%s'", a->shmem);
        p->shmem_bytes = b;
    }
    if (a->dedicated >= 0)
        p->dedicated = a->dedicated;
    if (a->housekeeping)
        p->housekeeping = a->housekeeping[0] ? a->housekeeping : NULL;
    if (a->scheduler)
        p->scheduler = a->scheduler;
    return 0;
}

/* A copy of a policy whose strings survive the group's next set. */
struct policy_copy {
    struct vmio_group_policy p;
    char *pci, *housekeeping, *scheduler;
};

static int copy_policy(const struct vmio_group_policy *src, struct policy_copy *c)
{
    memset(c, 0, sizeof *c);
    c->p = *src;
    c->pci = src->pci ? strdup(src->pci) : NULL;
    c->housekeeping = src->housekeeping ? strdup(src->housekeeping) : NULL;
    c->scheduler = src->scheduler ? strdup(src->scheduler) : NULL;
    c->p.pci = c->pci;
    c->p.housekeeping = c->housekeeping;
    c->p.scheduler = c->scheduler;
    if ((src->pci && !c->pci) || (src->housekeeping && !c->housekeeping) ||
        (src->scheduler && !c->scheduler))
        return -ENOMEM;
    return 0;
}

static void free_policy_copy(struct policy_copy *c)
{
    free(c->pci);
    free(c->housekeeping);
    free(c->scheduler);
}

static void print_policy_json(const struct vmio_group_policy *p)
{
    printf("{\"pin\": \"%s\", \"locality\": \"%s\", \"pci\": ", pin_name(p->pin),
           loc_name(p->locality));
    gc_json_str(stdout, p->pci);
    printf(", \"dedicated\": %s, \"cpus\": %u, \"housekeeping\": ", p->dedicated ? "true" : "false",
           p->ncpus);
    gc_json_str(stdout, p->housekeeping);
    printf(", \"weight\": %u, \"cap\": %u, \"scheduler\": ", p->weight, p->cap);
    gc_json_str(stdout, p->scheduler);
    printf(", \"shmem_bytes\": %" PRIu64 "}", p->shmem_bytes);
}

static void print_policy_text(const struct vmio_group_policy *p)
{
    printf("  policy: pin=%s locality=%s%s%s dedicated=%s cpus=%u housekeeping=%s weight=%u "
           "cap=%u scheduler=%s shmem=%" PRIu64 "\n",
           pin_name(p->pin), loc_name(p->locality), p->pci ? ":" : "", p->pci ? p->pci : "",
           p->dedicated ? "yes" : "no", p->ncpus, p->housekeeping ? p->housekeeping : "-",
           p->weight, p->cap, p->scheduler ? p->scheduler : "-", p->shmem_bytes);
}

static int cmd_apply(struct group_cli *o, vmio_group_conn *conn, const struct policy_args *a,
                     int given)
{
    vmio_group *g;
    if (vmio_group_open(conn, o->args[0], &g) < 0)
        return gc_fail();
    int rc = 0;
    struct policy_copy old;
    struct vmio_group_policy cur;
    memset(&cur, 0, sizeof cur);
    cur.struct_size = sizeof cur;
    memset(&old, 0, sizeof old);
    if (vmio_group_get_policy(g, &cur) < 0) {
        rc = gc_fail();
        goto out;
    }
    if (copy_policy(&cur, &old) < 0) {
        rc = cli_fail(PROG, 1, "out of memory");
        goto out;
    }
    struct vmio_group_policy np = old.p;
    np.struct_size = sizeof np;
    if ((rc = merge_policy(a, &np)) != 0)
        goto out;
    if (given && vmio_group_set_policy(g, &np) < 0) {
        rc = gc_fail();
        goto out;
    }
    vmio_group_report *rep = NULL;
    int r = vmio_group_apply(g, o->dry_run ? VMIO_GROUP_DRY_RUN : 0, &rep);
    char why[512] = "";
    if (r < 0) /* kept across the restore below, which may clear it */
        snprintf(why, sizeof why, "%s", vmio_errmsg());
    if (given && (o->dry_run || r < 0)) {
        /* A dry run changes nothing, the stored policy included; a policy
         * that cannot be applied is not kept either. */
        old.p.struct_size = sizeof old.p;
        if (vmio_group_set_policy(g, &old.p) < 0 && r == 0) {
            vmio_group_report_free(rep);
            rc = gc_fail();
            goto out;
        }
    }
    if (r < 0) {
        rc = cli_fail(PROG, 1, "%s", why);
        goto out;
    }
    if (o->json) {
        printf("{\"command\": \"apply\", \"group\": ");
        gc_json_str(stdout, vmio_group_name(g));
        printf(", \"dry_run\": %s, \"policy\": ", o->dry_run ? "true" : "false");
        print_policy_json(&np);
        printf(", ");
        gc_print_report(o, rep);
        printf("}\n");
    } else {
        if (o->dry_run)
            printf("dry run: nothing is changed\n");
        gc_print_report(o, rep);
    }
    vmio_group_report_free(rep);
out:
    free_policy_copy(&old);
    vmio_group_close(g);
    return rc;
}

/* The names of the capability bits in caps: text (space separated) or a
 * JSON array. */
static void print_cap_names(uint64_t caps, int json)
{
    int first = 1;
    if (json)
        printf("[");
    for (unsigned i = 0; i < VMIO_GROUP_CAP_COUNT; i++) {
        uint64_t bit = (uint64_t)1 << i;
        if (!(caps & bit))
            continue;
        const char *n = vmio_group_cap_name(bit);
        printf("%s", first ? "" : json ? ", " : " ");
        if (json)
            gc_json_str(stdout, n ? n : "?");
        else
            printf("%s", n ? n : "?");
        first = 0;
    }
    if (json)
        printf("]");
}

static int show_one(struct group_cli *o, vmio_group_conn *conn, const char *name, int first)
{
    vmio_group *g;
    if (vmio_group_open(conn, name, &g) < 0)
        return gc_fail();
    struct vmio_group_policy p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    if (vmio_group_get_policy(g, &p) < 0) {
        vmio_group_close(g);
        return gc_fail();
    }
    size_t n = vmio_group_member_count(g);
    if (o->json) {
        printf("%s{\"name\": ", first ? "" : ", ");
        gc_json_str(stdout, vmio_group_name(g));
        printf(", \"id\": %" PRIu32 ", \"members\": [", vmio_group_id(g));
        for (size_t i = 0; i < n; i++) {
            printf("%s", i ? ", " : "");
            gc_json_str(stdout, vmio_group_member(g, i));
        }
        printf("], \"policy\": ");
        print_policy_json(&p);
        printf("}");
    } else {
        printf("group %s (id %" PRIu32 ")\n  members:", vmio_group_name(g), vmio_group_id(g));
        for (size_t i = 0; i < n; i++)
            printf(" %s", vmio_group_member(g, i));
        printf("%s\n", n ? "" : " (none)");
        print_policy_text(&p);
    }
    vmio_group_close(g);
    return 0;
}

static int cmd_show(struct group_cli *o, vmio_group_conn *conn)
{
    uint64_t caps = 0;
    if (vmio_group_capabilities(conn, &caps) < 0)
        return gc_fail();
    char **names = NULL;
    size_t count = 0;
    if (o->nargs == 0 && vmio_group_list(conn, &names, &count) < 0)
        return gc_fail();
    const char *one = o->nargs ? o->args[0] : NULL;
    /* Open everything before printing: a failure prints no half object. */
    if (one) {
        vmio_group *g;
        if (vmio_group_open(conn, one, &g) < 0)
            return gc_fail();
        vmio_group_close(g);
    }
    if (o->json) {
        printf("{\"command\": \"show\", \"backend\": ");
        gc_json_str(stdout, vmio_group_backend_name(conn));
        printf(", \"hypervisor\": ");
        gc_json_str(stdout, vmio_group_hypervisor(conn));
        printf(", \"capabilities\": ");
        print_cap_names(caps, 1);
        printf(", \"groups\": [");
    }
    int rc = 0;
    if (one)
        rc = show_one(o, conn, one, 1);
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = show_one(o, conn, names[i], i == 0);
    vmio_group_list_free(names, count);
    if (o->json) {
        printf("]}\n");
    } else {
        if (!one && count == 0)
            printf("no groups\n");
        printf("backend: %s (%s)\ncapabilities: ", vmio_group_backend_name(conn),
               vmio_group_hypervisor(conn));
        print_cap_names(caps, 0);
        printf("\n");
    }
    return rc;
}

static int cmd_list(struct group_cli *o, vmio_group_conn *conn)
{
    char **names = NULL;
    size_t count = 0;
    if (vmio_group_list(conn, &names, &count) < 0)
        return gc_fail();
    int rc = 0;
    if (o->json)
        printf("{\"command\": \"list\", \"groups\": [");
    for (size_t i = 0; i < count; i++) {
        vmio_group *g;
        if (vmio_group_open(conn, names[i], &g) < 0) {
            rc = gc_fail();
            break;
        }
        if (o->json) {
            printf("%s{\"name\": ", i ? ", " : "");
            gc_json_str(stdout, vmio_group_name(g));
            printf(", \"id\": %" PRIu32 ", \"members\": %zu}", vmio_group_id(g),
                   vmio_group_member_count(g));
        } else {
            printf("%-20s id %-6" PRIu32 " %zu member%s\n", vmio_group_name(g), vmio_group_id(g),
                   vmio_group_member_count(g), vmio_group_member_count(g) == 1 ? "" : "s");
        }
        vmio_group_close(g);
    }
    if (o->json)
        printf("]}\n");
    vmio_group_list_free(names, count);
    return rc;
}

static int cmd_destroy(struct group_cli *o, vmio_group_conn *conn)
{
    vmio_group *g;
    if (vmio_group_open(conn, o->args[0], &g) < 0)
        return gc_fail();
    uint32_t id = vmio_group_id(g);
    if (vmio_group_destroy(g) < 0) /* closes g */
        return gc_fail();
    if (o->json) {
        printf("{\"command\": \"destroy\", \"group\": ");
        gc_json_str(stdout, o->args[0]);
        printf(", \"id\": %" PRIu32 "}\n", id);
    } else {
        printf("destroyed group %s (id %" PRIu32 ")\n", o->args[0], id);
    }
    return 0;
}

static int cmd_caps(struct group_cli *o, vmio_group_conn *conn)
{
    uint64_t caps = 0;
    if (vmio_group_capabilities(conn, &caps) < 0)
        return gc_fail();
    if (o->json) {
        printf("{\"command\": \"caps\", \"backend\": ");
        gc_json_str(stdout, vmio_group_backend_name(conn));
        printf(", \"hypervisor\": ");
        gc_json_str(stdout, vmio_group_hypervisor(conn));
        printf(", \"capabilities\": [");
    } else {
        printf("backend: %s (%s)\n", vmio_group_backend_name(conn), vmio_group_hypervisor(conn));
    }
    for (unsigned i = 0; i < VMIO_GROUP_CAP_COUNT; i++) {
        uint64_t bit = (uint64_t)1 << i;
        const char *n = vmio_group_cap_name(bit);
        const char *note = vmio_group_cap_note(conn, bit);
        if (o->json) {
            printf("%s{\"name\": ", i ? ", " : "");
            gc_json_str(stdout, n);
            printf(", \"supported\": %s, \"note\": ", (caps & bit) ? "true" : "false");
            gc_json_str(stdout, note);
            printf("}");
        } else {
            printf("  %-16s %-3s  %s\n", n ? n : "?", (caps & bit) ? "yes" : "no",
                   note ? note : "");
        }
    }
    if (o->json)
        printf("]}\n");
    return 0;
}

/* ---- command line ------------------------------------------------------- */

enum {
    O_BACKEND = 256, O_CONNECT, O_STATE_DIR, O_TOPOLOGY, O_JSON, O_DRY_RUN, O_PIN, O_LOCALITY,
    O_DEDICATED, O_SHARED, O_CPUS, O_HOUSEKEEPING, O_WEIGHT, O_CAP, O_SCHEDULER, O_SHMEM,
    O_SYSFS, O_HELP
};

struct command {
    const char *name;
    int min_args, max_args; /* positional arguments after the command */
    const char *synopsis;
};

static const struct command commands[] = {
    { "create", 1, 1, "create NAME" },
    { "add", 2, -1, "add NAME VM..." },
    { "remove", 2, -1, "remove NAME VM..." },
    { "apply", 1, 1, "apply NAME [policy options]" },
    { "show", 0, 1, "show [NAME]" },
    { "list", 0, 0, "list" },
    { "destroy", 1, 1, "destroy NAME" },
    { "caps", 0, 0, "caps" },
    { "hostdev", 1, 3, "hostdev list|attach|detach|host-detach|host-reattach ..." },
};

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "backend", required_argument, NULL, O_BACKEND },
        { "connect", required_argument, NULL, O_CONNECT },
        { "state-dir", required_argument, NULL, O_STATE_DIR },
        { "topology", required_argument, NULL, O_TOPOLOGY },
        { "json", no_argument, NULL, O_JSON },
        { "dry-run", no_argument, NULL, O_DRY_RUN },
        { "pin", required_argument, NULL, O_PIN },
        { "locality", required_argument, NULL, O_LOCALITY },
        { "dedicated", no_argument, NULL, O_DEDICATED },
        { "shared", no_argument, NULL, O_SHARED },
        { "cpus", required_argument, NULL, O_CPUS },
        { "housekeeping", required_argument, NULL, O_HOUSEKEEPING },
        { "weight", required_argument, NULL, O_WEIGHT },
        { "cap", required_argument, NULL, O_CAP },
        { "scheduler", required_argument, NULL, O_SCHEDULER },
        { "shmem", required_argument, NULL, O_SHMEM },
        { "sysfs", required_argument, NULL, O_SYSFS },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    struct group_cli o;
    memset(&o, 0, sizeof o);
    struct policy_args pa;
    memset(&pa, 0, sizeof pa);
    pa.dedicated = -1;
    int policy_given = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
        switch (c) {
        case O_BACKEND: o.backend = optarg; break;
        case O_CONNECT: o.uri = optarg; break;
        case O_STATE_DIR: o.state_dir = optarg; break;
        case O_TOPOLOGY: o.topology = optarg; break;
        case O_JSON: o.json = 1; break;
        case O_DRY_RUN: o.dry_run = 1; break;
        case O_PIN: pa.pin = optarg; policy_given = 1; break;
        case O_LOCALITY: pa.locality = optarg; policy_given = 1; break;
        case O_DEDICATED: pa.dedicated = 1; policy_given = 1; break;
        case O_SHARED: pa.dedicated = 0; policy_given = 1; break;
        case O_CPUS: pa.cpus = optarg; policy_given = 1; break;
        case O_HOUSEKEEPING: pa.housekeeping = optarg; policy_given = 1; break;
        case O_WEIGHT: pa.weight = optarg; policy_given = 1; break;
        case O_CAP: pa.cap = optarg; policy_given = 1; break;
        case O_SCHEDULER: pa.scheduler = optarg; policy_given = 1; break;
        case O_SHMEM: pa.shmem = optarg; policy_given = 1; break;
        case O_SYSFS: o.sysfs = optarg; break;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        case ':':
            return cli_usage_error(PROG, "option %s needs an argument", argv[optind - 1]);
        default:
            return cli_usage_error(PROG, "unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error(PROG, "no command given");
    const char *cmd = argv[optind];
    const struct command *k = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            k = &commands[i];
    if (!k)
        return cli_usage_error(PROG, "unknown command '%s'", cmd);
    o.args = argv + optind + 1;
    o.nargs = argc - optind - 1;
    if (o.nargs < k->min_args || (k->max_args >= 0 && o.nargs > k->max_args))
        return cli_usage_error(PROG, "usage: %s %s", PROG, k->synopsis);
    if (policy_given && strcmp(cmd, "apply") != 0)
        return cli_usage_error(PROG, "policy options go with 'apply'");
    int is_hostdev = strcmp(cmd, "hostdev") == 0;
    if (o.dry_run && strcmp(cmd, "apply") != 0 && !is_hostdev)
        return cli_usage_error(PROG, "--dry-run goes with 'apply' and 'hostdev attach|detach'");
    if (o.sysfs && !is_hostdev)
        return cli_usage_error(PROG, "--sysfs goes with 'hostdev list'");
    if (o.backend && strcmp(o.backend, "libvirt") != 0 && strcmp(o.backend, "xen") != 0)
        return cli_usage_error(PROG, "bad --backend '%s' (libvirt or xen)", o.backend);
    if (is_hostdev)
        return gc_hostdev(&o);

    /* Policy syntax is checked before anything is opened. */
    if (policy_given) {
        struct vmio_group_policy probe;
        memset(&probe, 0, sizeof probe);
        int u = merge_policy(&pa, &probe);
        if (u != 0)
            return u;
    }
    vmio_group_conn *conn;
    if (gc_connect(&o, &conn) != 0)
        return 1;
    int rc;
    if (strcmp(cmd, "create") == 0)
        rc = cmd_create(&o, conn);
    else if (strcmp(cmd, "add") == 0)
        rc = cmd_members(&o, conn, 1);
    else if (strcmp(cmd, "remove") == 0)
        rc = cmd_members(&o, conn, 0);
    else if (strcmp(cmd, "apply") == 0)
        rc = cmd_apply(&o, conn, &pa, policy_given);
    else if (strcmp(cmd, "show") == 0)
        rc = cmd_show(&o, conn);
    else if (strcmp(cmd, "list") == 0)
        rc = cmd_list(&o, conn);
    else if (strcmp(cmd, "destroy") == 0)
        rc = cmd_destroy(&o, conn);
    else
        rc = cmd_caps(&o, conn);
    vmio_group_disconnect(conn);
    return rc;
}
