/* Lender target backend for tgt (the userspace target daemon): every
 * change goes through tgtadm (spawned with argv, never a shell; -C for a
 * private control port) and the state is read back from `tgtadm --op
 * show`, parsed strictly. One target per lease, LUN 1 (tgt keeps LUN 0
 * for its controller), a CHAP account bound to it, initiator-address ALL
 * (CHAP is what admits a borrower). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/spawn.h"
#include "memlend/target.h"

#define MAX_ARGS 24

/* Run tgtadm [-C port] --lld iscsi ARGS...; NULL-terminated tail. */
static int tgtadm(struct vmio_ml_target *t, const char *api, const char *const *tail,
                  struct vmio_spawn_result *r)
{
    const char *argv[MAX_ARGS];
    char port[16];
    size_t n = 0;
    argv[n++] = "tgtadm";
    if (t->tgt_control_port) {
        snprintf(port, sizeof port, "%u", t->tgt_control_port);
        argv[n++] = "-C";
        argv[n++] = port;
    }
    argv[n++] = "--lld";
    argv[n++] = "iscsi";
    while (*tail && n < MAX_ARGS - 1)
        argv[n++] = *tail++;
    argv[n] = NULL;
    return vmio_spawn_check(api, argv, t->timeout_ms, r);
}

/* Lines of show output: indentation and the text after it. */
static size_t indent_of(const char *line)
{
    size_t i = 0;
    while (line[i] == ' ')
        i++;
    return i;
}

static int parse_u32(const char *s, const char *end, uint32_t *out)
{
    uint64_t v = 0;
    if (s == end)
        return -1;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int vmio_ml_tgt_parse_show(const char *api, const char *text, struct vmio_ml_target_entry **out,
                           uint32_t **tids_out, size_t *n_out)
{
    enum { S_NONE, S_SYS, S_NEXUS, S_LUN, S_ACCOUNT, S_ACL } sec = S_NONE;
    struct vmio_ml_target_entry *ents = NULL;
    uint32_t *tids = NULL;
    size_t n = 0, cap = 0;
    uint32_t cur_lun = 0;
    int in_lun = 0;
    unsigned lineno = 0;
    const char *line = text;
    int err = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        lineno++;
        size_t ind = indent_of(line);
        const char *p = line + ind;
        size_t len = (size_t)(end - p);
        if (len == 0 && ind == (size_t)(end - line) && ind > 0) {
            /* "Backing store flags: " may be followed by nothing; an
             * all-blank line is never produced, but is harmless. */
        } else if (ind == 0) {
            /* "Target N: IQN" */
            const char *colon = memchr(p, ':', len);
            uint32_t tid;
            if (len < 10 || strncmp(p, "Target ", 7) != 0 || !colon ||
                parse_u32(p + 7, colon, &tid) < 0 || colon + 2 > end || colon[1] != ' ' ||
                (size_t)(end - colon - 2) >= sizeof ents->iqn || end == colon + 2) {
                err = 1;
                break;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 8;
                void *ne = realloc(ents, nc * sizeof *ents);
                if (!ne) {
                    err = 2;
                    break;
                }
                ents = ne;
                void *nt = realloc(tids, nc * sizeof *tids);
                if (!nt) {
                    err = 2;
                    break;
                }
                tids = nt;
                cap = nc;
            }
            memset(&ents[n], 0, sizeof ents[n]);
            memcpy(ents[n].iqn, colon + 2, (size_t)(end - colon - 2));
            tids[n] = tid;
            n++;
            sec = S_NONE;
            in_lun = 0;
        } else if (n == 0) {
            err = 1;
            break;
        } else if (ind == 4) {
            if (len == 19 && strncmp(p, "System information:", 19) == 0)
                sec = S_SYS;
            else if (len == 22 && strncmp(p, "I_T nexus information:", 22) == 0)
                sec = S_NEXUS;
            else if (len == 16 && strncmp(p, "LUN information:", 16) == 0)
                sec = S_LUN;
            else if (len == 20 && strncmp(p, "Account information:", 20) == 0)
                sec = S_ACCOUNT;
            else if (len == 16 && strncmp(p, "ACL information:", 16) == 0)
                sec = S_ACL;
            else {
                err = 1;
                break;
            }
            in_lun = 0;
        } else if (sec == S_NONE) {
            err = 1;
            break;
        } else if (sec == S_NEXUS && ind == 8) {
            uint32_t id;
            if (len < 12 || strncmp(p, "I_T nexus: ", 11) != 0 || parse_u32(p + 11, end, &id) < 0) {
                err = 1;
                break;
            }
            ents[n - 1].sessions++;
        } else if (sec == S_LUN && ind == 8) {
            if (len < 6 || strncmp(p, "LUN: ", 5) != 0 || parse_u32(p + 5, end, &cur_lun) < 0) {
                err = 1;
                break;
            }
            in_lun = 1;
        } else if (sec == S_LUN && ind == 12 && len >= 20 &&
                   strncmp(p, "Backing store path: ", 20) == 0) {
            if (!in_lun) {
                err = 1;
                break;
            }
            size_t bl = len - 20;
            /* The first LUN with a backing file is the lease's LUN (LUN 0
             * is tgt's controller, "None"). */
            if (cur_lun != 0 && !ents[n - 1].backing[0] && !(bl == 4 && !strncmp(p + 20, "None", 4))) {
                if (bl >= sizeof ents->backing) {
                    err = 1;
                    break;
                }
                memcpy(ents[n - 1].backing, p + 20, bl);
                ents[n - 1].backing[bl] = '\0';
                ents[n - 1].lun = cur_lun;
            }
        } else if ((sec == S_LUN && ind >= 12 && in_lun) || (sec == S_NEXUS && ind >= 12) ||
                   (sec == S_SYS && ind == 8) || ((sec == S_ACCOUNT || sec == S_ACL) && ind == 8)) {
            /* details we do not need */
        } else {
            err = 1;
            break;
        }
        if (!*end)
            break;
        line = end + 1;
    }
    if (err) {
        free(ents);
        free(tids);
        if (err == 2)
            return vmio_set_error(api, ENOMEM, "out of memory");
        const char *end = strchr(line, '\n');
        int l = end ? (int)(end - line) : (int)strlen(line);
        return vmio_set_error(api, EPROTO, "tgtadm --op show, line %u: unexpected '%.*s'",
                              lineno, l > 80 ? 80 : l, line);
    }
    *out = ents;
    if (tids_out)
        *tids_out = tids;
    else
        free(tids);
    *n_out = n;
    return 0;
}

static int show(struct vmio_ml_target *t, const char *api, struct vmio_ml_target_entry **ents,
                uint32_t **tids, size_t *n)
{
    static const char *const tail[] = {"--mode", "target", "--op", "show", NULL};
    struct vmio_spawn_result r;
    int ret = tgtadm(t, api, tail, &r);
    if (ret == 0)
        ret = vmio_ml_tgt_parse_show(api, r.out, ents, tids, n);
    vmio_spawn_result_free(&r);
    return ret;
}

/* tid of target iqn, or -ENOENT (no message recorded). */
static int find(struct vmio_ml_target *t, const char *api, const char *iqn, uint32_t *tid,
                uint32_t *next_tid, uint32_t *sessions)
{
    struct vmio_ml_target_entry *e;
    uint32_t *tids;
    size_t n;
    int r = show(t, api, &e, &tids, &n);
    if (r < 0)
        return r;
    uint32_t max = 0;
    r = -ENOENT;
    for (size_t i = 0; i < n; i++) {
        if (tids[i] > max)
            max = tids[i];
        if (strcmp(e[i].iqn, iqn) == 0) {
            *tid = tids[i];
            if (sessions)
                *sessions = e[i].sessions;
            r = 0;
        }
    }
    if (next_tid)
        *next_tid = max + 1;
    free(e);
    free(tids);
    return r;
}

static int tgt_sessions(struct vmio_ml_target *t, const char *api, const char *iqn)
{
    uint32_t tid, s;
    int r = find(t, api, iqn, &tid, NULL, &s);
    if (r == -ENOENT)
        return vmio_set_error(api, ENOENT, "tgt: no target %s", iqn);
    return r < 0 ? r : (int)s;
}

static int delete_target(struct vmio_ml_target *t, const char *api, uint32_t tid)
{
    char tids[16];
    snprintf(tids, sizeof tids, "%u", tid);
    const char *const tail[] = {"--mode", "target", "--op", "delete", "--tid", tids, NULL};
    return tgtadm(t, api, tail, NULL);
}

static int delete_account(struct vmio_ml_target *t, const char *api, const char *user)
{
    const char *const tail[] = {"--mode", "account", "--op", "delete", "--user", user, NULL};
    return tgtadm(t, api, tail, NULL);
}

static int tgt_create(struct vmio_ml_target *t, const char *api, const char *iqn, uint32_t lun,
                      const char *backing, uint64_t size, const struct vmio_memlend_chap *chap)
{
    (void)size; /* tgt takes the size from the backing file */
    uint32_t tid, next;
    int r = find(t, api, iqn, &tid, &next, NULL);
    if (r == 0)
        return vmio_set_error(api, EEXIST, "tgt: target %s exists already (tid %u)", iqn, tid);
    if (r != -ENOENT)
        return r;
    char tids[16], luns[16];
    snprintf(tids, sizeof tids, "%u", next);
    snprintf(luns, sizeof luns, "%u", lun);
    {
        const char *const tail[] = {"--mode", "target", "--op", "new", "--tid", tids,
                                    "--targetname", iqn, NULL};
        if ((r = tgtadm(t, api, tail, NULL)) < 0)
            return r;
    }
    int have_account = 0;
    {
        const char *const tail[] = {"--mode", "logicalunit", "--op", "new", "--tid", tids,
                                    "--lun", luns, "--backing-store", backing, NULL};
        if ((r = tgtadm(t, api, tail, NULL)) < 0)
            goto undo;
    }
    {
        const char *const tail[] = {"--mode", "account", "--op", "new", "--user", chap->user,
                                    "--password", chap->secret, NULL};
        if ((r = tgtadm(t, api, tail, NULL)) < 0)
            goto undo;
        have_account = 1;
    }
    {
        const char *const tail[] = {"--mode", "account", "--op", "bind", "--tid", tids,
                                    "--user", chap->user, NULL};
        if ((r = tgtadm(t, api, tail, NULL)) < 0)
            goto undo;
    }
    {
        const char *const tail[] = {"--mode", "target", "--op", "bind", "--tid", tids,
                                    "--initiator-address", "ALL", NULL};
        if ((r = tgtadm(t, api, tail, NULL)) < 0)
            goto undo;
    }
    return 0;
undo:;
    struct vmio_error_copy saved;
    vmio_error_save(&saved);
    delete_target(t, api, next);
    if (have_account)
        delete_account(t, api, chap->user);
    vmio_error_restore(&saved);
    return r;
}

static int tgt_remove(struct vmio_ml_target *t, const char *api, const char *iqn)
{
    uint32_t tid, s;
    int r = find(t, api, iqn, &tid, NULL, &s);
    if (r == -ENOENT)
        return vmio_set_error(api, ENOENT, "tgt: no target %s", iqn);
    if (r < 0)
        return r;
    if (s > 0)
        return vmio_set_error(api, EBUSY, "tgt: target %s: %u initiator(s) logged in", iqn, s);
    /* The account's name is in the show output only by user; find the one
     * bound to this target before the target goes. */
    char tids[16];
    snprintf(tids, sizeof tids, "%u", tid);
    const char *const tail[] = {"--mode", "target", "--op", "show", NULL};
    struct vmio_spawn_result res;
    char users[4][64];
    size_t nusers = 0;
    if ((r = tgtadm(t, api, tail, &res)) < 0)
        return r;
    /* Walk to our target's "Account information:" block. */
    char head[256];
    snprintf(head, sizeof head, "Target %u: %s\n", tid, iqn);
    const char *p = strstr(res.out, head);
    if (p) {
        p = strstr(p, "\n    Account information:\n");
        const char *stop = strstr(p ? p : res.out, "\n    ACL information:");
        if (p && stop) {
            p += strlen("\n    Account information:\n");
            while (p < stop && nusers < 4) {
                const char *e = strchr(p, '\n');
                if (!e || e > stop)
                    e = stop;
                if (e - p > 8 && strncmp(p, "        ", 8) == 0) {
                    size_t l = (size_t)(e - p - 8);
                    const char *u = p + 8;
                    const char *sp = memchr(u, ' ', l); /* "user (outgoing)" */
                    if (sp)
                        l = (size_t)(sp - u);
                    if (l < sizeof users[0]) {
                        memcpy(users[nusers], u, l);
                        users[nusers][l] = '\0';
                        nusers++;
                    }
                }
                p = e + 1;
            }
        }
    }
    vmio_spawn_result_free(&res);
    if ((r = delete_target(t, api, tid)) < 0)
        return r;
    for (size_t i = 0; i < nusers; i++)
        if ((r = delete_account(t, api, users[i])) < 0)
            return r;
    return 0;
}

static int tgt_list(struct vmio_ml_target *t, const char *api, const char *prefix,
                    struct vmio_ml_target_entry **out, size_t *n_out)
{
    struct vmio_ml_target_entry *e;
    size_t n, k = 0;
    int r = show(t, api, &e, NULL, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (strncmp(e[i].iqn, prefix, strlen(prefix)) == 0)
            e[k++] = e[i];
    *out = e;
    *n_out = k;
    return 0;
}

static void tgt_close(struct vmio_ml_target *t)
{
    free(t);
}

static const struct vmio_ml_target_ops tgt_ops = {
    .struct_size = sizeof(struct vmio_ml_target_ops),
    .name = "tgt",
    .create = tgt_create,
    .remove = tgt_remove,
    .sessions = tgt_sessions,
    .list = tgt_list,
    .close = tgt_close,
};

int vmio_ml_target_tgt_new(const char *api, struct vmio_ml_target **out)
{
    struct vmio_ml_target *t = calloc(1, sizeof *t);
    if (!t)
        return vmio_set_error(api, ENOMEM, "out of memory");
    t->ops = &tgt_ops;
    *out = t;
    return 0;
}
