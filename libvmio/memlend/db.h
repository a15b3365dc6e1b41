/* The memory-lending manager's database (SQLite): lenders and leases,
 * versioned schema, write-ahead log, one transaction per change. Used by
 * manager.c only. Every function takes the caller's API name for its error
 * messages and returns 0 (or a count / found flag) or a negative errno. */
#ifndef VMIO_MEMLEND_DB_H
#define VMIO_MEMLEND_DB_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/memlend.h>

#define VMIO_ML_DB_SCHEMA 1

struct vmio_ml_db;

struct vmio_ml_lender_row {
    char name[64];
    char portal[128];
    uint64_t exportable;
    uint64_t lent;          /* computed: sum of the lender's lease sizes */
    uint32_t available;
    uint32_t withdrawn;
    int64_t expiry;
};

/* Open (creating when missing) and take the database for this process
 * alone (another manager on the same file fails with -EBUSY). */
int vmio_ml_db_open(const char *api, const char *path, struct vmio_ml_db **out);
void vmio_ml_db_close(struct vmio_ml_db *db);

int vmio_ml_db_begin(const char *api, struct vmio_ml_db *db);
int vmio_ml_db_commit(const char *api, struct vmio_ml_db *db);
void vmio_ml_db_rollback(struct vmio_ml_db *db);

/* Manager start: delete PENDING leases (nobody waits for them any more)
 * and give every available lender at least grace_s seconds to come back.
 * Returns the number of PENDING leases deleted. */
int vmio_ml_db_recover(const char *api, struct vmio_ml_db *db, int64_t now, int64_t grace_s);

/* 1 and *out filled when found, 0 when not. */
int vmio_ml_db_lender_get(const char *api, struct vmio_ml_db *db, const char *name,
                          struct vmio_ml_lender_row *out);
/* Insert or replace (lent is ignored). */
int vmio_ml_db_lender_put(const char *api, struct vmio_ml_db *db,
                          const struct vmio_ml_lender_row *l);
/* All lenders ordered by name; *out malloc'd (NULL when none). */
int vmio_ml_db_lenders(const char *api, struct vmio_ml_db *db, struct vmio_ml_lender_row **out,
                       size_t *n);

/* New PENDING lease; *id gets its id (never reused). */
int vmio_ml_db_lease_new(const char *api, struct vmio_ml_db *db, const char *lender,
                         const char *borrower, uint64_t size, const char *portal, uint64_t *id);
/* 1 and *out filled (lender_expiry from the lender's row), 0 when not found. */
int vmio_ml_db_lease_get(const char *api, struct vmio_ml_db *db, uint64_t id,
                         struct vmio_memlend_lease *out);
int vmio_ml_db_lease_set_state(const char *api, struct vmio_ml_db *db, uint64_t id,
                               uint32_t state);
int vmio_ml_db_lease_set_ready(const char *api, struct vmio_ml_db *db, uint64_t id,
                               const char *target_iqn, uint32_t lun);
int vmio_ml_db_lease_delete(const char *api, struct vmio_ml_db *db, uint64_t id);
/* Leases ordered by id, filtered by lender and/or borrower (NULL: any) and
 * state (0: any). *out malloc'd (NULL when none). */
int vmio_ml_db_leases(const char *api, struct vmio_ml_db *db, const char *lender,
                      const char *borrower, uint32_t state, struct vmio_memlend_lease **out,
                      size_t *n);
/* Number of leases (all states), and of a lender's leases not RELEASED. */
int vmio_ml_db_lease_count(const char *api, struct vmio_ml_db *db, const char *lender,
                           int unreleased_only);

#endif
