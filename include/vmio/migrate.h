/* libvmio live migration: iterative pre-copy of a VM's memory to another
 * host. Each page goes out in the cheapest encoding that pays (zero page,
 * run-length, delta against the previously sent version, a reference to
 * an identical page the receiver already holds, optionally zstd or lz4 on
 * what remains), encoded on CPU threads or on a GPU (CUDA driver API,
 * loaded at run time), with fetch, encode and send overlapped.
 *
 * A sender describes guest memory as regions and gets the pages that
 * changed between rounds from a dirty source:
 *   - caller-supplied dirty bitmaps (a VMM that owns KVM's dirty log);
 *   - this process's own memory, tracked with userfaultfd write-protect
 *     (async mode) and the PAGEMAP_SCAN ioctl (Linux 6.7 or later);
 *   - a Xen domain (foreign mapping + log-dirty; built with libxenctrl).
 * The receiver writes into destination regions (given by the caller, or
 * allocated by the library), checks a checksum on every record and an
 * end-to-end digest of all memory, and never writes outside the regions.
 *
 * The stream format is in docs/migration-stream.md. All functions follow
 * the error convention of <vmio/core.h>: 0 or a non-negative value on
 * success, a negative errno on failure with vmio_errmsg() set.
 */
#ifndef VMIO_MIGRATE_H
#define VMIO_MIGRATE_H

#include <stdint.h>
#include <stddef.h>

#include <vmio/core.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmio_migrate_sender vmio_migrate_sender;
typedef struct vmio_migrate_receiver vmio_migrate_receiver;

/* Page encodings. Explicit values: they appear in statistics and in the
 * stream. */
enum vmio_migrate_codec {
    VMIO_MIGRATE_CODEC_RAW = 0,     /* the page as is */
    VMIO_MIGRATE_CODEC_ZERO = 1,    /* an all-zero page (runs of them) */
    VMIO_MIGRATE_CODEC_RLE = 2,     /* run-length against a zero page */
    VMIO_MIGRATE_CODEC_DELTA = 3,   /* XOR/run-length against the previously
                                       sent version of the page */
    VMIO_MIGRATE_CODEC_DEDUP = 4,   /* same bytes as a page the receiver holds */
    VMIO_MIGRATE_CODEC_ZSTD = 5,    /* zstd on a batch's remaining bytes */
    VMIO_MIGRATE_CODEC_LZ4 = 6,     /* lz4 on a batch's remaining bytes */
    VMIO_MIGRATE_CODEC_SKIP = 7,    /* dirty but unchanged: nothing sent */
    VMIO_MIGRATE_CODEC_COUNT = 8
};
#define VMIO_MIGRATE_MASK(codec) (1u << (codec))
/* Every codec the library was built with (zstd/lz4 when found). */
#define VMIO_MIGRATE_CODECS_ALL 0xffffffffu

/* How the sender chooses. */
enum vmio_migrate_policy {
    VMIO_MIGRATE_ADAPTIVE = 0,  /* per batch, from the measured link
                                   bandwidth and codec throughput: never
                                   slower than raw on a fast link */
    VMIO_MIGRATE_FIXED = 1      /* use every enabled codec that shrinks
                                   the page, whatever it costs */
};

enum vmio_migrate_gpu {
    VMIO_MIGRATE_GPU_AUTO = 0,   /* a GPU when one is present, else CPU */
    VMIO_MIGRATE_GPU_OFF = 1,    /* CPU threads only */
    VMIO_MIGRATE_GPU_REQUIRE = 2 /* fail with -ENODEV when no GPU works */
};

/* Zero-initialise, set struct_size = sizeof(struct vmio_migrate_options),
 * fill what you need. Fields added later go at the end. NULL options mean
 * all defaults. */
struct vmio_migrate_options {
    uint32_t struct_size;
    uint32_t codecs;            /* mask of VMIO_MIGRATE_MASK(codec);
                                   0 = VMIO_MIGRATE_CODECS_ALL. RAW is
                                   always allowed. */
    uint32_t policy;            /* enum vmio_migrate_policy */
    uint32_t gpu;               /* enum vmio_migrate_gpu */
    uint32_t threads;           /* encode (sender) / decode (receiver)
                                   threads; 0 = online CPUs */
    uint32_t batch_pages;       /* pages per batch; 0 = 256 */
    uint32_t max_rounds;        /* pre-copy rounds before stop-and-copy,
                                   round 0 included; 0 = 30 */
    int32_t zstd_level;         /* 0 = 1 */
    uint64_t delta_cache_bytes; /* previously sent pages kept for DELTA;
                                   0 = 64 MiB */
    uint64_t downtime_ns;       /* stop when the remaining dirty set fits
                                   this at the measured bandwidth;
                                   0 = 300 ms */
    uint64_t link_rate;         /* emulate a link of this many bytes/s on
                                   the sender (benchmarks); 0 = off */
    uint32_t timeout_ms;        /* connect, and no progress from the peer
                                   for this long is an error; 0 = 30000 */
    uint32_t flags;             /* VMIO_MIGRATE_F_* */
    const char *secret_file;    /* reserved, must be NULL */
};
/* The receiver's destination memory starts zeroed (fresh anonymous
 * memory): zero pages of round 0 need not be written. */
#define VMIO_MIGRATE_F_DEST_ZEROED 0x1u
/* Skip the end-to-end digest (not recommended). */
#define VMIO_MIGRATE_F_NO_DIGEST 0x2u

/* One range of guest memory. page_size is a power of two from 4096 to
 * 65536; base and length are multiples of it. */
struct vmio_migrate_region {
    uint32_t struct_size;
    uint32_t page_size;
    void *base;
    uint64_t length;
    const char *name;           /* optional, at most 63 bytes; checked by
                                   the receiver when both sides give one */
};

/* Statistics of one pre-copy round (the last one is the stop-and-copy
 * round). Times in nanoseconds. */
struct vmio_migrate_round_stats {
    uint32_t struct_size;
    uint32_t round;
    uint64_t dirty_pages;       /* pages the dirty source reported */
    uint64_t pages;             /* pages sent (all codecs, SKIP included) */
    uint64_t raw_bytes;         /* pages * page size */
    uint64_t wire_bytes;        /* bytes written to the transport */
    uint64_t codec_pages[VMIO_MIGRATE_CODEC_COUNT];
    uint64_t codec_bytes[VMIO_MIGRATE_CODEC_COUNT]; /* wire bytes by codec */
    uint64_t encode_ns;         /* summed over encode threads */
    uint64_t round_ns;          /* wall time of the round */
    uint64_t send_ns;           /* time the sender spent writing */
    uint64_t dirty_rate;        /* pages dirtied per second during the round */
    uint64_t bandwidth;         /* measured wire bytes/s */
    uint32_t gpu;               /* 1 when this round encoded on a GPU */
    uint32_t reserved;
};

/* ---- sender ----------------------------------------------------------- */

VMIO_API int vmio_migrate_sender_new(const struct vmio_migrate_options *o,
                                     vmio_migrate_sender **out);
VMIO_API void vmio_migrate_sender_free(vmio_migrate_sender *s);
/* Add a memory region; returns its index (0, 1, ...). */
VMIO_API int vmio_migrate_sender_add_region(vmio_migrate_sender *s,
                                            const struct vmio_migrate_region *r);

/* Dirty source 1: called at the start of every round after round 0 with a
 * zeroed bitmap of the region's pages (bit i of word i/64 = page i); set
 * the pages written since the previous call. Return 0 or -errno. */
typedef int (*vmio_migrate_dirty_fn)(void *opaque, uint32_t region, uint64_t *bitmap,
                                     uint64_t npages);
VMIO_API int vmio_migrate_track_bitmap(vmio_migrate_sender *s, vmio_migrate_dirty_fn fn,
                                       void *opaque);
/* Dirty source 2: the regions are this process's own private anonymous
 * memory, tracked with userfaultfd-wp (async) and PAGEMAP_SCAN. -ENOTSUP
 * with a message when the kernel lacks either. */
VMIO_API int vmio_migrate_track_uffd(vmio_migrate_sender *s);
/* Dirty source 3: a Xen domain. Maps its memory (adds the regions itself),
 * enables log-dirty, and pauses the domain for stop-and-copy unless a stop
 * callback is set. -ENOTSUP when built without Xen. */
VMIO_API int vmio_migrate_track_xen(vmio_migrate_sender *s, uint32_t domid);

/* Called once, after the last pre-copy round, to pause the VM; the final
 * round follows. Return 0 or -errno (aborts the migration). */
typedef int (*vmio_migrate_stop_fn)(void *opaque);
VMIO_API int vmio_migrate_set_stop_fn(vmio_migrate_sender *s, vmio_migrate_stop_fn fn,
                                      void *opaque);
/* Called after each round with its statistics (from the sending thread). */
typedef void (*vmio_migrate_round_fn)(void *opaque, const struct vmio_migrate_round_stats *st);
VMIO_API int vmio_migrate_set_round_fn(vmio_migrate_sender *s, vmio_migrate_round_fn fn,
                                       void *opaque);

/* Migrate to "tcp://host:port", "rdma://host:port" or "host:port"
 * (RDMA when both sides have a device, else TCP). Returns when the
 * receiver confirmed the digest of all memory, or on failure. */
VMIO_API int vmio_migrate_send(vmio_migrate_sender *s, const char *uri);
/* The same over a connected stream socket the caller owns (not closed). */
VMIO_API int vmio_migrate_send_fd(vmio_migrate_sender *s, int fd);
/* Make a running vmio_migrate_send() fail with -ECANCELED (any thread). */
VMIO_API void vmio_migrate_sender_cancel(vmio_migrate_sender *s);

/* Rounds done by the last send, and the statistics of one of them. */
VMIO_API int vmio_migrate_sender_rounds(vmio_migrate_sender *s);
VMIO_API int vmio_migrate_sender_round_stats(vmio_migrate_sender *s, uint32_t round,
                                             struct vmio_migrate_round_stats *st);

/* ---- receiver --------------------------------------------------------- */

VMIO_API int vmio_migrate_receiver_new(const struct vmio_migrate_options *o,
                                       vmio_migrate_receiver **out);
VMIO_API void vmio_migrate_receiver_free(vmio_migrate_receiver *r);
/* Destination regions, in the sender's order. Without any, the receiver
 * allocates anonymous memory matching the sender's regions. */
VMIO_API int vmio_migrate_receiver_add_region(vmio_migrate_receiver *r,
                                              const struct vmio_migrate_region *reg);
/* Listen on "tcp://host:port" / "rdma://host:port" / "host:port" (port 0
 * picks one); returns the bound port. */
VMIO_API int vmio_migrate_receiver_listen(vmio_migrate_receiver *r, const char *uri);
/* Accept one sender and receive until the end of the stream; 0 when every
 * record checked out and the digests matched. */
VMIO_API int vmio_migrate_receive(vmio_migrate_receiver *r);
/* The same over a connected stream socket the caller owns (not closed). */
VMIO_API int vmio_migrate_receive_fd(vmio_migrate_receiver *r, int fd);
VMIO_API void vmio_migrate_receiver_cancel(vmio_migrate_receiver *r);
/* Region i of the receiver (after receive when the library allocated). */
VMIO_API int vmio_migrate_receiver_region(vmio_migrate_receiver *r, uint32_t i,
                                          struct vmio_migrate_region *out);
/* What the receiver did (after vmio_migrate_receive). */
struct vmio_migrate_receiver_stats {
    uint32_t struct_size;
    uint32_t rounds;
    uint64_t records;
    uint64_t pages;             /* page entries applied (runs counted per page) */
    uint64_t raw_bytes;         /* pages * page size */
    uint64_t wire_bytes;        /* bytes read from the transport */
    uint64_t codec_pages[VMIO_MIGRATE_CODEC_COUNT];
    uint64_t decode_ns;         /* checking, decompressing and applying */
    uint64_t total_ns;          /* first byte to the result sent */
};
VMIO_API int vmio_migrate_receiver_get_stats(vmio_migrate_receiver *r,
                                         struct vmio_migrate_receiver_stats *st);
/* Digest of all destination memory as confirmed at the end (16 bytes,
 * XXH3-128 over the regions in order). */
VMIO_API int vmio_migrate_receiver_digest(vmio_migrate_receiver *r, uint8_t digest[16]);

/* Digest of a set of regions, as the stream's end record carries it. */
VMIO_API int vmio_migrate_digest(const struct vmio_migrate_region *regions, uint32_t n,
                                 uint8_t digest[16]);
/* "zero", "delta", ... for a codec, NULL if unknown. */
VMIO_API const char *vmio_migrate_codec_name(int codec);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_MIGRATE_H */
