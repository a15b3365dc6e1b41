/* The borrower's iSCSI initiator driver (iscsi.h): iscsiadm spawned with
 * argv and timeouts, and the disk of a session found through sysfs. */
#include "memlend/iscsi.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/spawn.h"

/* iscsiadm exit codes (open-iscsi's iscsi_err.h). */
#define ISCSI_ERR_SESS_EXISTS 15
#define ISCSI_ERR_NO_OBJS_FOUND 21

int vmio_ml_iscsi_discover(const char *api, const char *portal, const char *iqn,
                           uint32_t timeout_ms)
{
    const char *argv[] = {"iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portal,
                          "-o", "nonpersistent", NULL};
    struct vmio_spawn_result r;
    int rc = vmio_spawn_check(api, argv, timeout_ms, &r);
    if (rc < 0) {
        vmio_spawn_result_free(&r);
        return rc;
    }
    /* Lines "address:port,tpgt iqn". */
    rc = -ENOENT;
    for (char *line = r.out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *sp = strrchr(line, ' ');
        if (sp && !strcmp(sp + 1, iqn) && strchr(line, ',') && strchr(line, ',') < sp) {
            rc = 0;
            break;
        }
    }
    vmio_spawn_result_free(&r);
    if (rc < 0)
        return vmio_set_error(api, ENOENT, "portal %s does not offer target %s", portal, iqn);
    return 0;
}

static int node_update(const char *api, const char *portal, const char *iqn, const char *name,
                       const char *value, uint32_t timeout_ms)
{
    const char *argv[] = {"iscsiadm", "-m", "node", "-T", iqn, "-p", portal, "-o", "update",
                          "-n", name, "-v", value, NULL};
    return vmio_spawn_check(api, argv, timeout_ms, NULL);
}

int vmio_ml_iscsi_node_setup(const char *api, const char *portal, const char *iqn,
                             const struct vmio_memlend_chap *chap, uint32_t replacement_s,
                             uint32_t timeout_ms)
{
    const char *argv[] = {"iscsiadm", "-m", "node", "-T", iqn, "-p", portal, "-o", "new", NULL};
    int rc = vmio_spawn_check(api, argv, timeout_ms, NULL);
    if (rc < 0)
        return rc;
    char repl[16];
    snprintf(repl, sizeof repl, "%u", replacement_s ? replacement_s : 5);
    const char *settings[][2] = {
        {"node.startup", "manual"},
        {"node.session.timeo.replacement_timeout", repl},
        {"node.session.auth.authmethod", chap ? "CHAP" : "None"},
        {"node.session.auth.username", chap ? chap->user : ""},
        {"node.session.auth.password", chap ? chap->secret : ""},
    };
    size_t n = chap ? VMIO_ARRAY_SIZE(settings) : 3;
    for (size_t i = 0; i < n; i++) {
        rc = node_update(api, portal, iqn, settings[i][0], settings[i][1], timeout_ms);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int vmio_ml_iscsi_login(const char *api, const char *portal, const char *iqn, uint32_t timeout_ms)
{
    const char *argv[] = {"iscsiadm", "-m", "node", "-T", iqn, "-p", portal, "--login", NULL};
    struct vmio_spawn_result r;
    int rc = vmio_spawn(api, argv, NULL, NULL, timeout_ms, &r);
    if (rc < 0)
        return rc;
    if (r.status != 0 && r.status != ISCSI_ERR_SESS_EXISTS) {
        rc = vmio_set_error(api, r.timed_out ? ETIMEDOUT : EIO,
                            "iscsiadm login to %s at %s failed (%s %d): %s", iqn, portal,
                            r.timed_out ? "timed out," : "exit status", r.status, r.err);
    }
    vmio_spawn_result_free(&r);
    return rc;
}

int vmio_ml_iscsi_logout(const char *api, const char *portal, const char *iqn,
                         uint32_t timeout_ms)
{
    const char *lo[] = {"iscsiadm", "-m", "node", "-T", iqn, "--logout", NULL, NULL, NULL};
    const char *del[] = {"iscsiadm", "-m", "node", "-T", iqn, "-o", "delete", NULL, NULL, NULL};
    if (portal) {
        lo[5] = "-p";
        lo[6] = portal;
        lo[7] = "--logout";
        del[5] = "-p";
        del[6] = portal;
        del[7] = "-o";
        del[8] = "delete";
    }
    const char *const *cmds[] = {lo, del};
    for (size_t i = 0; i < 2; i++) {
        struct vmio_spawn_result r;
        int rc = vmio_spawn(api, cmds[i], NULL, NULL, timeout_ms, &r);
        if (rc < 0)
            return rc;
        if (r.status != 0 && r.status != ISCSI_ERR_NO_OBJS_FOUND) {
            rc = vmio_set_error(api, r.timed_out ? ETIMEDOUT : EIO,
                                "iscsiadm %s of %s failed (%s %d): %s",
                                i ? "node delete" : "logout", iqn,
                                r.timed_out ? "timed out," : "exit status", r.status, r.err);
            vmio_spawn_result_free(&r);
            return rc;
        }
        vmio_spawn_result_free(&r);
    }
    return 0;
}

/* ---- sysfs --------------------------------------------------------------- */

static int read_line(const char *path, char *buf, size_t cap)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -errno;
    if (!fgets(buf, (int)cap, fp)) {
        fclose(fp);
        return -EIO;
    }
    fclose(fp);
    buf[strcspn(buf, "\n")] = 0;
    return 0;
}

/* "H:C:T:L" exactly. */
static int parse_hctl(const char *s, unsigned *lun)
{
    unsigned h, c, t, l;
    int used = -1;
    if (sscanf(s, "%u:%u:%u:%u%n", &h, &c, &t, &l, &used) != 4 || used < 0 ||
        s[used] != 0)
        return -1;
    *lun = l;
    return 0;
}

/* The block device under <dev>/block/ (one entry). */
static int block_name(const char *devdir, char *name, size_t cap)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/block", devdir);
    DIR *d = opendir(p);
    if (!d)
        return -ENOENT;
    struct dirent *e;
    int rc = -ENOENT;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (strlen(e->d_name) < cap) {
            strcpy(name, e->d_name);
            rc = 0;
        }
        break;
    }
    closedir(d);
    return rc;
}

/* In the session's device dir: target*\/H:C:T:L with L == lun. */
static int session_lun_disk(const char *sessdir, uint32_t lun, char *name, size_t cap)
{
    DIR *d = opendir(sessdir);
    if (!d)
        return -ENOENT;
    struct dirent *e;
    int rc = -ENOENT;
    while (rc < 0 && (e = readdir(d))) {
        if (strncmp(e->d_name, "target", 6))
            continue;
        char tdir[PATH_MAX];
        snprintf(tdir, sizeof tdir, "%s/%s", sessdir, e->d_name);
        DIR *td = opendir(tdir);
        if (!td)
            continue;
        struct dirent *f;
        while ((f = readdir(td))) {
            unsigned l;
            if (parse_hctl(f->d_name, &l) || l != lun)
                continue;
            char ddir[PATH_MAX];
            snprintf(ddir, sizeof ddir, "%s/%s", tdir, f->d_name);
            if (block_name(ddir, name, cap) == 0) {
                rc = 0;
                break;
            }
        }
        closedir(td);
    }
    closedir(d);
    return rc;
}

int vmio_ml_iscsi_find_disk(const char *api, const char *sysfs_root, const char *iqn,
                            uint32_t lun, char *name, size_t cap)
{
    char cls[PATH_MAX];
    snprintf(cls, sizeof cls, "%s/class/iscsi_session", sysfs_root ? sysfs_root : "/sys");
    DIR *d = opendir(cls);
    if (!d)
        return vmio_set_error(api, ENOENT, "no iSCSI sessions (%s: %s)", cls, strerror(errno));
    struct dirent *e;
    int rc = -ENOENT, sessions = 0;
    while (rc < 0 && (e = readdir(d))) {
        if (strncmp(e->d_name, "session", 7))
            continue;
        char p[PATH_MAX], tn[256];
        snprintf(p, sizeof p, "%s/%s/targetname", cls, e->d_name);
        if (read_line(p, tn, sizeof tn) < 0 || strcmp(tn, iqn))
            continue;
        sessions++;
        /* class/iscsi_session/sessionN -> .../hostH/sessionN/iscsi_session/sessionN */
        snprintf(p, sizeof p, "%s/%s", cls, e->d_name);
        char *real = realpath(p, NULL);
        if (!real)
            continue;
        char *s = strrchr(real, '/');
        if (s) {
            *s = 0;
            s = strrchr(real, '/');
        }
        if (s) {
            *s = 0;
            rc = session_lun_disk(real, lun, name, cap);
        }
        free(real);
    }
    closedir(d);
    if (rc < 0)
        return vmio_set_error(api, ENOENT, "%s: no disk for LUN %u of %s", sessions
                              ? "session found" : "no session", lun, iqn);
    return 0;
}

int vmio_ml_iscsi_wait_disk(const char *api, const char *sysfs_root, const char *iqn,
                            uint32_t lun, uint32_t timeout_ms, char *dev, size_t cap)
{
    uint64_t end = vmio_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char name[64];
        int rc = vmio_ml_iscsi_find_disk(api, sysfs_root, iqn, lun, name, sizeof name);
        if (rc == 0) {
            if ((size_t)snprintf(dev, cap, "/dev/%s", name) >= cap)
                return vmio_set_error(api, ENAMETOOLONG, "device name too long");
            struct stat st;
            if (stat(dev, &st) == 0 && S_ISBLK(st.st_mode))
                return 0;
        }
        if (vmio_now_ns() >= end)
            return vmio_set_error(api, ETIMEDOUT, "no block device for LUN %u of %s after %u ms",
                                  lun, iqn, timeout_ms);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int vmio_ml_iscsi_disk_target(const char *api, const char *sysfs_root, const char *disk,
                              char *iqn, size_t cap, uint32_t *lun)
{
    const char *root = sysfs_root ? sysfs_root : "/sys";
    const char *base = strrchr(disk, '/');
    base = base ? base + 1 : disk;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/class/block/%s", root, base);
    char *real = realpath(p, NULL);
    if (!real)
        return vmio_set_error(api, ENOENT, "%s: not a block device in sysfs", disk);
    /* .../sessionN/targetH:C:T/H:C:T:L/block/sdX */
    char session[64] = "";
    int have_lun = 0;
    unsigned l = 0;
    for (char *tok = strtok(real, "/"); tok; tok = strtok(NULL, "/")) {
        unsigned x;
        char c;
        if (sscanf(tok, "session%u%c", &x, &c) == 1)
            snprintf(session, sizeof session, "%s", tok);
        else if (session[0] && parse_hctl(tok, &x) == 0) {
            l = x;
            have_lun = 1;
        }
    }
    free(real);
    if (!session[0] || !have_lun)
        return vmio_set_error(api, ENOENT, "%s is not an iSCSI disk", disk);
    snprintf(p, sizeof p, "%s/class/iscsi_session/%s/targetname", root, session);
    char tn[256];
    if (read_line(p, tn, sizeof tn) < 0 || strlen(tn) >= cap)
        return vmio_set_error(api, ENOENT, "%s: cannot read %s", disk, p);
    strcpy(iqn, tn);
    *lun = l;
    return 0;
}
