/* The manager's SQLite database (see db.h). Schema version in
 * PRAGMA user_version; WAL with synchronous=FULL so that a change the
 * manager answered survives a crash; exclusive locking so that two
 * managers never share one file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/internal.h"
#include "memlend/db.h"

struct vmio_ml_db {
    sqlite3 *h;
    char path[512];
};

static const char schema_v1[] =
    "CREATE TABLE lenders ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  portal TEXT NOT NULL,"
    "  exportable INTEGER NOT NULL CHECK (exportable >= 0),"
    "  available INTEGER NOT NULL CHECK (available IN (0, 1)),"
    "  withdrawn INTEGER NOT NULL CHECK (withdrawn IN (0, 1)),"
    "  expiry INTEGER NOT NULL"
    ");"
    "CREATE TABLE leases ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  lender TEXT NOT NULL REFERENCES lenders(name),"
    "  borrower TEXT NOT NULL,"
    "  size INTEGER NOT NULL CHECK (size > 0),"
    "  state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 6),"
    "  portal TEXT NOT NULL,"
    "  target_iqn TEXT NOT NULL DEFAULT '',"
    "  lun INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX leases_lender ON leases(lender);"
    "CREATE INDEX leases_borrower ON leases(borrower);"
    "PRAGMA user_version = 1;";

static int db_err(const char *api, struct vmio_ml_db *db, const char *what)
{
    int code = sqlite3_errcode(db->h);
    int err = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? EBUSY
              : code == SQLITE_FULL                          ? ENOSPC
              : code == SQLITE_NOMEM                         ? ENOMEM
                                                             : EIO;
    return vmio_set_error(api, err, "database %s: %s: %s", db->path, what, sqlite3_errmsg(db->h));
}

static int exec(const char *api, struct vmio_ml_db *db, const char *sql)
{
    if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_err(api, db, sql);
    return 0;
}

static int prepare(const char *api, struct vmio_ml_db *db, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(db->h, sql, -1, st, NULL) != SQLITE_OK)
        return db_err(api, db, "prepare");
    return 0;
}

/* Run a statement that returns no rows; finalizes it. */
static int step_done(const char *api, struct vmio_ml_db *db, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int r = rc == SQLITE_DONE ? 0 : db_err(api, db, what);
    sqlite3_finalize(st);
    return r;
}

static void copy_text(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

int vmio_ml_db_begin(const char *api, struct vmio_ml_db *db)
{
    return exec(api, db, "BEGIN IMMEDIATE");
}

int vmio_ml_db_commit(const char *api, struct vmio_ml_db *db)
{
    return exec(api, db, "COMMIT");
}

void vmio_ml_db_rollback(struct vmio_ml_db *db)
{
    if (!sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

static int user_version(const char *api, struct vmio_ml_db *db, int *v)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, "PRAGMA user_version", &st);
    if (r < 0)
        return r;
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = db_err(api, db, "reading the schema version");
        sqlite3_finalize(st);
        return r;
    }
    *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int vmio_ml_db_open(const char *api, const char *path, struct vmio_ml_db **out)
{
    struct vmio_ml_db *db = calloc(1, sizeof *db);
    if (!db)
        return vmio_set_error(api, ENOMEM, "out of memory");
    snprintf(db->path, sizeof db->path, "%s", path);
    int r;
    if (sqlite3_open_v2(path, &db->h,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        r = db->h ? db_err(api, db, "open")
                  : vmio_set_error(api, ENOMEM, "database %s: out of memory", path);
        goto fail;
    }
    sqlite3_busy_timeout(db->h, 0);
    sqlite3_extended_result_codes(db->h, 0);
    /* Exclusive locking first: WAL then needs no shared memory file and the
     * lock taken by the first write is kept until close. */
    if ((r = exec(api, db, "PRAGMA locking_mode = EXCLUSIVE")) < 0 ||
        (r = exec(api, db, "PRAGMA journal_mode = WAL")) < 0 ||
        (r = exec(api, db, "PRAGMA synchronous = FULL")) < 0 ||
        (r = exec(api, db, "PRAGMA foreign_keys = ON")) < 0 ||
        (r = exec(api, db, "BEGIN EXCLUSIVE")) < 0) {
        if (r == -EBUSY)
            r = vmio_set_error(api, EBUSY, "database %s is in use by another manager", path);
        goto fail;
    }
    int v = 0;
    if ((r = user_version(api, db, &v)) < 0)
        goto fail;
    if (v == 0) {
        /* A new file, or one that is not ours: refuse the latter. */
        sqlite3_stmt *st;
        if ((r = prepare(api, db, "SELECT count(*) FROM sqlite_master", &st)) < 0)
            goto fail;
        int objects = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (objects != 0) {
            r = vmio_set_error(api, EINVAL,
                               "database %s has tables but no memlend schema version: "
                               "not a memlend manager database",
                               path);
            goto fail;
        }
        if ((r = exec(api, db, schema_v1)) < 0)
            goto fail;
    } else if (v > VMIO_ML_DB_SCHEMA) {
        r = vmio_set_error(api, ENOTSUP,
                           "database %s has schema version %d; this manager knows up to %d",
                           path, v, VMIO_ML_DB_SCHEMA);
        goto fail;
    }
    if ((r = vmio_ml_db_commit(api, db)) < 0)
        goto fail;
    *out = db;
    return 0;
fail:
    if (db->h) {
        vmio_ml_db_rollback(db);
        sqlite3_close(db->h);
    }
    free(db);
    return r;
}

void vmio_ml_db_close(struct vmio_ml_db *db)
{
    if (!db)
        return;
    vmio_ml_db_rollback(db);
    sqlite3_close(db->h);
    free(db);
}

int vmio_ml_db_recover(const char *api, struct vmio_ml_db *db, int64_t now, int64_t grace_s)
{
    int r = vmio_ml_db_begin(api, db);
    if (r < 0)
        return r;
    sqlite3_stmt *st;
    if ((r = prepare(api, db, "DELETE FROM leases WHERE state = ?", &st)) < 0)
        goto fail;
    sqlite3_bind_int(st, 1, VMIO_MEMLEND_PENDING);
    if ((r = step_done(api, db, st, "deleting pending leases")) < 0)
        goto fail;
    int deleted = sqlite3_changes(db->h);
    if ((r = prepare(api, db, "UPDATE lenders SET expiry = max(expiry, ?) WHERE available = 1",
                     &st)) < 0)
        goto fail;
    sqlite3_bind_int64(st, 1, now + grace_s);
    if ((r = step_done(api, db, st, "extending lender leases")) < 0)
        goto fail;
    if ((r = vmio_ml_db_commit(api, db)) < 0)
        goto fail;
    return deleted;
fail:
    vmio_ml_db_rollback(db);
    return r;
}

#define LENDER_COLS                                                                      \
    "SELECT name, portal, exportable, available, withdrawn, expiry,"                     \
    " (SELECT coalesce(sum(size), 0) FROM leases WHERE leases.lender = lenders.name)" \
    " FROM lenders"

static void lender_row(sqlite3_stmt *st, struct vmio_ml_lender_row *l)
{
    memset(l, 0, sizeof *l);
    copy_text(l->name, sizeof l->name, st, 0);
    copy_text(l->portal, sizeof l->portal, st, 1);
    l->exportable = (uint64_t)sqlite3_column_int64(st, 2);
    l->available = (uint32_t)sqlite3_column_int(st, 3);
    l->withdrawn = (uint32_t)sqlite3_column_int(st, 4);
    l->expiry = sqlite3_column_int64(st, 5);
    l->lent = (uint64_t)sqlite3_column_int64(st, 6);
}

int vmio_ml_db_lender_get(const char *api, struct vmio_ml_db *db, const char *name,
                          struct vmio_ml_lender_row *out)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, LENDER_COLS " WHERE name = ?", &st);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        lender_row(st, out);
        r = 1;
    } else if (rc == SQLITE_DONE) {
        r = 0;
    } else {
        r = db_err(api, db, "reading a lender");
    }
    sqlite3_finalize(st);
    return r;
}

int vmio_ml_db_lender_put(const char *api, struct vmio_ml_db *db,
                          const struct vmio_ml_lender_row *l)
{
    sqlite3_stmt *st;
    int r = prepare(api, db,
                    "INSERT INTO lenders (name, portal, exportable, available, withdrawn, expiry)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET"
                    " portal = ?2, exportable = ?3, available = ?4, withdrawn = ?5, expiry = ?6",
                    &st);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, l->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, l->portal, -1, SQLITE_TRANSIENT);
    /* Stored signed: clamp what SQLite cannot hold. */
    sqlite3_bind_int64(st, 3, (sqlite3_int64)VMIO_MIN(l->exportable, (uint64_t)INT64_MAX));
    sqlite3_bind_int(st, 4, l->available ? 1 : 0);
    sqlite3_bind_int(st, 5, l->withdrawn ? 1 : 0);
    sqlite3_bind_int64(st, 6, l->expiry);
    return step_done(api, db, st, "writing a lender");
}

int vmio_ml_db_lenders(const char *api, struct vmio_ml_db *db, struct vmio_ml_lender_row **out,
                       size_t *n)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, LENDER_COLS " ORDER BY name", &st);
    if (r < 0)
        return r;
    struct vmio_ml_lender_row *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            struct vmio_ml_lender_row *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                sqlite3_finalize(st);
                return vmio_set_error(api, ENOMEM, "out of memory");
            }
            v = nv;
        }
        lender_row(st, &v[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        r = db_err(api, db, "listing lenders");
        free(v);
        sqlite3_finalize(st);
        return r;
    }
    sqlite3_finalize(st);
    *out = v;
    *n = cnt;
    return 0;
}

int vmio_ml_db_lease_new(const char *api, struct vmio_ml_db *db, const char *lender,
                         const char *borrower, uint64_t size, const char *portal, uint64_t *id)
{
    sqlite3_stmt *st;
    int r = prepare(api, db,
                    "INSERT INTO leases (lender, borrower, size, state, portal)"
                    " VALUES (?, ?, ?, ?, ?)",
                    &st);
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, lender, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, borrower, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
    sqlite3_bind_int(st, 4, VMIO_MEMLEND_PENDING);
    sqlite3_bind_text(st, 5, portal, -1, SQLITE_TRANSIENT);
    if ((r = step_done(api, db, st, "creating a lease")) < 0)
        return r;
    *id = (uint64_t)sqlite3_last_insert_rowid(db->h);
    return 0;
}

#define LEASE_COLS                                                                  \
    "SELECT l.id, l.size, l.state, l.lun, l.lender, l.borrower, l.portal,"          \
    " l.target_iqn, coalesce(d.expiry, 0) FROM leases l LEFT JOIN lenders d ON"     \
    " d.name = l.lender"

static void lease_row(sqlite3_stmt *st, struct vmio_memlend_lease *l)
{
    memset(l, 0, sizeof *l);
    l->id = (uint64_t)sqlite3_column_int64(st, 0);
    l->size = (uint64_t)sqlite3_column_int64(st, 1);
    l->state = (uint32_t)sqlite3_column_int(st, 2);
    l->lun = (uint32_t)sqlite3_column_int64(st, 3);
    copy_text(l->lender, sizeof l->lender, st, 4);
    copy_text(l->borrower, sizeof l->borrower, st, 5);
    copy_text(l->portal, sizeof l->portal, st, 6);
    copy_text(l->target_iqn, sizeof l->target_iqn, st, 7);
    l->lender_expiry = sqlite3_column_int64(st, 8);
}

int vmio_ml_db_lease_get(const char *api, struct vmio_ml_db *db, uint64_t id,
                         struct vmio_memlend_lease *out)
{
    if (id > INT64_MAX)
        return 0;
    sqlite3_stmt *st;
    int r = prepare(api, db, LEASE_COLS " WHERE l.id = ?", &st);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        lease_row(st, out);
        r = 1;
    } else if (rc == SQLITE_DONE) {
        r = 0;
    } else {
        r = db_err(api, db, "reading a lease");
    }
    sqlite3_finalize(st);
    return r;
}

int vmio_ml_db_lease_set_state(const char *api, struct vmio_ml_db *db, uint64_t id,
                               uint32_t state)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, "UPDATE leases SET state = ? WHERE id = ?", &st);
    if (r < 0)
        return r;
    sqlite3_bind_int(st, 1, (int)state);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    return step_done(api, db, st, "updating a lease");
}

int vmio_ml_db_lease_set_ready(const char *api, struct vmio_ml_db *db, uint64_t id,
                               const char *target_iqn, uint32_t lun)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, "UPDATE leases SET state = ?, target_iqn = ?, lun = ? WHERE id = ?",
                    &st);
    if (r < 0)
        return r;
    sqlite3_bind_int(st, 1, VMIO_MEMLEND_READY);
    sqlite3_bind_text(st, 2, target_iqn, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, lun);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)id);
    return step_done(api, db, st, "updating a lease");
}

int vmio_ml_db_lease_delete(const char *api, struct vmio_ml_db *db, uint64_t id)
{
    sqlite3_stmt *st;
    int r = prepare(api, db, "DELETE FROM leases WHERE id = ?", &st);
    if (r < 0)
        return r;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return step_done(api, db, st, "deleting a lease");
}

int vmio_ml_db_leases(const char *api, struct vmio_ml_db *db, const char *lender,
                      const char *borrower, uint32_t state, struct vmio_memlend_lease **out,
                      size_t *n)
{
    sqlite3_stmt *st;
    int r = prepare(api, db,
                    LEASE_COLS " WHERE (?1 IS NULL OR l.lender = ?1) AND"
                               " (?2 IS NULL OR l.borrower = ?2) AND (?3 = 0 OR l.state = ?3)"
                               " ORDER BY l.id",
                    &st);
    if (r < 0)
        return r;
    if (lender)
        sqlite3_bind_text(st, 1, lender, -1, SQLITE_TRANSIENT);
    if (borrower)
        sqlite3_bind_text(st, 2, borrower, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, (int)state);
    struct vmio_memlend_lease *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            struct vmio_memlend_lease *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                sqlite3_finalize(st);
                return vmio_set_error(api, ENOMEM, "out of memory");
            }
            v = nv;
        }
        lease_row(st, &v[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        r = db_err(api, db, "listing leases");
        free(v);
        sqlite3_finalize(st);
        return r;
    }
    sqlite3_finalize(st);
    *out = v;
    *n = cnt;
    return 0;
}

int vmio_ml_db_lease_count(const char *api, struct vmio_ml_db *db, const char *lender,
                           int unreleased_only)
{
    sqlite3_stmt *st;
    int r = prepare(api, db,
                    "SELECT count(*) FROM leases WHERE (?1 IS NULL OR lender = ?1) AND"
                    " (?2 = 0 OR state <> ?3)",
                    &st);
    if (r < 0)
        return r;
    if (lender)
        sqlite3_bind_text(st, 1, lender, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, unreleased_only);
    sqlite3_bind_int(st, 3, VMIO_MEMLEND_RELEASED);
    if (sqlite3_step(st) == SQLITE_ROW)
        r = sqlite3_column_int(st, 0);
    else
        r = db_err(api, db, "counting leases");
    sqlite3_finalize(st);
    return r;
}
