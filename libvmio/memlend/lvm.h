/* The borrower's LVM driver: `lvm pvs/lvs/vgs --reportformat json` parsed
 * with json-c into plain structs, and the commands that move a swap LV
 * between local and borrowed PVs (pvcreate, vgextend, pvmove, lvconvert for
 * raid1, vgreduce, pvremove, PV tags). Everything runs through vmio_spawn
 * with argv and a timeout; failures carry lvm's stderr. Borrower state
 * lives in the PV tags: vmio_lease_<id> and vmio_lender_<name>. */
#ifndef VMIO_MEMLEND_LVM_H
#define VMIO_MEMLEND_LVM_H

#include <stddef.h>
#include <stdint.h>

#define VMIO_ML_TAG_LEASE "vmio_lease_"
#define VMIO_ML_TAG_LENDER "vmio_lender_"

struct vmio_ml_pv {
    char name[256];     /* "/dev/sdb"; "[unknown]" when missing */
    char vg[128];
    char uuid[64];
    uint64_t size;      /* bytes */
    uint64_t free;
    int missing;
    uint64_t lease;     /* from the tag vmio_lease_<id>; 0: not borrowed */
    char lender[64];    /* from the tag vmio_lender_<name> */
};

/* One device of one segment of an LV ("lvs -a", one row per segment; a
 * raid1 segment has one entry per image). */
struct vmio_ml_seg {
    char vg[128];
    char lv[128];       /* without the brackets of hidden LVs */
    int hidden;         /* "[name]": a raid image/metadata, pvmove, ... */
    char attr[16];
    char segtype[32];
    uint64_t lv_size;   /* bytes */
    uint64_t seg_size;  /* bytes */
    char dev[256];      /* a PV path or a sub-LV name */
    int dev_is_lv;      /* dev names a sub-LV (raid images, pvmove) */
    uint64_t pe_first;  /* the extents on dev: seg_pe_ranges */
    uint64_t pe_last;
    int sync_known;
    double sync_percent;
};

struct vmio_ml_vg {
    char name[128];
    uint64_t extent_size;
    uint64_t size;
    uint64_t free;
    uint64_t missing_pvs;
};

/* Parsers of lvm's JSON reports (the columns asked by the calls below).
 * 0 or -EINVAL/-ENOMEM with a message under api; *out is malloc'd. */
int vmio_ml_lvm_parse_pvs(const char *api, const char *json, struct vmio_ml_pv **out,
                          size_t *n);
int vmio_ml_lvm_parse_lvs(const char *api, const char *json, struct vmio_ml_seg **out,
                          size_t *n);
int vmio_ml_lvm_parse_vgs(const char *api, const char *json, struct vmio_ml_vg **out,
                          size_t *n);

/* The PVs (leaves) holding vg/lv, following raid images and pvmove
 * sub-LVs: at most max names copied into pvs[i] (256 bytes each). Returns
 * how many distinct PVs there are. */
int vmio_ml_lvm_lv_pvs(const struct vmio_ml_seg *segs, size_t n, const char *vg,
                       const char *lv, char (*pvs)[256], size_t max);
/* Bytes of vg/lv stored on pv (following sub-LVs). */
uint64_t vmio_ml_lvm_lv_bytes_on(const struct vmio_ml_seg *segs, size_t n, const char *vg,
                                 const char *lv, const char *pv, uint64_t extent_size);
/* Number of raid1 images of vg/lv (0 when it is not raid1). */
int vmio_ml_lvm_raid_images(const struct vmio_ml_seg *segs, size_t n, const char *vg,
                            const char *lv);

/* Reports. vg may be NULL (every VG). */
int vmio_ml_lvm_pvs(const char *api, const char *vg, uint32_t timeout_ms,
                    struct vmio_ml_pv **out, size_t *n);
int vmio_ml_lvm_lvs(const char *api, const char *vg, uint32_t timeout_ms,
                    struct vmio_ml_seg **out, size_t *n);
int vmio_ml_lvm_vg(const char *api, const char *vg, uint32_t timeout_ms,
                   struct vmio_ml_vg *out);

/* Run `lvm ARGS...` (argv without the leading "lvm", NULL-terminated). */
int vmio_ml_lvm_cmd(const char *api, uint32_t timeout_ms, const char *const args[]);

#endif
