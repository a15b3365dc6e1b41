/* The borrower (include/vmio/memlend.h, "borrower" section): moves swap
 * LVs onto LUNs borrowed from lenders and back, with LVM and open-iscsi,
 * and the agent that answers the manager's REVOKE and LENDER_LOST
 * notices. State lives in LVM's PV tags, nothing is kept elsewhere. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmio/memlend.h>

#include "core/internal.h"
#include "memlend/iscsi.h"
#include "memlend/lvm.h"

#define MIB (1024u * 1024u)
#define MAX_ARGS 24

struct vmio_memlend_borrower {
    char manager[256];
    char secret_file[PATH_MAX];
    char name[64];
    char sysfs[PATH_MAX];
    uint32_t timeout_ms, tool_ms, move_ms, repl_s;
    vmio_memlend_client *c;
    volatile sig_atomic_t stop;
};

static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

int vmio_memlend_borrower_new(const struct vmio_memlend_borrower_options *o,
                              vmio_memlend_borrower **out)
{
    const char *api = "vmio_memlend_borrower_new";
    VMIO_CHECK_ARG(api, o && out, EINVAL);
    VMIO_CHECK_ARG(api, o->struct_size >= sizeof(uint32_t), EINVAL);
    struct vmio_memlend_borrower_options opts;
    memset(&opts, 0, sizeof opts);
    memcpy(&opts, o, VMIO_MIN(o->struct_size, (uint32_t)sizeof opts));
    struct vmio_memlend_borrower *b = calloc(1, sizeof *b);
    if (!b)
        return vmio_set_error(api, ENOMEM, "out of memory");
    if (opts.name) {
        if (copy_str(b->name, sizeof b->name, opts.name) || !opts.name[0])
            goto toolong;
    } else if (gethostname(b->name, sizeof b->name - 1) < 0 || !b->name[0]) {
        free(b);
        return vmio_set_error_errno(api, errno, "cannot get the host name");
    }
    if ((opts.manager && copy_str(b->manager, sizeof b->manager, opts.manager)) ||
        (opts.secret_file && copy_str(b->secret_file, sizeof b->secret_file, opts.secret_file)) ||
        copy_str(b->sysfs, sizeof b->sysfs, opts.sysfs_root ? opts.sysfs_root : "/sys"))
        goto toolong;
    if (b->manager[0] && !b->secret_file[0]) {
        free(b);
        return vmio_set_error(api, EINVAL, "a manager needs a secret file");
    }
    b->timeout_ms = opts.timeout_ms ? opts.timeout_ms : 30000;
    b->tool_ms = opts.tool_timeout_ms ? opts.tool_timeout_ms : 120000;
    b->move_ms = opts.move_timeout_ms ? opts.move_timeout_ms : 3600000;
    b->repl_s = opts.replacement_timeout_s ? opts.replacement_timeout_s : 5;
    *out = b;
    return 0;
toolong:
    free(b);
    return vmio_set_error(api, ENAMETOOLONG, "an option string is too long or empty");
}

void vmio_memlend_borrower_free(vmio_memlend_borrower *b)
{
    if (!b)
        return;
    if (b->c)
        vmio_memlend_disconnect(b->c);
    free(b);
}

static int ensure_client(vmio_memlend_borrower *b, const char *api)
{
    if (b->c)
        return 0;
    if (!b->manager[0])
        return vmio_set_error(api, EINVAL, "no manager given");
    int rc = vmio_memlend_connect(b->manager, b->secret_file, VMIO_MEMLEND_ROLE_BORROWER,
                                  b->name, b->timeout_ms, &b->c);
    if (rc < 0)
        return vmio_error_reprefix(api, -rc);
    return 0;
}

/* lvm with a NULL-terminated list of arguments. */
static int lvm(vmio_memlend_borrower *b, const char *api, int long_run, ...)
{
    const char *args[MAX_ARGS];
    size_t n = 0;
    va_list ap;
    va_start(ap, long_run);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < MAX_ARGS - 1)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return vmio_ml_lvm_cmd(api, long_run ? b->move_ms : b->tool_ms, args);
}

/* lvm with a fixed head followed by a list of PV names. */
static int lvm_pvs_tail(vmio_memlend_borrower *b, const char *api, int long_run,
                        const char *const head[], char (*pvs)[256], size_t npvs)
{
    const char *args[MAX_ARGS + 16];
    size_t n = 0;
    for (; head[n]; n++)
        args[n] = head[n];
    for (size_t i = 0; i < npvs && n < VMIO_ARRAY_SIZE(args) - 1; i++)
        args[n++] = pvs[i];
    args[n] = NULL;
    return vmio_ml_lvm_cmd(api, long_run ? b->move_ms : b->tool_ms, args);
}

static void sanitize_tag(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) {
        char ch = src[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '+' || ch == '.' || ch == '-';
        dst[i] = ok ? ch : '_';
    }
    dst[i] = 0;
}

/* Top-level LVs of vg that have extents on pv (names into lvs[], max). */
static size_t lvs_on_pv(const struct vmio_ml_seg *segs, size_t n, const char *vg, const char *pv,
                        char (*lvs)[128], size_t max)
{
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(segs[i].vg, vg) || segs[i].hidden)
            continue;
        int sub = 0;  /* named as a device of another LV: a raid image etc. */
        for (size_t j = 0; j < n && !sub; j++)
            sub = segs[j].dev_is_lv && !strcmp(segs[j].vg, vg) && !strcmp(segs[j].dev, segs[i].lv);
        if (sub)
            continue;
        int dup = 0;
        for (size_t k = 0; k < cnt && !dup; k++)
            dup = !strcmp(lvs[k], segs[i].lv);
        if (dup || vmio_ml_lvm_lv_bytes_on(segs, n, vg, segs[i].lv, pv, 1) == 0)
            continue;
        if (cnt < max)
            copy_str(lvs[cnt], 128, segs[i].lv);
        cnt++;
    }
    return VMIO_MIN(cnt, max);
}

/* Local PVs of vg: in the VG, not borrowed, not missing. */
static size_t local_pvs(const struct vmio_ml_pv *pvs, size_t n, const char *vg, char (*out)[256],
                        size_t max)
{
    size_t cnt = 0;
    for (size_t i = 0; i < n && cnt < max; i++)
        if (!strcmp(pvs[i].vg, vg) && !pvs[i].lease && !pvs[i].missing)
            copy_str(out[cnt++], 256, pvs[i].name);
    return cnt;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Wait until the raid1 LV vg/lv is in sync. */
static int wait_sync(vmio_memlend_borrower *b, const char *api, const char *vg, const char *lv)
{
    uint64_t end = vmio_now_ns() + (uint64_t)b->move_ms * 1000000u;
    for (;;) {
        struct vmio_ml_seg *segs;
        size_t n;
        int rc = vmio_ml_lvm_lvs(api, vg, b->tool_ms, &segs, &n);
        if (rc < 0)
            return rc;
        int done = 0;
        double pct = 0;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(segs[i].lv, lv) && segs[i].sync_known) {
                pct = segs[i].sync_percent;
                done = pct >= 100.0;
                break;
            }
        free(segs);
        if (done)
            return 0;
        if (vmio_now_ns() >= end)
            return vmio_set_error(api, ETIMEDOUT, "%s/%s: raid1 resync at %.1f%% after %u ms", vg,
                                  lv, pct, b->move_ms);
        sleep_ms(500);
    }
}

struct found_pv {
    struct vmio_ml_pv pv;
    int found;
};

static int find_lease_pv(vmio_memlend_borrower *b, const char *api, const char *vg,
                         uint64_t lease, struct found_pv *f)
{
    struct vmio_ml_pv *pvs;
    size_t n;
    memset(f, 0, sizeof *f);
    int rc = vmio_ml_lvm_pvs(api, vg, b->tool_ms, &pvs, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (pvs[i].lease == lease) {
            f->pv = pvs[i];
            f->found = 1;
            break;
        }
    free(pvs);
    return 0;
}

/* Move every LV off pv (in vg) onto the local PVs. */
static int evacuate(vmio_memlend_borrower *b, const char *api, const char *vg, const char *pv)
{
    struct vmio_ml_pv *pvs = NULL;
    struct vmio_ml_seg *segs = NULL;
    size_t npv, nseg;
    char(*locals)[256] = calloc(16, 256);
    char(*lvs)[128] = calloc(64, 128);
    char(*lvpvs)[256] = calloc(16, 256);
    int rc = -ENOMEM;
    if (!locals || !lvs || !lvpvs) {
        vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    rc = vmio_ml_lvm_pvs(api, vg, b->tool_ms, &pvs, &npv);
    if (rc < 0)
        goto out;
    rc = vmio_ml_lvm_lvs(api, vg, b->tool_ms, &segs, &nseg);
    if (rc < 0)
        goto out;
    size_t nloc = local_pvs(pvs, npv, vg, locals, 16);
    size_t nlv = lvs_on_pv(segs, nseg, vg, pv, lvs, 64);
    if (nlv && !nloc) {
        rc = vmio_set_error(api, ENOSPC, "VG %s has no local PV to move %s back to", vg, pv);
        goto out;
    }
    for (size_t k = 0; k < nlv; k++) {
        char full[300];
        snprintf(full, sizeof full, "%s/%s", vg, lvs[k]);
        int images = vmio_ml_lvm_raid_images(segs, nseg, vg, lvs[k]);
        if (images >= 2) {
            int np = vmio_ml_lvm_lv_pvs(segs, nseg, vg, lvs[k], lvpvs, 16);
            int has_local = 0;
            for (int i = 0; i < np && i < 16; i++)
                for (size_t j = 0; j < nloc; j++)
                    has_local |= !strcmp(lvpvs[i], locals[j]);
            if (has_local) {
                /* Another leg is already local: drop the leg on pv. */
                char m[16];
                snprintf(m, sizeof m, "%d", images - 2);
                rc = lvm(b, api, 1, "lvconvert", "-y", "-m", m, full, pv, NULL);
            } else {
                const char *head[] = {"lvconvert", "-y", "--replace", pv, full, NULL};
                rc = lvm_pvs_tail(b, api, 1, head, locals, nloc);
                if (rc == 0)
                    rc = wait_sync(b, api, vg, lvs[k]);
            }
        } else {
            const char *head[] = {"pvmove", "-i", "0", "-n", lvs[k], pv, NULL};
            rc = lvm_pvs_tail(b, api, 1, head, locals, nloc);
            if (rc < 0) {
                struct vmio_error_copy e;
                vmio_error_save(&e);
                lvm(b, api, 0, "pvmove", "--abort", NULL);
                vmio_error_restore(&e);
            }
        }
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    free(pvs);
    free(segs);
    free(locals);
    free(lvs);
    free(lvpvs);
    return rc;
}

/* Give back one borrowed PV: evacuate, vgreduce, pvremove, logout, release. */
static int give_back(vmio_memlend_borrower *b, const char *api, const struct vmio_ml_pv *pv,
                     const char *iqn_hint)
{
    char iqn[224] = "";
    uint32_t lun;
    if (pv->missing)
        return vmio_set_error(api, EIO, "the PV of lease %" PRIu64 " is missing (lender lost?); "
                              "use the agent's LENDER_LOST handling", pv->lease);
    if (vmio_ml_iscsi_disk_target(api, b->sysfs, pv->name, iqn, sizeof iqn, &lun) < 0 &&
        iqn_hint)
        copy_str(iqn, sizeof iqn, iqn_hint);
    int rc = 0;
    if (pv->vg[0]) {
        rc = evacuate(b, api, pv->vg, pv->name);
        if (rc < 0)
            return rc;
        rc = lvm(b, api, 0, "vgreduce", pv->vg, pv->name, NULL);
        if (rc < 0)
            return rc;
    }
    rc = lvm(b, api, 0, "pvremove", "-y", pv->name, NULL);
    if (rc < 0)
        return rc;
    if (iqn[0]) {
        rc = vmio_ml_iscsi_logout(api, NULL, iqn, b->tool_ms);
        if (rc < 0)
            return rc;
    }
    if (pv->lease && b->manager[0]) {
        rc = ensure_client(b, api);
        if (rc == 0)
            rc = vmio_memlend_release(b->c, pv->lease);
        if (rc < 0)
            return vmio_error_reprefix(api, -rc);
    }
    return 0;
}

/* Log in to a lease's LUN, make it a PV of vg with the lease tags. dev
 * receives its path. *stage tells how far it got (for the rollback). */
static int bring_in(vmio_memlend_borrower *b, const char *api, const char *vg,
                    const struct vmio_memlend_lease *l, char *dev, size_t cap, int *stage)
{
    struct vmio_memlend_chap chap;
    int rc = vmio_memlend_chap_derive(b->secret_file, l->target_iqn, &chap);
    if (rc < 0)
        return vmio_error_reprefix(api, -rc);
    rc = vmio_ml_iscsi_discover(api, l->portal, l->target_iqn, b->tool_ms);
    if (rc < 0)
        return rc;
    *stage = 1;  /* node record exists from here on */
    rc = vmio_ml_iscsi_node_setup(api, l->portal, l->target_iqn, &chap, b->repl_s, b->tool_ms);
    memset(&chap, 0, sizeof chap);
    if (rc < 0)
        return rc;
    rc = vmio_ml_iscsi_login(api, l->portal, l->target_iqn, b->tool_ms);
    if (rc < 0)
        return rc;
    rc = vmio_ml_iscsi_wait_disk(api, b->sysfs, l->target_iqn, l->lun, 30000, dev, cap);
    if (rc < 0)
        return rc;
    rc = lvm(b, api, 0, "pvcreate", "-y", dev, NULL);
    if (rc < 0)
        return rc;
    *stage = 2;
    rc = lvm(b, api, 0, "vgextend", vg, dev, NULL);
    if (rc < 0)
        return rc;
    *stage = 3;
    char t1[64], t2[128], ln[64];
    snprintf(t1, sizeof t1, VMIO_ML_TAG_LEASE "%" PRIu64, l->id);
    sanitize_tag(ln, sizeof ln, l->lender);
    snprintf(t2, sizeof t2, VMIO_ML_TAG_LENDER "%s", ln);
    return lvm(b, api, 0, "pvchange", "--addtag", t1, "--addtag", t2, dev, NULL);
}

/* Undo bring_in and hand the lease back (best effort: the first error
 * stays recorded). */
static void roll_back(vmio_memlend_borrower *b, const char *api, const char *vg,
                      const struct vmio_memlend_lease *l, const char *dev, int stage)
{
    struct vmio_error_copy e;
    vmio_error_save(&e);
    if (stage >= 3) {
        struct vmio_ml_pv pv;
        memset(&pv, 0, sizeof pv);
        copy_str(pv.name, sizeof pv.name, dev);
        copy_str(pv.vg, sizeof pv.vg, vg);
        if (give_back(b, api, &pv, l->target_iqn) == 0)
            stage = 0;
    }
    if (stage >= 2)
        lvm(b, api, 0, "pvremove", "-y", dev, NULL);
    if (stage >= 1)
        vmio_ml_iscsi_logout(api, NULL, l->target_iqn, b->tool_ms);
    if (b->c)
        vmio_memlend_release(b->c, l->id);
    vmio_error_restore(&e);
}

int vmio_memlend_swap_attach(vmio_memlend_borrower *b, const char *vg, const char *lv,
                             uint64_t size, uint32_t flags, uint64_t lease_ids[2])
{
    const char *api = "vmio_memlend_swap_attach";
    VMIO_CHECK_ARG(api, b && vg && lv && lease_ids, EINVAL);
    VMIO_CHECK_ARG(api, (flags & ~VMIO_MEMLEND_SWAP_MIRROR) == 0, EINVAL);
    struct vmio_ml_vg vgi;
    int rc = vmio_ml_lvm_vg(api, vg, b->tool_ms, &vgi);
    if (rc < 0)
        return rc;
    struct vmio_ml_seg *segs;
    size_t nseg;
    rc = vmio_ml_lvm_lvs(api, vg, b->tool_ms, &segs, &nseg);
    if (rc < 0)
        return rc;
    uint64_t lv_size = 0;
    int images = 0;
    char src[8][256];
    int nsrc = 0;
    for (size_t i = 0; i < nseg; i++)
        if (!strcmp(segs[i].lv, lv))
            lv_size = segs[i].lv_size;
    if (lv_size) {
        images = vmio_ml_lvm_raid_images(segs, nseg, vg, lv);
        nsrc = vmio_ml_lvm_lv_pvs(segs, nseg, vg, lv, src, 8);
    }
    free(segs);
    if (!lv_size)
        return vmio_set_error(api, ENOENT, "no LV %s in VG %s", lv, vg);
    if (images)
        return vmio_set_error(api, EBUSY, "%s/%s is already raid1: detach first", vg, lv);
    if (nsrc > 8)
        return vmio_set_error(api, E2BIG, "%s/%s spans more than 8 PVs", vg, lv);
    int mirror = (flags & VMIO_MEMLEND_SWAP_MIRROR) != 0;
    /* Usable room of a PV: the LUN minus the 1 MiB data offset, in whole
     * extents; raid1 needs one more extent per leg for its metadata. */
    uint64_t need = lv_size + (mirror ? vgi.extent_size : 0);
    uint64_t min_size = need + vgi.extent_size + MIB;
    if (!size)
        size = (min_size + MIB - 1) / MIB * MIB;
    if (size < min_size)
        return vmio_set_error(api, ENOSPC, "%s/%s needs a lease of at least %" PRIu64 " bytes "
                              "(LV %" PRIu64 " + LVM overhead), not %" PRIu64, vg, lv, min_size,
                              lv_size, size);
    rc = ensure_client(b, api);
    if (rc < 0)
        return rc;

    int nl = mirror ? 2 : 1;
    struct vmio_memlend_lease leases[2];
    char devs[2][256] = {"", ""};
    int stages[2] = {0, 0};
    int got = 0;
    for (; got < nl; got++) {
        rc = vmio_memlend_request(b->c, size, &leases[got]);
        if (rc < 0) {
            rc = vmio_error_reprefix(api, -rc);
            goto fail;
        }
        if (got == 1 && !strcmp(leases[0].lender, leases[1].lender)) {
            got++;
            rc = vmio_set_error(api, EAGAIN, "mirrored mode needs two lenders, the manager gave "
                                "both leases from %s", leases[0].lender);
            goto fail;
        }
    }
    for (int i = 0; i < nl; i++) {
        rc = bring_in(b, api, vg, &leases[i], devs[i], sizeof devs[i], &stages[i]);
        if (rc < 0)
            goto fail;
    }
    char full[300];
    snprintf(full, sizeof full, "%s/%s", vg, lv);
    if (!mirror) {
        for (int s = 0; s < nsrc && rc == 0; s++) {
            rc = lvm(b, api, 1, "pvmove", "-i", "0", "-n", lv, src[s], devs[0], NULL);
            if (rc < 0) {
                struct vmio_error_copy e;
                vmio_error_save(&e);
                lvm(b, api, 0, "pvmove", "--abort", NULL);
                vmio_error_restore(&e);
            }
        }
    } else {
        /* linear -> raid1 (local + A), then the local leg replaced by B. */
        rc = lvm(b, api, 1, "lvconvert", "-y", "--type", "raid1", "-m", "1", full, devs[0], NULL);
        if (rc == 0)
            rc = wait_sync(b, api, vg, lv);
        for (int s = 0; s < nsrc && rc == 0; s++) {
            rc = lvm(b, api, 1, "lvconvert", "-y", "--replace", src[s], full, devs[1], NULL);
            if (rc == 0)
                rc = wait_sync(b, api, vg, lv);
        }
    }
    if (rc < 0)
        goto fail;
    for (int i = 0; i < nl; i++) {
        rc = vmio_memlend_attached(b->c, leases[i].id);
        if (rc < 0) {
            rc = vmio_error_reprefix(api, -rc);
            goto fail;
        }
        lease_ids[i] = leases[i].id;
    }
    return nl;
fail:
    for (int i = got - 1; i >= 0; i--)
        roll_back(b, api, vg, &leases[i], devs[i], i < nl ? stages[i] : 0);
    return rc;
}

int vmio_memlend_swap_detach(vmio_memlend_borrower *b, const char *vg, uint64_t lease_id)
{
    const char *api = "vmio_memlend_swap_detach";
    VMIO_CHECK_ARG(api, b, EINVAL);
    struct vmio_ml_pv *pvs;
    size_t n;
    int rc = vmio_ml_lvm_pvs(api, vg, b->tool_ms, &pvs, &n);
    if (rc < 0)
        return rc;
    int done = 0, matched = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!pvs[i].lease || (lease_id && pvs[i].lease != lease_id))
            continue;
        matched++;
        rc = give_back(b, api, &pvs[i], NULL);
        if (rc == 0)
            done++;
    }
    free(pvs);
    if (rc < 0)
        return rc;
    if (lease_id && !matched)
        return vmio_set_error(api, ENOENT, "no PV of lease %" PRIu64 "%s%s", lease_id,
                              vg ? " in VG " : "", vg ? vg : "");
    return done;
}

/* ---- status ------------------------------------------------------------- */

static int add_place(struct vmio_memlend_swap_place **arr, size_t *n, size_t *cap,
                     const struct vmio_memlend_swap_place *p)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*arr)[i].vg, p->vg) && !strcmp((*arr)[i].lv, p->lv) &&
            !strcmp((*arr)[i].pv, p->pv))
            return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *np = realloc(*arr, nc * sizeof **arr);
        if (!np)
            return -ENOMEM;
        *arr = np;
        *cap = nc;
    }
    (*arr)[(*n)++] = *p;
    return 0;
}

static const struct vmio_ml_pv *pv_by_name(const struct vmio_ml_pv *pvs, size_t n, const char *vg,
                                           const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(pvs[i].vg, vg) && !strcmp(pvs[i].name, name))
            return &pvs[i];
    return NULL;
}

int vmio_memlend_swap_status(vmio_memlend_borrower *b, const char *vg,
                             struct vmio_memlend_swap_place **out, size_t *nout)
{
    const char *api = "vmio_memlend_swap_status";
    VMIO_CHECK_ARG(api, b && out && nout, EINVAL);
    *out = NULL;
    *nout = 0;
    struct vmio_ml_pv *pvs = NULL;
    struct vmio_ml_seg *segs = NULL;
    struct vmio_memlend_swap_place *arr = NULL;
    struct vmio_memlend_lease *ml = NULL;
    struct vmio_memlend_lender_info *li = NULL;
    size_t npv = 0, nseg = 0, n = 0, cap = 0, nml = 0, nli = 0;
    char(*lvs)[128] = calloc(64, 128);
    char(*lvpvs)[256] = calloc(16, 256);
    int rc = -ENOMEM;
    if (!lvs || !lvpvs) {
        vmio_set_error(api, ENOMEM, "out of memory");
        goto out;
    }
    rc = vmio_ml_lvm_pvs(api, vg, b->tool_ms, &pvs, &npv);
    if (rc < 0)
        goto out;
    rc = vmio_ml_lvm_lvs(api, vg, b->tool_ms, &segs, &nseg);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < npv; i++) {
        const struct vmio_ml_pv *bp = &pvs[i];
        if (!bp->lease || !bp->vg[0]) {
            if (bp->lease) {  /* a borrowed PV outside any VG */
                struct vmio_memlend_swap_place p;
                memset(&p, 0, sizeof p);
                copy_str(p.pv, sizeof p.pv, bp->name);
                p.lease = bp->lease;
                copy_str(p.lender, sizeof p.lender, bp->lender);
                if (add_place(&arr, &n, &cap, &p) < 0)
                    goto oom;
            }
            continue;
        }
        struct vmio_ml_vg vgi;
        rc = vmio_ml_lvm_vg(api, bp->vg, b->tool_ms, &vgi);
        if (rc < 0)
            goto out;
        size_t nlv = lvs_on_pv(segs, nseg, bp->vg, bp->name, lvs, 64);
        if (!nlv) {
            struct vmio_memlend_swap_place p;
            memset(&p, 0, sizeof p);
            copy_str(p.vg, sizeof p.vg, bp->vg);
            copy_str(p.pv, sizeof p.pv, bp->name);
            p.lease = bp->lease;
            p.missing = (uint32_t)bp->missing;
            copy_str(p.lender, sizeof p.lender, bp->lender);
            if (add_place(&arr, &n, &cap, &p) < 0)
                goto oom;
        }
        for (size_t k = 0; k < nlv; k++) {
            int np = vmio_ml_lvm_lv_pvs(segs, nseg, bp->vg, lvs[k], lvpvs, 16);
            for (int j = 0; j < np && j < 16; j++) {
                struct vmio_memlend_swap_place p;
                memset(&p, 0, sizeof p);
                copy_str(p.vg, sizeof p.vg, bp->vg);
                copy_str(p.lv, sizeof p.lv, lvs[k]);
                copy_str(p.pv, sizeof p.pv, lvpvs[j]);
                for (size_t s = 0; s < nseg; s++)
                    if (!strcmp(segs[s].vg, bp->vg) && !strcmp(segs[s].lv, lvs[k])) {
                        copy_str(p.segtype, sizeof p.segtype, segs[s].segtype);
                        break;
                    }
                p.bytes = vmio_ml_lvm_lv_bytes_on(segs, nseg, bp->vg, lvs[k], lvpvs[j],
                                                  vgi.extent_size);
                const struct vmio_ml_pv *pp = pv_by_name(pvs, npv, bp->vg, lvpvs[j]);
                if (!strcmp(lvpvs[j], "[unknown]"))
                    pp = bp->missing ? bp : NULL;
                if (pp) {
                    p.lease = pp->lease;
                    p.missing = (uint32_t)pp->missing;
                    copy_str(p.lender, sizeof p.lender, pp->lender);
                } else {
                    p.missing = !strcmp(lvpvs[j], "[unknown]");
                }
                if (add_place(&arr, &n, &cap, &p) < 0)
                    goto oom;
            }
        }
    }
    /* IQNs from sysfs, states from the manager when there is one. */
    if (b->manager[0] && ensure_client(b, api) == 0 &&
        vmio_memlend_status(b->c, &ml, &nml, &li, &nli) < 0) {
        ml = NULL;
        nml = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t lun;
        if (arr[i].lease && !arr[i].missing)
            vmio_ml_iscsi_disk_target(api, b->sysfs, arr[i].pv, arr[i].target_iqn,
                                      sizeof arr[i].target_iqn, &lun);
        for (size_t j = 0; j < nml; j++)
            if (arr[i].lease && ml[j].id == arr[i].lease) {
                arr[i].state = ml[j].state;
                if (!arr[i].target_iqn[0])
                    copy_str(arr[i].target_iqn, sizeof arr[i].target_iqn, ml[j].target_iqn);
            }
    }
    vmio_clear_error();
    *out = arr;
    *nout = n;
    arr = NULL;
    rc = 0;
    goto out;
oom:
    rc = vmio_set_error(api, ENOMEM, "out of memory");
out:
    if (ml || li)
        vmio_memlend_status_free(ml, li);
    free(arr);
    free(pvs);
    free(segs);
    free(lvs);
    free(lvpvs);
    return rc;
}

void vmio_memlend_swap_status_free(struct vmio_memlend_swap_place *p)
{
    free(p);
}

/* ---- agent -------------------------------------------------------------- */

static void emit(vmio_memlend_swap_event_fn fn, void *ctx, int ev, uint64_t lease,
                 const char *fmt, ...) VMIO_PRINTF(5, 6);
static void emit(vmio_memlend_swap_event_fn fn, void *ctx, int ev, uint64_t lease,
                 const char *fmt, ...)
{
    if (!fn)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(ctx, ev, lease, buf);
}

static void on_revoke(vmio_memlend_borrower *b, const struct vmio_memlend_lease *l,
                      vmio_memlend_swap_event_fn fn, void *ctx)
{
    const char *api = "vmio_memlend_swap_agent";
    emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_REVOKE, l->id, "lender %s revokes lease %" PRIu64,
         l->lender, l->id);
    struct found_pv f;
    uint64_t t0 = vmio_now_ns();
    int rc = find_lease_pv(b, api, NULL, l->id, &f);
    if (rc == 0 && f.found) {
        rc = give_back(b, api, &f.pv, l->target_iqn);
    } else if (rc == 0) {
        /* Not (or no longer) in LVM: make sure no session stays behind. */
        rc = vmio_ml_iscsi_logout(api, NULL, l->target_iqn, b->tool_ms);
        if (rc == 0)
            rc = vmio_memlend_release(b->c, l->id);
    }
    if (rc < 0)
        emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, l->id, "giving back lease %" PRIu64
             " failed: %s", l->id, vmio_errmsg());
    else
        emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_DETACHED, l->id, "lease %" PRIu64 " given back in "
             "%.1f s", l->id, (double)(vmio_now_ns() - t0) / 1e9);
}

static void on_lost(vmio_memlend_borrower *b, const struct vmio_memlend_lease *l,
                    vmio_memlend_swap_event_fn fn, void *ctx)
{
    const char *api = "vmio_memlend_swap_agent";
    emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_LENDER_LOST, l->id, "lender %s of lease %" PRIu64
         " (%s) is lost", l->lender, l->id, l->target_iqn);
    struct found_pv f;
    int rc = find_lease_pv(b, api, NULL, l->id, &f);
    if (rc < 0 || !f.found) {
        if (rc == 0)
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_LENDER_LOST, l->id,
                 "lease %" PRIu64 " holds no PV here: nothing lost", l->id);
        else
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, l->id, "%s", vmio_errmsg());
        vmio_ml_iscsi_logout(api, NULL, l->target_iqn, b->tool_ms);
        return;
    }
    const char *vg = f.pv.vg;
    struct vmio_ml_seg *segs = NULL;
    struct vmio_ml_pv *pvs = NULL;
    size_t nseg, npv;
    char(*lvs)[128] = calloc(64, 128);
    char(*locals)[256] = calloc(16, 256);
    struct vmio_ml_vg vgi;
    int lost = 0;
    if (!lvs || !locals || vmio_ml_lvm_lvs(api, vg, b->tool_ms, &segs, &nseg) < 0 ||
        vmio_ml_lvm_pvs(api, vg, b->tool_ms, &pvs, &npv) < 0 ||
        vmio_ml_lvm_vg(api, vg, b->tool_ms, &vgi) < 0) {
        emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, l->id, "cannot inspect VG %s: %s", vg,
             vmio_errmsg());
        goto out;
    }
    size_t nloc = local_pvs(pvs, npv, vg, locals, 16);
    size_t nlv = lvs_on_pv(segs, nseg, vg, f.pv.name, lvs, 64);
    for (size_t k = 0; k < nlv; k++) {
        char full[300];
        snprintf(full, sizeof full, "%s/%s", vg, lvs[k]);
        if (vmio_ml_lvm_raid_images(segs, nseg, vg, lvs[k]) >= 2) {
            /* Mirrored: rebuild the dead leg on the local PVs. */
            const char *head[] = {"lvconvert", "-y", "--repair", full, NULL};
            rc = lvm_pvs_tail(b, api, 1, head, locals, nloc);
            if (rc == 0)
                rc = wait_sync(b, api, vg, lvs[k]);
            if (rc < 0) {
                lost++;
                emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, l->id, "%s: cannot replace the "
                     "dead leg: %s", full, vmio_errmsg());
            } else {
                emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_LEG_DROPPED, l->id, "%s: the leg on lease %"
                     PRIu64 " (lender %s) was dropped and rebuilt on the local PVs; no data "
                     "lost", full, l->id, l->lender);
            }
            continue;
        }
        /* Plain: say exactly what is gone. */
        lost++;
        for (size_t i = 0; i < nseg; i++) {
            if (strcmp(segs[i].vg, vg) || strcmp(segs[i].dev, f.pv.name))
                continue;
            int mine = !strcmp(segs[i].lv, lvs[k]);
            if (!mine) {  /* a sub-LV of lvs[k] */
                for (size_t j = 0; j < nseg && !mine; j++)
                    mine = !strcmp(segs[j].lv, lvs[k]) && segs[j].dev_is_lv &&
                           !strcmp(segs[j].dev, segs[i].lv);
            }
            if (!mine)
                continue;
            uint64_t ext = segs[i].pe_last - segs[i].pe_first + 1;
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_DATA_LOST, l->id,
                 "DATA LOST: %s: %" PRIu64 " extents (%" PRIu64 " MiB, PV extents %" PRIu64
                 "-%" PRIu64 ") were on %s of lease %" PRIu64 " (lender %s, %s); pages swapped "
                 "there are gone: processes touching them will be killed",
                 full, ext, ext * vgi.extent_size / MIB, segs[i].pe_first, segs[i].pe_last,
                 f.pv.name, l->id, l->lender, l->target_iqn);
        }
    }
    if (!lost) {
        /* Nothing of value left on the dead PV: drop it from the VG. */
        if (f.pv.missing)
            rc = lvm(b, api, 0, "vgreduce", "--removemissing", vg, NULL);
        else
            rc = lvm(b, api, 0, "vgreduce", vg, f.pv.name, NULL);
        if (rc < 0)
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, l->id, "%s", vmio_errmsg());
        vmio_ml_iscsi_logout(api, NULL, l->target_iqn, b->tool_ms);
        if (b->c)
            vmio_memlend_release(b->c, l->id);
    }
out:
    free(segs);
    free(pvs);
    free(lvs);
    free(locals);
}

int vmio_memlend_swap_agent(vmio_memlend_borrower *b, vmio_memlend_swap_event_fn fn, void *ctx)
{
    const char *api = "vmio_memlend_swap_agent";
    VMIO_CHECK_ARG(api, b, EINVAL);
    if (!b->manager[0])
        return vmio_set_error(api, EINVAL, "the agent needs a manager");
    int connected = 0;
    while (!b->stop) {
        if (!b->c) {
            if (ensure_client(b, api) < 0) {
                if (connected || b->stop)
                    emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, 0, "%s", vmio_errmsg());
                connected = 1;  /* report later failures once each */
                for (int i = 0; i < 20 && !b->stop; i++)
                    sleep_ms(100);
                continue;
            }
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_CONNECTED, 0, "connected to %s as %s",
                 b->manager, b->name);
            connected = 1;
        }
        struct vmio_memlend_notice nt;
        int rc = vmio_memlend_next_notice(b->c, 300, &nt);
        if (rc == -ETIMEDOUT || rc == -EINTR)
            continue;
        if (rc < 0) {
            emit(fn, ctx, VMIO_MEMLEND_SWAP_EV_ERROR, 0, "manager connection: %s", vmio_errmsg());
            vmio_memlend_disconnect(b->c);
            b->c = NULL;
            continue;
        }
        if (nt.type == VMIO_MEMLEND_NOTICE_REVOKE)
            on_revoke(b, &nt.lease, fn, ctx);
        else if (nt.type == VMIO_MEMLEND_NOTICE_LENDER_LOST)
            on_lost(b, &nt.lease, fn, ctx);
    }
    return 0;
}

void vmio_memlend_swap_agent_stop(vmio_memlend_borrower *b)
{
    if (b)
        b->stop = 1;
}
