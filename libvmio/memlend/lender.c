/* The lender (vmio_memlend_lender_*): one loop in the caller's thread that
 * talks to the manager, watches memory, exports leases through an iSCSI
 * target and reclaims them under pressure. State of each lease, locally:
 *
 *   EXPORTED --reclaim()--> RECLAIMING --RELEASED notice--> RELEASED
 *       \___________________RELEASED notice______________/     |
 *                                         remove LUN, unlink file, unexported()
 *
 * A LUN is removed only in RELEASED, or, with the "force" policy, after
 * the reclaim deadline when the target shows no initiator logged in.
 * Library code never prints: everything worth a line goes to on_event. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmio/memlend.h>

#include "core/internal.h"
#include "memlend/backing.h"
#include "memlend/surplus.h"
#include "memlend/target.h"
#include "memlend/watch.h"

#define API_RUN "vmio_memlend_lender_run"
#define IQN_BASE "iqn.2026-12.org.vmio:"
#define LEASE_LUN 1
/* After a reclaim for stalls, the next one waits this long (PSI avg10). */
#define VMIO_ML_STALL_SETTLE_NS (10ull * 1000000000ull)

enum { L_EXPORTED = 1, L_RECLAIMING = 2, L_RELEASED = 3 };

struct lease_l {
    uint64_t id;
    uint64_t size;
    char iqn[224];
    int state;
    uint64_t created_ns;
    uint64_t reclaim_ns;        /* decision time (0: not reclaimed) */
    uint64_t revoke_ns;         /* the manager took the RECLAIM: deadline from here */
    uint64_t reclaim_sent_ns;   /* last RECLAIM sent (re-sent until taken) */
    int reclaim_acked;          /* the manager has it as REVOKING */
    int reclaim_err_reported;   /* a failed RECLAIM was reported */
    int confirmed;              /* the manager took our PROVIDED (a borrower may
                                   have the IQN): never torn down unasked */
    int gone;                   /* the manager has no such lease: no unexported() */
    int unresponsive;           /* deadline passed, reported */
    int busy_reported;          /* teardown refused (logged in), reported */
    char borrower[64];          /* "" when unknown (adopted, not yet reconciled) */
};

struct vmio_memlend_lender {
    /* options (strings copied) */
    char *manager, *secret_file, *name, *portal, *backend, *state_dir, *libvirt_uri;
    char *meminfo_path, *psi_path, *configfs;
    uint32_t tgt_control_port, use_ramfs, reclaim_deadline_s, on_unresponsive;
    uint32_t watch_interval_ms, lease_seconds, timeout_ms, reclaim_now;
    void (*on_event)(void *opaque, const struct vmio_memlend_lender_event *ev);
    void *opaque;

    struct vmio_ml_surplus_cfg scfg;
    struct vmio_ml_surplus_state sst;
    struct vmio_ml_watch *watch;
    struct vmio_ml_target *target;
    struct vmio_ml_backing backing;
    vmio_memlend_client *client;
    char prefix[160];           /* IQN_BASE <name> ".lease" */

    struct lease_l *leases;
    size_t nleases, cap;
    uint64_t reported_offer;    /* last exportable sent to the manager */
    int paused;                 /* reclaim_all asked: offer nothing */
    uint64_t stall_reclaim_ns;  /* last reclaim for stalls (PSI, guests) */
    uint64_t hb_every, next_hb; /* heartbeats (also between slow steps) */

    int wake[2];
    volatile sig_atomic_t stop_flag;
    volatile sig_atomic_t reclaim_flag;

    pthread_mutex_t mu;         /* guards st */
    struct vmio_memlend_lender_stats st;
};

static void emit(struct vmio_memlend_lender *l, uint32_t type, uint64_t id, uint64_t size,
                 uint64_t latency_ns, const char *fmt, ...) VMIO_PRINTF(6, 7);
static void emit(struct vmio_memlend_lender *l, uint32_t type, uint64_t id, uint64_t size,
                 uint64_t latency_ns, const char *fmt, ...)
{
    if (!l->on_event)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    struct vmio_memlend_lender_event ev = {type, id, size, latency_ns, text};
    l->on_event(l->opaque, &ev);
}

const char *vmio_memlend_lender_event_name(uint32_t type)
{
    static const char *const names[] = {
        NULL,          "registered", "offer",        "provisioned", "refused",
        "pressure",    "reclaim",    "released",     "removed",     "unresponsive",
        "forced",      "disconnected", "error",      "withdrawn",   "resumed",
    };
    return type < VMIO_ARRAY_SIZE(names) && names[type] ? names[type] : "unknown";
}

static void wake(struct vmio_memlend_lender *l)
{
    char c = 1;
    (void)!write(l->wake[1], &c, 1);
}

void vmio_memlend_lender_stop(vmio_memlend_lender *l)
{
    if (!l)
        return;
    l->stop_flag = 1;
    wake(l);
}

void vmio_memlend_lender_reclaim_all(vmio_memlend_lender *l)
{
    if (!l)
        return;
    l->reclaim_flag = 1;
    wake(l);
}

static char *dup_opt(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

void vmio_memlend_lender_free(vmio_memlend_lender *l)
{
    if (!l)
        return;
    if (l->client)
        vmio_memlend_disconnect(l->client);
    vmio_ml_target_close(l->target);
    vmio_ml_watch_free(l->watch);
    if (l->backing.dir[0])
        vmio_ml_backing_close(&l->backing);
    if (l->wake[0] >= 0)
        close(l->wake[0]);
    if (l->wake[1] >= 0)
        close(l->wake[1]);
    pthread_mutex_destroy(&l->mu);
    free(l->leases);
    free(l->manager);
    free(l->secret_file);
    free(l->name);
    free(l->portal);
    free(l->backend);
    free(l->state_dir);
    free(l->libvirt_uri);
    free(l->meminfo_path);
    free(l->psi_path);
    free(l->configfs);
    free(l);
}

/* One tool run (tgtadm) may take at most this long: the loop is single
 * threaded and heartbeats between the steps of a provision, so a hung
 * tgtd must not hold it past a heartbeat (a third of the lease). A sixth
 * of the lease (at least 2 s: a loaded host starts tools slowly), never
 * more than timeout_ms. */
static uint32_t tool_timeout_ms(const struct vmio_memlend_lender *l, int lease_s)
{
    if (lease_s <= 0)
        lease_s = (int)l->lease_seconds;
    uint64_t t = (uint64_t)lease_s * 1000u / 6u;
    if (t < 2000)
        t = 2000;
    if (t > l->timeout_ms)
        t = l->timeout_ms;
    return (uint32_t)t;
}

int vmio_memlend_lender_new(const struct vmio_memlend_lender_options *opts,
                            vmio_memlend_lender **out)
{
    static const char *api = "vmio_memlend_lender_new";
    VMIO_CHECK_ARG(api, opts != NULL, EFAULT);
    VMIO_CHECK_ARG(api, out != NULL, EFAULT);
    VMIO_CHECK_ARG(api, opts->struct_size >= offsetof(struct vmio_memlend_lender_options, opaque) +
                            sizeof(void *), EINVAL);
    if (!opts->manager || !opts->secret_file || !opts->name || !opts->portal)
        return vmio_set_error(api, EINVAL, "manager, secret_file, name and portal are required");
    size_t nl = strlen(opts->name);
    if (nl == 0 || nl > 63)
        return vmio_set_error(api, EINVAL, "name must be 1 to 63 bytes");
    for (size_t i = 0; i < nl; i++) {
        char ch = opts->name[i];
        /* The name goes into IQNs: lower case letters, digits, '-' and '.'. */
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
            return vmio_set_error(api, EINVAL,
                                  "name '%s': only a-z, 0-9, '-' and '.' (it is part of IQNs)",
                                  opts->name);
    }
    if (opts->on_unresponsive > VMIO_MEMLEND_UNRESPONSIVE_FORCE)
        return vmio_set_error(api, EINVAL, "on_unresponsive: unknown policy %u",
                              opts->on_unresponsive);

    struct vmio_memlend_lender *l = calloc(1, sizeof *l);
    if (!l)
        return vmio_set_error(api, ENOMEM, "out of memory");
    l->wake[0] = l->wake[1] = -1;
    pthread_mutex_init(&l->mu, NULL);
    int oom = 0;
    l->manager = dup_opt(opts->manager, &oom);
    l->secret_file = dup_opt(opts->secret_file, &oom);
    l->name = dup_opt(opts->name, &oom);
    l->portal = dup_opt(opts->portal, &oom);
    l->backend = dup_opt(opts->backend ? opts->backend : "tgt", &oom);
    l->state_dir = dup_opt(opts->state_dir ? opts->state_dir : "/var/lib/vmio-memlend", &oom);
    l->libvirt_uri = dup_opt(opts->libvirt_uri, &oom);
    l->meminfo_path = dup_opt(opts->meminfo_path, &oom);
    l->psi_path = dup_opt(opts->psi_path, &oom);
    l->configfs = dup_opt(opts->configfs, &oom);
    if (oom) {
        vmio_memlend_lender_free(l);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    l->tgt_control_port = opts->tgt_control_port;
    l->use_ramfs = opts->use_ramfs;
    l->reclaim_deadline_s = opts->reclaim_deadline_s ? opts->reclaim_deadline_s : 300;
    l->on_unresponsive = opts->on_unresponsive;
    l->watch_interval_ms = opts->watch_interval_ms ? opts->watch_interval_ms : 1000;
    l->lease_seconds = opts->lease_seconds ? opts->lease_seconds : 30;
    l->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
    l->reclaim_now = opts->reclaim_now;
    l->on_event = opts->on_event;
    l->opaque = opts->opaque;
    snprintf(l->prefix, sizeof l->prefix, IQN_BASE "%s.lease", l->name);

    int r;
    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        r = vmio_set_error_errno(api, errno, "pipe");
        goto fail;
    }
    struct vmio_ml_watch_cfg wc = {l->meminfo_path, l->psi_path, l->libvirt_uri};
    if ((r = vmio_ml_watch_new(api, &wc, &l->watch)) < 0)
        goto fail;
    struct vmio_ml_mem_sample s;
    if ((r = vmio_ml_watch_sample(api, l->watch, &s)) < 0)
        goto fail;
    l->scfg.reserve = opts->reserve;
    l->scfg.hysteresis = opts->hysteresis;
    l->scfg.growth_per_s = opts->growth_per_s;
    l->scfg.max_lend = opts->max_lend;
    l->scfg.psi_limit_x100 = opts->psi_limit_x100;
    l->scfg.calm_ms = opts->calm_ms;
    vmio_ml_surplus_cfg_defaults(&l->scfg, s.mem_total);
    struct vmio_ml_target_cfg tc = {l->portal, l->tgt_control_port, l->configfs,
                                    tool_timeout_ms(l, (int)l->lease_seconds)};
    if ((r = vmio_ml_target_open(api, l->backend, &tc, &l->target)) < 0)
        goto fail;
    /* Check that the target is there now (tgtd running, configfs...). */
    struct vmio_ml_target_entry *e = NULL;
    size_t ne = 0;
    if ((r = l->target->ops->list(l->target, api, l->prefix, &e, &ne)) < 0)
        goto fail;
    free(e);
    if ((r = vmio_ml_backing_open(api, l->state_dir, (int)l->use_ramfs, &l->backing)) < 0)
        goto fail;
    *out = l;
    return 0;
fail:
    vmio_memlend_lender_free(l);
    return r;
}

/* ---- leases ------------------------------------------------------------ */

static struct lease_l *find_lease(struct vmio_memlend_lender *l, uint64_t id)
{
    for (size_t i = 0; i < l->nleases; i++)
        if (l->leases[i].id == id)
            return &l->leases[i];
    return NULL;
}

static struct lease_l *add_lease(struct vmio_memlend_lender *l, uint64_t id, uint64_t size)
{
    if (l->nleases == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        void *p = realloc(l->leases, nc * sizeof *l->leases);
        if (!p)
            return NULL;
        l->leases = p;
        l->cap = nc;
    }
    struct lease_l *x = &l->leases[l->nleases++];
    memset(x, 0, sizeof *x);
    x->id = id;
    x->size = size;
    x->state = L_EXPORTED;
    x->created_ns = vmio_now_ns();
    snprintf(x->iqn, sizeof x->iqn, "%s%" PRIu64, l->prefix, id);
    return x;
}

static void drop_lease(struct vmio_memlend_lender *l, struct lease_l *x)
{
    size_t i = (size_t)(x - l->leases);
    memmove(&l->leases[i], &l->leases[i + 1], (l->nleases - i - 1) * sizeof *x);
    l->nleases--;
}

static uint64_t lent_bytes(struct vmio_memlend_lender *l, uint64_t *resident)
{
    uint64_t sum = 0, res = 0;
    for (size_t i = 0; i < l->nleases; i++) {
        sum += l->leases[i].size;
        int64_t r = vmio_ml_backing_resident(&l->backing, l->leases[i].id);
        if (r > 0)
            res += (uint64_t)r;
    }
    if (resident)
        *resident = res;
    return sum;
}

/* Remove the LUN and free the memory of lease x, then tell the manager.
 * Only for RELEASED leases, or forced ones (the caller checked sessions). */
static int teardown(struct vmio_memlend_lender *l, struct lease_l *x, int forced)
{
    int r = l->target->ops->remove(l->target, API_RUN, x->iqn);
    if (r < 0 && r != -ENOENT) {
        /* Retried every tick: say it once (an initiator that stays logged
         * in after its release keeps the LUN, by design). */
        if (!x->busy_reported || r != -EBUSY)
            emit(l, VMIO_MEMLEND_EV_ERROR, x->id, x->size, 0, "lease %" PRIu64 ": %s%s", x->id,
                 vmio_errmsg(), r == -EBUSY ? "; LUN kept until it logs out" : "");
        x->busy_reported = r == -EBUSY;
        return r;
    }
    uint64_t freed = 0;
    r = vmio_ml_backing_free(API_RUN, &l->backing, x->id, &freed);
    if (r < 0 && r != -ENOENT) {
        emit(l, VMIO_MEMLEND_EV_ERROR, x->id, x->size, 0, "lease %" PRIu64 ": %s", x->id,
             vmio_errmsg());
        return r;
    }
    uint64_t now = vmio_now_ns();
    uint64_t lat = x->reclaim_ns ? now - x->reclaim_ns : 0;
    pthread_mutex_lock(&l->mu);
    l->st.removed++;
    if (forced)
        l->st.forced++;
    if (x->reclaim_ns) {
        l->st.reclaim_last_ns = lat;
        if (lat > l->st.reclaim_max_ns)
            l->st.reclaim_max_ns = lat;
        l->st.reclaim_total_ns += lat;
        l->st.reclaim_count++;
    }
    pthread_mutex_unlock(&l->mu);
    char after[96] = "";
    if (x->reclaim_ns)
        snprintf(after, sizeof after, ", %.3f s after the reclaim decision", (double)lat / 1e9);
    emit(l, forced ? VMIO_MEMLEND_EV_FORCED : VMIO_MEMLEND_EV_REMOVED, x->id, freed, lat,
         "lease %" PRIu64 ": %s %sremoved, %" PRIu64 " bytes freed%s", x->id, x->iqn,
         forced ? "force-" : "", freed, after);
    if (l->client && !x->gone && vmio_memlend_unexported(l->client, x->id) < 0)
        emit(l, VMIO_MEMLEND_EV_ERROR, x->id, 0, 0, "unexported(%" PRIu64 "): %s", x->id,
             vmio_errmsg());
    drop_lease(l, x);
    uint64_t lent = lent_bytes(l, NULL);
    pthread_mutex_lock(&l->mu);
    l->st.leases = (uint32_t)l->nleases;
    l->st.lent = lent;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

/* A lease of ours the manager does not know (its row is gone). If no
 * borrower ever got its IQN, or nobody is logged in and the force policy
 * is on, it is released here; otherwise a borrower may still have the LUN
 * in its VG: it is kept and reported. */
static void unknown_lease(struct vmio_memlend_lender *l, struct lease_l *x)
{
    x->gone = 1;
    int s = l->target->ops->sessions(l->target, API_RUN, x->iqn);
    if ((s == 0 || s == -ENOENT) && !x->confirmed) {
        emit(l, VMIO_MEMLEND_EV_RELEASED, x->id, x->size, 0,
             "lease %" PRIu64 ": cancelled by the manager before a borrower got it: removing",
             x->id);
        x->state = L_RELEASED;
    } else if ((s == 0 || s == -ENOENT) &&
               l->on_unresponsive == VMIO_MEMLEND_UNRESPONSIVE_FORCE) {
        emit(l, VMIO_MEMLEND_EV_RELEASED, x->id, x->size, 0,
             "lease %" PRIu64 ": unknown to the manager and unused: removing", x->id);
        x->state = L_RELEASED;
    } else {
        emit(l, VMIO_MEMLEND_EV_ERROR, x->id, x->size, 0,
             "lease %" PRIu64 ": unknown to the manager (%d initiator(s) logged in): "
             "LUN kept; remove it by hand or run with --on-unresponsive force",
             x->id, s < 0 ? 0 : s);
    }
}

/* Ask the manager for x back; the deadline runs from its yes. Re-sent by
 * tick() and reconcile() until the manager has taken it. */
static void send_reclaim(struct vmio_memlend_lender *l, struct lease_l *x)
{
    if (!l->client || x->state != L_RECLAIMING || x->reclaim_acked)
        return;
    uint64_t now = vmio_now_ns();
    x->reclaim_sent_ns = now;
    int r = vmio_memlend_reclaim(l->client, x->id);
    if (r == 0) {
        x->reclaim_acked = 1;
        x->revoke_ns = now;
        x->reclaim_err_reported = 0;
        return;
    }
    if (r == -ENOENT) {
        x->reclaim_acked = 1; /* nothing to wait for: handled as unknown */
        x->revoke_ns = now;
        unknown_lease(l, x);
        return;
    }
    if (!x->reclaim_err_reported)
        emit(l, VMIO_MEMLEND_EV_ERROR, x->id, 0, 0, "reclaim(%" PRIu64 "): %s; retrying",
             x->id, vmio_errmsg());
    x->reclaim_err_reported = 1;
}

static void start_reclaim(struct vmio_memlend_lender *l, struct lease_l *x, uint64_t t_ns,
                          const char *why)
{
    if (x->state != L_EXPORTED)
        return;
    x->state = L_RECLAIMING;
    x->reclaim_ns = t_ns;
    x->reclaim_acked = 0;
    pthread_mutex_lock(&l->mu);
    l->st.reclaims++;
    pthread_mutex_unlock(&l->mu);
    emit(l, VMIO_MEMLEND_EV_RECLAIM, x->id, x->size, 0, "lease %" PRIu64 " (%" PRIu64
         " bytes): reclaim (%s)", x->id, x->size, why);
    send_reclaim(l, x);
}

/* Reclaim newest-first until bytes are covered (bytes 1: one lease). */
static void reclaim_bytes(struct vmio_memlend_lender *l, uint64_t bytes, uint64_t t_ns,
                          const char *why)
{
    /* Leases already being reclaimed count toward the goal. */
    uint64_t coming = 0;
    for (size_t i = 0; i < l->nleases; i++)
        if (l->leases[i].state != L_EXPORTED)
            coming += l->leases[i].size;
    while (coming < bytes) {
        struct lease_l *newest = NULL;
        for (size_t i = 0; i < l->nleases; i++)
            if (l->leases[i].state == L_EXPORTED &&
                (!newest || l->leases[i].created_ns >= newest->created_ns))
                newest = &l->leases[i];
        if (!newest)
            break;
        coming += newest->size;
        start_reclaim(l, newest, t_ns, why);
    }
}

/* ---- manager ----------------------------------------------------------- */

/* What the manager is told the lender can take on: bytes on top of what
 * it has lent already. */
static uint64_t offer_now(struct vmio_memlend_lender *l)
{
    int stopped;
    pthread_mutex_lock(&l->mu);
    stopped = (int)l->st.lending_stopped;
    pthread_mutex_unlock(&l->mu);
    if (l->paused || stopped || l->reclaim_now)
        return 0;
    return l->sst.offer;
}

/* The manager's "exportable" is the lender's total (it subtracts what
 * is lent itself): what is lent plus what is offered on top. */
static uint64_t exportable_now(struct vmio_memlend_lender *l)
{
    return lent_bytes(l, NULL) + offer_now(l);
}

static int connect_manager(struct vmio_memlend_lender *l)
{
    vmio_memlend_client *c;
    int r = vmio_memlend_connect(l->manager, l->secret_file, VMIO_MEMLEND_ROLE_LENDER, l->name,
                                 l->timeout_ms, &c);
    if (r < 0)
        return r;
    uint64_t offer = offer_now(l);
    uint64_t exportable = exportable_now(l);
    r = vmio_memlend_register(c, l->portal, exportable);
    if (r < 0) {
        vmio_memlend_disconnect(c);
        return r;
    }
    l->client = c;
    l->reported_offer = exportable;
    l->target->timeout_ms = tool_timeout_ms(l, vmio_memlend_lease_seconds(c));
    emit(l, VMIO_MEMLEND_EV_REGISTERED, 0, offer, 0,
         "registered with %s as %s, portal %s, offering %" PRIu64 " bytes", l->manager,
         l->name, l->portal, offer);
    return 0;
}

/* After (re)connecting: bring local leases in line with the manager. */
static void reconcile(struct vmio_memlend_lender *l)
{
    struct vmio_memlend_lease *ls = NULL;
    struct vmio_memlend_lender_info *li = NULL;
    size_t nls = 0, nli = 0;
    if (vmio_memlend_status(l->client, &ls, &nls, &li, &nli) < 0) {
        emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0, "status: %s", vmio_errmsg());
        return;
    }
    for (size_t i = 0; i < l->nleases;) {
        struct lease_l *x = &l->leases[i];
        const struct vmio_memlend_lease *m = NULL;
        for (size_t k = 0; k < nls; k++)
            if (ls[k].id == x->id && strcmp(ls[k].lender, l->name) == 0)
                m = &ls[k];
        /* The same id for another size or borrower: the manager's database
         * was recreated and its lease m is not ours. */
        if (m && (m->size != x->size || (x->borrower[0] && strcmp(m->borrower, x->borrower))))
            m = NULL;
        if (m && !x->borrower[0])
            snprintf(x->borrower, sizeof x->borrower, "%s", m->borrower);
        if (m && m->state != VMIO_MEMLEND_PENDING)
            x->confirmed = 1;
        if (m && m->state == VMIO_MEMLEND_RELEASED) {
            x->state = L_RELEASED;
        } else if (m && m->state == VMIO_MEMLEND_REVOKING) {
            if (x->state == L_EXPORTED) {
                x->state = L_RECLAIMING;
                x->reclaim_ns = vmio_now_ns();
            }
            if (x->state == L_RECLAIMING && !x->reclaim_acked) {
                x->reclaim_acked = 1;
                x->revoke_ns = vmio_now_ns();
            }
        } else if (m && x->state == L_RECLAIMING &&
                   (m->state == VMIO_MEMLEND_READY || m->state == VMIO_MEMLEND_ATTACHED)) {
            /* Our RECLAIM never reached it (manager down, or restarted from
             * an older state): ask again; the deadline starts on its yes. */
            x->reclaim_acked = 0;
            send_reclaim(l, x);
        } else if (!m) {
            unknown_lease(l, x);
        }
        if (x->state == L_RELEASED && teardown(l, x, 0) == 0)
            continue; /* dropped: same index is the next lease */
        i++;
    }
    for (size_t k = 0; k < nls; k++) {
        if (strcmp(ls[k].lender, l->name) != 0 || find_lease(l, ls[k].id))
            continue;
        if (ls[k].state == VMIO_MEMLEND_RELEASED) {
            /* RELEASED leases of ours without a LUN here: forget them. */
            if (vmio_memlend_unexported(l->client, ls[k].id) < 0)
                emit(l, VMIO_MEMLEND_EV_ERROR, ls[k].id, 0, 0, "unexported(%" PRIu64 "): %s",
                     ls[k].id, vmio_errmsg());
        } else if (ls[k].state == VMIO_MEMLEND_READY || ls[k].state == VMIO_MEMLEND_ATTACHED ||
                   ls[k].state == VMIO_MEMLEND_REVOKING) {
            /* Neither a target nor a file here (the host rebooted, the
             * memory file system was unmounted): the borrower's data on it
             * is gone. Say so; the borrower sees its LUN fail. */
            emit(l, VMIO_MEMLEND_EV_ERROR, ls[k].id, ls[k].size, 0,
                 "lease %" PRIu64 " (%s, borrower %s): no target and no file here any more: "
                 "the borrower's data on it is lost", ls[k].id,
                 vmio_memlend_state_name(ls[k].state), ls[k].borrower);
        }
    }
    vmio_memlend_status_free(ls, li);
}

/* Adopt targets and files left by a previous run with the same name. A
 * file without a target (tgtd restarted: it keeps no targets) gets its
 * target back (the IQN and CHAP follow from the id and the secret);
 * reconcile() then frees what the manager says is RELEASED and keeps
 * what it holds, as for any other lease. Nothing is freed here. */
static void adopt(struct vmio_memlend_lender *l)
{
    struct vmio_ml_target_entry *e = NULL;
    size_t ne = 0;
    uint64_t *ids = NULL;
    size_t nids = 0;
    if (l->target->ops->list(l->target, API_RUN, l->prefix, &e, &ne) < 0 ||
        vmio_ml_backing_list(API_RUN, &l->backing, &ids, &nids) < 0) {
        emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0, "resume: %s", vmio_errmsg());
        free(e);
        return;
    }
    for (size_t i = 0; i < ne; i++) {
        char *end;
        const char *num = e[i].iqn + strlen(l->prefix);
        errno = 0;
        uint64_t id = strtoull(num, &end, 10);
        char path[512];
        vmio_ml_backing_path(&l->backing, id, path, sizeof path);
        struct stat st;
        if (errno || *end || end == num || strcmp(e[i].backing, path) != 0 ||
            stat(path, &st) < 0) {
            emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0,
                 "target %s: not backed by %s; left alone", e[i].iqn, path);
            continue;
        }
        struct lease_l *x = add_lease(l, id, (uint64_t)st.st_size);
        if (!x)
            break;
        x->confirmed = 1; /* its history is unknown: assume a borrower has it */
        emit(l, VMIO_MEMLEND_EV_RESUMED, id, x->size, 0,
             "lease %" PRIu64 ": %s (%" PRIu64 " bytes, %u session(s)) resumed", id, e[i].iqn,
             x->size, e[i].sessions);
    }
    for (size_t i = 0; i < nids; i++) {
        if (find_lease(l, ids[i]))
            continue;
        char path[512];
        struct stat st;
        vmio_ml_backing_path(&l->backing, ids[i], path, sizeof path);
        if (stat(path, &st) < 0)
            continue;
        struct lease_l *x = add_lease(l, ids[i], (uint64_t)st.st_size);
        if (!x)
            break;
        x->confirmed = 1;
        struct vmio_memlend_chap chap;
        int r = vmio_memlend_chap_derive(l->secret_file, x->iqn, &chap);
        if (r == 0)
            r = l->target->ops->create(l->target, API_RUN, x->iqn, LEASE_LUN, path, x->size,
                                       &chap);
        memset(&chap, 0, sizeof chap);
        if (r < 0) {
            /* Keep the file (it may hold a borrower's pages) and the lease,
             * so that it is counted as lent; reconcile() decides. */
            emit(l, VMIO_MEMLEND_EV_ERROR, x->id, x->size, 0,
                 "lease %" PRIu64 ": file %s without a target; re-creating it failed: %s",
                 x->id, path, vmio_errmsg());
            continue;
        }
        emit(l, VMIO_MEMLEND_EV_RESUMED, x->id, x->size, 0,
             "lease %" PRIu64 ": %s (%" PRIu64 " bytes) resumed: target re-created on %s",
             x->id, x->iqn, x->size, path);
    }
    free(e);
    free(ids);
}

static void refuse(struct vmio_memlend_lender *l, uint64_t id, uint64_t size, int err,
                   const char *why)
{
    pthread_mutex_lock(&l->mu);
    l->st.refused++;
    pthread_mutex_unlock(&l->mu);
    emit(l, VMIO_MEMLEND_EV_REFUSED, id, size, 0, "lease %" PRIu64 " (%" PRIu64
         " bytes): refused: %s", id, size, why);
    if (vmio_memlend_provided(l->client, id, NULL, 0, err) < 0)
        emit(l, VMIO_MEMLEND_EV_ERROR, id, 0, 0, "provided(%" PRIu64 "): %s", id,
             vmio_errmsg());
}

static void sample_decide(struct vmio_memlend_lender *l, struct vmio_ml_surplus_decision *d,
                          struct vmio_ml_mem_sample *s, int *ok);

/* Heartbeat now if one is due: between the slow steps of a provision, so
 * that tools that take their time do not let the lender's lease expire. */
static void heartbeat_if_due(struct vmio_memlend_lender *l)
{
    uint64_t now = vmio_now_ns();
    if (!l->client || !l->hb_every || now < l->next_hb)
        return;
    uint64_t exportable = exportable_now(l);
    if (vmio_memlend_heartbeat(l->client, exportable) == 0) {
        l->reported_offer = exportable;
        l->next_hb = now + l->hb_every;
    } /* failures: the loop's own heartbeat reports them and reconnects */
}

/* Tell the manager the LUN of x is ready. ENOENT: it dropped the PENDING
 * lease meanwhile (provision timeout, the borrower went away): nobody got
 * the IQN, so the LUN goes at once instead of being counted as lent. */
static void answer_provided(struct vmio_memlend_lender *l, struct lease_l *x)
{
    int r = vmio_memlend_provided(l->client, x->id, x->iqn, LEASE_LUN, 0);
    if (r == 0) {
        x->confirmed = 1;
        return;
    }
    if (r == -ENOENT && !x->confirmed) {
        emit(l, VMIO_MEMLEND_EV_RELEASED, x->id, x->size, 0,
             "lease %" PRIu64 ": cancelled by the manager before it was ready (%s): removing",
             x->id, vmio_errmsg());
        x->gone = 1;
        x->state = L_RELEASED;
        teardown(l, x, 0); /* on failure it is retried by the next tick */
        return;
    }
    emit(l, VMIO_MEMLEND_EV_ERROR, x->id, 0, 0, "provided(%" PRIu64 "): %s", x->id,
         vmio_errmsg());
}

static void provision(struct vmio_memlend_lender *l, const struct vmio_memlend_lease *ls)
{
    struct lease_l *x = find_lease(l, ls->id);
    if (x) {
        /* A PROVISION sent again (reconnect): answer again. But the same
         * id for another size or borrower, or for a LUN somebody is logged
         * in to, is another lease (the manager's database was recreated
         * and its ids start again): never hand out a LUN in use. */
        int s = l->target->ops->sessions(l->target, API_RUN, x->iqn);
        if (x->size != ls->size || (x->borrower[0] && strcmp(x->borrower, ls->borrower)) ||
            x->state != L_EXPORTED || s > 0) {
            char why[400];
            snprintf(why, sizeof why,
                     "EEXIST: lease %" PRIu64 " here is %" PRIu64 " bytes for %s, %s, %d "
                     "initiator(s) logged in; its LUN is kept", x->id, x->size,
                     x->borrower[0] ? x->borrower : "(unknown)",
                     x->state == L_EXPORTED ? "exported" : "being reclaimed", s < 0 ? 0 : s);
            refuse(l, ls->id, ls->size, EEXIST, why);
            return;
        }
        if (!x->borrower[0])
            snprintf(x->borrower, sizeof x->borrower, "%s", ls->borrower);
        answer_provided(l, x);
        return;
    }
    if (ls->size == 0 || ls->size % 512) {
        refuse(l, ls->id, ls->size, EINVAL, "size is not a positive multiple of 512");
        return;
    }
    /* Judge the surplus again now: it may have shrunk since the offer. */
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s;
    int ok;
    sample_decide(l, &d, &s, &ok);
    uint64_t offer = offer_now(l);
    if (!ok || d.reclaim || ls->size > offer) {
        char why[160];
        snprintf(why, sizeof why, "ENOSPC: offering %" PRIu64 " bytes now (%s)", offer,
                 !ok ? "memory not readable" : vmio_ml_surplus_reason_name(d.reason));
        refuse(l, ls->id, ls->size, ENOSPC, why);
        return;
    }
    x = add_lease(l, ls->id, ls->size);
    if (!x) {
        refuse(l, ls->id, ls->size, ENOMEM, "out of memory");
        return;
    }
    snprintf(x->borrower, sizeof x->borrower, "%s", ls->borrower);
    uint64_t id = x->id;
    char path[512];
    struct vmio_memlend_chap chap;
    int r = vmio_ml_backing_create(API_RUN, &l->backing, x->id, x->size);
    if (r == 0) {
        heartbeat_if_due(l);
        vmio_ml_backing_path(&l->backing, x->id, path, sizeof path);
        r = vmio_memlend_chap_derive(l->secret_file, x->iqn, &chap);
        if (r == 0)
            r = l->target->ops->create(l->target, API_RUN, x->iqn, LEASE_LUN, path, x->size,
                                       &chap);
        memset(&chap, 0, sizeof chap);
        if (r < 0) {
            uint64_t freed;
            struct vmio_error_copy saved;
            vmio_error_save(&saved);
            vmio_ml_backing_free(API_RUN, &l->backing, x->id, &freed);
            vmio_error_restore(&saved);
        }
    }
    if (r < 0) {
        char why[400];
        snprintf(why, sizeof why, "%s", vmio_errmsg());
        drop_lease(l, x);
        refuse(l, ls->id, ls->size, -r, why);
        return;
    }
    heartbeat_if_due(l);
    x = find_lease(l, id);
    /* The offer shrinks by what was just lent. */
    l->sst.offer = l->sst.offer > x->size ? l->sst.offer - x->size : 0;
    pthread_mutex_lock(&l->mu);
    l->st.provisioned++;
    pthread_mutex_unlock(&l->mu);
    emit(l, VMIO_MEMLEND_EV_PROVISIONED, x->id, x->size, 0,
         "lease %" PRIu64 ": %" PRIu64 " bytes for %s as %s LUN %d on %s", x->id, x->size,
         ls->borrower, x->iqn, LEASE_LUN, l->portal);
    answer_provided(l, x);
}

static void released(struct vmio_memlend_lender *l, uint64_t id)
{
    struct lease_l *x = find_lease(l, id);
    if (!x) {
        /* Nothing exported here any more (force-removed, or lost in a
         * restart): let the manager forget it. */
        emit(l, VMIO_MEMLEND_EV_RELEASED, id, 0, 0,
             "lease %" PRIu64 ": released by the borrower; no LUN here any more", id);
        if (vmio_memlend_unexported(l->client, id) < 0)
            emit(l, VMIO_MEMLEND_EV_ERROR, id, 0, 0, "unexported(%" PRIu64 "): %s", id,
                 vmio_errmsg());
        return;
    }
    x->state = L_RELEASED;
    emit(l, VMIO_MEMLEND_EV_RELEASED, id, x->size, 0, "lease %" PRIu64 ": released by the borrower",
         id);
    teardown(l, x, 0); /* on failure it is retried by the next tick */
}

/* ---- the loop ------------------------------------------------------------ */

static void sample_decide(struct vmio_memlend_lender *l, struct vmio_ml_surplus_decision *d,
                          struct vmio_ml_mem_sample *s, int *ok)
{
    memset(d, 0, sizeof *d);
    *ok = vmio_ml_watch_sample(API_RUN, l->watch, s) == 0;
    if (!*ok)
        return;
    uint64_t res;
    uint64_t lent = lent_bytes(l, &res);
    vmio_ml_surplus_decide(&l->scfg, &l->sst, s, lent, res, d);
    pthread_mutex_lock(&l->mu);
    l->st.leases = (uint32_t)l->nleases;
    l->st.lent = lent;
    l->st.resident = res;
    l->st.mem_total = s->mem_total;
    l->st.mem_available = s->mem_available;
    l->st.psi_some_avg10_x100 = s->psi_valid ? s->psi_some_avg10_x100 : 0;
    pthread_mutex_unlock(&l->mu);
}

static void tick(struct vmio_memlend_lender *l, int *pressure_reported)
{
    struct vmio_ml_surplus_decision d;
    struct vmio_ml_mem_sample s;
    int ok;
    sample_decide(l, &d, &s, &ok);
    if (!ok) {
        emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0, "%s", vmio_errmsg());
        return;
    }
    uint64_t now = vmio_now_ns();
    if (d.reclaim) {
        if (!*pressure_reported)
            emit(l, VMIO_MEMLEND_EV_PRESSURE, 0, d.reclaim, 0,
                 "%s: MemAvailable %" PRIu64 " MiB, PSI some avg10 %u.%02u%%: reclaiming",
                 vmio_ml_surplus_reason_name(d.reason), s.mem_available >> 20,
                 s.psi_some_avg10_x100 / 100, s.psi_some_avg10_x100 % 100);
        *pressure_reported = 1;
        if (d.reason == VMIO_ML_SURPLUS_FLOOR) {
            /* Measured in bytes: reclaim what is missing, at once. */
            reclaim_bytes(l, d.reclaim, now, vmio_ml_surplus_reason_name(d.reason));
        } else {
            /* Stalls are not bytes, and PSI avg10 decays over ~10 s: one
             * lease at a time, then let the average show its effect
             * before taking the next. */
            int in_flight = 0;
            for (size_t i = 0; i < l->nleases; i++)
                in_flight |= l->leases[i].state != L_EXPORTED;
            if (!in_flight && (!l->stall_reclaim_ns || now - l->stall_reclaim_ns >
                                                          VMIO_ML_STALL_SETTLE_NS)) {
                reclaim_bytes(l, 1, now, vmio_ml_surplus_reason_name(d.reason));
                l->stall_reclaim_ns = now;
            }
        }
    } else {
        *pressure_reported = 0;
    }
    if (l->reclaim_flag || l->reclaim_now) {
        if (l->reclaim_flag)
            l->paused = 1;
        l->reclaim_flag = 0;
        reclaim_bytes(l, UINT64_MAX, now, "asked");
    }
    /* Leases whose borrower missed the deadline. */
    uint64_t deadline = (uint64_t)l->reclaim_deadline_s * 1000000000ull;
    for (size_t i = 0; i < l->nleases;) {
        struct lease_l *x = &l->leases[i];
        if (x->state == L_RELEASED) { /* a teardown that failed before */
            if (teardown(l, x, 0) == 0)
                continue;
        } else if (x->state == L_RECLAIMING && !x->reclaim_acked) {
            /* Not yet taken by the manager: ask again every 2 s. */
            if (now - x->reclaim_sent_ns >= 2000000000ull)
                send_reclaim(l, x);
            if (x->state == L_RELEASED && teardown(l, x, 0) == 0)
                continue;
        } else if (x->state == L_RECLAIMING && now > x->revoke_ns &&
                   now - x->revoke_ns > deadline) {
            if (l->on_unresponsive == VMIO_MEMLEND_UNRESPONSIVE_FORCE) {
                int ns = l->target->ops->sessions(l->target, API_RUN, x->iqn);
                if (ns == 0 || ns == -ENOENT) {
                    if (teardown(l, x, 1) == 0)
                        continue;
                } else if (!x->unresponsive) {
                    x->unresponsive = 1;
                    emit(l, VMIO_MEMLEND_EV_UNRESPONSIVE, x->id, x->size, 0,
                         "lease %" PRIu64 ": no release after %u s and %d initiator(s) "
                         "logged in: LUN kept", x->id, l->reclaim_deadline_s, ns);
                }
            } else if (!x->unresponsive) {
                x->unresponsive = 1;
                pthread_mutex_lock(&l->mu);
                l->st.unresponsive++;
                l->st.lending_stopped = 1;
                pthread_mutex_unlock(&l->mu);
                emit(l, VMIO_MEMLEND_EV_UNRESPONSIVE, x->id, x->size, 0,
                     "lease %" PRIu64 ": borrower did not release within %u s: LUN kept, "
                     "lending stopped", x->id, l->reclaim_deadline_s);
            }
        }
        i++;
    }
    uint64_t offer = offer_now(l);
    pthread_mutex_lock(&l->mu);
    l->st.offer = offer;
    l->st.leases = (uint32_t)l->nleases;
    pthread_mutex_unlock(&l->mu);
    uint64_t exportable = exportable_now(l);
    if (l->client && exportable != l->reported_offer) {
        /* Tell the manager at once when the offer shrinks; growth waits
         * for the next heartbeat unless it is large. */
        uint64_t diff = exportable > l->reported_offer ? exportable - l->reported_offer : 0;
        if (exportable < l->reported_offer || diff >= l->scfg.hysteresis) {
            if (vmio_memlend_heartbeat(l->client, exportable) == 0) {
                emit(l, VMIO_MEMLEND_EV_OFFER, 0, offer, 0,
                     "offering %" PRIu64 " MiB (%" PRIu64 " MiB lent)", offer >> 20,
                     (exportable - offer) >> 20);
                l->reported_offer = exportable;
            }
        }
    }
}

/* A third of the lease the manager grants (its answer to REGISTER), or of
 * the configured one before that is known. */
static uint64_t heartbeat_interval(vmio_memlend_lender *l)
{
    int secs = l->client ? vmio_memlend_lease_seconds(l->client) : 0;
    if (secs <= 0)
        secs = (int)l->lease_seconds;
    return (uint64_t)secs * 1000000000ull / 3;
}

int vmio_memlend_lender_run(vmio_memlend_lender *l)
{
    VMIO_CHECK_ARG(API_RUN, l != NULL, EFAULT);
    adopt(l);
    int pressure_reported = 0;
    tick(l, &pressure_reported); /* first offer before registering */
    int r = connect_manager(l);
    if (r < 0)
        return vmio_error_reprefix(API_RUN, -r);
    reconcile(l);
    l->hb_every = heartbeat_interval(l);
    l->next_hb = vmio_now_ns() + l->hb_every;
    uint64_t next_watch = vmio_now_ns();
    uint64_t next_reconnect = 0;
    unsigned reconnect_failures = 0;
    while (!l->stop_flag) {
        uint64_t now = vmio_now_ns();
        if (!l->client && now >= next_reconnect) {
            if (connect_manager(l) == 0) {
                l->hb_every = heartbeat_interval(l);
                l->next_hb = now + l->hb_every;
                reconcile(l);
                reconnect_failures = 0;
            } else {
                if (reconnect_failures++ == 0) /* say it once per outage */
                    emit(l, VMIO_MEMLEND_EV_DISCONNECTED, 0, 0, 0,
                         "reconnecting to %s: %s (retrying every 2 s)", l->manager,
                         vmio_errmsg());
                next_reconnect = now + 2000000000ull;
            }
        }
        if (now >= next_watch) {
            tick(l, &pressure_reported);
            next_watch = now + (uint64_t)l->watch_interval_ms * 1000000ull;
        }
        if (l->client && now >= l->next_hb) {
            uint64_t exportable = exportable_now(l);
            if (vmio_memlend_heartbeat(l->client, exportable) == 0) {
                l->reported_offer = exportable;
            } else if (vmio_errno() == EPIPE || vmio_errno() == ECONNRESET ||
                       vmio_errno() == ETIMEDOUT) {
                emit(l, VMIO_MEMLEND_EV_DISCONNECTED, 0, 0, 0, "heartbeat: %s; reconnecting",
                     vmio_errmsg());
                vmio_memlend_disconnect(l->client);
                l->client = NULL;
                continue;
            } else {
                emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0, "heartbeat: %s", vmio_errmsg());
            }
            l->next_hb = now + l->hb_every;
        }
        if (l->reclaim_now && l->nleases == 0)
            break; /* drained */
        /* Wait for a notice, a wake-up, or the next deadline. */
        uint64_t until = next_watch;
        if (l->client && l->next_hb < until)
            until = l->next_hb;
        if (!l->client && next_reconnect < until)
            until = next_reconnect;
        now = vmio_now_ns();
        int ms = until > now ? (int)((until - now) / 1000000ull) + 1 : 0;
        struct pollfd pf[2] = {{l->wake[0], POLLIN, 0}, {-1, POLLIN, 0}};
        if (l->client)
            pf[1].fd = vmio_memlend_client_fd(l->client);
        if (poll(pf, 2, ms) < 0 && errno != EINTR)
            return vmio_set_error_errno(API_RUN, errno, "poll");
        if (pf[0].revents) {
            char buf[64];
            while (read(l->wake[0], buf, sizeof buf) > 0) {
            }
            if (l->reclaim_flag)
                next_watch = 0;
        }
        while (l->client) {
            struct vmio_memlend_notice n;
            int nr = vmio_memlend_next_notice(l->client, 0, &n);
            if (nr == -ETIMEDOUT || nr == -EAGAIN)
                break;
            if (nr < 0) {
                emit(l, VMIO_MEMLEND_EV_DISCONNECTED, 0, 0, 0, "manager: %s; reconnecting",
                     vmio_errmsg());
                vmio_memlend_disconnect(l->client);
                l->client = NULL;
                next_reconnect = vmio_now_ns() + 1000000000ull;
                break;
            }
            if (n.type == VMIO_MEMLEND_NOTICE_PROVISION)
                provision(l, &n.lease);
            else if (n.type == VMIO_MEMLEND_NOTICE_RELEASED)
                released(l, n.lease.id);
        }
    }
    /* Stop: withdraw when nothing is lent; otherwise the leases stay
     * exported for a restarted lender to resume. */
    if (l->client) {
        if (l->nleases == 0) {
            if (vmio_memlend_withdraw(l->client) == 0)
                emit(l, VMIO_MEMLEND_EV_WITHDRAWN, 0, 0, 0, "withdrawn from %s", l->manager);
            else
                emit(l, VMIO_MEMLEND_EV_ERROR, 0, 0, 0, "withdraw: %s", vmio_errmsg());
        } else {
            emit(l, VMIO_MEMLEND_EV_ERROR, 0, lent_bytes(l, NULL), 0,
                 "stopping with %zu lease(s) still lent: their LUNs stay exported", l->nleases);
        }
        vmio_memlend_disconnect(l->client);
        l->client = NULL;
    }
    return 0;
}

int vmio_memlend_lender_get_stats(vmio_memlend_lender *l, struct vmio_memlend_lender_stats *st)
{
    static const char *api = "vmio_memlend_lender_get_stats";
    VMIO_CHECK_ARG(api, l != NULL, EFAULT);
    VMIO_CHECK_ARG(api, st != NULL, EFAULT);
    VMIO_CHECK_ARG(api, st->struct_size >= sizeof(uint32_t) * 2, EINVAL);
    uint32_t sz = st->struct_size;
    pthread_mutex_lock(&l->mu);
    struct vmio_memlend_lender_stats copy = l->st;
    pthread_mutex_unlock(&l->mu);
    size_t n = sz < sizeof copy ? sz : sizeof copy;
    copy.struct_size = sz;
    memcpy(st, &copy, n);
    return 0;
}
