/* InfiniBand HCAs and their SR-IOV virtual functions (vmio_hostdev_list):
 * read from sysfs (/sys/bus/pci/devices/<addr>/: class, vendor, device,
 * driver, numa_node, local_cpulist, sriov_*, physfn, infiniband/) and
 * merged with libvirt's node devices when the connection is libvirt's.
 * Also the PCI address helpers of hostdev.h, and the -ENOTSUP versions of
 * the libvirt calls when libvmio is built without libvirt. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/internal.h"
#include "group/backend.h"
#include "group/cpuset.h"
#include "group/hostdev.h"
#include "group/topology.h"

#define API_LIST "vmio_hostdev_list"

/* PCI class codes (class >> 8): network controller 0x0200 (Ethernet, a
 * RoCE NIC), 0x0207 (InfiniBand). */
#define PCI_CLASS_ETHERNET 0x0200u
#define PCI_CLASS_INFINIBAND 0x0207u

/* ---- sysfs ------------------------------------------------------------- */

/* The first line of dir/name without its newline; -errno. */
static int read_attr(const char *dir, const char *name, char *buf, size_t len)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return -ENAMETOOLONG;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    if (!fgets(buf, (int)len, f)) {
        int r = ferror(f) ? -EIO : -ENODATA;
        fclose(f);
        return r;
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static long read_num(const char *dir, const char *name, int base, long dflt)
{
    char buf[64], *end;
    if (read_attr(dir, name, buf, sizeof buf) < 0)
        return dflt;
    errno = 0;
    long v = strtol(buf, &end, base);
    if (errno || end == buf)
        return dflt;
    return v;
}

/* Basename of the target of the symlink dir/name into buf; -errno. */
static int link_base(const char *dir, const char *name, char *buf, size_t len)
{
    char path[PATH_MAX], target[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return -ENAMETOOLONG;
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    const char *b = strrchr(target, '/');
    b = b ? b + 1 : target;
    if (strlen(b) >= len)
        return -ENAMETOOLONG;
    strcpy(buf, b);
    return 0;
}

/* The first entry of dir/infiniband/ (the RDMA device name) into buf:
 * 1 found, 0 none. */
static int ib_name(const char *dir, char *buf, size_t len)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/infiniband", dir) >= sizeof path)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    char best[256] = "";
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (!best[0] || strcmp(de->d_name, best) < 0)
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    if (!best[0])
        return 0;
    snprintf(buf, len, "%s", best);
    return 1;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

/* Fill d from sysfs directory dir (of device addr). */
static void read_device(const char *dir, const char *addr, struct vmio_hostdev *d)
{
    memset(d, 0, sizeof *d);
    copy_str(d->pci, sizeof d->pci, addr);
    d->vendor = (uint16_t)read_num(dir, "vendor", 16, 0);
    d->device = (uint16_t)read_num(dir, "device", 16, 0);
    d->numa_node = (int)read_num(dir, "numa_node", 10, -1);
    if (d->numa_node < -1)
        d->numa_node = -1;
    char buf[sizeof d->local_cpus];
    if (read_attr(dir, "local_cpulist", buf, sizeof buf) == 0)
        copy_str(d->local_cpus, sizeof d->local_cpus, buf);
    d->total_vfs = (int)read_num(dir, "sriov_totalvfs", 10, 0);
    d->num_vfs = (int)read_num(dir, "sriov_numvfs", 10, 0);
    if (link_base(dir, "driver", buf, sizeof buf) == 0)
        copy_str(d->driver, sizeof d->driver, buf);
    if (link_base(dir, "physfn", buf, sizeof buf) == 0) {
        d->is_vf = 1;
        copy_str(d->pf, sizeof d->pf, buf);
    }
    ib_name(dir, d->name, sizeof d->name);
}

/* Is the device at dir an InfiniBand HCA or a RoCE NIC (an Ethernet
 * function with an RDMA device)? */
static int is_rdma_function(const char *dir)
{
    long cls = read_num(dir, "class", 16, -1);
    if (cls < 0)
        return 0;
    unsigned c = (unsigned)cls >> 8;
    char name[64];
    if (c == PCI_CLASS_INFINIBAND)
        return 1;
    return c == PCI_CLASS_ETHERNET && ib_name(dir, name, sizeof name);
}

static int cmp_dev(const void *a, const void *b)
{
    return strcmp(((const struct vmio_hostdev *)a)->pci, ((const struct vmio_hostdev *)b)->pci);
}

static int push(struct vmio_hostdev **v, size_t *n, size_t *cap, const struct vmio_hostdev *d)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct vmio_hostdev *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = *d;
    return 0;
}

static int list_sysfs(const char *root, struct vmio_hostdev **out, size_t *count)
{
    char base[PATH_MAX];
    if ((size_t)snprintf(base, sizeof base, "%s/bus/pci/devices", root) >= sizeof base)
        return vmio_set_error(API_LIST, ENAMETOOLONG, "sysfs root too long: %s", root);
    DIR *dir = opendir(base);
    if (!dir)
        return vmio_set_error_errno(API_LIST, errno, "cannot list %s", base);
    struct vmio_hostdev *v = NULL;
    size_t n = 0, cap = 0;
    /* VFs whose PF is an HCA belong to the list even when their own
     * driver (vfio-pci) gives them no RDMA device: a second pass. */
    char (*vfs)[16] = NULL;
    size_t nvfs = 0;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        struct vmio_pci_addr a;
        if (de->d_name[0] == '.' || vmio_hostdev_pci_parse(de->d_name, &a) < 0)
            continue;
        char dev[PATH_MAX];
        if ((size_t)snprintf(dev, sizeof dev, "%s/%s", base, de->d_name) >= sizeof dev)
            continue;
        if (is_rdma_function(dev)) {
            struct vmio_hostdev d;
            read_device(dev, de->d_name, &d);
            if ((r = push(&v, &n, &cap, &d)) < 0)
                break;
        } else {
            char pf[16];
            long cls = read_num(dev, "class", 16, -1);
            if (cls >= 0 && ((unsigned)cls >> 8) == PCI_CLASS_ETHERNET &&
                link_base(dev, "physfn", pf, sizeof pf) == 0) {
                char (*nv)[16] = realloc(vfs, (nvfs + 1) * sizeof *vfs);
                if (!nv) {
                    r = -ENOMEM;
                    break;
                }
                vfs = nv;
                copy_str(vfs[nvfs++], sizeof vfs[0], de->d_name);
            }
        }
    }
    closedir(dir);
    for (size_t i = 0; r == 0 && i < nvfs; i++) {
        char dev[PATH_MAX], pf[16];
        snprintf(dev, sizeof dev, "%s/%s", base, vfs[i]);
        if (link_base(dev, "physfn", pf, sizeof pf) < 0)
            continue;
        for (size_t j = 0; j < n; j++)
            if (strcmp(v[j].pci, pf) == 0 && !v[j].is_vf) {
                struct vmio_hostdev d;
                read_device(dev, vfs[i], &d);
                r = push(&v, &n, &cap, &d);
                break;
            }
    }
    free(vfs);
    if (r < 0) {
        free(v);
        return vmio_set_error(API_LIST, -r, "out of memory");
    }
    *out = v;
    *count = n;
    return 0;
}

/* Devices known only to libvirt carry a NUMA node but no CPU list: take
 * the node's CPUs from the connection's topology. */
static void fill_local_cpus(struct vmio_group_conn *conn, struct vmio_hostdev *v, size_t n)
{
    int need = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].numa_node >= 0 && !v[i].local_cpus[0])
            need = 1;
    if (!need || !conn || !conn->be)
        return;
    struct vmio_topo t;
    memset(&t, 0, sizeof t);
    int r = conn->topology_xml ? vmio_topo_from_hwloc_xml(API_LIST, conn->topology_xml, &t)
            : conn->be->topology ? conn->be->topology(conn, &t) : -ENOTSUP;
    if (r < 0) {
        vmio_clear_error(); /* optional detail: the list stands without it */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].numa_node < 0 || v[i].local_cpus[0])
            continue;
        struct vmio_cpuset s;
        vmio_cpuset_zero(&s);
        for (size_t c = 0; c < t.ncpus; c++)
            if (t.cpus[c].node == v[i].numa_node && t.cpus[c].id >= 0)
                vmio_cpuset_set(&s, (unsigned)t.cpus[c].id);
        if (!vmio_cpuset_empty(&s) &&
            vmio_cpuset_format(&s, v[i].local_cpus, sizeof v[i].local_cpus) >=
                (int)sizeof v[i].local_cpus)
            v[i].local_cpus[0] = '\0';
    }
    vmio_topo_free(&t);
}

VMIO_API int vmio_hostdev_list(vmio_group_conn *conn, const char *sysfs_root,
                               struct vmio_hostdev **out, size_t *count)
{
    VMIO_CHECK_ARG(API_LIST, out != NULL, EFAULT);
    VMIO_CHECK_ARG(API_LIST, count != NULL, EFAULT);
    struct vmio_hostdev *v = NULL;
    size_t n = 0;
    int r = list_sysfs(sysfs_root ? sysfs_root : "/sys", &v, &n);
    if (r < 0)
        return r;
    if (conn && conn->be && strcmp(conn->be->name, "libvirt") == 0) {
        r = vmio_hostdev_list_libvirt(API_LIST, conn, &v, &n);
        if (r < 0) {
            free(v);
            return r;
        }
    }
    fill_local_cpus(conn, v, n);
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_dev);
    vmio_clear_error();
    *out = v;
    *count = n;
    return 0;
}

#if !VMIO_BUILT_LIBVIRT
/* Without libvirt's headers at build time, nothing of it can be called. */
static int no_libvirt(const char *api)
{
    return vmio_set_error(api, ENOTSUP, "libvmio was built without libvirt");
}

int vmio_hostdev_list_libvirt(const char *api, struct vmio_group_conn *conn,
                              struct vmio_hostdev **devs, size_t *n)
{
    (void)conn;
    (void)devs;
    (void)n;
    return no_libvirt(api);
}

VMIO_API int vmio_hostdev_attach(vmio_group_conn *conn, const char *vm, const char *pci,
                                 unsigned flags, vmio_group_report **report)
{
    return no_libvirt("vmio_hostdev_attach");
}

VMIO_API int vmio_hostdev_detach(vmio_group_conn *conn, const char *vm, const char *pci,
                                 unsigned flags, vmio_group_report **report)
{
    return no_libvirt("vmio_hostdev_detach");
}

VMIO_API int vmio_hostdev_host_detach(vmio_group_conn *conn, const char *pci)
{
    return no_libvirt("vmio_hostdev_host_detach");
}

VMIO_API int vmio_hostdev_host_reattach(vmio_group_conn *conn, const char *pci)
{
    return no_libvirt("vmio_hostdev_host_reattach");
}
#endif
