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
/* (section owned by the lender implementation) */

/* ===== borrower (vmio-swap) =========================================== */
/* (section owned by the borrower implementation) */

#ifdef __cplusplus
}
#endif

#endif /* VMIO_MEMLEND_H */
