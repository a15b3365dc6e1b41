/* The borrower's iSCSI initiator driver: open-iscsi through iscsiadm
 * (discovery, node records with CHAP, login, logout, node delete) and the
 * sysfs lookup of the disk a session brought: target IQN + LUN ->
 * /sys/class/iscsi_session/sessionN -> the SCSI device H:C:T:LUN -> its
 * block/ name. The disk is never guessed from /dev/sdX. sysfs_root is "/sys"
 * in production and a fake tree in the unit tests. */
#ifndef VMIO_MEMLEND_ISCSI_H
#define VMIO_MEMLEND_ISCSI_H

#include <stddef.h>
#include <stdint.h>

#include <vmio/memlend.h>

/* iscsiadm -m discovery -t sendtargets -p portal (-o nonpersistent): 0 when
 * the portal offers iqn, -ENOENT when it does not. */
int vmio_ml_iscsi_discover(const char *api, const char *portal, const char *iqn,
                           uint32_t timeout_ms);
/* A node record for (iqn, portal) with CHAP, manual startup and a short
 * replacement timeout (a dead lender fails I/O after replacement_s seconds
 * instead of the default 120). */
int vmio_ml_iscsi_node_setup(const char *api, const char *portal, const char *iqn,
                             const struct vmio_memlend_chap *chap, uint32_t replacement_s,
                             uint32_t timeout_ms);
int vmio_ml_iscsi_login(const char *api, const char *portal, const char *iqn,
                        uint32_t timeout_ms);
/* Logout, then delete the node record; portal may be NULL (every portal).
 * A target without a session is not an error. */
int vmio_ml_iscsi_logout(const char *api, const char *portal, const char *iqn,
                         uint32_t timeout_ms);

/* The block device name ("sdb") of LUN lun of target iqn: 0, or -ENOENT
 * when no session of that target has that LUN (yet). */
int vmio_ml_iscsi_find_disk(const char *api, const char *sysfs_root, const char *iqn,
                            uint32_t lun, char *name, size_t cap);
/* find_disk, retried until the disk and its /dev node exist or timeout_ms
 * passes (-ETIMEDOUT). dev receives "/dev/sdb". */
int vmio_ml_iscsi_wait_disk(const char *api, const char *sysfs_root, const char *iqn,
                            uint32_t lun, uint32_t timeout_ms, char *dev, size_t cap);
/* Reverse lookup: the target IQN and LUN behind block device name ("sdb"
 * or "/dev/sdb"); -ENOENT when it is not an iSCSI disk. */
int vmio_ml_iscsi_disk_target(const char *api, const char *sysfs_root, const char *disk,
                              char *iqn, size_t cap, uint32_t *lun);

#endif
