/* The group registry kept in a state directory (state.c), and core helpers
 * shared by group.c and report.c. Internal.
 *
 * One file per group, "<id>.group", in a line format ("key value") that
 * is parsed strictly: a file someone edited badly gives an error naming
 * the file and the line, never a crash. Ids come from a counter file
 * read and bumped under an exclusive flock, so two processes never get
 * the same id and an id is never reused. */
#ifndef VMIO_GROUP_STATE_H
#define VMIO_GROUP_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "group/backend.h"
#include "group/cpuset.h"

#define VMIO_GROUP_STATE_VERSION 1
#define VMIO_GROUP_VM_NAME_MAX 255
/* Members of one group (the parser refuses more: duplicates are checked
 * pairwise). */
#define VMIO_GROUP_MAX_MEMBERS 10000u

/* What a member had before the group's first apply changed its weight or
 * cap: put back when it leaves (the hypervisor's default is not known
 * everywhere: cgroup v1 and v2 differ by ten times). */
struct vmio_group_saved {
    char *vm;
    unsigned weight;              /* 0: none was known */
    unsigned cap;                 /* 0: no cap */
};

struct vmio_group_state {
    uint32_t id;
    char name[VMIO_GROUP_NAME_MAX + 1];
    char backend[16];
    /* policy (enum values of <vmio/group.h>) */
    int pin;
    int locality;
    char pci[32];                 /* "" : none */
    int dedicated;
    unsigned ncpus;
    char housekeeping[256];       /* cpulist, "" : none */
    unsigned weight;
    unsigned cap;
    char scheduler[32];           /* "" : backend default */
    uint64_t shmem_bytes;
    /* the CPUs the last apply gave the group (empty: never applied) */
    struct vmio_cpuset placed;
    char **members;
    size_t nmembers;
    struct vmio_group_saved *saved;
    size_t nsaved;
};

/* 1 if name is a valid group name (1-64 of [A-Za-z0-9_.-], not all
 * digits), else 0. */
int vmio_group_name_valid(const char *name);
/* 1 if a VM name can be kept in a state file (1-255 bytes, no control
 * characters, no leading or trailing blank). */
int vmio_group_vm_name_valid(const char *vm);

void vmio_group_state_clear(struct vmio_group_state *st);
int vmio_group_state_add_member(struct vmio_group_state *st, const char *vm);
/* The values vm had before the group changed them, or NULL. */
const struct vmio_group_saved *vmio_group_state_saved(const struct vmio_group_state *st,
                                                      const char *vm);
/* Keep them, unless some are kept already: 1 if added, 0 if kept
 * already, -ENOMEM. */
int vmio_group_state_save_before(struct vmio_group_state *st, const char *vm, unsigned weight,
                                 unsigned cap);
void vmio_group_state_forget(struct vmio_group_state *st, const char *vm);
/* Parse a state file's text; origin names it in errors ("dir/3.group").
 * On failure *st is left cleared. */
int vmio_group_state_parse(const char *api, const char *origin, const char *text, size_t len,
                           struct vmio_group_state *st);
/* The text of a state file; *out malloc'd. */
int vmio_group_state_format(const char *api, const struct vmio_group_state *st, char **out);

/* Files in dir. lock: an exclusive flock on dir/lock (creating dir if
 * needed), held for a read-modify-write; returns the fd to unlock. */
int vmio_group_state_lock(const char *api, const char *dir);
void vmio_group_state_unlock(int fd);
/* Next id from dir/next-id (caller holds the lock). */
int vmio_group_state_alloc_id(const char *api, const char *dir, uint32_t *id);
int vmio_group_state_load(const char *api, const char *dir, uint32_t id,
                          struct vmio_group_state *st);
/* Written to a temporary file, fsync'ed and renamed over the old one. */
int vmio_group_state_save(const char *api, const char *dir, const struct vmio_group_state *st);
int vmio_group_state_remove(const char *api, const char *dir, uint32_t id);
/* Every group of dir, sorted by id; *out freed with
 * vmio_group_state_free_all(). */
int vmio_group_state_load_all(const char *api, const char *dir, struct vmio_group_state **out,
                              size_t *n);
void vmio_group_state_free_all(struct vmio_group_state *all, size_t n);

/* report.c: the placement text, and whether building the report ran out
 * of memory (apply then fails with -ENOMEM). */
void vmio_group_report_set_cpus(struct vmio_group_report *r, const char *text);
int vmio_group_report_failed(const struct vmio_group_report *r);

#endif
