/* The lender's iSCSI target backends: a versioned vtable and one file per
 * backend (target-tgt.c: tgtd through tgtadm; target-lio.c: the kernel's
 * LIO through configfs). Each lease is one target with one LUN backed by
 * a tmpfs/ramfs file, CHAP required. */
#ifndef VMIO_MEMLEND_TARGET_H
#define VMIO_MEMLEND_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/memlend.h>

struct vmio_ml_target;

/* One target of ours as the backend sees it (list). */
struct vmio_ml_target_entry {
    char iqn[224];
    uint32_t lun;
    uint32_t sessions;          /* initiators logged in now */
    char backing[512];          /* backing file path ("" if none) */
};

struct vmio_ml_target_ops {
    uint32_t struct_size;
    const char *name;
    /* Make target iqn with LUN lun on backing (a file of size bytes),
     * reachable through the configured portal, CHAP chap required. On
     * failure nothing is left behind. */
    int (*create)(struct vmio_ml_target *t, const char *api, const char *iqn, uint32_t lun,
                  const char *backing, uint64_t size, const struct vmio_memlend_chap *chap);
    /* Remove target iqn (its LUN, its CHAP account). -EBUSY while an
     * initiator is logged in; -ENOENT when there is no such target. */
    int (*remove)(struct vmio_ml_target *t, const char *api, const char *iqn);
    /* Initiators logged in to target iqn (>= 0), -ENOENT if none such. */
    int (*sessions)(struct vmio_ml_target *t, const char *api, const char *iqn);
    /* Every target whose IQN starts with prefix. *out malloc'd. */
    int (*list)(struct vmio_ml_target *t, const char *api, const char *prefix,
                struct vmio_ml_target_entry **out, size_t *n);
    void (*close)(struct vmio_ml_target *t);
};

struct vmio_ml_target_cfg {
    const char *portal;         /* "address:port" the initiators use */
    uint32_t tgt_control_port;  /* tgtadm -C; 0 = tgtd's default */
    const char *configfs;       /* LIO: NULL = /sys/kernel/config */
    uint32_t timeout_ms;        /* per tool run; 0 = 30000 */
};

struct vmio_ml_target {
    const struct vmio_ml_target_ops *ops;
    char portal_addr[128];
    uint32_t portal_port;
    uint32_t tgt_control_port;
    char configfs[256];
    uint32_t timeout_ms;
};

/* backend "tgt" or "lio". */
int vmio_ml_target_open(const char *api, const char *backend,
                        const struct vmio_ml_target_cfg *cfg, struct vmio_ml_target **out);
void vmio_ml_target_close(struct vmio_ml_target *t);

/* Backend constructors (each file's only public entry). */
int vmio_ml_target_tgt_new(const char *api, struct vmio_ml_target **out);
int vmio_ml_target_lio_new(const char *api, const char *configfs, struct vmio_ml_target **out);

/* tgtadm --op show text -> entries (all targets). Strict: -EPROTO on a
 * line it does not understand. Exposed for the unit tests. */
int vmio_ml_tgt_parse_show(const char *api, const char *text, struct vmio_ml_target_entry **out,
                           uint32_t **tids, size_t *n);

#endif
