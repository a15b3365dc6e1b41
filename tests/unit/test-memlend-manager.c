/* The memory-lending manager and client together: a real manager (SQLite
 * database in a scratch directory, TCP on loopback, its poll loop in a
 * thread) and real clients as lenders, borrowers and observers. The lease
 * cycle, provisioning failures and timeouts, lender expiry, a manager
 * restart on the same database, mirrors across lenders, and every refusal
 * (wrong secret, unauthenticated or malformed bytes on a raw socket,
 * requests outside a client's role or on someone else's lease). CHAP
 * derivation is checked against an independent HMAC computation. */
#include <arpa/inet.h>
#include <nettle/hmac.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test-common.h"

#include <vmio/memlend.h>

#include "memlend/proto.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)

/* ---- scratch directory, secret, manager thread ---- */

static char dir[256];
static char secret_path[300];
static char db_path[300];

static void write_secret(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0600), 0);
}

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
    snprintf(secret_path, sizeof secret_path, "%s/secret", dir);
    snprintf(db_path, sizeof db_path, "%s/manager.db", dir);
    write_secret(secret_path, "0123456789abcdef-memlend-test-secret\n");
}

static void teardown(void)
{
    test_rmtree(dir);
}

struct mgr {
    vmio_memlend_manager *m;
    pthread_t th;
    int port;
    char addr[64];
    int run_ret;
};

static void *mgr_thread(void *arg)
{
    struct mgr *g = arg;
    g->run_ret = vmio_memlend_manager_run(g->m);
    return NULL;
}

static void mgr_start_attach(struct mgr *g, uint32_t lease_s, uint32_t prov_ms,
                             uint32_t attach_ms)
{
    memset(g, 0, sizeof *g);
    struct vmio_memlend_manager_options o = {
        .struct_size = sizeof o,
        .listen = "127.0.0.1:0",
        .db_path = db_path,
        .secret_file = secret_path,
        .lease_seconds = lease_s,
        .provision_timeout_ms = prov_ms,
        .attach_timeout_ms = attach_ms,
    };
    ck_assert_vmio_ok(vmio_memlend_manager_new(&o, &g->m));
    g->port = vmio_memlend_manager_port(g->m);
    ck_assert_int_gt(g->port, 0);
    snprintf(g->addr, sizeof g->addr, "127.0.0.1:%d", g->port);
    ck_assert_int_eq(pthread_create(&g->th, NULL, mgr_thread, g), 0);
}

static void mgr_start(struct mgr *g, uint32_t lease_s, uint32_t prov_ms)
{
    mgr_start_attach(g, lease_s, prov_ms, 0);
}

static void mgr_stop(struct mgr *g)
{
    vmio_memlend_manager_stop(g->m);
    pthread_join(g->th, NULL);
    ck_assert_int_eq(g->run_ret, 0);
    vmio_memlend_manager_free(g->m);
    g->m = NULL;
}

static vmio_memlend_client *connect_as(struct mgr *g, int role, const char *name)
{
    vmio_memlend_client *c = NULL;
    ck_assert_vmio_ok(vmio_memlend_connect(g->addr, secret_path, role, name, 5000, &c));
    return c;
}

/* ---- a lender agent: a thread that answers PROVISION and RELEASED as
 * the real lender does, and reclaims or heartbeats on request ---- */

struct agent {
    vmio_memlend_client *c;
    char name[64];
    pthread_t th;
    atomic_int stop;
    atomic_int provision_err;      /* answer PROVISION with this error */
    atomic_int ignore_provision;   /* never answer */
    atomic_int heartbeat_ms;       /* 0: no heartbeats */
    atomic_ullong reclaim;         /* lease to reclaim, 0 = none */
    atomic_int reclaim_ret;
    atomic_int provisions, released, unexported;
    atomic_int fatal;              /* next_notice failed: -errno */
};

static void *agent_thread(void *arg)
{
    struct agent *a = arg;
    double last_hb = test_now();
    while (!atomic_load(&a->stop)) {
        uint64_t rid = atomic_exchange(&a->reclaim, 0);
        if (rid)
            atomic_store(&a->reclaim_ret, vmio_memlend_reclaim(a->c, rid));
        int hb = atomic_load(&a->heartbeat_ms);
        if (hb && test_now() - last_hb >= hb / 1000.0) {
            vmio_memlend_heartbeat(a->c, 1 * GiB);
            last_hb = test_now();
        }
        struct vmio_memlend_notice n;
        int r = vmio_memlend_next_notice(a->c, 20, &n);
        if (r == -ETIMEDOUT)
            continue;
        if (r < 0) {
            atomic_store(&a->fatal, r);
            break;
        }
        if (n.type == VMIO_MEMLEND_NOTICE_PROVISION) {
            atomic_fetch_add(&a->provisions, 1);
            if (atomic_load(&a->ignore_provision))
                continue;
            int err = atomic_load(&a->provision_err);
            char iqn[224];
            snprintf(iqn, sizeof iqn, "iqn.2026-12.org.vmio:%s.lease%llu", a->name,
                     (unsigned long long)n.lease.id);
            vmio_memlend_provided(a->c, n.lease.id, err ? NULL : iqn, err ? 0 : 1, err);
        } else if (n.type == VMIO_MEMLEND_NOTICE_RELEASED) {
            atomic_fetch_add(&a->released, 1);
            if (vmio_memlend_unexported(a->c, n.lease.id) == 0)
                atomic_fetch_add(&a->unexported, 1);
        }
    }
    return NULL;
}

static void agent_start(struct agent *a, struct mgr *g, const char *name, uint64_t exportable)
{
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->c = connect_as(g, VMIO_MEMLEND_ROLE_LENDER, name);
    ck_assert_vmio_ok(vmio_memlend_register(a->c, "127.0.0.1:3260", exportable));
    ck_assert_int_gt(vmio_memlend_lease_seconds(a->c), 0);
    ck_assert_int_eq(pthread_create(&a->th, NULL, agent_thread, a), 0);
}

static void agent_stop(struct agent *a)
{
    atomic_store(&a->stop, 1);
    pthread_join(a->th, NULL);
    vmio_memlend_disconnect(a->c);
    a->c = NULL;
}

/* ---- status helpers ---- */

struct view {
    struct vmio_memlend_lease *ls;
    size_t nls;
    struct vmio_memlend_lender_info *ld;
    size_t nld;
};

static void view_get(struct mgr *g, struct view *v)
{
    vmio_memlend_client *o = connect_as(g, VMIO_MEMLEND_ROLE_OBSERVER, "observer");
    ck_assert_vmio_ok(vmio_memlend_status(o, &v->ls, &v->nls, &v->ld, &v->nld));
    vmio_memlend_disconnect(o);
}

static void view_free(struct view *v)
{
    vmio_memlend_status_free(v->ls, v->ld);
}

static const struct vmio_memlend_lease *view_lease(struct view *v, uint64_t id)
{
    for (size_t i = 0; i < v->nls; i++)
        if (v->ls[i].id == id)
            return &v->ls[i];
    return NULL;
}

static const struct vmio_memlend_lender_info *view_lender(struct view *v, const char *name)
{
    for (size_t i = 0; i < v->nld; i++)
        if (strcmp(v->ld[i].name, name) == 0)
            return &v->ld[i];
    return NULL;
}

/* State of a lease as the manager sees it; 0 when gone. */
static uint32_t lease_state(struct mgr *g, uint64_t id)
{
    struct view v;
    view_get(g, &v);
    const struct vmio_memlend_lease *l = view_lease(&v, id);
    uint32_t s = l ? l->state : 0;
    view_free(&v);
    return s;
}

static int wait_state(struct mgr *g, uint64_t id, uint32_t state, double secs)
{
    double end = test_now() + secs;
    while (test_now() < end) {
        if (lease_state(g, id) == state)
            return 1;
        usleep(20000);
    }
    return 0;
}

/* The next notice of a client, skipping none: fails the test on timeout. */
static void expect_notice(vmio_memlend_client *c, uint32_t type, uint64_t lease_id,
                          uint32_t state)
{
    struct vmio_memlend_notice n;
    ck_assert_vmio_ok(vmio_memlend_next_notice(c, 5000, &n));
    ck_assert_uint_eq(n.type, type);
    ck_assert_uint_eq(n.lease.id, lease_id);
    ck_assert_uint_eq(n.lease.state, state);
}

/* ---- the cycle ---- */

START_TEST(t_cycle)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");

    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l));
    ck_assert_uint_eq(l.state, VMIO_MEMLEND_READY);
    ck_assert_uint_eq(l.size, 64 * MiB);
    ck_assert_uint_eq(l.lun, 1);
    ck_assert_str_eq(l.lender, "lenderA");
    ck_assert_str_eq(l.borrower, "vm1");
    ck_assert_str_eq(l.portal, "127.0.0.1:3260");
    char iqn[224];
    snprintf(iqn, sizeof iqn, "iqn.2026-12.org.vmio:lenderA.lease%llu",
             (unsigned long long)l.id);
    ck_assert_str_eq(l.target_iqn, iqn);
    ck_assert_int_gt(l.lender_expiry, (int64_t)time(NULL));
    ck_assert_int_eq(atomic_load(&a.provisions), 1);

    ck_assert_vmio_ok(vmio_memlend_attached(b, l.id));
    ck_assert_vmio_ok(vmio_memlend_attached(b, l.id));   /* idempotent */
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(v.nld, 1);
    ck_assert_uint_eq(v.nls, 1);
    ck_assert_str_eq(v.ld[0].name, "lenderA");
    ck_assert_uint_eq(v.ld[0].exportable, 1 * GiB);
    ck_assert_uint_eq(v.ld[0].lent, 64 * MiB);
    ck_assert_uint_eq(v.ld[0].available, 1);
    ck_assert_uint_eq(v.ls[0].state, VMIO_MEMLEND_ATTACHED);
    ck_assert_str_eq(v.ls[0].target_iqn, iqn);
    view_free(&v);

    /* Reclaim: REVOKING, the borrower is told, gives it back, the lender
     * is told, removes it, the row is gone. */
    atomic_store(&a.reclaim, l.id);
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l.id, VMIO_MEMLEND_REVOKING);
    ck_assert_int_eq(atomic_load(&a.reclaim_ret), 0);
    ck_assert_uint_eq(lease_state(&g, l.id), VMIO_MEMLEND_REVOKING);
    ck_assert_vmio_ok(vmio_memlend_release(b, l.id));
    ck_assert_msg(wait_state(&g, l.id, 0, 5), "the lease was not unexported");
    ck_assert_int_eq(atomic_load(&a.released), 1);
    ck_assert_int_eq(atomic_load(&a.unexported), 1);

    /* The borrower's fd is pollable and the queue empty. */
    struct vmio_memlend_notice n;
    ck_assert_vmio_err(vmio_memlend_next_notice(b, 0, &n), ETIMEDOUT,
                       "vmio_memlend_next_notice");

    /* Released by the borrower on its own (detach), twice. */
    ck_assert_vmio_ok(vmio_memlend_request(b, 128 * MiB, &l));
    ck_assert_vmio_ok(vmio_memlend_release(b, l.id));
    ck_assert_msg(wait_state(&g, l.id, 0, 5), "the lease was not unexported");
    ck_assert_vmio_err_msg(vmio_memlend_release(b, l.id), ENOENT, "vmio_memlend_release",
                           "unknown");

    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_client_fd_poll)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b, 4 * MiB, &l));
    int fd = vmio_memlend_client_fd(b);
    ck_assert_int_ge(fd, 0);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    atomic_store(&a.reclaim, l.id);
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    /* A call made while the notice waits leaves it queued, and the fd
     * stays readable. */
    ck_assert_vmio_ok(vmio_memlend_attached(b, l.id) == -EINVAL ? 0 : -1);
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l.id, VMIO_MEMLEND_REVOKING);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

/* ---- provisioning ---- */

START_TEST(t_no_lender)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    memset(&l, 0x5a, sizeof l);
    struct vmio_memlend_lease keep = l;
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 64 * MiB, &l), ENOSPC,
                           "vmio_memlend_request", "no lender registered");
    ck_assert_mem_eq(&l, &keep, sizeof l);
    struct agent a;
    agent_start(&a, &g, "small", 32 * MiB);
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 64 * MiB, &l), ENOSPC,
                           "vmio_memlend_request", "small: 33554432 bytes free");
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 1000, &l), EINVAL, "vmio_memlend_request",
                           "multiple of 4096");
    ck_assert_vmio_err(vmio_memlend_request(b, 0, &l), EINVAL, "vmio_memlend_request");
    /* Capacity counts what is lent. */
    ck_assert_vmio_ok(vmio_memlend_request(b, 16 * MiB, &l));
    ck_assert_vmio_ok(vmio_memlend_request(b, 16 * MiB, &l));
    ck_assert_vmio_err(vmio_memlend_request(b, 4096, &l), ENOSPC, "vmio_memlend_request");
    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_provision_error)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    atomic_store(&a.provision_err, ENOSPC);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 64 * MiB, &l), ENOSPC,
                           "vmio_memlend_request", "lender lenderA could not provision lease");
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(v.nls, 0);
    view_free(&v);
    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_provision_timeout)
{
    struct mgr g;
    mgr_start(&g, 30, 300);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    atomic_store(&a.ignore_provision, 1);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    double t0 = test_now();
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 64 * MiB, &l), ETIMEDOUT,
                           "vmio_memlend_request", "did not provision lease");
    ck_assert_double_lt(test_now() - t0, 3.0);
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(v.nls, 0);
    ck_assert_uint_eq(v.ld[0].lent, 0);
    view_free(&v);
    agent_stop(&a);
    /* A late answer is refused: the lender must remove what it made. */
    vmio_memlend_client *lc = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    ck_assert_vmio_err_msg(vmio_memlend_provided(lc, 1, "iqn.2026-12.org.vmio:x.lease1", 1, 0),
                           ENOENT, "vmio_memlend_provided", "remove its LUN");
    vmio_memlend_disconnect(lc);
    vmio_memlend_disconnect(b);
    mgr_stop(&g);
}
END_TEST

/* A borrower that goes away while its lease is provisioned: the lease is
 * given straight back to the lender. */
START_TEST(t_borrower_gone)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    vmio_memlend_client *lc = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    /* The borrower's request is sent by a child process that dies. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        vmio_memlend_client *b;
        if (vmio_memlend_connect(g.addr, secret_path, VMIO_MEMLEND_ROLE_BORROWER, "vm1", 20000,
                                 &b) < 0)
            _exit(1);
        struct vmio_memlend_lease l;
        vmio_memlend_request(b, 64 * MiB, &l);   /* killed while it waits */
        _exit(0);
    }
    struct vmio_memlend_notice n;
    ck_assert_vmio_ok(vmio_memlend_next_notice(lc, 5000, &n));
    ck_assert_uint_eq(n.type, VMIO_MEMLEND_NOTICE_PROVISION);
    ck_assert_uint_eq(n.lease.state, VMIO_MEMLEND_PENDING);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_assert_msg(wait_state(&g, n.lease.id, 0, 5), "the PENDING lease outlived its borrower");
    ck_assert_vmio_err(vmio_memlend_provided(lc, n.lease.id, "iqn.2026-12.org.vmio:a.lease1", 1,
                                             0),
                       ENOENT, "vmio_memlend_provided");
    vmio_memlend_disconnect(lc);
    mgr_stop(&g);
}
END_TEST

/* ---- lender leases ---- */

START_TEST(t_expiry)
{
    struct mgr g;
    mgr_start(&g, 1, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l));
    ck_assert_vmio_ok(vmio_memlend_attached(b, l.id));
    /* No heartbeat: within about 2 s the lender is unavailable and the
     * borrower is told. */
    struct vmio_memlend_notice n;
    ck_assert_vmio_ok(vmio_memlend_next_notice(b, 5000, &n));
    ck_assert_uint_eq(n.type, VMIO_MEMLEND_NOTICE_LENDER_LOST);
    ck_assert_uint_eq(n.lease.id, l.id);
    ck_assert_uint_eq(n.lease.state, VMIO_MEMLEND_LOST);
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->available, 0);
    ck_assert_uint_eq(view_lease(&v, l.id)->state, VMIO_MEMLEND_LOST);
    view_free(&v);
    /* A reconnecting borrower hears it again. */
    vmio_memlend_disconnect(b);
    b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    expect_notice(b, VMIO_MEMLEND_NOTICE_LENDER_LOST, l.id, VMIO_MEMLEND_LOST);
    /* No new lease from an unavailable lender. */
    struct vmio_memlend_lease l2;
    ck_assert_vmio_err_msg(vmio_memlend_request(b, 4 * MiB, &l2), ENOSPC,
                           "vmio_memlend_request", "lenderA: unavailable");
    /* A heartbeat brings the lender back; the lost lease stays LOST until
     * the borrower releases it, then the lender removes it. */
    atomic_store(&a.heartbeat_ms, 100);
    double end = test_now() + 5;
    int back = 0;
    while (!back && test_now() < end) {
        view_get(&g, &v);
        back = view_lender(&v, "lenderA")->available == 1;
        view_free(&v);
        usleep(20000);
    }
    ck_assert_msg(back, "heartbeats did not make the lender available again");
    ck_assert_uint_eq(lease_state(&g, l.id), VMIO_MEMLEND_LOST);
    ck_assert_vmio_ok(vmio_memlend_release(b, l.id));
    ck_assert_msg(wait_state(&g, l.id, 0, 5), "the lost lease was not removed");
    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_heartbeat_keeps)
{
    struct mgr g;
    mgr_start(&g, 1, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    atomic_store(&a.heartbeat_ms, 250);
    usleep(2500000);
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->available, 1);
    ck_assert_int_ge(view_lender(&v, "lenderA")->expiry, (int64_t)time(NULL));
    view_free(&v);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_withdraw)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    vmio_memlend_client *lc = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_err_msg(vmio_memlend_heartbeat(lc, GiB), ENOENT, "vmio_memlend_heartbeat",
                           "not registered");
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    ck_assert_int_eq(vmio_memlend_lease_seconds(lc), 30);
    ck_assert_vmio_ok(vmio_memlend_heartbeat(lc, 2 * GiB));
    vmio_memlend_disconnect(lc);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l));
    agent_stop(&a);
    lc = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    ck_assert_vmio_err_msg(vmio_memlend_withdraw(lc), EBUSY, "vmio_memlend_withdraw",
                           "not RELEASED");
    ck_assert_vmio_ok(vmio_memlend_release(b, l.id));
    expect_notice(lc, VMIO_MEMLEND_NOTICE_RELEASED, l.id, VMIO_MEMLEND_RELEASED);
    ck_assert_vmio_ok(vmio_memlend_withdraw(lc));   /* RELEASED leases do not block */
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    ck_assert_vmio_ok(vmio_memlend_unexported(lc, l.id));
    ck_assert_vmio_ok(vmio_memlend_withdraw(lc));
    ck_assert_vmio_err(vmio_memlend_heartbeat(lc, GiB), ENOENT, "vmio_memlend_heartbeat");
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->available, 0);
    ck_assert_uint_eq(v.nls, 0);
    view_free(&v);
    vmio_memlend_disconnect(lc);
    vmio_memlend_disconnect(b);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_mirror_two_lenders)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a1, a2;
    agent_start(&a1, &g, "big", 4 * GiB);
    agent_start(&a2, &g, "small", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l1, l2, l3;
    ck_assert_vmio_ok(vmio_memlend_request(b, 256 * MiB, &l1));
    ck_assert_str_eq(l1.lender, "big");   /* most free capacity */
    ck_assert_vmio_ok(vmio_memlend_request(b, 256 * MiB, &l2));
    ck_assert_str_eq(l2.lender, "small");   /* a lender this borrower does not use yet */
    ck_assert_vmio_ok(vmio_memlend_request(b, 256 * MiB, &l3));
    ck_assert_str_eq(l3.lender, "big");
    ck_assert_uint_ne(l1.id, l2.id);
    ck_assert_uint_gt(l3.id, l2.id);
    vmio_memlend_disconnect(b);
    agent_stop(&a1);
    agent_stop(&a2);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_replaced_connection)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    vmio_memlend_client *old = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(old, "127.0.0.1:3260", GiB));
    vmio_memlend_client *nw = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(nw, "127.0.0.1:3260", GiB));
    ck_assert_vmio_err_msg(vmio_memlend_heartbeat(old, GiB), ESTALE, "vmio_memlend_heartbeat",
                           "replaced by a newer connection");
    struct vmio_memlend_notice n;
    ck_assert_vmio_err(vmio_memlend_next_notice(old, 0, &n), EPIPE,
                       "vmio_memlend_next_notice");
    ck_assert_vmio_ok(vmio_memlend_heartbeat(nw, GiB));
    vmio_memlend_disconnect(old);
    vmio_memlend_disconnect(nw);
    mgr_stop(&g);
}
END_TEST

/* Many borrowers at once against two lenders: every request is served,
 * from both lenders, and everything is given back. */
struct churn {
    struct mgr *g;
    int idx;
    int done;
    char err[256];
};

static void *churn_thread(void *arg)
{
    struct churn *ch = arg;
    char name[32];
    snprintf(name, sizeof name, "vm%d", ch->idx);
    vmio_memlend_client *b;
    if (vmio_memlend_connect(ch->g->addr, secret_path, VMIO_MEMLEND_ROLE_BORROWER, name, 10000,
                             &b) < 0) {
        snprintf(ch->err, sizeof ch->err, "%s", vmio_errmsg());
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        struct vmio_memlend_lease l;
        if (vmio_memlend_request(b, 16 * MiB, &l) < 0 || l.state != VMIO_MEMLEND_READY ||
            strcmp(l.borrower, name) != 0 || vmio_memlend_attached(b, l.id) < 0 ||
            vmio_memlend_release(b, l.id) < 0) {
            snprintf(ch->err, sizeof ch->err, "%s", vmio_errmsg());
            break;
        }
        ch->done++;
    }
    vmio_memlend_disconnect(b);
    return NULL;
}

START_TEST(t_many_borrowers)
{
    struct mgr g;
    mgr_start(&g, 30, 10000);
    struct agent a1, a2;
    /* 16 borrowers x 16 MiB, and room for the RELEASED leases that the
     * lenders have not removed yet. */
    agent_start(&a1, &g, "lender1", 512 * MiB);
    agent_start(&a2, &g, "lender2", 512 * MiB);
    enum { N = 16 };
    struct churn ch[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        ch[i] = (struct churn){ .g = &g, .idx = i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, churn_thread, &ch[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(ch[i].done == 5, "borrower %d completed %d of 5 cycles: %s", i,
                      ch[i].done, ch[i].err);
    }
    double end = test_now() + 10;
    size_t left = 1;
    while (left && test_now() < end) {
        struct view v;
        view_get(&g, &v);
        left = v.nls;
        view_free(&v);
        usleep(20000);
    }
    ck_assert_uint_eq(left, 0);
    ck_assert_int_eq(atomic_load(&a1.provisions) + atomic_load(&a2.provisions), N * 5);
    ck_assert_int_eq(atomic_load(&a1.unexported) + atomic_load(&a2.unexported), N * 5);
    agent_stop(&a1);
    agent_stop(&a2);
    mgr_stop(&g);
}
END_TEST

/* ---- restart ---- */

START_TEST(t_restart)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l1, l2;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l1));
    ck_assert_vmio_ok(vmio_memlend_attached(b, l1.id));
    ck_assert_vmio_ok(vmio_memlend_request(b, 32 * MiB, &l2));
    atomic_store(&a.reclaim, l2.id);
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l2.id, VMIO_MEMLEND_REVOKING);
    agent_stop(&a);
    vmio_memlend_disconnect(b);
    mgr_stop(&g);

    /* Only one manager per database. */
    mgr_start(&g, 30, 5000);
    struct vmio_memlend_manager_options o = {
        .struct_size = sizeof o, .listen = "127.0.0.1:0", .db_path = db_path,
        .secret_file = secret_path,
    };
    vmio_memlend_manager *m2;
    ck_assert_vmio_err_msg(vmio_memlend_manager_new(&o, &m2), EBUSY, "vmio_memlend_manager_new",
                           "in use by another manager");

    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(v.nls, 2);
    ck_assert_uint_eq(view_lease(&v, l1.id)->state, VMIO_MEMLEND_ATTACHED);
    ck_assert_str_eq(view_lease(&v, l1.id)->target_iqn, l1.target_iqn);
    ck_assert_uint_eq(view_lease(&v, l2.id)->state, VMIO_MEMLEND_REVOKING);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->available, 1);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->lent, 96 * MiB);
    view_free(&v);
    /* The borrower hears the pending revoke again; the lender resumes. */
    b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l2.id, VMIO_MEMLEND_REVOKING);
    agent_start(&a, &g, "lenderA", 1 * GiB);
    ck_assert_vmio_ok(vmio_memlend_release(b, l2.id));
    ck_assert_msg(wait_state(&g, l2.id, 0, 5), "the revoked lease was not removed");
    atomic_store(&a.reclaim, l1.id);
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l1.id, VMIO_MEMLEND_REVOKING);
    ck_assert_vmio_ok(vmio_memlend_release(b, l1.id));
    ck_assert_msg(wait_state(&g, l1.id, 0, 5), "the revoked lease was not removed");
    /* Lease ids are never reused. */
    struct vmio_memlend_lease l3;
    ck_assert_vmio_ok(vmio_memlend_request(b, 4 * MiB, &l3));
    ck_assert_uint_gt(l3.id, l2.id);
    vmio_memlend_disconnect(b);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_bad_db)
{
    struct vmio_memlend_manager_options o = {
        .struct_size = sizeof o, .listen = "127.0.0.1:0", .db_path = db_path,
        .secret_file = secret_path,
    };
    FILE *f = fopen(db_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not a database, just text that is long enough to be read\n", f);
    fclose(f);
    vmio_memlend_manager *m;
    ck_assert_vmio_err_msg(vmio_memlend_manager_new(&o, &m), EIO, "vmio_memlend_manager_new",
                           db_path);
    /* A database of a newer schema, and one that is somebody else's. */
    char other[300];
    snprintf(other, sizeof other, "%s/other.db", dir);
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open(other, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    o.db_path = other;
    ck_assert_vmio_err_msg(vmio_memlend_manager_new(&o, &m), ENOTSUP, "vmio_memlend_manager_new",
                           "schema version 2");
    unlink(other);
    ck_assert_int_eq(sqlite3_open(other, &h), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    ck_assert_vmio_err_msg(vmio_memlend_manager_new(&o, &m), EINVAL, "vmio_memlend_manager_new",
                           "not a memlend manager database");
    o.db_path = dir;   /* a directory */
    ck_assert_vmio_err(vmio_memlend_manager_new(&o, &m), EIO, "vmio_memlend_manager_new");
    o.db_path = db_path;
    o.listen = "127.0.0.1";
    ck_assert_vmio_err_msg(vmio_memlend_manager_new(&o, &m), EINVAL, "vmio_memlend_manager_new",
                           "HOST:PORT");
    o.listen = "127.0.0.1:0";
    o.secret_file = "/nonexistent/secret";
    ck_assert_vmio_err(vmio_memlend_manager_new(&o, &m), ENOENT, "vmio_memlend_manager_new");
    ck_assert_vmio_err(vmio_memlend_manager_new(NULL, &m), EFAULT, "vmio_memlend_manager_new");
}
END_TEST

/* ---- refusals ---- */

START_TEST(t_wrong_secret)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    char other[300];
    snprintf(other, sizeof other, "%s/other", dir);
    write_secret(other, "a different secret");
    vmio_memlend_client *c = (vmio_memlend_client *)&c;
    ck_assert_vmio_err_msg(vmio_memlend_connect(g.addr, other, VMIO_MEMLEND_ROLE_OBSERVER, "o",
                                                5000, &c),
                           EACCES, "vmio_memlend_connect", "shared secret");
    ck_assert_ptr_eq(c, (vmio_memlend_client *)&c);   /* untouched */
    ck_assert_vmio_err_msg(vmio_memlend_connect(g.addr, secret_path, VMIO_MEMLEND_ROLE_OBSERVER,
                                                "bad name", 5000, &c),
                           EINVAL, "vmio_memlend_connect", "invalid name");
    ck_assert_vmio_err(vmio_memlend_connect(g.addr, secret_path, 7, "o", 5000, &c), EINVAL,
                       "vmio_memlend_connect");
    ck_assert_vmio_err(vmio_memlend_connect("127.0.0.1:1", secret_path,
                                            VMIO_MEMLEND_ROLE_OBSERVER, "o", 5000, &c),
                       ECONNREFUSED, "vmio_memlend_connect");
    mgr_stop(&g);
}
END_TEST

START_TEST(t_unauthorized)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b1 = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    vmio_memlend_client *b2 = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm2");
    vmio_memlend_client *obs = connect_as(&g, VMIO_MEMLEND_ROLE_OBSERVER, "watch");
    vmio_memlend_client *lb = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderB");
    ck_assert_vmio_ok(vmio_memlend_register(lb, "127.0.0.1:3261", GiB));
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b1, 64 * MiB, &l));
    ck_assert_str_eq(l.lender, "lenderA");

    /* Someone else's lease. */
    ck_assert_vmio_err_msg(vmio_memlend_release(b2, l.id), EPERM, "vmio_memlend_release",
                           "belongs to borrower vm1");
    ck_assert_vmio_err_msg(vmio_memlend_attached(b2, l.id), EPERM, "vmio_memlend_attached",
                           "belongs to borrower vm1");
    ck_assert_vmio_err_msg(vmio_memlend_reclaim(lb, l.id), EPERM, "vmio_memlend_reclaim",
                           "belongs to lender lenderA");
    ck_assert_vmio_err_msg(vmio_memlend_unexported(lb, l.id), EPERM, "vmio_memlend_unexported",
                           "belongs to lender lenderA");
    /* Outside the role. */
    struct vmio_memlend_lease l2;
    ck_assert_vmio_err_msg(vmio_memlend_request(lb, 4 * MiB, &l2), EPERM, "vmio_memlend_request",
                           "needs the borrower role");
    ck_assert_vmio_err_msg(vmio_memlend_register(b1, "127.0.0.1:3260", GiB), EPERM,
                           "vmio_memlend_register", "needs the lender role");
    ck_assert_vmio_err(vmio_memlend_request(obs, 4 * MiB, &l2), EPERM, "vmio_memlend_request");
    ck_assert_vmio_err(vmio_memlend_reclaim(obs, l.id), EPERM, "vmio_memlend_reclaim");
    /* Lease states. */
    ck_assert_vmio_ok(vmio_memlend_attached(b1, l.id));
    ck_assert_vmio_err_msg(vmio_memlend_unexported(lb, 999999), ENOENT,
                           "vmio_memlend_unexported", "unknown");
    vmio_memlend_client *la = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA2");
    ck_assert_vmio_err_msg(vmio_memlend_reclaim(la, l.id), ENOENT, "vmio_memlend_reclaim",
                           "not registered");
    vmio_memlend_disconnect(la);
    /* The borrower still has it: the lender may not remove it. */
    agent_stop(&a);
    la = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(la, "127.0.0.1:3260", GiB));
    ck_assert_vmio_err_msg(vmio_memlend_unexported(la, l.id), EBUSY, "vmio_memlend_unexported",
                           "ATTACHED");
    ck_assert_vmio_err_msg(vmio_memlend_provided(la, l.id, "iqn.x", 1, 0), EINVAL,
                           "vmio_memlend_provided", "not PENDING");
    ck_assert_vmio_err(vmio_memlend_provided(la, l.id, "bad iqn", 1, 0), EINVAL,
                       "vmio_memlend_provided");
    ck_assert_vmio_err(vmio_memlend_register(la, "", GiB), EINVAL, "vmio_memlend_register");
    /* None of the refusals changed anything. */
    ck_assert_uint_eq(lease_state(&g, l.id), VMIO_MEMLEND_ATTACHED);
    ck_assert_vmio_ok(vmio_memlend_release(b1, l.id));
    ck_assert_vmio_ok(vmio_memlend_release(b1, l.id));   /* idempotent */
    ck_assert_vmio_err_msg(vmio_memlend_attached(b1, l.id), EINVAL, "vmio_memlend_attached",
                           "RELEASED");
    vmio_memlend_disconnect(la);
    vmio_memlend_disconnect(lb);
    vmio_memlend_disconnect(obs);
    vmio_memlend_disconnect(b1);
    vmio_memlend_disconnect(b2);
    mgr_stop(&g);
}
END_TEST

/* ---- raw bytes on the socket ---- */

static int raw_connect(struct mgr *g)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g->port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Read one frame: header and its error message (if any). */
static void raw_recv(int fd, struct vmio_ml_hdr *h, char *msg, size_t msglen)
{
    uint8_t hb[VMIO_ML_HDR_SIZE];
    ck_assert_int_eq(recv(fd, hb, sizeof hb, MSG_WAITALL), (ssize_t)sizeof hb);
    ck_assert_vmio_ok(vmio_ml_decode_hdr("test", hb, h));
    uint8_t *body = malloc(h->length + 1);
    ck_assert_ptr_nonnull(body);
    if (h->length)
        ck_assert_int_eq(recv(fd, body, h->length, MSG_WAITALL), (ssize_t)h->length);
    msg[0] = 0;
    if (h->status != 0) {
        char m[VMIO_ML_MAX_ERRMSG + 1];
        ck_assert_vmio_ok(vmio_ml_decode_error("test", body, h->length, m));
        snprintf(msg, msglen, "%s", m);
    }
    free(body);
}

/* The manager closed the connection. */
static void raw_expect_eof(int fd)
{
    char c;
    ck_assert_int_eq(recv(fd, &c, 1, 0), 0);
}

static void raw_frame(int fd, uint16_t type, uint32_t id, const struct vmio_ml_buf *body)
{
    struct vmio_ml_buf f = { 0 };
    vmio_ml_put_frame(&f, type, id, 0, body ? body->data : NULL, body ? body->len : 0);
    raw_send(fd, f.data, f.len);
    vmio_ml_buf_free(&f);
}

/* A borrower that never answers a revoke: once its lender has removed the
 * LUN anyway (its policy allows that only with no initiator logged in),
 * the manager forgets the lease and tells the borrower the lender is
 * gone. An ATTACHED lease, never revoked, cannot be removed that way. */
START_TEST(t_forced_unexport)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l));
    ck_assert_vmio_ok(vmio_memlend_attached(b, l.id));
    agent_stop(&a);
    vmio_memlend_client *la = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(la, "127.0.0.1:3260", GiB));
    ck_assert_vmio_err_msg(vmio_memlend_unexported(la, l.id), EBUSY, "vmio_memlend_unexported",
                           "reclaim it first");
    ck_assert_uint_eq(lease_state(&g, l.id), VMIO_MEMLEND_ATTACHED);
    ck_assert_vmio_ok(vmio_memlend_reclaim(la, l.id));
    expect_notice(b, VMIO_MEMLEND_NOTICE_REVOKE, l.id, VMIO_MEMLEND_REVOKING);
    ck_assert_vmio_ok(vmio_memlend_unexported(la, l.id));
    ck_assert_msg(wait_state(&g, l.id, 0, 5), "the lease is still there");
    expect_notice(b, VMIO_MEMLEND_NOTICE_LENDER_LOST, l.id, VMIO_MEMLEND_REVOKING);
    /* The borrower coming back to give it back hears it is unknown. */
    ck_assert_vmio_err_msg(vmio_memlend_release(b, l.id), ENOENT, "vmio_memlend_release",
                           "unknown");
    vmio_memlend_disconnect(la);
    vmio_memlend_disconnect(b);
    mgr_stop(&g);
}
END_TEST

START_TEST(t_raw_unauthenticated)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct vmio_ml_hdr h;
    char msg[1100];

    /* A request before HELLO. */
    int fd = raw_connect(&g);
    raw_frame(fd, VMIO_ML_STATUS, 1, NULL);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_FATAL);
    ck_assert_int_eq(h.status, EACCES);
    ck_assert_msg(strstr(msg, "not authenticated"), "message: %s", msg);
    raw_expect_eof(fd);
    close(fd);

    /* Not our protocol at all. */
    fd = raw_connect(&g);
    raw_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_FATAL);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "bad frame magic"), "message: %s", msg);
    raw_expect_eof(fd);
    close(fd);

    /* HELLO, then a wrong proof. */
    fd = raw_connect(&g);
    struct vmio_ml_hello hello = { .min_version = 1, .max_version = 1,
                                   .role = VMIO_MEMLEND_ROLE_BORROWER };
    snprintf(hello.name, sizeof hello.name, "mallory");
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 1, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_HELLO | VMIO_ML_REPLY);
    ck_assert_int_eq(h.status, 0);
    uint8_t proof[VMIO_ML_PROOF_SIZE] = { 1, 2, 3 };
    vmio_ml_put_bytes(&b, proof, sizeof proof);
    raw_frame(fd, VMIO_ML_AUTH, 2, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_AUTH | VMIO_ML_REPLY);
    ck_assert_uint_eq(h.id, 2);
    ck_assert_int_eq(h.status, EACCES);
    ck_assert_msg(strstr(msg, "authentication failed"), "message: %s", msg);
    raw_expect_eof(fd);
    close(fd);

    /* A malformed HELLO (bad role), and an unsupported version. */
    fd = raw_connect(&g);
    hello.role = 9;
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 1, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "unknown role 9"), "message: %s", msg);
    raw_expect_eof(fd);
    close(fd);
    fd = raw_connect(&g);
    hello.role = 1;
    hello.min_version = hello.max_version = 7;
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 1, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, ENOTSUP);
    ck_assert_msg(strstr(msg, "versions 7..7"), "message: %s", msg);
    close(fd);

    /* An oversized frame before authentication. */
    fd = raw_connect(&g);
    struct vmio_ml_hdr big = { .type = VMIO_ML_HELLO, .id = 1, .length = 100000 };
    uint8_t hb[VMIO_ML_HDR_SIZE];
    vmio_ml_encode_hdr(&big, hb);
    raw_send(fd, hb, sizeof hb);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "exceeds"), "message: %s", msg);
    close(fd);

    /* The manager still serves everyone else. */
    struct view v;
    view_get(&g, &v);
    view_free(&v);
    mgr_stop(&g);
}
END_TEST

/* An authenticated client whose requests are malformed gets an error
 * reply per request and keeps its connection. */
START_TEST(t_raw_malformed_after_auth)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    int fd = raw_connect(&g);
    struct vmio_ml_hello hello = { .min_version = 1, .max_version = 1,
                                   .role = VMIO_MEMLEND_ROLE_BORROWER };
    snprintf(hello.name, sizeof hello.name, "vm1");
    memset(hello.nonce, 7, sizeof hello.nonce);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 1, &b);
    vmio_ml_buf_free(&b);
    uint8_t hb[VMIO_ML_HDR_SIZE], body[VMIO_ML_NONCE_SIZE + VMIO_ML_PROOF_SIZE + 4];
    ck_assert_int_eq(recv(fd, hb, sizeof hb, MSG_WAITALL), (ssize_t)sizeof hb);
    struct vmio_ml_hdr h;
    ck_assert_vmio_ok(vmio_ml_decode_hdr("test", hb, &h));
    ck_assert_uint_eq(h.length, sizeof body);
    ck_assert_int_eq(recv(fd, body, sizeof body, MSG_WAITALL), (ssize_t)sizeof body);
    struct vmio_ml_hello_reply rep;
    ck_assert_vmio_ok(vmio_ml_decode_hello_reply("test", body, sizeof body, &rep));
    /* The manager's proof is the documented HMAC. */
    uint8_t secret[] = "0123456789abcdef-memlend-test-secret";
    uint8_t want[VMIO_ML_PROOF_SIZE];
    vmio_ml_proof(secret, sizeof secret - 1, 1, hello.nonce, rep.nonce, hello.role, "vm1", want);
    ck_assert_mem_eq(want, rep.proof, sizeof want);
    vmio_ml_proof(secret, sizeof secret - 1, 0, hello.nonce, rep.nonce, hello.role, "vm1", want);
    vmio_ml_put_bytes(&b, want, sizeof want);
    raw_frame(fd, VMIO_ML_AUTH, 2, &b);
    vmio_ml_buf_free(&b);
    char msg[1100];
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, 0);

    /* REQUEST with a truncated body. */
    uint8_t junk[5] = { 1, 2, 3, 4, 5 };
    vmio_ml_put_bytes(&b, junk, sizeof junk);
    raw_frame(fd, VMIO_ML_REQUEST, 3, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_REQUEST | VMIO_ML_REPLY);
    ck_assert_uint_eq(h.id, 3);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "truncated"), "message: %s", msg);
    /* STATUS with a body. */
    vmio_ml_put_bytes(&b, junk, sizeof junk);
    raw_frame(fd, VMIO_ML_STATUS, 4, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, EPROTO);
    /* A second HELLO. */
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 5, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "already authenticated"), "message: %s", msg);
    /* Still usable: a real STATUS. */
    raw_frame(fd, VMIO_ML_STATUS, 6, NULL);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_STATUS | VMIO_ML_REPLY);
    ck_assert_int_eq(h.status, 0);
    /* A reply sent to the manager is a protocol violation: closed. */
    raw_frame(fd, VMIO_ML_STATUS | VMIO_ML_REPLY, 7, NULL);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_FATAL);
    ck_assert_int_eq(h.status, EPROTO);
    raw_expect_eof(fd);
    close(fd);
    mgr_stop(&g);
}
END_TEST

/* HELLO and AUTH on a raw socket; the connection is authenticated. */
static int raw_auth(struct mgr *g, uint32_t role, const char *name)
{
    int fd = raw_connect(g);
    struct vmio_ml_hello hello = { .min_version = 1, .max_version = 1, .role = role };
    snprintf(hello.name, sizeof hello.name, "%s", name);
    memset(hello.nonce, 9, sizeof hello.nonce);
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_hello(&b, &hello);
    raw_frame(fd, VMIO_ML_HELLO, 1, &b);
    vmio_ml_buf_free(&b);
    uint8_t hb[VMIO_ML_HDR_SIZE], body[VMIO_ML_NONCE_SIZE + VMIO_ML_PROOF_SIZE + 4];
    struct vmio_ml_hdr h;
    ck_assert_int_eq(recv(fd, hb, sizeof hb, MSG_WAITALL), (ssize_t)sizeof hb);
    ck_assert_vmio_ok(vmio_ml_decode_hdr("test", hb, &h));
    ck_assert_uint_eq(h.length, sizeof body);
    ck_assert_int_eq(recv(fd, body, sizeof body, MSG_WAITALL), (ssize_t)sizeof body);
    struct vmio_ml_hello_reply rep;
    ck_assert_vmio_ok(vmio_ml_decode_hello_reply("test", body, sizeof body, &rep));
    uint8_t secret[] = "0123456789abcdef-memlend-test-secret";
    uint8_t proof[VMIO_ML_PROOF_SIZE];
    vmio_ml_proof(secret, sizeof secret - 1, 0, hello.nonce, rep.nonce, role, name, proof);
    vmio_ml_put_bytes(&b, proof, sizeof proof);
    raw_frame(fd, VMIO_ML_AUTH, 2, &b);
    vmio_ml_buf_free(&b);
    char msg[1100];
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, 0);
    return fd;
}

/* ---- a READY lease whose borrower never reports ATTACHED ---- */

/* The borrower's process dies between READY and ATTACHED (the `attach`
 * killed, or the reply lost with the connection): the lease is given back
 * to its lender, which removes the LUN. */
START_TEST(t_ready_borrower_gone)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        vmio_memlend_client *b;
        struct vmio_memlend_lease l;
        if (vmio_memlend_connect(g.addr, secret_path, VMIO_MEMLEND_ROLE_BORROWER, "vm1", 5000,
                                 &b) < 0 ||
            vmio_memlend_request(b, 64 * MiB, &l) < 0)
            _exit(1);
        ssize_t w = write(pfd[1], &l.id, sizeof l.id);
        pause();   /* killed before ATTACHED */
        _exit(w == sizeof l.id ? 0 : 1);
    }
    close(pfd[1]);
    uint64_t id = 0;
    ck_assert_int_eq(read(pfd[0], &id, sizeof id), (ssize_t)sizeof id);
    close(pfd[0]);
    ck_assert_uint_eq(lease_state(&g, id), VMIO_MEMLEND_READY);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* RELEASED pushed to the lender, which unexports: the row is gone. */
    ck_assert_msg(wait_state(&g, id, 0, 5), "the READY lease outlived its borrower");
    ck_assert_int_eq(atomic_load(&a.released), 1);
    ck_assert_int_eq(atomic_load(&a.unexported), 1);
    struct view v;
    view_get(&g, &v);
    ck_assert_uint_eq(view_lender(&v, "lenderA")->lent, 0);
    view_free(&v);
    agent_stop(&a);
    mgr_stop(&g);
}
END_TEST

/* A borrower still connected is still attaching (moving its data can take
 * long): no deadline, and its lease is given back only when it leaves. A
 * lease attached in time stays. After a manager restart a READY lease has
 * no such connection: it is given back at the attach timeout. */
START_TEST(t_attach_timeout)
{
    struct mgr g;
    mgr_start_attach(&g, 30, 5000, 600);
    struct agent a;
    agent_start(&a, &g, "lenderA", 1 * GiB);
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_memlend_lease l1, l2;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l1));
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l2));
    ck_assert_vmio_ok(vmio_memlend_attached(b, l2.id));
    usleep(1200000);
    ck_assert_uint_eq(lease_state(&g, l1.id), VMIO_MEMLEND_READY);
    ck_assert_uint_eq(lease_state(&g, l2.id), VMIO_MEMLEND_ATTACHED);
    ck_assert_int_eq(atomic_load(&a.released), 0);
    /* A READY lease across a restart (the borrower's connection ends
     * with the old manager, which does not give leases back when it stops;
     * no lender is connected to answer RELEASED). */
    struct vmio_memlend_lease l3;
    ck_assert_vmio_ok(vmio_memlend_request(b, 64 * MiB, &l3));
    agent_stop(&a);
    mgr_stop(&g);
    vmio_memlend_disconnect(b);
    mgr_start_attach(&g, 30, 5000, 600);
    ck_assert_uint_eq(lease_state(&g, l1.id), VMIO_MEMLEND_READY);
    ck_assert_uint_eq(lease_state(&g, l3.id), VMIO_MEMLEND_READY);
    /* l1 is reported ATTACHED from a new connection in time. */
    b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    ck_assert_vmio_ok(vmio_memlend_attached(b, l1.id));
    ck_assert_msg(wait_state(&g, l3.id, VMIO_MEMLEND_RELEASED, 5),
                  "the READY lease was not given back after the restart");
    usleep(300000);
    ck_assert_uint_eq(lease_state(&g, l1.id), VMIO_MEMLEND_ATTACHED);
    ck_assert_uint_eq(lease_state(&g, l2.id), VMIO_MEMLEND_ATTACHED);
    vmio_memlend_disconnect(b);
    mgr_stop(&g);
}
END_TEST

/* ---- limits ---- */

/* The largest legal request body (64 KiB) is read whole and answered (here
 * with EPROTO: STATUS takes no body); one byte more closes the connection. */
START_TEST(t_max_frame)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    int fd = raw_auth(&g, VMIO_MEMLEND_ROLE_OBSERVER, "obs");
    struct vmio_ml_buf b = { 0 };
    uint8_t *big = calloc(1, 65536);
    ck_assert_ptr_nonnull(big);
    vmio_ml_put_bytes(&b, big, 65536);
    raw_frame(fd, VMIO_ML_STATUS, 3, &b);
    vmio_ml_buf_free(&b);
    struct vmio_ml_hdr h;
    char msg[1100];
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_STATUS | VMIO_ML_REPLY);
    ck_assert_uint_eq(h.id, 3);
    ck_assert_int_eq(h.status, EPROTO);
    ck_assert_msg(strstr(msg, "STATUS"), "message: %s", msg);
    /* Still usable. */
    raw_frame(fd, VMIO_ML_STATUS, 4, NULL);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.id, 4);
    ck_assert_int_eq(h.status, 0);
    vmio_ml_put_bytes(&b, big, 65536);
    vmio_ml_put_bytes(&b, big, 1);
    raw_frame(fd, VMIO_ML_STATUS, 5, &b);
    vmio_ml_buf_free(&b);
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_FATAL);
    ck_assert_msg(strstr(msg, "exceeds"), "message: %s", msg);
    free(big);
    close(fd);
    mgr_stop(&g);
}
END_TEST

/* A lender pipelining thousands of HEARTBEATs: every one is answered in
 * order, another client is served meanwhile, and the last value reaches
 * STATUS at once and the database within a second (heartbeats are kept in
 * memory and written at most once a second). */
START_TEST(t_heartbeat_flood)
{
    enum { N = 3000 };
    struct mgr g;
    mgr_start(&g, 30, 5000);
    int fd = raw_auth(&g, VMIO_MEMLEND_ROLE_LENDER, "flooder");
    struct vmio_ml_register reg = { .exportable = GiB };
    snprintf(reg.portal, sizeof reg.portal, "127.0.0.1:3260");
    struct vmio_ml_buf b = { 0 };
    vmio_ml_encode_register(&b, &reg);
    raw_frame(fd, VMIO_ML_REGISTER, 3, &b);
    vmio_ml_buf_free(&b);
    struct vmio_ml_hdr h;
    char msg[1100];
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, 0);
    struct vmio_ml_buf all = { 0 };
    for (uint32_t i = 0; i < N; i++) {
        vmio_ml_put_u64(&b, 2 * GiB);
        vmio_ml_put_frame(&all, VMIO_ML_HEARTBEAT, 10 + i, 0, b.data, b.len);
        vmio_ml_buf_free(&b);
    }
    raw_send(fd, all.data, all.len);
    vmio_ml_buf_free(&all);
    /* Another client is served meanwhile. */
    double t0 = test_now();
    vmio_memlend_client *o = connect_as(&g, VMIO_MEMLEND_ROLE_OBSERVER, "observer");
    struct view v;
    ck_assert_vmio_ok(vmio_memlend_status(o, &v.ls, &v.nls, &v.ld, &v.nld));
    double dt = test_now() - t0;
    view_free(&v);
    vmio_memlend_disconnect(o);
    /* Loose bounds (valgrind, loaded CI machines): they catch a loop that
     * serves the flooder to the end first, not a slow machine. */
    ck_assert_msg(dt < 5, "STATUS took %.3f s during a heartbeat flood", dt);
    for (uint32_t i = 0; i < N; i++) {
        raw_recv(fd, &h, msg, sizeof msg);
        ck_assert_uint_eq(h.id, 10 + i);
        ck_assert_int_eq(h.status, 0);
    }
    double all_dt = test_now() - t0;
    ck_assert_msg(all_dt < 60, "%d heartbeats took %.3f s", N, all_dt);
    /* The last heartbeat's value reaches STATUS and, within a second, the
     * database. */
    view_get(&g, &v);
    ck_assert_uint_eq(view_lender(&v, "flooder")->exportable, 2 * GiB);
    view_free(&v);
    usleep(1300000);
    close(fd);
    mgr_stop(&g);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    const char *q = "SELECT exportable FROM lenders WHERE name = 'flooder'";
    ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int64(st, 0), (sqlite3_int64)(2 * GiB));
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

/* Many unauthenticated connections from one host do not lock others out:
 * the oldest are closed (FATAL EBUSY) and a real client still connects. */
START_TEST(t_preauth_cap)
{
    enum { N = 1100 };
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 3 * N) {
        fprintf(stderr, "t_preauth_cap: skipped (RLIMIT_NOFILE hard limit %llu)\n",
                (unsigned long long)rl.rlim_max);
        return;
    }
    rl.rlim_cur = 3 * N;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    struct mgr g;
    mgr_start(&g, 30, 5000);
    static int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = raw_connect(&g);
    usleep(200000);
    vmio_memlend_client *o = NULL;
    ck_assert_vmio_ok(vmio_memlend_connect(g.addr, secret_path, VMIO_MEMLEND_ROLE_OBSERVER,
                                           "observer", 5000, &o));
    vmio_memlend_disconnect(o);
    /* The first one was evicted with a reason. */
    struct vmio_ml_hdr h;
    char msg[1100];
    raw_recv(fds[0], &h, msg, sizeof msg);
    ck_assert_uint_eq(h.type, VMIO_ML_FATAL);
    ck_assert_int_eq(h.status, EBUSY);
    ck_assert_msg(strstr(msg, "too many unauthenticated"), "message: %s", msg);
    raw_expect_eof(fds[0]);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    mgr_stop(&g);
}
END_TEST

/* ---- the client's notice queue ---- */

/* A notice that arrives in the same segment as a reply makes the client's
 * fd readable (RECLAIM of a RELEASED lease: reply and RELEASED notice are
 * sent back to back). */
START_TEST(t_client_fd_after_reply)
{
    struct mgr g;
    mgr_start(&g, 30, 5000);
    vmio_memlend_client *lc = connect_as(&g, VMIO_MEMLEND_ROLE_LENDER, "lenderA");
    ck_assert_vmio_ok(vmio_memlend_register(lc, "127.0.0.1:3260", 1 * GiB));
    vmio_memlend_client *b = connect_as(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    int fd = raw_auth(&g, VMIO_MEMLEND_ROLE_BORROWER, "vm1");
    struct vmio_ml_request rq = { .size = 64 * MiB, .wait_ms = 5000 };
    struct vmio_ml_buf bb = { 0 };
    vmio_ml_encode_request(&bb, &rq);
    raw_frame(fd, VMIO_ML_REQUEST, 3, &bb);
    vmio_ml_buf_free(&bb);
    struct vmio_memlend_notice n;
    ck_assert_vmio_ok(vmio_memlend_next_notice(lc, 5000, &n));
    ck_assert_uint_eq(n.type, VMIO_MEMLEND_NOTICE_PROVISION);
    uint64_t id = n.lease.id;
    ck_assert_vmio_ok(vmio_memlend_provided(lc, id, "iqn.2026-12.org.vmio:lenderA.lease1", 1, 0));
    struct vmio_ml_hdr h;
    char msg[1100];
    raw_recv(fd, &h, msg, sizeof msg);
    ck_assert_int_eq(h.status, 0);
    ck_assert_vmio_ok(vmio_memlend_attached(b, id));
    ck_assert_vmio_ok(vmio_memlend_release(b, id));
    expect_notice(lc, VMIO_MEMLEND_NOTICE_RELEASED, id, VMIO_MEMLEND_RELEASED);
    for (int round = 0; round < 20; round++) {
        ck_assert_vmio_ok(vmio_memlend_reclaim(lc, id));
        struct pollfd p = { .fd = vmio_memlend_client_fd(lc), .events = POLLIN };
        ck_assert_msg(poll(&p, 1, 2000) == 1, "round %d: the client fd did not wake", round);
        expect_notice(lc, VMIO_MEMLEND_NOTICE_RELEASED, id, VMIO_MEMLEND_RELEASED);
        ck_assert_int_eq(vmio_memlend_next_notice(lc, 0, &n), -ETIMEDOUT);
    }
    close(fd);
    vmio_memlend_disconnect(b);
    vmio_memlend_disconnect(lc);
    mgr_stop(&g);
}
END_TEST

/* A fake manager that pushes more notices than the client keeps while a
 * call waits: the client gives up on the connection (ENOBUFS) instead of
 * silently dropping one; the queued notices are still delivered in order. */
struct flood_srv {
    int lfd;
    int port;
    uint32_t count;
};

static void *flood_srv_thread(void *arg)
{
    struct flood_srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    uint8_t hb[VMIO_ML_HDR_SIZE], body[4096];
    struct vmio_ml_hdr h;
    struct vmio_ml_hello hello;
    uint8_t secret[] = "0123456789abcdef-memlend-test-secret";
    struct vmio_ml_buf b = { 0 }, f = { 0 };
    /* HELLO */
    if (recv(fd, hb, sizeof hb, MSG_WAITALL) != (ssize_t)sizeof hb ||
        vmio_ml_decode_hdr("srv", hb, &h) < 0 || h.length > sizeof body ||
        recv(fd, body, h.length, MSG_WAITALL) != (ssize_t)h.length ||
        vmio_ml_decode_hello("srv", body, h.length, &hello) < 0)
        goto out;
    struct vmio_ml_hello_reply rep = { .version = 1 };
    memset(rep.nonce, 5, sizeof rep.nonce);
    vmio_ml_proof(secret, sizeof secret - 1, 1, hello.nonce, rep.nonce, hello.role, hello.name,
                  rep.proof);
    vmio_ml_encode_hello_reply(&b, &rep);
    vmio_ml_put_frame(&f, VMIO_ML_HELLO | VMIO_ML_REPLY, h.id, 0, b.data, b.len);
    vmio_ml_buf_free(&b);
    /* AUTH (not checked) */
    if (send(fd, f.data, f.len, MSG_NOSIGNAL) != (ssize_t)f.len ||
        recv(fd, hb, sizeof hb, MSG_WAITALL) != (ssize_t)sizeof hb ||
        vmio_ml_decode_hdr("srv", hb, &h) < 0 || h.length > sizeof body ||
        recv(fd, body, h.length, MSG_WAITALL) != (ssize_t)h.length)
        goto out;
    vmio_ml_buf_free(&f);
    vmio_ml_put_frame(&f, VMIO_ML_AUTH | VMIO_ML_REPLY, h.id, 0, NULL, 0);
    /* STATUS: the notices, then the (empty) reply */
    if (send(fd, f.data, f.len, MSG_NOSIGNAL) != (ssize_t)f.len ||
        recv(fd, hb, sizeof hb, MSG_WAITALL) != (ssize_t)sizeof hb ||
        vmio_ml_decode_hdr("srv", hb, &h) < 0)
        goto out;
    vmio_ml_buf_free(&f);
    for (uint32_t i = 1; i <= s->count; i++) {
        struct vmio_memlend_notice n = { .type = VMIO_MEMLEND_NOTICE_REVOKE };
        n.lease.id = i;
        n.lease.state = VMIO_MEMLEND_REVOKING;
        n.lease.size = 4096;
        snprintf(n.lease.lender, sizeof n.lease.lender, "lenderA");
        snprintf(n.lease.borrower, sizeof n.lease.borrower, "vm1");
        snprintf(n.lease.portal, sizeof n.lease.portal, "127.0.0.1:3260");
        vmio_ml_encode_notice(&b, &n);
        vmio_ml_put_frame(&f, VMIO_ML_NOTICE, 0, 0, b.data, b.len);
        vmio_ml_buf_free(&b);
    }
    vmio_ml_encode_status(&b, NULL, 0, NULL, 0);
    vmio_ml_put_frame(&f, VMIO_ML_STATUS | VMIO_ML_REPLY, h.id, 0, b.data, b.len);
    vmio_ml_buf_free(&b);
    size_t off = 0;
    while (off < f.len) {
        ssize_t w = send(fd, f.data + off, f.len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
out:
    vmio_ml_buf_free(&b);
    vmio_ml_buf_free(&f);
    shutdown(fd, SHUT_WR);
    char c;
    while (recv(fd, &c, 1, 0) > 0)
        ;
    close(fd);
    return NULL;
}

START_TEST(t_client_queue_full)
{
    struct flood_srv s = { .count = 65537 };
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s.lfd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(s.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(s.lfd, 1), 0);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(getsockname(s.lfd, (struct sockaddr *)&sa, &sl), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, flood_srv_thread, &s), 0);
    vmio_memlend_client *c = NULL;
    ck_assert_vmio_ok(vmio_memlend_connect(addr, secret_path, VMIO_MEMLEND_ROLE_BORROWER, "vm1",
                                           20000, &c));
    struct vmio_memlend_lease *ls;
    struct vmio_memlend_lender_info *ld;
    size_t nls, nld;
    ck_assert_vmio_err_msg(vmio_memlend_status(c, &ls, &nls, &ld, &nld), ENOBUFS,
                           "vmio_memlend_status", "were not read");
    struct pollfd p = { .fd = vmio_memlend_client_fd(c), .events = POLLIN };
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    struct vmio_memlend_notice n;
    for (uint64_t i = 1; i <= 65536; i++) {
        ck_assert_vmio_ok(vmio_memlend_next_notice(c, 0, &n));
        ck_assert_uint_eq(n.lease.id, i);
    }
    ck_assert_int_eq(vmio_memlend_next_notice(c, 0, &n), -EPIPE);
    ck_assert_msg(strstr(vmio_errmsg(), "were not read"), "message: %s", vmio_errmsg());
    vmio_memlend_disconnect(c);
    pthread_join(th, NULL);
    close(s.lfd);
}
END_TEST

/* ---- CHAP ---- */

START_TEST(t_chap)
{
    struct vmio_memlend_chap c1, c2, c3;
    const char *iqn = "iqn.2026-12.org.vmio:lenderA.lease7";
    ck_assert_vmio_ok(vmio_memlend_chap_derive(secret_path, iqn, &c1));
    /* Independent computation of the documented derivation. */
    const char *sec = "0123456789abcdef-memlend-test-secret";   /* newline stripped */
    uint8_t h[32];
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, strlen(sec), (const uint8_t *)sec);
    char msg[256];
    snprintf(msg, sizeof msg, "vmio-memlend-chap-v1%s", iqn);
    hmac_sha256_update(&ctx, strlen(msg), (const uint8_t *)msg);
    hmac_sha256_digest(&ctx, sizeof h, h);
    char want_user[64] = "vmio-", want_secret[48] = "";
    for (int i = 0; i < 8; i++)
        sprintf(want_user + 5 + 2 * i, "%02x", h[i]);
    for (int i = 0; i < 16; i++)
        sprintf(want_secret + 2 * i, "%02x", h[8 + i]);
    ck_assert_str_eq(c1.user, want_user);
    ck_assert_str_eq(c1.secret, want_secret);
    ck_assert_uint_eq(strlen(c1.secret), 32);
    /* Another IQN, another secret file: other credentials. */
    ck_assert_vmio_ok(vmio_memlend_chap_derive(secret_path, "iqn.2026-12.org.vmio:lenderA.lease8",
                                               &c2));
    ck_assert_str_ne(c1.user, c2.user);
    ck_assert_str_ne(c1.secret, c2.secret);
    char other[300];
    snprintf(other, sizeof other, "%s/other", dir);
    write_secret(other, "another secret");
    ck_assert_vmio_ok(vmio_memlend_chap_derive(other, iqn, &c3));
    ck_assert_str_ne(c1.secret, c3.secret);
    /* Errors leave *out alone. */
    memset(&c3, 0x33, sizeof c3);
    struct vmio_memlend_chap keep = c3;
    ck_assert_vmio_err(vmio_memlend_chap_derive(secret_path, "has space", &c3), EINVAL,
                       "vmio_memlend_chap_derive");
    ck_assert_vmio_err(vmio_memlend_chap_derive(secret_path, "", &c3), EINVAL,
                       "vmio_memlend_chap_derive");
    ck_assert_int_eq(chmod(other, 0644), 0);
    ck_assert_vmio_err_msg(vmio_memlend_chap_derive(other, iqn, &c3), EPERM,
                           "vmio_memlend_chap_derive", "group or others");
    ck_assert_mem_eq(&c3, &keep, sizeof c3);
    ck_assert_str_eq(vmio_memlend_state_name(VMIO_MEMLEND_REVOKING), "REVOKING");
    ck_assert_str_eq(vmio_memlend_state_name(99), "UNKNOWN");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memlend-manager");
    TCase *tc = tcase_create("manager");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, t_cycle);
    tcase_add_test(tc, t_client_fd_poll);
    tcase_add_test(tc, t_no_lender);
    tcase_add_test(tc, t_provision_error);
    tcase_add_test(tc, t_provision_timeout);
    tcase_add_test(tc, t_borrower_gone);
    tcase_add_test(tc, t_expiry);
    tcase_add_test(tc, t_heartbeat_keeps);
    tcase_add_test(tc, t_withdraw);
    tcase_add_test(tc, t_mirror_two_lenders);
    tcase_add_test(tc, t_replaced_connection);
    tcase_add_test(tc, t_many_borrowers);
    tcase_add_test(tc, t_restart);
    tcase_add_test(tc, t_bad_db);
    tcase_add_test(tc, t_wrong_secret);
    tcase_add_test(tc, t_unauthorized);
    tcase_add_test(tc, t_forced_unexport);
    tcase_add_test(tc, t_raw_unauthenticated);
    tcase_add_test(tc, t_raw_malformed_after_auth);
    tcase_add_test(tc, t_chap);
    tcase_add_test(tc, t_ready_borrower_gone);
    tcase_add_test(tc, t_attach_timeout);
    tcase_add_test(tc, t_max_frame);
    tcase_add_test(tc, t_heartbeat_flood);
    tcase_add_test(tc, t_preauth_cap);
    tcase_add_test(tc, t_client_fd_after_reply);
    tcase_add_test(tc, t_client_queue_full);
    suite_add_tcase(s, tc);
    return test_run(s);
}
