/* vmio-bench pingpong: latency and throughput of the transport seam
 * (transport/transport.h) over TCP and RDMA, measured like IMB PingPong.
 *
 *   vmio-bench pingpong --server --listen HOST:PORT [--transport T] [--once]
 *   vmio-bench pingpong --connect HOST:PORT [--transport T] [--mode M] ...
 *
 * The server serves one client after another. Everything below travels on
 * the transport's byte stream; integers are big-endian.
 *
 *   client -> server  SETUP, 64 bytes: magic "VMPP", version, mode, the
 *                     smallest and largest size, iterations (0: the
 *                     default schedule), warmup (all ones: default), qd,
 *                     flags (0); the remaining bytes are zero.
 *   server -> client  REPLY, 128 bytes: magic, version, status (0 or an
 *                     errno value) and a NUL-terminated message. A setup
 *                     that fails validation is refused and the connection
 *                     closed.
 *   Then per size: client -> server SIZE {size, iters, warmup}; server ->
 *   client SIZE_REPLY {status, addr, len, rkey} (status: run, skip because
 *   of the server's --max-mem or a failed allocation, or fail); both run
 *   the size. END ends the session. Every later message is 32 bytes:
 *   type, arg, a, b, c.
 *
 * send: per iteration k (warmup first) both ends stamp the head and tail
 * of their send buffer with k; the client sends size bytes, the server
 * receives them and sends size bytes back. The first and the last measured
 * iteration are check iterations: the server poisons its receive buffer
 * and sends READY before, verifies the whole message after replying and
 * sends STATUS; the client poisons and verifies its side the same way.
 * Other iterations verify the stamps. The timed span is the client's
 * send + receive only, never the checking.
 *
 * write, read: the server maps and registers qd * size bytes (one slice
 * per client thread) and returns addr/rkey in SIZE_REPLY. The client runs
 * the ops in three phases per size: the first op of every thread, the
 * middle ones, the last op. Between phases it asks the server to PREPARE
 * (write: poison the slices; read: fill them with the expected pattern)
 * and to VERIFY (write), or verifies its own slices (read). DONE ends the
 * size. */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vmio/core.h>

#include "config.h"
#include "core/internal.h"
#include "transport/transport.h"

#include "cli-util.h"
#include "vmio-bench-pingpong.h"

#define PROG "vmio-bench"

enum { PP_EXIT_OK = 0, PP_EXIT_FAILED = 1, PP_EXIT_USAGE = CLI_EXIT_USAGE };

#define PP_MAGIC 0x564d5050u       /* "VMPP" */
#define PP_VERSION 1u
#define PP_SETUP_LEN 64
#define PP_REPLY_LEN 128
#define PP_REPLY_MSG 112
#define PP_MSG_LEN 32

#define PP_MAX_SIZE (1ull << 30)
#define PP_MAX_ITERS 10000000ull
#define PP_MAX_WARMUP 1000000u
#define PP_WARMUP_AUTO 0xffffffffu
#define PP_MAX_QD 256u
#define PP_MAX_SAMPLES 100000000ull    /* qd * iters: latencies kept */

/* Default schedule: about PP_VOLUME bytes each way per size, between
 * PP_ITERS_LO and PP_ITERS_HI iterations; warmup a tenth, at most 100. */
#define PP_VOLUME (1ull << 30)
#define PP_ITERS_HI 10000ull
#define PP_ITERS_LO 4ull

#define PP_SETUP_TIMEOUT_S 10
#define PP_CONNECT_TIMEOUT_MS 10000

enum { PP_SEND = 1, PP_WRITE = 2, PP_READ = 3 };
enum { MSG_SIZE = 1, MSG_SIZE_REPLY, MSG_END, MSG_READY, MSG_STATUS, MSG_CMD };
enum { CMD_PREPARE = 1, CMD_VERIFY, CMD_DONE };
enum { SZ_OK = 0, SZ_MAXMEM, SZ_NOMEM, SZ_FAIL };

static const char *mode_name(unsigned m)
{
    return m == PP_SEND ? "send" : m == PP_WRITE ? "write" : m == PP_READ ? "read" : "?";
}

/* ---- small helpers ---------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Per-iteration time stamps: the CPU's time-stamp counter where there is
 * one (as perftest does), scaled to nanoseconds by the monotonic clock over
 * the whole run. Where the clock source is not the TSC (virtual machines:
 * HPET, ACPI PM timer), every clock_gettime() is a system call and a
 * device read, which would be measured as latency. */
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static uint64_t stamp(void)
{
    return __rdtsc();
}
#else
static uint64_t stamp(void)
{
    return now_ns();
}
#endif

/* CPU time of the whole process (user + system, every thread). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

#define fail(...) cli_fail(PROG, PP_EXIT_FAILED, __VA_ARGS__)

#define usage_error(...) cli_usage_error(PROG " pingpong", __VA_ARGS__)

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}
static void put32(unsigned char *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}
static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}
static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}
static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* The message of the last failed call: the library's when it recorded one,
 * else the errno text. */
static const char *io_errmsg(int r)
{
    const char *m = vmio_errmsg();
    if (m && *m)
        return m;
    if (r == -EPIPE)
        return "the peer closed the connection";
    return strerror(r < 0 ? -r : r);
}

static int send_all(struct vmio_transport *t, const void *buf, size_t len)
{
    struct iovec v = { (void *)(uintptr_t)buf, len };
    vmio_clear_error();
    return vmio_transport_sendv(t, &v, 1);
}

static int recv_all(struct vmio_transport *t, void *buf, size_t len)
{
    vmio_clear_error();
    return vmio_transport_recv(t, buf, len);
}

struct pp_msg {
    uint32_t type, arg;
    uint64_t a, b, c;
};

static int msg_send(struct vmio_transport *t, uint32_t type, uint32_t arg, uint64_t a,
                    uint64_t b, uint64_t c)
{
    unsigned char m[PP_MSG_LEN];
    put32(m, type);
    put32(m + 4, arg);
    put64(m + 8, a);
    put64(m + 16, b);
    put64(m + 24, c);
    return send_all(t, m, sizeof m);
}

static int msg_recv(struct vmio_transport *t, struct pp_msg *out)
{
    unsigned char m[PP_MSG_LEN];
    int r = recv_all(t, m, sizeof m);
    if (r < 0)
        return r;
    out->type = get32(m);
    out->arg = get32(m + 4);
    out->a = get64(m + 8);
    out->b = get64(m + 16);
    out->c = get64(m + 24);
    return 0;
}

static void *buf_alloc(uint64_t len)
{
    if (len > SIZE_MAX)
        return NULL;
    void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void buf_free(void *p, uint64_t len)
{
    if (p)
        munmap(p, (size_t)len);
}

/* Buffer bytes one side needs for a size: send and receive buffers, or one
 * registered slice per thread. The same on both ends. */
static uint64_t need_bytes(unsigned mode, unsigned qd, uint64_t size)
{
    return mode == PP_SEND ? 2 * size : (uint64_t)qd * size;
}

static uint64_t default_max_mem(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0)
        return 1ull << 30;
    return (uint64_t)pages * (uint64_t)psz / 2;
}

/* ---- data pattern ------------------------------------------------------
 *
 * A message of len bytes in direction dir (0: client to server, 1: back)
 * for thread slice s holds 64-bit words seed ^ (w + 1) * K (little-endian
 * bytes), every word distinct, so a misplaced or stale block shows. Its
 * first 8 and (from 16 bytes on) last 8 bytes are XORed with a stamp of
 * the iteration. Poison is the exact complement of what is expected. The
 * buffer splits into head bytes [0, 8), middle words, tail bytes. */

#define PAT_K 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

static uint64_t pat_seed(uint64_t size, unsigned dir, unsigned slice)
{
    return mix64(size ^ ((uint64_t)dir << 62) ^ ((uint64_t)slice << 40) ^ 0x5650504154544552ull);
}

/* Odd multiplier: stamps up to 255 apart differ in their low byte, which
 * is all a one-byte message carries. */
static uint64_t stamp_word(uint64_t stamp)
{
    return (stamp + 1) * 0xD6E8FEB86659FD93ull;
}

static inline uint64_t pat_word(uint64_t seed, uint64_t w)
{
    return seed ^ ((w + 1) * PAT_K);
}

/* Middle words are [1, mid_end(len)); tail bytes [8 * max(mid_end, 1), len). */
static size_t mid_end(size_t len)
{
    return len >= 16 ? (len - 8) / 8 : len / 8;
}

static size_t tail_start(size_t len)
{
    size_t m = mid_end(len);
    return 8 * (m > 1 ? m : 1);
}

static unsigned char pat_byte(size_t p, size_t len, uint64_t seed, uint64_t sw)
{
    unsigned char b = (unsigned char)(pat_word(seed, p / 8) >> (8 * (p % 8)));
    if (p < 8)
        b ^= (unsigned char)(sw >> (8 * p));
    else if (len >= 16 && p >= len - 8)
        b ^= (unsigned char)(sw >> (8 * (p - (len - 8))));
    return b;
}

/* (Re)write the head and tail bytes: what a new iteration changes. */
static void pat_edges(unsigned char *buf, size_t len, uint64_t seed, uint64_t stamp,
                      unsigned char inv)
{
    uint64_t sw = stamp_word(stamp);
    size_t h = len < 8 ? len : 8;
    for (size_t p = 0; p < h; p++)
        buf[p] = pat_byte(p, len, seed, sw) ^ inv;
    for (size_t p = tail_start(len); p < len; p++)
        buf[p] = pat_byte(p, len, seed, sw) ^ inv;
}

static void pat_fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t stamp,
                     unsigned char inv)
{
    uint64_t iw = inv ? ~0ull : 0;
    size_t m = mid_end(len);
    for (size_t w = 1; w < m; w++) {
        uint64_t v = htole64(pat_word(seed, w) ^ iw);
        memcpy(buf + 8 * w, &v, 8);
    }
    pat_edges(buf, len, seed, stamp, inv);
}

/* -1 when bytes [from, to) hold the pattern, else the first bad offset. */
static int64_t pat_check_bytes(const unsigned char *buf, size_t from, size_t to, size_t len,
                               uint64_t seed, uint64_t sw)
{
    for (size_t p = from; p < to; p++)
        if (buf[p] != pat_byte(p, len, seed, sw))
            return (int64_t)p;
    return -1;
}

/* -1 when the edges hold the pattern, else the first bad offset. */
static int64_t pat_check_edges(const unsigned char *buf, size_t len, uint64_t seed,
                               uint64_t stamp)
{
    uint64_t sw = stamp_word(stamp);
    int64_t bad = pat_check_bytes(buf, 0, len < 8 ? len : 8, len, seed, sw);
    return bad >= 0 ? bad : pat_check_bytes(buf, tail_start(len), len, len, seed, sw);
}

/* -1 when the whole buffer holds the pattern, else the first bad offset. */
static int64_t pat_check(const unsigned char *buf, size_t len, uint64_t seed, uint64_t stamp)
{
    uint64_t sw = stamp_word(stamp);
    int64_t bad = pat_check_bytes(buf, 0, len < 8 ? len : 8, len, seed, sw);
    if (bad >= 0)
        return bad;
    size_t m = mid_end(len);
    for (size_t w = 1; w < m; w++) {
        uint64_t v;
        memcpy(&v, buf + 8 * w, 8);
        if (le64toh(v) != pat_word(seed, w))
            return pat_check_bytes(buf, 8 * w, len, len, seed, sw);
    }
    return pat_check_bytes(buf, tail_start(len), len, len, seed, sw);
}

/* "iteration 3" or "warmup iteration 3" for iteration k of a size. */
static const char *iter_name(uint64_t k, uint64_t warmup, char *buf, size_t n)
{
    if (k < warmup)
        snprintf(buf, n, "warmup iteration %" PRIu64, k);
    else
        snprintf(buf, n, "iteration %" PRIu64, k - warmup);
    return buf;
}

/* ---- setup message ---------------------------------------------------- */

struct pp_setup {
    uint16_t version, mode;
    uint64_t min_size, max_size;
    uint64_t iters;          /* 0 = default schedule */
    uint32_t warmup;         /* PP_WARMUP_AUTO = default */
    uint32_t qd;
    uint32_t flags;
};

static void setup_encode(unsigned char b[PP_SETUP_LEN], const struct pp_setup *s)
{
    memset(b, 0, PP_SETUP_LEN);
    put32(b, PP_MAGIC);
    put16(b + 4, s->version);
    put16(b + 6, s->mode);
    put64(b + 8, s->min_size);
    put64(b + 16, s->max_size);
    put64(b + 24, s->iters);
    put32(b + 32, s->warmup);
    put32(b + 36, s->qd);
    put32(b + 40, s->flags);
}

/* Strict validation on the server. 0, or a positive errno value with the
 * reason in msg. */
static int setup_decode(const unsigned char b[PP_SETUP_LEN], int is_rdma, struct pp_setup *s,
                        char *msg, size_t n)
{
    uint32_t magic = get32(b);
    if (magic != PP_MAGIC) {
        snprintf(msg, n, "not a pingpong setup message (magic 0x%08" PRIx32 ", expected 0x%08x)",
                 magic, PP_MAGIC);
        return EPROTO;
    }
    s->version = get16(b + 4);
    s->mode = get16(b + 6);
    s->min_size = get64(b + 8);
    s->max_size = get64(b + 16);
    s->iters = get64(b + 24);
    s->warmup = get32(b + 32);
    s->qd = get32(b + 36);
    s->flags = get32(b + 40);
    if (s->version != PP_VERSION) {
        snprintf(msg, n, "unsupported protocol version %u (this server speaks %u)",
                 (unsigned)s->version, PP_VERSION);
        return EPROTO;
    }
    for (int i = 44; i < PP_SETUP_LEN; i++) {
        if (b[i]) {
            snprintf(msg, n, "reserved byte %d of the setup message is not zero", i);
            return EPROTO;
        }
    }
    if (s->flags) {
        snprintf(msg, n, "unknown flags 0x%" PRIx32, s->flags);
        return EINVAL;
    }
    if (s->mode < PP_SEND || s->mode > PP_READ) {
        snprintf(msg, n, "unknown mode %u (1 send, 2 write, 3 read)", (unsigned)s->mode);
        return EINVAL;
    }
    if (!is_pow2(s->min_size) || !is_pow2(s->max_size) || s->max_size > PP_MAX_SIZE ||
        s->min_size > s->max_size) {
        snprintf(msg, n, "bad size range %" PRIu64 "..%" PRIu64
                 " (powers of two from 1 to 1G, smallest first)", s->min_size, s->max_size);
        return EINVAL;
    }
    if (s->iters > PP_MAX_ITERS) {
        snprintf(msg, n, "bad iteration count %" PRIu64 " (at most %llu)", s->iters,
                 PP_MAX_ITERS);
        return EINVAL;
    }
    if (s->warmup != PP_WARMUP_AUTO && s->warmup > PP_MAX_WARMUP) {
        snprintf(msg, n, "bad warmup count %" PRIu32 " (at most %u)", s->warmup, PP_MAX_WARMUP);
        return EINVAL;
    }
    if (s->qd < 1 || s->qd > PP_MAX_QD || (s->mode == PP_SEND && s->qd != 1)) {
        snprintf(msg, n, "bad qd %" PRIu32 " (1 for send, 1 to %u for write and read)", s->qd,
                 PP_MAX_QD);
        return EINVAL;
    }
    if (s->mode != PP_SEND && !is_rdma) {
        snprintf(msg, n, "mode %s needs an RDMA connection (TCP has no one-sided operations)",
                 mode_name(s->mode));
        return ENOTSUP;
    }
    return 0;
}

static uint64_t sched_iters(const struct pp_setup *s, uint64_t size)
{
    if (s->iters)
        return s->iters;
    uint64_t n = PP_VOLUME / size;
    return n > PP_ITERS_HI ? PP_ITERS_HI : n < PP_ITERS_LO ? PP_ITERS_LO : n;
}

static uint64_t sched_warmup(const struct pp_setup *s, uint64_t iters)
{
    if (s->warmup != PP_WARMUP_AUTO)
        return s->warmup;
    uint64_t w = iters / 10;
    return w > 100 ? 100 : w;
}

/* ---- options ---------------------------------------------------------- */

struct pp_opts {
    int server, once, json;
    const char *addr;          /* --listen or --connect argument */
    char *host;                /* NULL = any (server) */
    uint16_t port;
    const char *port_file;
    int rdma;
    struct pp_setup plan;
    uint64_t max_mem;
    unsigned busy_poll_us;
};

static void pingpong_usage(FILE *fp)
{
    fprintf(fp,
            "Usage: " PROG " pingpong --server --listen HOST:PORT [OPTIONS]\n"
            "       " PROG " pingpong --connect HOST:PORT [OPTIONS]\n"
            "Latency and throughput of message sizes between two hosts, like IMB PingPong.\n"
            "\n"
            "      --server           serve clients one after another until killed\n"
            "      --listen HOST:PORT server address (HOST empty or * for any; PORT 0 for\n"
            "                         an ephemeral port, TCP only)\n"
            "      --once             serve one client, then exit with its result\n"
            "      --port-file FILE   write the bound port there once listening\n"
            "      --connect HOST:PORT\n"
            "                         run the client against that server\n"
            "      --transport T      tcp or rdma (default tcp)\n"
            "      --mode M           send (ping-pong over the byte stream, one-way\n"
            "                         latency), write or read (RDMA only: one-sided ops,\n"
            "                         completion latency) (default send)\n"
            "      --sizes MIN..MAX   powers of two from 1 to 1G (default 1..1G); one\n"
            "                         SIZE alone runs that size\n"
            "      --iters N          iterations per size (default: 10000, fewer from\n"
            "                         128k on, at least 4)\n"
            "      --warmup N         unmeasured iterations first (default iters/10, <= 100)\n"
            "      --qd N             write/read: N threads issuing ops (default 1)\n"
            "      --max-mem SIZE     skip sizes whose buffers need more (default: half\n"
            "                         of the physical memory)\n"
            "      --busy-poll US     rdma: spin on the completion queue for US\n"
            "                         microseconds before sleeping\n"
            "      --json             one JSON object per size on stdout\n"
            "  -h, --help             show this help\n");
}

void pingpong_usage_summary(FILE *fp)
{
    fprintf(fp, "  pingpong       message latency and throughput over TCP or RDMA\n"
                "                 (see '" PROG " pingpong --help'; RDMA transport %s)\n",
            VMIO_BUILT_RDMA ? "built in" : "not built in");
}

enum { OPT_SERVER = 256, OPT_LISTEN, OPT_CONNECT, OPT_ONCE, OPT_PORT_FILE, OPT_TRANSPORT,
       OPT_MODE, OPT_SIZES, OPT_ITERS, OPT_WARMUP, OPT_QD, OPT_MAX_MEM, OPT_BUSY_POLL,
       OPT_JSON };

/* HOST:PORT or [IPV6]:PORT. -1 with a usage message printed on error. */
static int parse_hostport(const char *opt, const char *arg, int allow_any, struct pp_opts *o)
{
    const char *port;
    size_t hl;
    const char *h;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (!close || close[1] != ':' || close == arg + 1)
            return usage_error("bad %s '%s' (expected [IPV6]:PORT)", opt, arg);
        h = arg + 1;
        hl = (size_t)(close - arg - 1);
        port = close + 2;
    } else {
        const char *colon = strrchr(arg, ':');
        if (!colon)
            return usage_error("bad %s '%s' (expected HOST:PORT)", opt, arg);
        if (memchr(arg, ':', (size_t)(colon - arg)))
            return usage_error("bad %s '%s' (put IPv6 addresses in brackets: [ADDR]:PORT)",
                               opt, arg);
        h = arg;
        hl = (size_t)(colon - arg);
        port = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (*port < '0' || *port > '9' || errno || *end || p > 65535 || (!allow_any && p == 0))
        return usage_error("bad port in %s '%s' (expected %s..65535)", opt, arg,
                           allow_any ? "0" : "1");
    free(o->host);
    o->host = NULL;
    if (hl == 0 || (hl == 1 && h[0] == '*')) {
        if (!allow_any)
            return usage_error("bad %s '%s' (no host)", opt, arg);
    } else {
        o->host = strndup(h, hl);
        if (!o->host)
            return usage_error("out of memory");
    }
    o->port = (uint16_t)p;
    o->addr = arg;
    return 0;
}

static int parse_sizes(const char *arg, struct pp_setup *s)
{
    const char *dots = strstr(arg, "..");
    char lo[64];
    const char *hi = arg;
    uint64_t a, b;
    if (dots) {
        size_t l = (size_t)(dots - arg);
        if (l == 0 || l >= sizeof lo)
            return -1;
        memcpy(lo, arg, l);
        lo[l] = '\0';
        hi = dots + 2;
        if (cli_parse_size(lo, &a) < 0)
            return -1;
    }
    if (cli_parse_size(hi, &b) < 0)
        return -1;
    if (!dots)
        a = b;
    if (!is_pow2(a) || !is_pow2(b) || a > b || b > PP_MAX_SIZE)
        return -1;
    s->min_size = a;
    s->max_size = b;
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int pingpong_parse(int argc, char **argv, struct pp_opts *o)
{
    static const struct option longopts[] = {
        { "server", no_argument, NULL, OPT_SERVER },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "connect", required_argument, NULL, OPT_CONNECT },
        { "once", no_argument, NULL, OPT_ONCE },
        { "port-file", required_argument, NULL, OPT_PORT_FILE },
        { "transport", required_argument, NULL, OPT_TRANSPORT },
        { "mode", required_argument, NULL, OPT_MODE },
        { "sizes", required_argument, NULL, OPT_SIZES },
        { "iters", required_argument, NULL, OPT_ITERS },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "qd", required_argument, NULL, OPT_QD },
        { "max-mem", required_argument, NULL, OPT_MAX_MEM },
        { "busy-poll", required_argument, NULL, OPT_BUSY_POLL },
        { "json", no_argument, NULL, OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *listen = NULL, *connect = NULL, *client_only = NULL, *server_only = NULL;
    int busy_given = 0;
    memset(o, 0, sizeof *o);
    o->plan.version = PP_VERSION;
    o->plan.mode = PP_SEND;
    o->plan.min_size = 1;
    o->plan.max_size = PP_MAX_SIZE;
    o->plan.warmup = PP_WARMUP_AUTO;
    o->plan.qd = 1;
    o->max_mem = default_max_mem();
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case OPT_SERVER: o->server = 1; break;
        case OPT_LISTEN: listen = optarg; break;
        case OPT_CONNECT: connect = optarg; break;
        case OPT_ONCE: o->once = 1; server_only = "--once"; break;
        case OPT_PORT_FILE: o->port_file = optarg; server_only = "--port-file"; break;
        case OPT_TRANSPORT:
            if (strcmp(optarg, "tcp") == 0)
                o->rdma = 0;
            else if (strcmp(optarg, "rdma") == 0)
                o->rdma = 1;
            else
                return usage_error("invalid --transport '%s' (tcp or rdma)", optarg);
            break;
        case OPT_MODE:
            if (strcmp(optarg, "send") == 0)
                o->plan.mode = PP_SEND;
            else if (strcmp(optarg, "write") == 0)
                o->plan.mode = PP_WRITE;
            else if (strcmp(optarg, "read") == 0)
                o->plan.mode = PP_READ;
            else
                return usage_error("invalid --mode '%s' (send, write or read)", optarg);
            client_only = "--mode";
            break;
        case OPT_SIZES:
            if (parse_sizes(optarg, &o->plan) < 0)
                return usage_error("invalid --sizes '%s' (MIN..MAX or SIZE: powers of two "
                                   "from 1 to 1G)", optarg);
            client_only = "--sizes";
            break;
        case OPT_ITERS:
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > PP_MAX_ITERS)
                return usage_error("invalid --iters '%s' (1 to %llu)", optarg, PP_MAX_ITERS);
            o->plan.iters = v;
            client_only = "--iters";
            break;
        case OPT_WARMUP:
            if (cli_parse_size(optarg, &v) < 0 || v > PP_MAX_WARMUP)
                return usage_error("invalid --warmup '%s' (0 to %u)", optarg, PP_MAX_WARMUP);
            o->plan.warmup = (uint32_t)v;
            client_only = "--warmup";
            break;
        case OPT_QD:
            if (cli_parse_size(optarg, &v) < 0 || v < 1 || v > PP_MAX_QD)
                return usage_error("invalid --qd '%s' (1 to %u)", optarg, PP_MAX_QD);
            o->plan.qd = (uint32_t)v;
            client_only = "--qd";
            break;
        case OPT_MAX_MEM:
            if (cli_parse_size(optarg, &v) < 0 || v == 0)
                return usage_error("invalid --max-mem '%s'", optarg);
            o->max_mem = v;
            break;
        case OPT_BUSY_POLL:
            if (cli_parse_size(optarg, &v) < 0 || v > 10000000)
                return usage_error("invalid --busy-poll '%s' (microseconds, 0 to 10000000)",
                                   optarg);
            o->busy_poll_us = (unsigned)v;
            busy_given = 1;
            break;
        case OPT_JSON: o->json = 1; client_only = "--json"; break;
        case 'h':
            pingpong_usage(stdout);
            exit(PP_EXIT_OK);
        case '?':
            if (optopt)
                return usage_error("invalid option '-%c'", optopt);
            return usage_error("invalid option '%s'", argv[optind - 1]);
        default:
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->server) {
        if (connect)
            return usage_error("--server and --connect exclude each other");
        if (!listen)
            return usage_error("--server needs --listen HOST:PORT");
        if (client_only)
            return usage_error("%s is a client option", client_only);
        if (parse_hostport("--listen", listen, 1, o) != 0)
            return PP_EXIT_USAGE;
        if (o->rdma && o->port == 0)
            return usage_error("--transport rdma needs a --listen port other than 0");
    } else {
        if (!connect)
            return usage_error("give --server --listen HOST:PORT or --connect HOST:PORT");
        if (listen)
            return usage_error("--listen needs --server");
        if (server_only)
            return usage_error("%s is a server option", server_only);
        if (parse_hostport("--connect", connect, 0, o) != 0)
            return PP_EXIT_USAGE;
        if (o->plan.mode != PP_SEND && !o->rdma)
            return usage_error("--mode %s needs --transport rdma (TCP has no one-sided "
                               "operations)", mode_name(o->plan.mode));
        if (o->plan.mode == PP_SEND && o->plan.qd != 1)
            return usage_error("--qd is for --mode write and read");
    }
    if (!o->server && o->plan.iters * o->plan.qd > PP_MAX_SAMPLES)
        return usage_error("--iters times --qd is more than %llu latencies to keep",
                           PP_MAX_SAMPLES);
    if (busy_given && !o->rdma)
        return usage_error("--busy-poll is for --transport rdma");
    return -1;
}

/* ---- results ---------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank, in microseconds after scaling. */
static double pct_us(const uint64_t *v, size_t n, double p, double scale)
{
    return (double)cli_percentile(v, n, p) * scale / 1000.0;
}

struct pp_result {
    uint64_t size, iters, warmup;
    unsigned qd;
    uint64_t *lat;            /* ns, qd * iters samples */
    size_t nlat;
    double scale;             /* 0.5: one-way from round trips */
    double seconds;           /* measured time */
    double bytes;             /* moved in the measured time, one direction */
    double cpu;
    int ok;
    char why[256];            /* integrity failure */
};

struct client {
    const struct pp_opts *o;
    struct vmio_transport *t;
    const char *transport;
};

static void print_header(const struct client *C)
{
    const struct pp_opts *o = C->o;
    const struct pp_setup *s = &o->plan;
    printf("# " PROG " pingpong: %s over %s to %s, %" PRIu64 "..%" PRIu64 " bytes", mode_name(s->mode),
           C->transport, o->addr, s->min_size, s->max_size);
    if (s->mode != PP_SEND)
        printf(", %u thread%s", s->qd, s->qd == 1 ? "" : "s");
    printf("\n");
    if (s->mode == PP_SEND)
        printf("# latency: one way (round trip / 2), microseconds; MB/s: bytes / one-way time\n");
    else
        printf("# latency: completion of one RDMA %s (a full round trip), microseconds;\n"
               "# MB/s: all threads' bytes / time\n", s->mode == PP_WRITE ? "WRITE" : "READ");
    printf("# %12s %8s %9s %9s %9s %9s %9s %9s %9s %10s %7s  %s\n", "bytes", "iters", "min",
           "median", "mean", "p90", "p99", "p99.9", "max", "MB/s", "cpu_s", "check");
}

static void print_skip(const struct client *C, uint64_t size, const char *why)
{
    if (C->o->json) {
        printf("{\"mode\": \"pingpong\", \"test\": \"%s\", \"transport\": \"%s\", \"size\": %" PRIu64
               ", \"skipped\": true, \"reason\": ", mode_name(C->o->plan.mode), C->transport,
               size);
        cli_json_string(stdout, why);
        printf("}\n");
    } else {
        printf("  %12" PRIu64 " skipped: %s\n", size, why);
    }
    fflush(stdout);
    fprintf(stderr, PROG ": size %" PRIu64 " skipped: %s\n", size, why);
}

static void print_result(const struct client *C, struct pp_result *r)
{
    qsort(r->lat, r->nlat, sizeof *r->lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < r->nlat; i++)
        sum += (double)r->lat[i];
    double mean = r->nlat ? sum / (double)r->nlat * r->scale / 1000.0 : 0;
    double lmin = r->nlat ? (double)r->lat[0] * r->scale / 1000.0 : 0;
    double lmax = r->nlat ? (double)r->lat[r->nlat - 1] * r->scale / 1000.0 : 0;
    double p50 = pct_us(r->lat, r->nlat, 50, r->scale), p90 = pct_us(r->lat, r->nlat, 90, r->scale);
    double p99 = pct_us(r->lat, r->nlat, 99, r->scale);
    double p999 = pct_us(r->lat, r->nlat, 99.9, r->scale);
    double mbps;
    if (C->o->plan.mode == PP_SEND)
        mbps = mean > 0 ? (double)r->size / mean : 0;      /* bytes per us = MB/s */
    else
        mbps = r->seconds > 0 ? r->bytes / r->seconds / 1e6 : 0;
    const char *test = mode_name(C->o->plan.mode);
    if (C->o->json) {
        printf("{\"mode\": \"pingpong\", \"test\": \"%s\", \"transport\": \"%s\", \"size\": %" PRIu64
               ", \"iters\": %" PRIu64 ", \"warmup\": %" PRIu64 ", \"qd\": %u, \"ops\": %zu"
               ", \"latency\": \"%s\", \"lat_us\": {\"min\": %.3f, \"median\": %.3f"
               ", \"mean\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, \"max\": %.3f}"
               ", \"mb_per_s\": %.3f, \"seconds\": %.6f, \"client_cpu_s\": %.6f"
               ", \"integrity\": \"%s\"",
               test, C->transport, r->size, r->iters, r->warmup, r->qd, r->nlat,
               C->o->plan.mode == PP_SEND ? "one-way" : "round-trip", lmin, p50, mean, p90, p99,
               p999, lmax, mbps, r->seconds, r->cpu, r->ok ? "ok" : "failed");
        if (!r->ok) {
            printf(", \"error\": ");
            cli_json_string(stdout, r->why);
        }
        printf("}\n");
    } else {
        printf("  %12" PRIu64 " %8" PRIu64 " %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %10.2f %7.3f  %s\n",
               r->size, r->iters, lmin, p50, mean, p90, p99, p999, lmax, mbps, r->cpu,
               r->ok ? "ok" : "FAILED");
    }
    fflush(stdout);
}

static void result_bad(struct pp_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result_bad(struct pp_result *r, const char *fmt, ...)
{
    if (!r->ok)
        return;
    r->ok = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
}

/* ---- the RDMA seam shims ---------------------------------------------- */

static int pp_connect(const struct pp_opts *o, struct vmio_transport **t)
{
    vmio_clear_error();
    if (!o->rdma)
        return vmio_tcp_connect("tcp", o->host, o->port, PP_CONNECT_TIMEOUT_MS, t);
    struct vmio_rdma_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.busy_poll_us = o->busy_poll_us;
    return vmio_rdma_connect("rdma", o->host, o->port, PP_CONNECT_TIMEOUT_MS, &ro, t);
}

/* ---- client: send mode ------------------------------------------------ */

static int expect_msg(struct client *C, uint32_t type, struct pp_msg *m, const char *what)
{
    int r = msg_recv(C->t, m);
    if (r < 0)
        return fail("%s: waiting for %s: %s", C->o->addr, what, io_errmsg(r));
    if (m->type != type)
        return fail("%s: protocol error: message type %" PRIu32 " instead of %s", C->o->addr,
                    m->type, what);
    return 0;
}

static int client_send_size(struct client *C, unsigned char *buf, struct pp_result *res)
{
    size_t size = (size_t)res->size;
    unsigned char *sb = buf, *rb = buf + size;
    uint64_t n = res->iters, w = res->warmup;
    uint64_t c2s = pat_seed(size, 0, 0), s2c = pat_seed(size, 1, 0);
    struct pp_msg m;
    int r;
    char in[48];
    double cpu0 = 0, cpu_check = 0;
    pat_fill(sb, size, c2s, 0, 0);
    uint64_t clock0 = 0, stamp0 = 0;
    for (uint64_t k = 0; k < w + n; k++) {
        int measured = k >= w;
        uint64_t i = k - w;
        int check = measured && (i == 0 || i == n - 1);
        if (k == w) {
            cpu0 = cpu_seconds();
            clock0 = now_ns();
            stamp0 = stamp();
        }
        pat_edges(sb, size, c2s, k, 0);
        if (check) {
            double c = cpu_seconds();
            pat_fill(rb, size, s2c, k, 0xff);
            cpu_check += cpu_seconds() - c;
            if (expect_msg(C, MSG_READY, &m, "READY") != 0)
                return -1;
        }
        uint64_t t0 = stamp();
        r = send_all(C->t, sb, size);
        if (r < 0)
            return fail("%s: sending %zu bytes: %s", C->o->addr, size, io_errmsg(r));
        r = recv_all(C->t, rb, size);
        uint64_t t1 = stamp();
        if (r < 0)
            return fail("%s: receiving %zu bytes: %s", C->o->addr, size, io_errmsg(r));
        if (measured)
            res->lat[i] = t1 - t0;
        int64_t bad;
        if (check) {
            double c = cpu_seconds();
            bad = pat_check(rb, size, s2c, k);
            cpu_check += cpu_seconds() - c;
            if (expect_msg(C, MSG_STATUS, &m, "STATUS") != 0)
                return -1;
            if (m.arg)
                result_bad(res, "the server received wrong data in %s (first bad byte at "
                           "offset %" PRIu64 ")", iter_name(m.a, w, in, sizeof in), m.b);
        } else {
            bad = pat_check_edges(rb, size, s2c, k);
        }
        if (bad >= 0)
            result_bad(res, "the client received wrong data in %s (first bad byte at offset %"
                       PRId64 ")", iter_name(k, w, in, sizeof in), bad);
    }
    res->cpu = cpu_seconds() - cpu0 - cpu_check;
    uint64_t stamps = stamp() - stamp0, clocks = now_ns() - clock0;
    double scale = stamps ? (double)clocks / (double)stamps : 1.0;
    for (uint64_t i = 0; i < n; i++)
        res->lat[i] = (uint64_t)((double)res->lat[i] * scale);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += (double)res->lat[i];
    res->seconds = sum / 1e9;
    res->bytes = (double)n * (double)size;
    return 0;
}

/* ---- client: write and read modes ------------------------------------- */

struct rdma_run;

struct rdma_worker {
    struct rdma_run *run;
    unsigned idx;
    pthread_t th;
    uint64_t t0, t1;
};

struct rdma_run {
    struct vmio_transport *t;
    struct vmio_mr *mr;
    unsigned char *local;
    uint64_t size, raddr, n;
    uint32_t rkey;
    int write;
    unsigned qd;
    uint64_t *lat;              /* qd * n: thread i's at [i * n, (i + 1) * n) */
    struct rdma_worker *w;

    pthread_mutex_t m;
    pthread_cond_t go, done;
    unsigned gen, pending;
    int quit;
    uint64_t first, count;      /* the phase: ops [first, first + count) */
    int record;
    int failed;
    char err[256];
};

static void rdma_ops(struct rdma_worker *w)
{
    struct rdma_run *R = w->run;
    unsigned char *lp = R->local + (size_t)w->idx * R->size;
    uint64_t ra = R->raddr + (uint64_t)w->idx * R->size;
    const struct vmio_transport_ops *ops = R->t->ops;
    w->t0 = w->t1 = now_ns();
    for (uint64_t i = 0; i < R->count; i++) {
        if (__atomic_load_n(&R->failed, __ATOMIC_RELAXED))
            break;
        vmio_clear_error();
        uint64_t a = now_ns();
        int r = R->write ? ops->rdma_write(R->t, R->mr, lp, R->size, ra, R->rkey)
                         : ops->rdma_read(R->t, R->mr, lp, R->size, ra, R->rkey);
        uint64_t b = now_ns();
        if (r < 0) {
            pthread_mutex_lock(&R->m);
            if (!R->failed)
                snprintf(R->err, sizeof R->err, "RDMA %s of %" PRIu64 " bytes failed: %s",
                         R->write ? "WRITE" : "READ", R->size, io_errmsg(r));
            __atomic_store_n(&R->failed, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&R->m);
            break;
        }
        if (R->record)
            R->lat[(uint64_t)w->idx * R->n + R->first + i] = b - a;
        w->t1 = b;
    }
}

static void *rdma_thread(void *arg)
{
    struct rdma_worker *w = arg;
    struct rdma_run *R = w->run;
    unsigned seen = 0;
    pthread_mutex_lock(&R->m);
    for (;;) {
        while (!R->quit && R->gen == seen)
            pthread_cond_wait(&R->go, &R->m);
        if (R->quit)
            break;
        seen = R->gen;
        pthread_mutex_unlock(&R->m);
        rdma_ops(w);
        pthread_mutex_lock(&R->m);
        if (--R->pending == 0)
            pthread_cond_signal(&R->done);
    }
    pthread_mutex_unlock(&R->m);
    return NULL;
}

/* Ops [first, first + count) on every thread; the phase's time from the
 * earliest first op to the latest completion, in ns. */
static uint64_t rdma_phase(struct rdma_run *R, uint64_t first, uint64_t count, int record)
{
    if (count == 0)
        return 0;
    R->first = first;
    R->count = count;
    R->record = record;
    if (R->qd == 1) {
        rdma_ops(&R->w[0]);
    } else {
        pthread_mutex_lock(&R->m);
        R->pending = R->qd;
        R->gen++;
        pthread_cond_broadcast(&R->go);
        while (R->pending)
            pthread_cond_wait(&R->done, &R->m);
        pthread_mutex_unlock(&R->m);
    }
    uint64_t lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < R->qd; i++) {
        if (R->w[i].t0 < lo)
            lo = R->w[i].t0;
        if (R->w[i].t1 > hi)
            hi = R->w[i].t1;
    }
    return hi > lo ? hi - lo : 0;
}

/* Ask the server to prepare (or verify) its slices for a stamp. -1 after
 * a printed error; 0 with the result recorded in res. */
static int server_cmd(struct client *C, uint32_t cmd, uint64_t stamp, struct pp_result *res)
{
    struct pp_msg m;
    int r = msg_send(C->t, MSG_CMD, cmd, stamp, 0, 0);
    if (r < 0)
        return fail("%s: sending a command: %s", C->o->addr, io_errmsg(r));
    if (expect_msg(C, MSG_STATUS, &m, "STATUS") != 0)
        return -1;
    if (m.arg)
        result_bad(res, "the server's buffer holds wrong data after RDMA WRITE op %" PRIu64
                   " (thread %" PRIu64 ", first bad byte at offset %" PRIu64 ")",
                   stamp == 1 ? (uint64_t)0 : res->iters - 1, m.a, m.b);
    return 0;
}

/* Client side of a PREPARE for stamp s: write sends the pattern, read
 * expects it (poison the local slices first). */
static void local_prepare(struct rdma_run *R, uint64_t stamp, int full)
{
    for (unsigned i = 0; i < R->qd; i++) {
        unsigned char *p = R->local + (size_t)i * R->size;
        if (R->write) {
            uint64_t seed = pat_seed(R->size, 0, i);
            if (full)
                pat_fill(p, R->size, seed, stamp, 0);
            else
                pat_edges(p, R->size, seed, stamp, 0);
        } else {
            pat_fill(p, R->size, pat_seed(R->size, 1, i), stamp, 0xff);
        }
    }
}

static void local_verify(struct rdma_run *R, uint64_t stamp, uint64_t op, struct pp_result *res)
{
    for (unsigned i = 0; i < R->qd; i++) {
        int64_t bad = pat_check(R->local + (size_t)i * R->size, R->size, pat_seed(R->size, 1, i),
                                stamp);
        if (bad >= 0) {
            result_bad(res, "RDMA READ op %" PRIu64 " of thread %u returned wrong data (first "
                       "bad byte at offset %" PRId64 ")", op, i, bad);
            return;
        }
    }
}

static int client_rdma_size(struct client *C, unsigned char *buf, struct vmio_mr *mr,
                            uint64_t raddr, uint32_t rkey, struct pp_result *res)
{
    struct rdma_run R;
    memset(&R, 0, sizeof R);
    R.t = C->t;
    R.mr = mr;
    R.local = buf;
    R.size = res->size;
    R.raddr = raddr;
    R.rkey = rkey;
    R.n = res->iters;
    R.write = C->o->plan.mode == PP_WRITE;
    R.qd = res->qd;
    R.lat = res->lat;
    pthread_mutex_init(&R.m, NULL);
    pthread_cond_init(&R.go, NULL);
    pthread_cond_init(&R.done, NULL);
    R.w = calloc(R.qd, sizeof *R.w);
    int status = -1;
    unsigned started = 0;
    if (!R.w) {
        fail("out of memory");
        goto out;
    }
    for (unsigned i = 0; i < R.qd; i++) {
        R.w[i].run = &R;
        R.w[i].idx = i;
    }
    if (R.qd > 1) {
        for (; started < R.qd; started++) {
            int e = pthread_create(&R.w[started].th, NULL, rdma_thread, &R.w[started]);
            if (e) {
                fail("cannot start a thread: %s", strerror(e));
                goto out;
            }
        }
    }

    uint64_t n = R.n;
    rdma_phase(&R, 0, res->warmup, 0);
    if (R.failed)
        goto op_failed;

    /* First op of every thread, checked. */
    local_prepare(&R, 1, 1);
    if (server_cmd(C, CMD_PREPARE, 1, res) < 0)
        goto out;
    double c0 = cpu_seconds();
    uint64_t ta = rdma_phase(&R, 0, 1, 1);
    double c1 = cpu_seconds();
    if (R.failed)
        goto op_failed;
    if (R.write) {
        if (server_cmd(C, CMD_VERIFY, 1, res) < 0)
            goto out;
    } else {
        local_verify(&R, 1, 0, res);
    }

    /* The middle: nothing checked but speed. */
    double c2 = cpu_seconds();
    uint64_t tb = n > 2 ? rdma_phase(&R, 1, n - 2, 1) : 0;
    double c3 = cpu_seconds();
    if (R.failed)
        goto op_failed;

    /* Last op, checked with another stamp. */
    uint64_t tc = 0;
    double c4 = 0, c5 = 0;
    if (n > 1) {
        local_prepare(&R, 2, 0);
        if (server_cmd(C, CMD_PREPARE, 2, res) < 0)
            goto out;
        c4 = cpu_seconds();
        tc = rdma_phase(&R, n - 1, 1, 1);
        c5 = cpu_seconds();
        if (R.failed)
            goto op_failed;
        if (R.write) {
            if (server_cmd(C, CMD_VERIFY, 2, res) < 0)
                goto out;
        } else {
            local_verify(&R, 2, n - 1, res);
        }
    }
    res->seconds = (double)(ta + tb + tc) / 1e9;
    res->bytes = (double)R.qd * (double)n * (double)R.size;
    res->cpu = (c1 - c0) + (c3 - c2) + (c5 - c4);
    status = 0;
    goto out;

op_failed:
    fail("%s: %s", C->o->addr, R.err);
out:
    if (started) {
        pthread_mutex_lock(&R.m);
        R.quit = 1;
        pthread_cond_broadcast(&R.go);
        pthread_mutex_unlock(&R.m);
        for (unsigned i = 0; i < started; i++)
            pthread_join(R.w[i].th, NULL);
    }
    free(R.w);
    pthread_cond_destroy(&R.go);
    pthread_cond_destroy(&R.done);
    pthread_mutex_destroy(&R.m);
    if (status == 0) {
        struct pp_msg m;
        int r = msg_send(C->t, MSG_CMD, CMD_DONE, 0, 0, 0);
        if (r < 0)
            return fail("%s: sending a command: %s", C->o->addr, io_errmsg(r));
        if (expect_msg(C, MSG_STATUS, &m, "STATUS") != 0)
            return -1;
    }
    return status;
}

/* ---- client ----------------------------------------------------------- */

static void human(uint64_t v, char *out, size_t n)
{
    static const char *units[] = { "", "k", "M", "G", "T" };
    int u = 0;
    while (u < 4 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, "%" PRIu64 "%s", v, units[u]);
}

/* One size: 0 run (res filled), 1 skipped, -1 failed (printed). */
static int client_size(struct client *C, uint64_t size, struct pp_result *res)
{
    const struct pp_setup *s = &C->o->plan;
    uint64_t need = need_bytes(s->mode, s->qd, size);
    char why[256], a[32], b[32];
    memset(res, 0, sizeof *res);
    res->size = size;
    res->qd = s->qd;
    res->iters = sched_iters(s, size);
    res->warmup = sched_warmup(s, res->iters);
    res->scale = s->mode == PP_SEND ? 0.5 : 1.0;
    res->ok = 1;
    if (need > C->o->max_mem) {
        human(need, a, sizeof a);
        human(C->o->max_mem, b, sizeof b);
        snprintf(why, sizeof why, "the client's buffers need %s bytes, more than --max-mem %s",
                 a, b);
        print_skip(C, size, why);
        return 1;
    }
    unsigned char *buf = buf_alloc(need);
    if (!buf) {
        human(need, a, sizeof a);
        snprintf(why, sizeof why, "the client cannot map %s bytes of buffers: %s", a,
                 strerror(errno));
        print_skip(C, size, why);
        return 1;
    }
    struct vmio_mr *mr = NULL;
    int ret = -1;
    if (s->mode != PP_SEND) {
        vmio_clear_error();
        int r = C->t->ops->mr_reg(C->t, buf, (size_t)need, &mr);
        if (r < 0) {
            fail("cannot register %" PRIu64 " bytes of memory: %s", need, io_errmsg(r));
            mr = NULL;
            goto out;
        }
    }
    res->nlat = (size_t)(res->iters * res->qd);
    res->lat = calloc(res->nlat, sizeof *res->lat);
    if (!res->lat) {
        fail("out of memory for %zu latencies", res->nlat);
        goto out;
    }

    int r = msg_send(C->t, MSG_SIZE, 0, size, res->iters, res->warmup);
    if (r < 0) {
        fail("%s: sending a size request: %s", C->o->addr, io_errmsg(r));
        goto out;
    }
    struct pp_msg m;
    if (expect_msg(C, MSG_SIZE_REPLY, &m, "the size reply") != 0)
        goto out;
    switch (m.arg) {
    case SZ_OK:
        break;
    case SZ_MAXMEM:
        human(m.b, a, sizeof a);
        human(m.c, b, sizeof b);
        snprintf(why, sizeof why, "the server's buffers need %s bytes, more than its --max-mem %s",
                 a, b);
        print_skip(C, size, why);
        ret = 1;
        goto out;
    case SZ_NOMEM:
        human(m.b, a, sizeof a);
        snprintf(why, sizeof why, "the server cannot map %s bytes of buffers: %s", a,
                 strerror((int)m.c));
        print_skip(C, size, why);
        ret = 1;
        goto out;
    default:
        fail("%s: the server failed size %" PRIu64 ": %s (see its log)", C->o->addr, size,
             strerror(m.c && m.c < 4096 ? (int)m.c : EPROTO));
        goto out;
    }
    if (s->mode == PP_SEND) {
        ret = client_send_size(C, buf, res);
    } else {
        if (m.b != need || m.a > UINT64_MAX - need || m.c > UINT32_MAX) {
            fail("%s: protocol error: the server offers %" PRIu64 " bytes, %" PRIu64 " needed",
                 C->o->addr, m.b, need);
            goto out;
        }
        ret = client_rdma_size(C, buf, mr, m.a, (uint32_t)m.c, res);
    }
out:
    if (ret != 0) {
        free(res->lat);
        res->lat = NULL;
    }
    vmio_mr_dereg(mr);
    buf_free(buf, need);
    return ret;
}

static int run_client(const struct pp_opts *o)
{
    struct client C;
    memset(&C, 0, sizeof C);
    C.o = o;
    C.transport = o->rdma ? "rdma" : "tcp";
    if (pp_connect(o, &C.t) < 0)
        return fail("%s", vmio_errmsg());

    int status = PP_EXIT_FAILED;
    unsigned char b[PP_REPLY_LEN];
    setup_encode(b, &o->plan);
    int r = send_all(C.t, b, PP_SETUP_LEN);
    if (r < 0) {
        fail("%s: sending the setup: %s", o->addr, io_errmsg(r));
        goto out;
    }
    r = recv_all(C.t, b, PP_REPLY_LEN);
    if (r < 0) {
        fail("%s: no reply to the setup (is it a '" PROG " pingpong --server'?): %s", o->addr,
             io_errmsg(r));
        goto out;
    }
    if (get32(b) != PP_MAGIC) {
        fail("%s: not a '" PROG " pingpong --server' (bad reply)", o->addr);
        goto out;
    }
    if (get16(b + 4) != PP_VERSION) {
        fail("%s: the server speaks protocol version %u, this client %u", o->addr,
             (unsigned)get16(b + 4), PP_VERSION);
        goto out;
    }
    uint32_t st = get32(b + 8);
    if (st) {
        b[16 + PP_REPLY_MSG - 1] = '\0';
        fail("%s: the server refused the setup: %s", o->addr, (const char *)b + 16);
        goto out;
    }

    if (!o->json)
        print_header(&C);
    status = PP_EXIT_OK;
    int broken = 0;         /* out of step with the server: no END */
    for (uint64_t size = o->plan.min_size; size <= o->plan.max_size; size *= 2) {
        struct pp_result res;
        int k = client_size(&C, size, &res);
        if (k < 0) {
            status = PP_EXIT_FAILED;
            broken = 1;
            break;
        }
        if (k > 0)
            continue;
        print_result(&C, &res);
        free(res.lat);
        if (!res.ok) {
            status = fail("size %" PRIu64 ": data integrity check failed: %s", size, res.why);
            break;
        }
    }
    if (!broken) {
        r = msg_send(C.t, MSG_END, 0, 0, 0, 0);
        if (r < 0)
            status = fail("%s: sending the end: %s", o->addr, io_errmsg(r));
    }
out:
    vmio_transport_close(C.t);
    return status;
}

/* ---- server ----------------------------------------------------------- */

struct conn {
    const struct pp_opts *o;
    struct vmio_transport *t;
    struct pp_setup s;
    char peer[96];
    char err[320];
};

static int conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int conn_fail(struct conn *c, const char *fmt, ...)
{
    if (!c->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int server_send_size(struct conn *c, unsigned char *buf, uint64_t size64, uint64_t n,
                            uint64_t w)
{
    size_t size = (size_t)size64;
    unsigned char *sb = buf, *rb = buf + size;
    uint64_t c2s = pat_seed(size, 0, 0), s2c = pat_seed(size, 1, 0);
    uint32_t bad = 0;
    uint64_t bad_iter = 0, bad_off = 0;
    int r;
    pat_fill(sb, size, s2c, 0, 0);
    for (uint64_t k = 0; k < w + n; k++) {
        uint64_t i = k - w;
        int check = k >= w && (i == 0 || i == n - 1);
        pat_edges(sb, size, s2c, k, 0);
        if (check) {
            pat_fill(rb, size, c2s, k, 0xff);
            if ((r = msg_send(c->t, MSG_READY, 0, k, 0, 0)) < 0)
                return conn_fail(c, "sending READY: %s", io_errmsg(r));
        }
        if ((r = recv_all(c->t, rb, size)) < 0)
            return conn_fail(c, "receiving %zu bytes: %s", size, io_errmsg(r));
        if ((r = send_all(c->t, sb, size)) < 0)
            return conn_fail(c, "sending %zu bytes: %s", size, io_errmsg(r));
        int64_t off = check ? pat_check(rb, size, c2s, k) : pat_check_edges(rb, size, c2s, k);
        if (off >= 0 && !bad) {
            bad = 1;
            bad_iter = k;
            bad_off = (uint64_t)off;
        }
        if (check && (r = msg_send(c->t, MSG_STATUS, bad, bad_iter, bad_off, 0)) < 0)
            return conn_fail(c, "sending STATUS: %s", io_errmsg(r));
    }
    char in[48];
    if (bad)
        fprintf(stderr, PROG ": client %s: size %zu: received wrong data in %s (first bad byte "
                "at offset %" PRIu64 ")\n", c->peer, size, iter_name(bad_iter, w, in, sizeof in),
                bad_off);
    return 0;
}

static int server_rdma_size(struct conn *c, unsigned char *buf, uint64_t size)
{
    unsigned qd = c->s.qd;
    int write = c->s.mode == PP_WRITE;
    struct pp_msg m;
    int r;
    for (;;) {
        if ((r = msg_recv(c->t, &m)) < 0)
            return conn_fail(c, "waiting for a command: %s", io_errmsg(r));
        if (m.type != MSG_CMD)
            return conn_fail(c, "protocol error: message type %" PRIu32 " instead of a command",
                             m.type);
        uint32_t bad = 0;
        uint64_t bad_slice = 0, bad_off = 0;
        switch (m.arg) {
        case CMD_PREPARE:
            for (unsigned i = 0; i < qd; i++)
                pat_fill(buf + (size_t)i * size, (size_t)size, pat_seed(size, write ? 0 : 1, i),
                         m.a, write ? 0xff : 0);
            break;
        case CMD_VERIFY:
            if (!write)
                return conn_fail(c, "protocol error: VERIFY in read mode");
            for (unsigned i = 0; i < qd && !bad; i++) {
                int64_t off = pat_check(buf + (size_t)i * size, (size_t)size,
                                        pat_seed(size, 0, i), m.a);
                if (off >= 0) {
                    bad = 1;
                    bad_slice = i;
                    bad_off = (uint64_t)off;
                    fprintf(stderr, PROG ": client %s: size %" PRIu64 ": RDMA WRITE of thread %u "
                            "left wrong data (first bad byte at offset %" PRId64 ")\n", c->peer,
                            size, i, off);
                }
            }
            break;
        case CMD_DONE:
            break;
        default:
            return conn_fail(c, "protocol error: unknown command %" PRIu32, m.arg);
        }
        if ((r = msg_send(c->t, MSG_STATUS, bad, bad_slice, bad_off, 0)) < 0)
            return conn_fail(c, "sending STATUS: %s", io_errmsg(r));
        if (m.arg == CMD_DONE)
            return 0;
    }
}

/* After the setup: sizes until END. 0 when the client ended cleanly. */
static int server_sizes(struct conn *c, int *nsizes)
{
    uint64_t prev = 0;
    struct pp_msg m;
    int r;
    for (;;) {
        if ((r = msg_recv(c->t, &m)) < 0)
            return conn_fail(c, "waiting for a size: %s", io_errmsg(r));
        if (m.type == MSG_END)
            return 0;
        uint64_t size = m.a, iters = m.b, warmup = m.c;
        const char *bad = NULL;
        if (m.type != MSG_SIZE || m.arg)
            bad = "not a size request";
        else if (!is_pow2(size) || size < c->s.min_size || size > c->s.max_size || size <= prev)
            bad = "size outside the announced range or not increasing";
        else if (iters != sched_iters(&c->s, size))
            bad = "iteration count differs from the announced one";
        else if (warmup != sched_warmup(&c->s, iters))
            bad = "warmup count differs from the announced one";
        if (bad) {
            msg_send(c->t, MSG_SIZE_REPLY, SZ_FAIL, 0, 0, EPROTO);
            return conn_fail(c, "protocol error: %s (type %" PRIu32 ", size %" PRIu64
                             ", iters %" PRIu64 ", warmup %" PRIu64 ")", bad, m.type, size,
                             iters, warmup);
        }
        prev = size;
        uint64_t need = need_bytes(c->s.mode, c->s.qd, size);
        if (need > c->o->max_mem) {
            if ((r = msg_send(c->t, MSG_SIZE_REPLY, SZ_MAXMEM, 0, need, c->o->max_mem)) < 0)
                return conn_fail(c, "sending the size reply: %s", io_errmsg(r));
            fprintf(stderr, PROG ": client %s: size %" PRIu64 " skipped: its buffers need %"
                    PRIu64 " bytes, more than --max-mem %" PRIu64 "\n", c->peer, size, need,
                    c->o->max_mem);
            continue;
        }
        unsigned char *buf = buf_alloc(need);
        if (!buf) {
            int e = errno;
            if ((r = msg_send(c->t, MSG_SIZE_REPLY, SZ_NOMEM, 0, need, (uint64_t)e)) < 0)
                return conn_fail(c, "sending the size reply: %s", io_errmsg(r));
            fprintf(stderr, PROG ": client %s: size %" PRIu64 " skipped: cannot map %" PRIu64
                    " bytes: %s\n", c->peer, size, need, strerror(e));
            continue;
        }
        struct vmio_mr *mr = NULL;
        if (c->s.mode == PP_SEND) {
            r = msg_send(c->t, MSG_SIZE_REPLY, SZ_OK, 0, need, 0);
        } else {
            vmio_clear_error();
            r = c->t->ops->mr_reg(c->t, buf, (size_t)need, &mr);
            if (r < 0) {
                conn_fail(c, "cannot register %" PRIu64 " bytes of memory: %s", need,
                          io_errmsg(r));
                msg_send(c->t, MSG_SIZE_REPLY, SZ_FAIL, 0, need, (uint64_t)-r);
                buf_free(buf, need);
                return -1;
            }
            r = msg_send(c->t, MSG_SIZE_REPLY, SZ_OK, (uint64_t)(uintptr_t)mr->addr, need,
                         mr->rkey);
        }
        if (r < 0) {
            conn_fail(c, "sending the size reply: %s", io_errmsg(r));
        } else {
            r = c->s.mode == PP_SEND ? server_send_size(c, buf, size, iters, warmup)
                                     : server_rdma_size(c, buf, size);
            if (r == 0)
                ++*nsizes;
        }
        vmio_mr_dereg(mr);
        buf_free(buf, need);
        if (r < 0)
            return -1;
    }
}

/* Closes the connection when the setup does not arrive in time. */
struct watchdog {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done, fired;
    struct vmio_transport *t;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += PP_SETUP_TIMEOUT_S;
    pthread_mutex_lock(&w->m);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->c, &w->m, &dl) == ETIMEDOUT && !w->done) {
            w->fired = 1;
            vmio_transport_shutdown(w->t);
            break;
        }
    }
    pthread_mutex_unlock(&w->m);
    return NULL;
}

static int recv_setup(struct conn *c, unsigned char *b)
{
    struct watchdog w = { .t = c->t };
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w.m, NULL);
    pthread_cond_init(&w.c, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th;
    int started = pthread_create(&th, NULL, watchdog_main, &w) == 0;
    int r = recv_all(c->t, b, PP_SETUP_LEN);
    if (started) {
        pthread_mutex_lock(&w.m);
        w.done = 1;
        pthread_cond_signal(&w.c);
        pthread_mutex_unlock(&w.m);
        pthread_join(th, NULL);
    }
    pthread_cond_destroy(&w.c);
    pthread_mutex_destroy(&w.m);
    if (w.fired)
        return conn_fail(c, "no setup message within %d s", PP_SETUP_TIMEOUT_S);
    if (r < 0)
        return conn_fail(c, "reading the setup message: %s", r == -EPIPE ?
                         "the client closed the connection before a whole setup message" :
                         io_errmsg(r));
    return 0;
}

static int send_reply(struct conn *c, uint32_t status, const char *msg)
{
    unsigned char b[PP_REPLY_LEN];
    memset(b, 0, sizeof b);
    put32(b, PP_MAGIC);
    put16(b + 4, PP_VERSION);
    put32(b + 8, status);
    snprintf((char *)b + 16, PP_REPLY_MSG, "%s", msg);
    return send_all(c->t, b, sizeof b);
}

/* 0 when the client's run completed. */
static int serve_client(const struct pp_opts *o, struct vmio_transport *t)
{
    struct conn c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.t = t;
    snprintf(c.peer, sizeof c.peer, "%s", t->peer);
    unsigned char b[PP_SETUP_LEN];
    int nsizes = 0;
    int ret = -1;
    if (recv_setup(&c, b) < 0)
        goto out;
    char msg[PP_REPLY_MSG];
    int e = setup_decode(b, vmio_transport_is_rdma(t), &c.s, msg, sizeof msg);
    if (e) {
        int r = send_reply(&c, (uint32_t)e, msg);
        conn_fail(&c, "refused the setup: %s%s%s", msg, r < 0 ? "; cannot tell the client: " : "",
                  r < 0 ? io_errmsg(r) : "");
        goto out;
    }
    int r = send_reply(&c, 0, "ok");
    if (r < 0) {
        conn_fail(&c, "sending the setup reply: %s", io_errmsg(r));
        goto out;
    }
    ret = server_sizes(&c, &nsizes);
out:
    if (ret == 0)
        fprintf(stderr, PROG ": client %s: %s, sizes %" PRIu64 "..%" PRIu64 ": %d run\n", c.peer,
                mode_name(c.s.mode), c.s.min_size, c.s.max_size, nsizes);
    else
        fprintf(stderr, PROG ": client %s: %s\n", c.peer, c.err);
    return ret;
}

static volatile sig_atomic_t pp_stop, pp_serving;

static void on_signal(int sig)
{
    if (pp_serving) {
        /* Busy with a client: die of the signal as if unhandled. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    pp_stop = 1;
}

static int write_port_file(const char *path, int port)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%d\n", port);
    return cli_write_file_atomic(path, buf);
}

static int run_server(const struct pp_opts *o)
{
    const char *tname = o->rdma ? "rdma" : "tcp";
    int lfd, port = o->port;
    struct vmio_rdma_listener *l = NULL;
    vmio_clear_error();
    if (o->rdma) {
        struct vmio_rdma_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.busy_poll_us = o->busy_poll_us;
        if (vmio_rdma_listen(tname, o->host, o->port, &ro, &l, &lfd) < 0)
            return fail("%s", vmio_errmsg());
    } else {
        lfd = vmio_tcp_listen(tname, o->host, o->port, &port);
        if (lfd < 0)
            return fail("%s", vmio_errmsg());
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;       /* no SA_RESTART: poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int status = PP_EXIT_OK;
    if (o->port_file) {
        int r = write_port_file(o->port_file, port);
        if (r < 0) {
            status = fail("cannot write the port file %s: %s", o->port_file, strerror(-r));
            goto out;
        }
    }
    fprintf(stderr, PROG ": pingpong server listening on %s%s%s:%d (%s)\n",
            o->host && strchr(o->host, ':') ? "[" : "", o->host ? o->host : "*",
            o->host && strchr(o->host, ':') ? "]" : "", port, tname);
    while (!pp_stop) {
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        int n = poll(&p, 1, -1);
        if (pp_stop)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            status = fail("poll: %s", strerror(errno));
            break;
        }
        struct vmio_transport *t = NULL;
        vmio_clear_error();
        if (o->rdma) {
            int r = vmio_rdma_accept(tname, l, &t);
            if (r == -EAGAIN)
                continue;
            if (r < 0) {
                fprintf(stderr, PROG ": refused a connection request: %s\n", io_errmsg(r));
                continue;
            }
        } else {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (cfd < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
                    continue;
                fprintf(stderr, PROG ": accept: %s\n", strerror(errno));
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                    sleep(1);
                continue;
            }
            if (vmio_tcp_wrap(tname, cfd, &t) < 0) {
                fprintf(stderr, PROG ": %s\n", vmio_errmsg());
                close(cfd);
                continue;
            }
        }
        pp_serving = 1;
        int r = serve_client(o, t);
        vmio_transport_close(t);
        pp_serving = 0;
        if (o->once) {
            status = r == 0 ? PP_EXIT_OK : PP_EXIT_FAILED;
            break;
        }
    }
out:
    if (o->rdma)
        vmio_rdma_listener_close(l);
    else
        close(lfd);
    return status;
}

int pingpong_main(int argc, char **argv)
{
    struct pp_opts o;
    int r = pingpong_parse(argc, argv, &o);
    if (r < 0) {
        signal(SIGPIPE, SIG_IGN);    /* a vanished peer is an error, not death */
        r = o.server ? run_server(&o) : run_client(&o);
    }
    free(o.host);
    return r;
}
