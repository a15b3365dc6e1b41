/* vmio-migrate: live migration of memory with libvmio.
 *
 *   vmio-migrate recv --listen ADDR [--digest-out FILE] [--json]
 *   vmio-migrate send --to ADDR (--demo-size SIZE | --xen-domid N) [...]
 *   vmio-migrate bench [--link RATE] [--mode LIST] [--json] SNAP0 [SNAP1 ...]
 *
 * send --demo-size migrates a region of this process while writer threads
 * keep writing it (userfaultfd-wp + PAGEMAP_SCAN track them); the stop
 * callback parks the writers for the final round, and the receiver's
 * digest of all memory must equal ours. bench replays guest-memory
 * snapshots (round 0 = SNAP0, round k = the pages that differ in SNAPk)
 * through each codec mode over TCP loopback with an emulated link rate.
 * Only the public API is used. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vmio/migrate.h>

#include "cli-util.h"

#define PROG "vmio-migrate"
#define PAGE 4096u

struct opts {
    const char *to, *listen, *digest_out;
    uint64_t demo_size;
    long xen_domid;
    unsigned writers;
    uint64_t write_rate;          /* pages per second per writer, 0 = flat out */
    int json;
    struct vmio_migrate_options mo;
    const char *modes;
    int track_none;               /* demo without dirty tracking (one stopped round) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static int parse_rate(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -EINVAL;
    if (!strcasecmp(end, "gbit") || !strcasecmp(end, "gbit/s"))
        v *= 1e9 / 8;
    else if (!strcasecmp(end, "mbit") || !strcasecmp(end, "mbit/s"))
        v *= 1e6 / 8;
    else if (!strcasecmp(end, "MB/s") || !strcasecmp(end, "M"))
        v *= 1e6;
    else if (!strcasecmp(end, "GB/s") || !strcasecmp(end, "G"))
        v *= 1e9;
    else if (*end && strcmp(end, "B/s"))
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

static int parse_codecs(const char *s, uint32_t *mask)
{
    *mask = 0;
    char *dup = strdup(s), *save = NULL;
    if (!dup)
        return -ENOMEM;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int c = 0; c < VMIO_MIGRATE_CODEC_COUNT; c++)
            if (!strcmp(t, vmio_migrate_codec_name(c))) {
                *mask |= VMIO_MIGRATE_MASK(c);
                found = 1;
            }
        if (!strcmp(t, "all")) {
            *mask = VMIO_MIGRATE_CODECS_ALL;
            found = 1;
        }
        if (!found) {
            free(dup);
            return -EINVAL;
        }
    }
    free(dup);
    return 0;
}

/* ---- statistics output --------------------------------------------------- */

static void print_round(int json, const struct vmio_migrate_round_stats *st)
{
    if (json) {
        printf("{\"event\":\"round\",\"round\":%u,\"dirty_pages\":%" PRIu64 ",\"pages\":%" PRIu64
               ",\"raw_bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"round_s\":%.6f"
               ",\"encode_s\":%.6f,\"send_s\":%.6f,\"dirty_rate\":%" PRIu64
               ",\"bandwidth\":%" PRIu64 ",\"gpu\":%u,\"codecs\":{",
               st->round, st->dirty_pages, st->pages, st->raw_bytes, st->wire_bytes,
               (double)st->round_ns / 1e9, (double)st->encode_ns / 1e9,
               (double)st->send_ns / 1e9, st->dirty_rate, st->bandwidth, st->gpu);
        int first = 1;
        for (int c = 0; c < VMIO_MIGRATE_CODEC_COUNT; c++) {
            if (!st->codec_pages[c])
                continue;
            printf("%s\"%s\":{\"pages\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", first ? "" : ",",
                   vmio_migrate_codec_name(c), st->codec_pages[c], st->codec_bytes[c]);
            first = 0;
        }
        printf("}}\n");
    } else {
        printf("round %2u: %8" PRIu64 " pages (%" PRIu64 " dirty) %9.1f MiB -> %8.1f MiB "
               "in %.3f s, %.0f MB/s on the wire, dirty rate %" PRIu64 " pages/s\n         ",
               st->round, st->pages, st->dirty_pages, (double)st->raw_bytes / 1048576.0,
               (double)st->wire_bytes / 1048576.0, (double)st->round_ns / 1e9,
               (double)st->bandwidth / 1e6, st->dirty_rate);
        for (int c = 0; c < VMIO_MIGRATE_CODEC_COUNT; c++)
            if (st->codec_pages[c])
                printf(" %s %" PRIu64 "/%.1fMiB", vmio_migrate_codec_name(c), st->codec_pages[c],
                       (double)st->codec_bytes[c] / 1048576.0);
        printf("\n");
    }
    fflush(stdout);
}

static void on_round(void *opaque, const struct vmio_migrate_round_stats *st)
{
    print_round(*(int *)opaque, st);
}

/* ---- recv --------------------------------------------------------------- */

static int cmd_recv(struct opts *o)
{
    if (!o->listen)
        return cli_usage_error(PROG, "recv needs --listen ADDR");
    vmio_migrate_receiver *rc;
    if (vmio_migrate_receiver_new(&o->mo, &rc) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    int port = vmio_migrate_receiver_listen(rc, o->listen);
    if (port < 0) {
        vmio_migrate_receiver_free(rc);
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    }
    if (o->json)
        printf("{\"event\":\"listening\",\"port\":%d}\n", port);
    else
        printf("listening on port %d\n", port);
    fflush(stdout);
    double t0 = now_s();
    int r = vmio_migrate_receive(rc);
    double dt = now_s() - t0;
    struct vmio_migrate_receiver_stats st = { .struct_size = sizeof(st) };
    vmio_migrate_receiver_get_stats(rc, &st);
    if (r < 0) {
        int s = cli_fail(PROG, 1, "%s", vmio_errmsg());
        vmio_migrate_receiver_free(rc);
        return s;
    }
    uint8_t d[16];
    char dh[33];
    vmio_migrate_receiver_digest(rc, d);
    hex(d, 16, dh);
    if (o->digest_out) {
        char line[40];
        snprintf(line, sizeof line, "%s\n", dh);
        if (cli_write_file_atomic(o->digest_out, line) < 0) {
            vmio_migrate_receiver_free(rc);
            return cli_fail(PROG, 1, "cannot write %s", o->digest_out);
        }
    }
    if (o->json)
        printf("{\"event\":\"done\",\"digest\":\"%s\",\"rounds\":%u,\"records\":%" PRIu64
               ",\"pages\":%" PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"decode_s\":%.6f"
               ",\"total_s\":%.6f}\n", dh, st.rounds, st.records, st.pages, st.wire_bytes,
               (double)st.decode_ns / 1e9, dt);
    else
        printf("received %u rounds, %" PRIu64 " pages, %.1f MiB on the wire in %.3f s; "
               "digest %s verified\n", st.rounds, st.pages, (double)st.wire_bytes / 1048576.0,
               dt, dh);
    vmio_migrate_receiver_free(rc);
    return 0;
}

/* ---- send: the live demo workload --------------------------------------- */

struct demo {
    uint8_t *mem;
    uint64_t pages;
    unsigned nwriters;
    uint64_t rate;
    atomic_int pause, parked, quit;
    atomic_uint_fast64_t writes;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Fill like a guest: zeros, duplicates, text, small integers. */
static void demo_fill(struct demo *d)
{
    static const char *const words[] = { "kernel ", "page ", "memcached ", "value ",
                                         "the ", "of ", "migration ", "0x", "\n" };
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint64_t pg = 0; pg < d->pages; pg++) {
        uint8_t *p = d->mem + pg * PAGE;
        unsigned kind = (unsigned)(xorshift(&seed) % 100);
        if (kind < 40)
            continue;                                   /* zero page */
        if (kind < 50) {                                /* one of 8 templates */
            unsigned t = (unsigned)(xorshift(&seed) % 8);
            for (unsigned i = 0; i < PAGE; i++)
                p[i] = (uint8_t)(t * 31 + i % 97);
        } else if (kind < 75) {                         /* text */
            size_t off = 0;
            while (off < PAGE) {
                const char *w = words[xorshift(&seed) % 9];
                size_t n = strlen(w);
                if (off + n > PAGE)
                    n = PAGE - off;
                memcpy(p + off, w, n);
                off += n;
            }
        } else {                                        /* small integers */
            uint32_t *q = (uint32_t *)p;
            for (unsigned i = 0; i < PAGE / 4; i++)
                q[i] = (uint32_t)(xorshift(&seed) % 1000);
        }
    }
}

static void *demo_writer(void *arg)
{
    struct demo *d = arg;
    uint64_t seed = (uint64_t)(uintptr_t)&seed ^ (uint64_t)time(NULL);
    double t0 = now_s();
    uint64_t n = 0;
    while (!atomic_load(&d->quit)) {
        if (atomic_load(&d->pause)) {
            atomic_fetch_add(&d->parked, 1);
            while (atomic_load(&d->pause) && !atomic_load(&d->quit))
                usleep(1000);
            atomic_fetch_sub(&d->parked, 1);
            continue;
        }
        uint64_t pg = xorshift(&seed) % d->pages;
        uint64_t *w = (uint64_t *)(d->mem + pg * PAGE) + xorshift(&seed) % (PAGE / 8 - 8);
        uint64_t stamp = atomic_fetch_add(&d->writes, 1) + 1;
        for (int i = 0; i < 8; i++)
            w[i] = stamp ^ (uint64_t)i;
        n++;
        if (d->rate && n % 64 == 0) {
            double due = t0 + (double)n / (double)d->rate;
            double now = now_s();
            if (due > now)
                usleep((useconds_t)((due - now) * 1e6));
        }
    }
    return NULL;
}

static int demo_stop(void *opaque)
{
    struct demo *d = opaque;
    atomic_store(&d->pause, 1);
    while ((unsigned)atomic_load(&d->parked) < d->nwriters)
        usleep(500);
    return 0;
}

static int cmd_send(struct opts *o)
{
    if (!o->to)
        return cli_usage_error(PROG, "send needs --to ADDR");
    if (!o->demo_size == (o->xen_domid < 0))
        return cli_usage_error(PROG, "send needs exactly one of --demo-size and --xen-domid");
    vmio_migrate_sender *s;
    if (vmio_migrate_sender_new(&o->mo, &s) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    vmio_migrate_set_round_fn(s, on_round, &o->json);
    struct demo d;
    memset(&d, 0, sizeof d);
    pthread_t *th = NULL;
    unsigned started = 0;
    int status = 1;
    if (o->xen_domid >= 0) {
        if (vmio_migrate_track_xen(s, (uint32_t)o->xen_domid) < 0) {
            cli_fail(PROG, 1, "%s", vmio_errmsg());
            goto out;
        }
    } else {
        if (o->demo_size % PAGE) {
            cli_usage_error(PROG, "--demo-size must be a multiple of 4096");
            status = CLI_EXIT_USAGE;
            goto out;
        }
        d.pages = o->demo_size / PAGE;
        d.nwriters = o->writers;
        d.rate = o->write_rate;
        d.mem = mmap(NULL, o->demo_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
        if (d.mem == MAP_FAILED) {
            d.mem = NULL;
            cli_fail(PROG, 1, "cannot allocate %" PRIu64 " bytes", o->demo_size);
            goto out;
        }
        demo_fill(&d);
        struct vmio_migrate_region reg = { sizeof(reg), PAGE, d.mem, o->demo_size, "demo" };
        if (vmio_migrate_sender_add_region(s, &reg) < 0 ||
            (!o->track_none && vmio_migrate_track_uffd(s) < 0) ||
            vmio_migrate_set_stop_fn(s, demo_stop, &d) < 0) {
            cli_fail(PROG, 1, "%s", vmio_errmsg());
            goto out;
        }
        th = calloc(d.nwriters ? d.nwriters : 1, sizeof(*th));
        for (; th && started < d.nwriters; started++)
            if (pthread_create(&th[started], NULL, demo_writer, &d))
                break;
    }
    double t0 = now_s();
    int r = vmio_migrate_send(s, o->to);
    double dt = now_s() - t0;
    if (r < 0) {
        cli_fail(PROG, 1, "%s", vmio_errmsg());
        goto out;
    }
    uint64_t raw = 0, wire = 0;
    int rounds = vmio_migrate_sender_rounds(s);
    for (int i = 0; i < rounds; i++) {
        struct vmio_migrate_round_stats st = { .struct_size = sizeof(st) };
        vmio_migrate_sender_round_stats(s, (uint32_t)i, &st);
        raw += st.raw_bytes;
        wire += st.wire_bytes;
    }
    uint8_t dg[16];
    char dh[33] = "";
    if (d.mem) {
        struct vmio_migrate_region reg = { sizeof(reg), PAGE, d.mem, o->demo_size, "demo" };
        vmio_migrate_digest(&reg, 1, dg);
        hex(dg, 16, dh);
    }
    if (o->json)
        printf("{\"event\":\"done\",\"rounds\":%d,\"raw_bytes\":%" PRIu64 ",\"wire_bytes\":%"
               PRIu64 ",\"total_s\":%.6f,\"writes\":%" PRIu64 ",\"digest\":\"%s\"}\n",
               rounds, raw, wire, dt, (uint64_t)atomic_load(&d.writes), dh);
    else
        printf("migrated in %d rounds, %.1f MiB -> %.1f MiB in %.3f s (%" PRIu64
               " writes by the workload meanwhile); the receiver confirmed the digest%s%s\n",
               rounds, (double)raw / 1048576.0, (double)wire / 1048576.0, dt,
               (uint64_t)atomic_load(&d.writes), dh[0] ? " " : "", dh);
    status = 0;
out:
    atomic_store(&d.quit, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    vmio_migrate_sender_free(s);
    if (d.mem)
        munmap(d.mem, o->demo_size);
    return status;
}

/* ---- bench ------------------------------------------------------------------ */

struct snapset {
    unsigned n;
    uint64_t size;
    uint8_t **snap;
};

struct replay {
    struct snapset *ss;
    uint8_t *mem;
    unsigned next;         /* snapshot applied by the next collection */
};

static int replay_dirty(void *opaque, uint32_t region, uint64_t *bitmap, uint64_t npages)
{
    struct replay *rp = opaque;
    if (rp->next >= rp->ss->n)
        return 0;
    const uint8_t *s = rp->ss->snap[rp->next++];
    for (uint64_t pg = 0; pg < npages; pg++) {
        uint8_t *m = rp->mem + pg * PAGE;
        if (memcmp(m, s + pg * PAGE, PAGE)) {
            memcpy(m, s + pg * PAGE, PAGE);
            bitmap[pg / 64] |= 1ull << (pg % 64);
        }
    }
    (void)region;
    return 0;
}

static int load_snap(const char *path, uint64_t *size, uint8_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || sb.st_size <= 0 || sb.st_size % PAGE) {
        close(fd);
        return -EINVAL;
    }
    if (*size && (uint64_t)sb.st_size != *size) {
        close(fd);
        return -ERANGE;
    }
    *size = (uint64_t)sb.st_size;
    uint8_t *m = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return -ENOMEM;
    }
    uint64_t off = 0;
    while (off < *size) {
        ssize_t n = pread(fd, m + off, *size - off > (1u << 26) ? (1u << 26) : *size - off,
                          (off_t)off);
        if (n <= 0) {
            close(fd);
            munmap(m, *size);
            return n < 0 ? -errno : -EIO;
        }
        off += (uint64_t)n;
    }
    close(fd);
    *out = m;
    return 0;
}

struct rx_thread {
    vmio_migrate_receiver *rc;
    int r;
    char err[512];
};

static void *rx_main(void *arg)
{
    struct rx_thread *x = arg;
    x->r = vmio_migrate_receive(x->rc);
    if (x->r < 0)
        snprintf(x->err, sizeof x->err, "%s", vmio_errmsg());
    return NULL;
}

struct mode {
    const char *name;
    uint32_t codecs;
    uint32_t policy;
};

#define M(c) VMIO_MIGRATE_MASK(VMIO_MIGRATE_CODEC_##c)
static const struct mode modes[] = {
    { "raw", M(RAW), VMIO_MIGRATE_FIXED },
    { "zero", M(RAW) | M(ZERO), VMIO_MIGRATE_FIXED },
    { "delta", M(RAW) | M(ZERO) | M(DELTA) | M(SKIP), VMIO_MIGRATE_FIXED },
    { "dedup", M(RAW) | M(ZERO) | M(DEDUP) | M(SKIP), VMIO_MIGRATE_FIXED },
    { "zstd", M(RAW) | M(ZSTD), VMIO_MIGRATE_FIXED },
    { "lz4", M(RAW) | M(LZ4), VMIO_MIGRATE_FIXED },
    { "adaptive", VMIO_MIGRATE_CODECS_ALL, VMIO_MIGRATE_ADAPTIVE },
};

static int bench_one(struct opts *o, struct snapset *ss, const struct mode *m)
{
    struct vmio_migrate_options mo = o->mo;
    mo.codecs = m->codecs;
    mo.policy = m->policy;
    mo.max_rounds = ss->n;
    mo.downtime_ns = 1;              /* replay every snapshot */
    mo.flags |= VMIO_MIGRATE_F_DEST_ZEROED;
    vmio_migrate_receiver *rc;
    vmio_migrate_sender *s;
    if (vmio_migrate_receiver_new(&mo, &rc) < 0)
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    /* The destination VM's memory exists before a migration starts:
     * allocate and fault it in before the clock runs. */
    uint8_t *dst = mmap(NULL, ss->size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (dst == MAP_FAILED) {
        vmio_migrate_receiver_free(rc);
        return cli_fail(PROG, 1, "out of memory");
    }
    struct vmio_migrate_region dreg = { sizeof(dreg), PAGE, dst, ss->size, "ram" };
    int port = vmio_migrate_receiver_add_region(rc, &dreg);
    if (port >= 0)
        port = vmio_migrate_receiver_listen(rc, "tcp://127.0.0.1:0");
    if (port < 0 || vmio_migrate_sender_new(&mo, &s) < 0) {
        vmio_migrate_receiver_free(rc);
        munmap(dst, ss->size);
        return cli_fail(PROG, 1, "%s", vmio_errmsg());
    }
    uint8_t *mem = mmap(NULL, ss->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    if (mem == MAP_FAILED) {
        vmio_migrate_sender_free(s);
        vmio_migrate_receiver_free(rc);
        munmap(dst, ss->size);
        return cli_fail(PROG, 1, "out of memory");
    }
    memcpy(mem, ss->snap[0], ss->size);
    struct replay rp = { ss, mem, 1 };
    struct vmio_migrate_region reg = { sizeof(reg), PAGE, mem, ss->size, "ram" };
    vmio_migrate_sender_add_region(s, &reg);
    vmio_migrate_track_bitmap(s, replay_dirty, &rp);
    struct rx_thread x = { rc, 0, "" };
    pthread_t th;
    pthread_create(&th, NULL, rx_main, &x);
    char to[64];
    snprintf(to, sizeof to, "tcp://127.0.0.1:%d", port);
    double t0 = now_s();
    int r = vmio_migrate_send(s, to);
    double total = now_s() - t0;
    char serr[512] = "";
    if (r < 0)
        snprintf(serr, sizeof serr, "%s", vmio_errmsg());
    pthread_join(th, NULL);
    int status = 0;
    if (r < 0 || x.r < 0) {
        status = cli_fail(PROG, 1, "mode %s: %s%s%s", m->name, serr, serr[0] ? "; " : "", x.err);
    } else {
        struct vmio_migrate_receiver_stats rs = { .struct_size = sizeof(rs) };
        vmio_migrate_receiver_get_stats(rc, &rs);
        int rounds = vmio_migrate_sender_rounds(s);
        uint64_t raw = 0, wire = 0, enc = 0;
        for (int i = 0; i < rounds; i++) {
            struct vmio_migrate_round_stats st = { .struct_size = sizeof(st) };
            vmio_migrate_sender_round_stats(s, (uint32_t)i, &st);
            raw += st.raw_bytes;
            wire += st.wire_bytes;
            enc += st.encode_ns;
            if (!st.pages && i == rounds - 1)
                continue;            /* the empty stop-and-copy round */
            double egb = st.encode_ns ? (double)st.raw_bytes / (double)st.encode_ns : 0;
            if (o->json)
                printf("{\"mode\":\"%s\",\"link_bps\":%" PRIu64 ",\"round\":%d,\"raw_bytes\":%"
                       PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"time_s\":%.6f,"
                       "\"encode_gbps_core\":%.3f}\n", m->name, mo.link_rate * 8, i,
                       st.raw_bytes, st.wire_bytes, (double)st.round_ns / 1e9, egb);
            else
                printf("%-9s round %d: %8.1f MiB -> %8.1f MiB (%6.2fx) in %7.3f s, "
                       "encode %.2f GB/s per core\n", m->name, i,
                       (double)st.raw_bytes / 1048576.0, (double)st.wire_bytes / 1048576.0,
                       st.wire_bytes ? (double)st.raw_bytes / (double)st.wire_bytes : 0,
                       (double)st.round_ns / 1e9, egb);
        }
        double egb = enc ? (double)raw / (double)enc : 0;
        double dgb = rs.decode_ns ? (double)rs.raw_bytes / (double)rs.decode_ns : 0;
        if (o->json)
            printf("{\"mode\":\"%s\",\"link_bps\":%" PRIu64 ",\"round\":\"total\",\"raw_bytes\":%"
                   PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"time_s\":%.6f,\"encode_gbps_core\":%.3f,"
                   "\"decode_gbps_core\":%.3f,\"rounds\":%d}\n", m->name, mo.link_rate * 8, raw,
                   wire, total, egb, dgb, rounds);
        else
            printf("%-9s total  : %8.1f MiB -> %8.1f MiB (%6.2fx) in %7.3f s, encode %.2f, "
                   "decode %.2f GB/s per core\n", m->name, (double)raw / 1048576.0,
                   (double)wire / 1048576.0, wire ? (double)raw / (double)wire : 0, total, egb,
                   dgb);
        fflush(stdout);
    }
    if (!status && memcmp(dst, mem, ss->size))
        status = cli_fail(PROG, 1, "mode %s: the received memory differs", m->name);
    vmio_migrate_sender_free(s);
    vmio_migrate_receiver_free(rc);
    munmap(mem, ss->size);
    munmap(dst, ss->size);
    return status;
}

static int cmd_bench(struct opts *o, int argc, char **argv)
{
    if (argc < 1)
        return cli_usage_error(PROG, "bench needs at least one snapshot file");
    struct snapset ss = { 0, 0, calloc((size_t)argc, sizeof(uint8_t *)) };
    int status = 0;
    for (int i = 0; i < argc; i++) {
        int r = load_snap(argv[i], &ss.size, &ss.snap[i]);
        if (r < 0) {
            status = cli_fail(PROG, 1, "%s: %s", argv[i],
                              r == -ERANGE ? "size differs from the first snapshot"
                              : r == -EINVAL ? "not a non-empty multiple of 4096 bytes"
                                             : strerror(-r));
            goto out;
        }
        ss.n++;
    }
    const char *list = o->modes ? o->modes : "raw,zero,delta,dedup,zstd,lz4,adaptive";
    char *dup = strdup(list), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t && !status; t = strtok_r(NULL, ",", &save)) {
        const struct mode *m = NULL;
        for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++)
            if (!strcmp(t, modes[k].name))
                m = &modes[k];
        if (!m) {
            status = cli_usage_error(PROG, "unknown mode \"%s\"", t);
            break;
        }
        status = bench_one(o, &ss, m);
    }
    free(dup);
out:
    for (unsigned i = 0; i < ss.n; i++)
        munmap(ss.snap[i], ss.size);
    free(ss.snap);
    return status;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: " PROG " recv --listen ADDR [--digest-out FILE] [options]\n"
            "       " PROG " send --to ADDR (--demo-size SIZE | --xen-domid N) [options]\n"
            "       " PROG " bench [--link RATE] [--mode LIST] [options] SNAP0 [SNAP1 ...]\n"
            "ADDR: tcp://HOST:PORT, rdma://HOST:PORT or HOST:PORT\n"
            "options: --threads N --codecs LIST --policy adaptive|fixed --gpu auto|off|require\n"
            "         --max-rounds N --downtime-ms N --delta-cache SIZE --link RATE\n"
            "         --timeout-ms N --writers N --write-rate PAGES/S --track uffd|none --json\n"
            "modes: raw zero delta dedup zstd lz4 adaptive; codecs: raw zero rle delta\n"
            "       dedup zstd lz4 skip all; RATE: 1gbit, 10gbit, 500MB/s, ...\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    struct opts o = { .xen_domid = -1, .writers = 1, .write_rate = 20000 };
    o.mo.struct_size = sizeof(o.mo);
    enum { O_TO = 256, O_LISTEN, O_DIGEST, O_DEMO, O_XEN, O_WRITERS, O_WRATE, O_JSON,
           O_THREADS, O_CODECS, O_POLICY, O_GPU, O_ROUNDS, O_DOWNTIME, O_DCACHE, O_LINK,
           O_MODE, O_TIMEOUT, O_TRACK, O_HELP };
    static const struct option lo[] = {
        { "to", required_argument, 0, O_TO },
        { "listen", required_argument, 0, O_LISTEN },
        { "digest-out", required_argument, 0, O_DIGEST },
        { "demo-size", required_argument, 0, O_DEMO },
        { "xen-domid", required_argument, 0, O_XEN },
        { "writers", required_argument, 0, O_WRITERS },
        { "write-rate", required_argument, 0, O_WRATE },
        { "json", no_argument, 0, O_JSON },
        { "threads", required_argument, 0, O_THREADS },
        { "codecs", required_argument, 0, O_CODECS },
        { "policy", required_argument, 0, O_POLICY },
        { "gpu", required_argument, 0, O_GPU },
        { "max-rounds", required_argument, 0, O_ROUNDS },
        { "downtime-ms", required_argument, 0, O_DOWNTIME },
        { "delta-cache", required_argument, 0, O_DCACHE },
        { "link", required_argument, 0, O_LINK },
        { "mode", required_argument, 0, O_MODE },
        { "timeout-ms", required_argument, 0, O_TIMEOUT },
        { "track", required_argument, 0, O_TRACK },
        { "help", no_argument, 0, O_HELP },
        { 0, 0, 0, 0 },
    };
    optind = 2;
    int c;
    uint64_t v;
    char *end;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_TO: o.to = optarg; break;
        case O_LISTEN: o.listen = optarg; break;
        case O_DIGEST: o.digest_out = optarg; break;
        case O_DEMO:
            if (cli_parse_size(optarg, &o.demo_size) < 0 || !o.demo_size)
                return cli_usage_error(PROG, "bad --demo-size \"%s\"", optarg);
            break;
        case O_XEN:
            o.xen_domid = strtol(optarg, &end, 10);
            if (*end || o.xen_domid < 0 || o.xen_domid > 0x7fef)
                return cli_usage_error(PROG, "bad --xen-domid \"%s\"", optarg);
            break;
        case O_WRITERS:
            o.writers = (unsigned)strtoul(optarg, &end, 10);
            if (*end || o.writers > 64)
                return cli_usage_error(PROG, "bad --writers \"%s\"", optarg);
            break;
        case O_WRATE:
            o.write_rate = strtoull(optarg, &end, 10);
            if (*end)
                return cli_usage_error(PROG, "bad --write-rate \"%s\"", optarg);
            break;
        case O_JSON: o.json = 1; break;
        case O_THREADS:
            o.mo.threads = (uint32_t)strtoul(optarg, &end, 10);
            if (*end || o.mo.threads > 64)
                return cli_usage_error(PROG, "bad --threads \"%s\"", optarg);
            break;
        case O_CODECS:
            if (parse_codecs(optarg, &o.mo.codecs) < 0)
                return cli_usage_error(PROG, "bad --codecs \"%s\"", optarg);
            break;
        case O_POLICY:
            if (!strcmp(optarg, "adaptive"))
                o.mo.policy = VMIO_MIGRATE_ADAPTIVE;
            else if (!strcmp(optarg, "fixed"))
                o.mo.policy = VMIO_MIGRATE_FIXED;
            else
                return cli_usage_error(PROG, "bad --policy \"%s\"", optarg);
            break;
        case O_GPU:
            if (!strcmp(optarg, "auto"))
                o.mo.gpu = VMIO_MIGRATE_GPU_AUTO;
            else if (!strcmp(optarg, "off"))
                o.mo.gpu = VMIO_MIGRATE_GPU_OFF;
            else if (!strcmp(optarg, "require"))
                o.mo.gpu = VMIO_MIGRATE_GPU_REQUIRE;
            else
                return cli_usage_error(PROG, "bad --gpu \"%s\"", optarg);
            break;
        case O_ROUNDS:
            o.mo.max_rounds = (uint32_t)strtoul(optarg, &end, 10);
            if (*end || !o.mo.max_rounds || o.mo.max_rounds > 10000)
                return cli_usage_error(PROG, "bad --max-rounds \"%s\"", optarg);
            break;
        case O_DOWNTIME:
            v = strtoull(optarg, &end, 10);
            if (*end || !v)
                return cli_usage_error(PROG, "bad --downtime-ms \"%s\"", optarg);
            o.mo.downtime_ns = v * 1000000u;
            break;
        case O_DCACHE:
            if (cli_parse_size(optarg, &o.mo.delta_cache_bytes) < 0)
                return cli_usage_error(PROG, "bad --delta-cache \"%s\"", optarg);
            break;
        case O_LINK:
            if (parse_rate(optarg, &o.mo.link_rate) < 0)
                return cli_usage_error(PROG, "bad --link \"%s\" (1gbit, 10gbit, 500MB/s)",
                                       optarg);
            break;
        case O_MODE: o.modes = optarg; break;
        case O_TIMEOUT:
            o.mo.timeout_ms = (uint32_t)strtoul(optarg, &end, 10);
            if (*end)
                return cli_usage_error(PROG, "bad --timeout-ms \"%s\"", optarg);
            break;
        case O_TRACK:
            if (!strcmp(optarg, "uffd"))
                o.track_none = 0;
            else if (!strcmp(optarg, "none"))
                o.track_none = 1;
            else
                return cli_usage_error(PROG, "bad --track \"%s\" (uffd, none)", optarg);
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (!strcmp(cmd, "recv"))
        return cmd_recv(&o);
    if (!strcmp(cmd, "send"))
        return cmd_send(&o);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(&o, argc - optind, argv + optind);
    return cli_usage_error(PROG, "unknown command \"%s\" (recv, send, bench)", cmd);
}
