/* Internals of the migration engine shared by its files: the dedup table
 * (dedup.c), the delta page cache (dcache.c), the adaptive policy
 * (policy.c) and the connection helpers (link.c). */
#ifndef VMIO_MIGRATE_ENGINE_H
#define VMIO_MIGRATE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <vmio/migrate.h>

#include "migrate/codec.h"
#include "transport/transport.h"

/* ---- options (options.c) ---------------------------------------------- */
void vmio_mig_opts_resolve(const struct vmio_migrate_options *in,
                           struct vmio_migrate_options *o);
int vmio_mig_check_opts(const char *api, const struct vmio_migrate_options *o);
int vmio_mig_check_region(const char *api, const struct vmio_migrate_region *r);

/* ---- dedup table (sender; used only by the serial commit step) --------
 * Which bytes the receiver holds where: for each global page number
 * ("location") the SHA-256 of the bytes last sent for it, and a hash table
 * from digest to one location that holds those bytes. */
struct vmio_mig_dedup {
    uint64_t nloc;
    uint8_t (*loc_hash)[VMIO_MIG_HASH_SIZE];
    uint8_t *loc_valid;        /* 1 when loc_hash[loc] describes the receiver */
    uint64_t cap, used;        /* table slots (power of two), slots in use */
    uint64_t *keys, *locs;     /* key 0 = empty */
};
int vmio_mig_dedup_init(struct vmio_mig_dedup *d, uint64_t nloc);
void vmio_mig_dedup_free(struct vmio_mig_dedup *d);
/* A location that holds exactly these bytes (by digest), or UINT64_MAX. */
uint64_t vmio_mig_dedup_find(struct vmio_mig_dedup *d, const uint8_t *hash);
/* The receiver now holds bytes with this digest at loc (hash NULL: zeros
 * or unknown bytes). */
int vmio_mig_dedup_set(struct vmio_mig_dedup *d, uint64_t loc, const uint8_t *hash);
/* 1 when loc is known to hold bytes with this digest. */
int vmio_mig_dedup_holds(const struct vmio_mig_dedup *d, uint64_t loc, const uint8_t *hash);

/* ---- delta cache: the version last sent of recently sent pages -------
 * Direct-mapped (slot = location mod slots), a spin lock per slot. */
struct vmio_mig_dcache {
    uint32_t page_size;
    uint64_t nslots;
    uint64_t *tags;            /* location + 1, 0 = empty */
    uint8_t *data;
    atomic_flag *locks;
};
int vmio_mig_dcache_init(struct vmio_mig_dcache *c, uint64_t bytes, uint32_t page_size);
void vmio_mig_dcache_free(struct vmio_mig_dcache *c);
/* Copy the cached version of loc into ref (returns 1) or return 0, then
 * store page (NULL: forget loc) as loc's new version. */
int vmio_mig_dcache_swap(struct vmio_mig_dcache *c, uint64_t loc, const uint8_t *page,
                         uint8_t *ref);

/* ---- adaptive policy (policy.c) --------------------------------------
 * Per batch: hash or not (DEDUP/SKIP need it), and send the remaining raw
 * pages as they are or through lz4 or zstd, keeping the larger of the
 * committed CPU time (per thread) and wire time smallest. */
/* What the policy chooses for a batch's raw pages: the compressors of
 * enum vmio_mig_comp, and zstd at a negative ("fast") level. */
enum { VMIO_MIG_CHOICE_ZSTD_FAST = 3, VMIO_MIG_CHOICES = 4 };
#define VMIO_MIG_ZSTD_FAST_LEVEL (-1)

struct vmio_mig_policy {
    pthread_mutex_t mx;
    int adaptive;
    unsigned workers;
    int allowed[VMIO_MIG_CHOICES];  /* by choice */
    double link_bps;           /* wire bytes per second (EWMA) */
    uint64_t link_samples;
    int link_pinned;           /* an emulated link: its rate is known */
    double hash_bps;           /* SHA-256 bytes per second per thread */
    double dup_frac;           /* hashed pages that became DEDUP or SKIP */
    double comp_bps[VMIO_MIG_CHOICES];   /* input bytes per second per thread */
    double comp_ratio[VMIO_MIG_CHOICES]; /* input / output */
    double cpu_s, wire_s;      /* committed so far: CPU s per thread, wire s */
    int compressing;           /* the last real choice was a compressor */
    uint64_t decisions, hash_decisions;
};
void vmio_mig_policy_init(struct vmio_mig_policy *p, int adaptive, unsigned workers,
                          const int allowed[VMIO_MIG_CHOICES]);
void vmio_mig_policy_destroy(struct vmio_mig_policy *p);
/* 1 when the batch's bytes (non-zero pages) should be hashed; *probe when
 * that is only to keep the estimates current. */
int vmio_mig_policy_hash(struct vmio_mig_policy *p, uint64_t bytes, int *probe);
/* The choice (VMIO_MIG_COMP_* or VMIO_MIG_CHOICE_ZSTD_FAST) for raw_bytes of a batch whose other entries take
 * other_wire bytes and whose analysis took batch_cpu_ns; commits the
 * batch's estimated CPU and wire time. */
int vmio_mig_policy_choose(struct vmio_mig_policy *p, uint64_t raw_bytes, uint64_t other_wire,
                           uint64_t batch_cpu_ns, int *probe);
void vmio_mig_policy_note_comp(struct vmio_mig_policy *p, int comp, uint64_t in, uint64_t out,
                               uint64_t ns);
void vmio_mig_policy_note_hash(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns);
void vmio_mig_policy_note_dedup(struct vmio_mig_policy *p, uint64_t hashed, uint64_t found);
void vmio_mig_policy_note_link(struct vmio_mig_policy *p, uint64_t bytes, uint64_t ns);
/* The link is emulated at this rate: use it instead of measuring (a
 * measurement on a loopback also sees the receiver sharing the cores). */
void vmio_mig_policy_pin_link(struct vmio_mig_policy *p, double bps);
/* 1 while the adaptive policy is choosing a compressor for raw pages. */
int vmio_mig_policy_compressing(struct vmio_mig_policy *p);

/* ---- connections -------------------------------------------------------
 * "tcp://host:port", "rdma://host:port", "host:port" (auto). */
struct vmio_mig_addr {
    int kind;                  /* 0 auto, 1 tcp, 2 rdma */
    char host[256];
    uint16_t port;
};
int vmio_mig_parse_addr(const char *api, const char *uri, struct vmio_mig_addr *a);
int vmio_mig_connect(const char *api, const struct vmio_mig_addr *a, int timeout_ms,
                     struct vmio_transport **out);
struct vmio_mig_listener;
int vmio_mig_listen(const char *api, const struct vmio_mig_addr *a,
                    struct vmio_mig_listener **out, int *port);
int vmio_mig_accept(const char *api, struct vmio_mig_listener *l, int timeout_ms,
                    atomic_int *cancel, struct vmio_transport **out);
void vmio_mig_listener_close(struct vmio_mig_listener *l);
/* A transport over a caller's socket (duplicated; the caller's fd stays
 * open). */
int vmio_mig_wrap_fd(const char *api, int fd, struct vmio_transport **out);

/* Receive one migration over t (receiver.c; the fuzz harness feeds it a
 * memory transport). */
int vmio_mig_receive_on(struct vmio_migrate_receiver *rc, struct vmio_transport *t);

/* Emulated link: a send of bytes that were ready at ready_ns returns
 * when a link of this rate would have carried them (after the previous
 * ones). */
struct vmio_mig_ratelimit {
    uint64_t rate;             /* bytes/s, 0 = off */
    uint64_t next_ns;          /* when the link is free again */
};
void vmio_mig_ratelimit_wait(struct vmio_mig_ratelimit *r, uint64_t ready_ns, uint64_t bytes);

#endif
