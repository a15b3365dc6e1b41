/* libvmio memory lending: a VM that runs out of RAM swaps to memory that
 * another host is not using.
 *
 *   - A *manager* keeps the lenders' database (SQLite): who lends how much,
 *     through which iSCSI portal, to whom, until when. Lenders renew a lease
 *     by heartbeat; when one expires, its borrowers are told.
 *   - A *lender* watches its own memory (MemAvailable, pressure stall
 *     information, optionally its libvirt guests), decides conservatively
 *     how much is surplus, and exports tmpfs/ramfs-backed LUNs through a
 *     real iSCSI target (tgt, or LIO through configfs) with CHAP. When its
 *     own pressure rises it reclaims: the manager tells the borrower, the
 *     borrower moves its data back, and only then is the LUN removed.
 *   - A *borrower* (vmio-swap) logs in with open-iscsi, finds the new disk
 *     through sysfs, and moves a running VM's swap LV onto it with LVM
 *     (pvcreate, vgextend, pvmove), and back on detach or revoke.
 *
 * The manager protocol is in docs/memlend-protocol.md, the deployment in
 * docs/memlend.md. CHAP credentials never cross the manager protocol: both
 * ends derive them from the shared secret and the target's IQN.
 *
 * All functions follow the error convention of <vmio/core.h>: 0 or a
 * non-negative value on success, a negative errno on failure with
 * vmio_errmsg() set. Option structs: zero-initialise, set struct_size,
 * fill what you need; fields added later go at the end.
 */
#ifndef VMIO_MEMLEND_H
#define VMIO_MEMLEND_H

#include <stdint.h>
#include <stddef.h>

#include <vmio/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===== common types (manager protocol) ================================ */

typedef struct vmio_memlend_manager vmio_memlend_manager;
typedef struct vmio_memlend_client vmio_memlend_client;
typedef struct vmio_memlend_lender vmio_memlend_lender;

/* Life of a lease (one LUN lent to one borrower). Explicit values: they
 * are stored in the manager's database and sent on the wire. */
enum vmio_memlend_lease_state {
    VMIO_MEMLEND_PENDING = 1,   /* requested; the lender is creating the LUN */
    VMIO_MEMLEND_READY = 2,     /* exported; the borrower may log in */
    VMIO_MEMLEND_ATTACHED = 3,  /* the borrower reported the LUN in its VG */
    VMIO_MEMLEND_REVOKING = 4,  /* the lender wants it back; borrower told */
    VMIO_MEMLEND_RELEASED = 5,  /* the borrower no longer uses it: the lender
                                   may remove the LUN */
    VMIO_MEMLEND_LOST = 6       /* the lender's lease expired while lent */
};

/* Roles a client connects as. */
enum vmio_memlend_role {
    VMIO_MEMLEND_ROLE_LENDER = 1,
    VMIO_MEMLEND_ROLE_BORROWER = 2,
    VMIO_MEMLEND_ROLE_OBSERVER = 3  /* status only */
};

struct vmio_memlend_lease {
    uint64_t id;
    uint64_t size;              /* bytes */
    uint32_t state;             /* enum vmio_memlend_lease_state */
    uint32_t lun;
    char lender[64];            /* lender name (host) */
    char borrower[64];          /* borrower name (host) */
    char portal[128];           /* iSCSI portal "address:port" */
    char target_iqn[224];
    int64_t lender_expiry;      /* unix seconds: the lender's lease end */
};

struct vmio_memlend_lender_info {
    char name[64];
    char portal[128];
    uint64_t exportable;        /* bytes the lender offers now */
    uint64_t lent;              /* bytes in leases */
    uint32_t available;         /* 0 once withdrawn or expired */
    int64_t expiry;             /* unix seconds */
};

/* Notices the manager pushes to a connected client. */
enum vmio_memlend_notice_type {
    VMIO_MEMLEND_NOTICE_PROVISION = 1,  /* to a lender: create a LUN for
                                           this lease, then call
                                           vmio_memlend_provided() */
    VMIO_MEMLEND_NOTICE_REVOKE = 2,     /* to a borrower: give it back */
    VMIO_MEMLEND_NOTICE_LENDER_LOST = 3,/* to a borrower: lender expired */
    VMIO_MEMLEND_NOTICE_RELEASED = 4    /* to a lender: the borrower gave
                                           the lease back */
};

struct vmio_memlend_notice {
    uint32_t type;              /* enum vmio_memlend_notice_type */
    struct vmio_memlend_lease lease;
};

/* CHAP credentials of a target, derived from the shared secret and the
 * target's IQN by lender and borrower alike. user and secret are NUL
 * terminated. */
struct vmio_memlend_chap {
    char user[64];
    char secret[48];
};
VMIO_API int vmio_memlend_chap_derive(const char *secret_file, const char *target_iqn,
                                      struct vmio_memlend_chap *out);

/* ===== manager ======================================================== */

struct vmio_memlend_manager_options {
    uint32_t struct_size;
    const char *listen;         /* "host:port"; port 0 picks one */
    const char *db_path;        /* SQLite file; created when missing */
    const char *secret_file;    /* shared secret (mode 0600) */
    uint32_t lease_seconds;     /* lender lease; 0 = 30 */
    uint32_t provision_timeout_ms; /* lender must answer PROVISION; 0 = 30000 */
    uint32_t attach_timeout_ms; /* after a restart, a READY lease not reported
                                   ATTACHED within this is given back;
                                   0 = 300000 */
};

VMIO_API int vmio_memlend_manager_new(const struct vmio_memlend_manager_options *opts,
                                      vmio_memlend_manager **out);
/* The port actually bound (useful with port 0). */
VMIO_API int vmio_memlend_manager_port(vmio_memlend_manager *m);
/* Serve until vmio_memlend_manager_stop() (from another thread or a signal
 * handler). */
VMIO_API int vmio_memlend_manager_run(vmio_memlend_manager *m);
VMIO_API void vmio_memlend_manager_stop(vmio_memlend_manager *m);
VMIO_API void vmio_memlend_manager_free(vmio_memlend_manager *m);

/* ===== client (lenders, borrowers, observers) ========================== */

/* Connect and authenticate to a manager at "host:port" as name (at most
 * 63 bytes: the host name by convention). timeout_ms bounds every call
 * (0 = 30000). */
VMIO_API int vmio_memlend_connect(const char *addr, const char *secret_file, int role,
                                  const char *name, uint32_t timeout_ms,
                                  vmio_memlend_client **out);
VMIO_API void vmio_memlend_disconnect(vmio_memlend_client *c);
/* Readable when a notice may be waiting (for poll loops). */
VMIO_API int vmio_memlend_client_fd(vmio_memlend_client *c);
/* Next pushed notice: 0 and *n filled, -ETIMEDOUT after timeout_ms (0 =
 * do not wait), -EPIPE when the manager went away. */
VMIO_API int vmio_memlend_next_notice(vmio_memlend_client *c, int timeout_ms,
                                      struct vmio_memlend_notice *n);

/* Lender calls. */
VMIO_API int vmio_memlend_register(vmio_memlend_client *c, const char *portal,
                                   uint64_t exportable);
VMIO_API int vmio_memlend_heartbeat(vmio_memlend_client *c, uint64_t exportable);
/* The lender lease (seconds) the manager announced in its answer to the
 * last register or heartbeat (0 before the first): heartbeat well within
 * it, e.g. every third of it. */
VMIO_API int vmio_memlend_lease_seconds(vmio_memlend_client *c);
VMIO_API int vmio_memlend_withdraw(vmio_memlend_client *c);
/* Answer a PROVISION notice: err 0 with the target's IQN and LUN, or a
 * positive errno when the LUN could not be made. */
VMIO_API int vmio_memlend_provided(vmio_memlend_client *c, uint64_t lease_id,
                                   const char *target_iqn, uint32_t lun, int err);
/* Ask for a lease back: the manager marks it REVOKING and tells the
 * borrower. */
VMIO_API int vmio_memlend_reclaim(vmio_memlend_client *c, uint64_t lease_id);
/* The LUN of a RELEASED (or never attached) lease is gone: forget it. */
VMIO_API int vmio_memlend_unexported(vmio_memlend_client *c, uint64_t lease_id);

/* Borrower calls. request waits until a lender made the LUN (READY). */
VMIO_API int vmio_memlend_request(vmio_memlend_client *c, uint64_t size,
                                  struct vmio_memlend_lease *out);
VMIO_API int vmio_memlend_attached(vmio_memlend_client *c, uint64_t lease_id);
VMIO_API int vmio_memlend_release(vmio_memlend_client *c, uint64_t lease_id);

/* Anyone: the manager's view. Free with vmio_memlend_status_free(). */
VMIO_API int vmio_memlend_status(vmio_memlend_client *c,
                                 struct vmio_memlend_lease **leases, size_t *nleases,
                                 struct vmio_memlend_lender_info **lenders,
                                 size_t *nlenders);
VMIO_API void vmio_memlend_status_free(struct vmio_memlend_lease *leases,
                                       struct vmio_memlend_lender_info *lenders);
VMIO_API const char *vmio_memlend_state_name(uint32_t state);

/* ===== lender ========================================================= */
/* The lender daemon's loop as a library object: connects to the manager,
 * registers, heartbeats (every lease_seconds/3), watches memory, answers
 * PROVISION by creating a tmpfs/ramfs file and an iSCSI LUN with CHAP,
 * reclaims under pressure (newest lease first) and removes a LUN only
 * once its lease is RELEASED. vmio-memlend lender is a thin wrapper. */

enum vmio_memlend_unresponsive_policy {
    VMIO_MEMLEND_UNRESPONSIVE_KEEP = 0,  /* keep the LUN, lend no more, report */
    VMIO_MEMLEND_UNRESPONSIVE_FORCE = 1  /* after the deadline, remove the LUN
                                            if no initiator is logged in to it */
};

struct vmio_memlend_lender_event {
    uint32_t type;              /* enum vmio_memlend_lender_event_type */
    uint64_t lease_id;          /* 0 when not about one lease */
    uint64_t size;              /* bytes concerned (lease size, offer, ...) */
    uint64_t latency_ns;        /* REMOVED after a reclaim: decision -> freed */
    const char *text;           /* one human-readable line, valid during the call */
};

enum vmio_memlend_lender_event_type {
    VMIO_MEMLEND_EV_REGISTERED = 1,   /* registered (or re-registered) */
    VMIO_MEMLEND_EV_OFFER = 2,        /* the offer (exportable bytes) changed */
    VMIO_MEMLEND_EV_PROVISIONED = 3,  /* a LUN was made for a lease */
    VMIO_MEMLEND_EV_REFUSED = 4,      /* PROVISION refused (ENOSPC, ...) */
    VMIO_MEMLEND_EV_PRESSURE = 5,     /* memory pressure or floor reached */
    VMIO_MEMLEND_EV_RECLAIM = 6,      /* a lease was asked back */
    VMIO_MEMLEND_EV_RELEASED = 7,     /* the borrower gave a lease back */
    VMIO_MEMLEND_EV_REMOVED = 8,      /* LUN removed, memory freed */
    VMIO_MEMLEND_EV_UNRESPONSIVE = 9, /* a borrower missed the reclaim deadline */
    VMIO_MEMLEND_EV_FORCED = 10,      /* LUN removed after the deadline (force) */
    VMIO_MEMLEND_EV_DISCONNECTED = 11,/* manager connection lost; retrying */
    VMIO_MEMLEND_EV_ERROR = 12,       /* an operation failed (text says what) */
    VMIO_MEMLEND_EV_WITHDRAWN = 13,   /* withdrawn from the manager on stop */
    VMIO_MEMLEND_EV_RESUMED = 14      /* a lease found from a previous run */
};

struct vmio_memlend_lender_options {
    uint32_t struct_size;
    const char *manager;        /* "host:port" */
    const char *secret_file;
    const char *name;           /* lender name (host name by convention) */
    const char *portal;         /* "address:port" borrowers log in to */
    const char *backend;        /* "tgt" (default) or "lio" */
    uint32_t tgt_control_port;  /* tgtadm -C; 0 = tgtd's default */
    uint32_t use_ramfs;         /* 1: ramfs instead of tmpfs */
    const char *state_dir;      /* NULL = /var/lib/vmio-memlend */
    uint64_t reserve;           /* MemAvailable never lent; 0 = 10 % (>= 512 MiB) */
    uint64_t max_lend;          /* 0 = no cap besides the surplus */
    uint32_t psi_limit_x100;    /* memory some avg10, 1/100 %; 0 = 10 % */
    uint32_t reclaim_deadline_s;/* wait for RELEASED; 0 = 300 */
    uint32_t on_unresponsive;   /* enum vmio_memlend_unresponsive_policy */
    uint32_t watch_interval_ms; /* 0 = 1000 */
    uint32_t lease_seconds;     /* heartbeat every lease_seconds/3; 0 = 30 */
    uint32_t timeout_ms;        /* manager calls and tools; 0 = 30000 */
    uint64_t hysteresis;        /* 0 = 64 MiB */
    uint64_t growth_per_s;      /* offer growth rate limit; 0 = 256 MiB/s */
    uint32_t calm_ms;           /* after pressure, before offering again; 0 = 30000 */
    uint32_t reclaim_now;       /* 1: reclaim every lease, then stop (drain) */
    const char *libvirt_uri;    /* sample these guests' memory stats; NULL = no */
    const char *meminfo_path;   /* NULL = /proc/meminfo (tests) */
    const char *psi_path;       /* NULL = /proc/pressure/memory; "" = none */
    const char *configfs;       /* LIO: NULL = /sys/kernel/config */
    void (*on_event)(void *opaque, const struct vmio_memlend_lender_event *ev);
    void *opaque;
};

struct vmio_memlend_lender_stats {
    uint32_t struct_size;
    uint32_t leases;            /* leases held now */
    uint64_t lent;              /* bytes in them */
    uint64_t resident;          /* of which written by borrowers */
    uint64_t offer;             /* bytes offered now */
    uint64_t mem_total, mem_available;
    uint32_t psi_some_avg10_x100;
    uint32_t lending_stopped;   /* 1 after an unresponsive borrower */
    uint64_t provisioned, refused, reclaims, removed, unresponsive, forced;
    uint64_t reclaim_last_ns;   /* decision to freed memory, last */
    uint64_t reclaim_max_ns;
    uint64_t reclaim_total_ns;  /* sum over `removed after reclaim` */
    uint64_t reclaim_count;
};

VMIO_API int vmio_memlend_lender_new(const struct vmio_memlend_lender_options *opts,
                                     vmio_memlend_lender **out);
/* Serve until vmio_memlend_lender_stop() (or, with reclaim_now, until
 * every lease is gone). On stop it withdraws from the manager when no
 * lease is left; leases still lent stay exported (a restarted lender
 * with the same name and state dir resumes them). */
VMIO_API int vmio_memlend_lender_run(vmio_memlend_lender *l);
/* Async-signal-safe. */
VMIO_API void vmio_memlend_lender_stop(vmio_memlend_lender *l);
/* Ask every lease back now (as under pressure). Async-signal-safe. */
VMIO_API void vmio_memlend_lender_reclaim_all(vmio_memlend_lender *l);
/* Any thread; set st->struct_size first. */
VMIO_API int vmio_memlend_lender_get_stats(vmio_memlend_lender *l,
                                           struct vmio_memlend_lender_stats *st);
VMIO_API void vmio_memlend_lender_free(vmio_memlend_lender *l);
VMIO_API const char *vmio_memlend_lender_event_name(uint32_t type);

/* ===== borrower (vmio-swap) =========================================== */
/* A borrower moves swap LVs between its local PVs and LUNs borrowed from
 * lenders. Its state lives in LVM (PV tags vmio_lease_<id> and
 * vmio_lender_<name>), so status works after a restart without a manager.
 * Needs json-c at build time (else -ENOTSUP), root, lvm2 and open-iscsi. */
typedef struct vmio_memlend_borrower vmio_memlend_borrower;

struct vmio_memlend_borrower_options {
    uint32_t struct_size;
    const char *manager;        /* "host:port"; NULL: LVM only (status) */
    const char *secret_file;    /* shared secret: manager + CHAP */
    const char *name;           /* borrower name; NULL = host name */
    uint32_t timeout_ms;        /* manager calls; 0 = 30000 */
    uint32_t tool_timeout_ms;   /* each iscsiadm/lvm run; 0 = 120000 */
    uint32_t move_timeout_ms;   /* each pvmove / raid resync; 0 = 3600000 */
    uint32_t replacement_timeout_s; /* iSCSI: fail I/O of a dead lender
                                       after this long; 0 = 5 */
    const char *sysfs_root;     /* NULL = "/sys" */
};

VMIO_API int vmio_memlend_borrower_new(const struct vmio_memlend_borrower_options *opts,
                                       vmio_memlend_borrower **out);
VMIO_API void vmio_memlend_borrower_free(vmio_memlend_borrower *b);

/* Mirrored mode: two leases from two different lenders, vg/lv becomes an
 * LVM raid1 across them (one lender's death loses nothing). */
#define VMIO_MEMLEND_SWAP_MIRROR 1u

/* Borrow size bytes (0: the LV's size plus LVM's overhead) and move vg/lv
 * onto it while it is in use: request -> iSCSI login (CHAP) -> pvcreate ->
 * vgextend -> PV tags -> pvmove (raid1 conversion when mirrored) ->
 * attached. On failure every step done is undone. lease_ids[0..1] receive
 * the lease(s); returns how many (1, or 2 when mirrored). */
VMIO_API int vmio_memlend_swap_attach(vmio_memlend_borrower *b, const char *vg,
                                      const char *lv, uint64_t size, uint32_t flags,
                                      uint64_t lease_ids[2]);
/* Give back lease_id (0: every borrowed PV of vg; vg NULL: of every VG):
 * move its LVs back to the local PVs, vgreduce, pvremove, logout, release.
 * Returns the number of leases given back. */
VMIO_API int vmio_memlend_swap_detach(vmio_memlend_borrower *b, const char *vg,
                                      uint64_t lease_id);

/* Where an LV lives: one entry per (LV, PV). */
struct vmio_memlend_swap_place {
    char vg[128];
    char lv[128];
    char pv[256];               /* "/dev/sdb"; "[unknown]" when missing */
    char segtype[32];           /* "linear", "raid1", ... */
    uint64_t bytes;             /* of the LV on this PV */
    uint64_t lease;             /* 0: a local PV */
    char lender[64];
    char target_iqn[224];       /* from sysfs, "" when unknown */
    uint32_t state;             /* the manager's lease state; 0 unknown */
    uint32_t missing;           /* the PV is missing: data at risk */
};
/* Every LV of vg (NULL: of every VG) that has extents on a borrowed PV,
 * with all its PVs, and borrowed PVs that hold no LV (lv ""). */
VMIO_API int vmio_memlend_swap_status(vmio_memlend_borrower *b, const char *vg,
                                      struct vmio_memlend_swap_place **out, size_t *n);
VMIO_API void vmio_memlend_swap_status_free(struct vmio_memlend_swap_place *p);

/* Agent events (the library never prints: the caller reports them). */
enum vmio_memlend_swap_event {
    VMIO_MEMLEND_SWAP_EV_REVOKE = 1,        /* a lease is being given back */
    VMIO_MEMLEND_SWAP_EV_DETACHED = 2,      /* ... and was */
    VMIO_MEMLEND_SWAP_EV_LENDER_LOST = 3,   /* a lender died */
    VMIO_MEMLEND_SWAP_EV_DATA_LOST = 4,     /* plain mode: extents lost */
    VMIO_MEMLEND_SWAP_EV_LEG_DROPPED = 5,   /* mirrored: dead leg replaced */
    VMIO_MEMLEND_SWAP_EV_ERROR = 6,
    VMIO_MEMLEND_SWAP_EV_CONNECTED = 7
};
typedef void (*vmio_memlend_swap_event_fn)(void *ctx, int event, uint64_t lease,
                                           const char *detail);
/* Serve the manager's notices until vmio_memlend_swap_agent_stop(): a
 * REVOKE detaches that lease, LENDER_LOST drops a dead raid1 leg (rebuilt
 * on the local PVs) or, for a plain LV, reports which LV lost which
 * extents. Reconnects when the manager goes away. */
VMIO_API int vmio_memlend_swap_agent(vmio_memlend_borrower *b, vmio_memlend_swap_event_fn fn,
                                     void *ctx);
/* Async-signal-safe. */
VMIO_API void vmio_memlend_swap_agent_stop(vmio_memlend_borrower *b);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_MEMLEND_H */
