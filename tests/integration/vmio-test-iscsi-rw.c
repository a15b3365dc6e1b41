/* Test helper for the memory-lending integration tests: plays the borrower
 * against a real manager (public API) and reads/writes a lent LUN through
 * libiscsi's userspace initiator (no kernel initiator needed).
 *
 *   vmio-test-iscsi-rw chap SECRET_FILE IQN            -> "USER SECRET"
 *   vmio-test-iscsi-rw request MGR SECRET NAME SIZE    -> "ID IQN LUN PORTAL"
 *       (and reports it ATTACHED at once: the manager gives back a READY
 *       lease whose borrower disconnects, and this helper exits)
 *   vmio-test-iscsi-rw attached|release MGR SECRET NAME ID
 *   vmio-test-iscsi-rw await-revoke MGR SECRET NAME SECS  (then releases it)
 *   vmio-test-iscsi-rw write|verify URL SEED BYTES     iscsi://u%p@host:port/iqn/lun
 *   vmio-test-iscsi-rw hold URL SECS                   stay logged in
 *
 * Exit status: 0 ok, 1 failure (verify: a mismatch), 2 usage. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include <vmio/memlend.h>

#define CHUNK (256u * 1024u)

static int fail(const char *what)
{
    fprintf(stderr, "vmio-test-iscsi-rw: %s: %s\n", what, vmio_errmsg());
    return 1;
}

/* The byte at absolute offset off for seed: a mismatch at the wrong place
 * or a stale block is visible. */
static uint8_t pattern(uint64_t off, uint32_t seed)
{
    uint64_t x = (off + 1) * 0xD6E8FEB86659FD93ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 31;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint8_t)(x >> 56);
}

static struct iscsi_context *login(const char *url, int *lun)
{
    struct iscsi_context *ic = iscsi_create_context("iqn.2026-12.org.vmio:test-initiator");
    if (!ic) {
        fprintf(stderr, "vmio-test-iscsi-rw: iscsi_create_context failed\n");
        return NULL;
    }
    struct iscsi_url *u = iscsi_parse_full_url(ic, url);
    if (!u) {
        fprintf(stderr, "vmio-test-iscsi-rw: bad URL: %s\n", iscsi_get_error(ic));
        iscsi_destroy_context(ic);
        return NULL;
    }
    iscsi_set_targetname(ic, u->target);
    iscsi_set_session_type(ic, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(ic, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    if (u->user[0])
        iscsi_set_initiator_username_pwd(ic, u->user, u->passwd);
    *lun = u->lun;
    if (iscsi_full_connect_sync(ic, u->portal, u->lun) != 0) {
        fprintf(stderr, "vmio-test-iscsi-rw: login to %s failed: %s\n", u->target,
                iscsi_get_error(ic));
        iscsi_destroy_url(u);
        iscsi_destroy_context(ic);
        return NULL;
    }
    iscsi_destroy_url(u);
    return ic;
}

static int rw(const char *url, int write, uint32_t seed, uint64_t bytes)
{
    int lun;
    struct iscsi_context *ic = login(url, &lun);
    if (!ic)
        return 1;
    struct scsi_task *t = iscsi_readcapacity16_sync(ic, lun);
    if (!t || t->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, "vmio-test-iscsi-rw: READ CAPACITY(16): %s\n", iscsi_get_error(ic));
        return 1;
    }
    struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);
    uint32_t bs = rc ? rc->block_length : 0;
    uint64_t cap = rc ? (rc->returned_lba + 1) * bs : 0;
    scsi_free_scsi_task(t);
    if (!bs || bytes > cap || bytes % bs || CHUNK % bs) {
        fprintf(stderr, "vmio-test-iscsi-rw: %" PRIu64 " bytes do not fit %" PRIu64
                " (block %u)\n", bytes, cap, bs);
        return 1;
    }
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return 1;
    int status = 0;
    for (uint64_t off = 0; off < bytes && !status; off += CHUNK) {
        uint32_t n = (uint32_t)(bytes - off < CHUNK ? bytes - off : CHUNK);
        if (write) {
            for (uint32_t i = 0; i < n; i++)
                buf[i] = pattern(off + i, seed);
            t = iscsi_write16_sync(ic, lun, off / bs, buf, n, (int)bs, 0, 0, 0, 0, 0);
        } else {
            t = iscsi_read16_sync(ic, lun, off / bs, n, (int)bs, 0, 0, 0, 0, 0);
        }
        if (!t || t->status != SCSI_STATUS_GOOD) {
            fprintf(stderr, "vmio-test-iscsi-rw: %s at %" PRIu64 ": %s\n",
                    write ? "WRITE(16)" : "READ(16)", off, iscsi_get_error(ic));
            status = 1;
        } else if (!write) {
            if (t->datain.size != (int)n) {
                fprintf(stderr, "vmio-test-iscsi-rw: short read at %" PRIu64 "\n", off);
                status = 1;
            }
            for (uint32_t i = 0; i < n && !status; i++)
                if (t->datain.data[i] != pattern(off + i, seed)) {
                    fprintf(stderr, "vmio-test-iscsi-rw: mismatch at byte %" PRIu64 "\n",
                            off + i);
                    status = 1;
                }
        }
        if (t)
            scsi_free_scsi_task(t);
    }
    free(buf);
    iscsi_logout_sync(ic);
    iscsi_destroy_context(ic);
    if (!status)
        printf("%s %" PRIu64 " bytes ok (capacity %" PRIu64 ")\n", write ? "wrote" : "verified",
               bytes, cap);
    return status;
}

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int hold(const char *url, unsigned secs)
{
    int lun;
    signal(SIGTERM, on_term);
    struct iscsi_context *ic = login(url, &lun);
    if (!ic)
        return 1;
    printf("logged in\n");
    fflush(stdout);
    for (unsigned i = 0; i < secs * 4 && !stop; i++) {
        struct timespec ts = {0, 250000000};
        nanosleep(&ts, NULL);
        if (i % 4 == 0) {
            struct scsi_task *t = iscsi_testunitready_sync(ic, lun);
            if (t)
                scsi_free_scsi_task(t);
        }
    }
    iscsi_logout_sync(ic);
    iscsi_destroy_context(ic);
    return 0;
}

static int borrower(int argc, char **argv)
{
    const char *cmd = argv[1];
    vmio_memlend_client *c;
    if (vmio_memlend_connect(argv[2], argv[3], VMIO_MEMLEND_ROLE_BORROWER, argv[4], 30000, &c) < 0)
        return fail("connect");
    int st = 0;
    if (strcmp(cmd, "request") == 0 && argc == 6) {
        struct vmio_memlend_lease l;
        if (vmio_memlend_request(c, strtoull(argv[5], NULL, 0), &l) < 0)
            st = fail("request");
        else if (vmio_memlend_attached(c, l.id) < 0)
            st = fail("attached");
        else
            printf("%" PRIu64 " %s %u %s\n", l.id, l.target_iqn, l.lun, l.portal);
    } else if ((strcmp(cmd, "attached") == 0 || strcmp(cmd, "release") == 0) && argc == 6) {
        uint64_t id = strtoull(argv[5], NULL, 10);
        int r = cmd[0] == 'a' ? vmio_memlend_attached(c, id) : vmio_memlend_release(c, id);
        if (r < 0)
            st = fail(cmd);
    } else if (strcmp(cmd, "await-revoke") == 0 && argc == 6) {
        int ms = atoi(argv[5]) * 1000;
        struct vmio_memlend_notice n;
        for (;;) {
            if (vmio_memlend_next_notice(c, ms, &n) < 0) {
                st = fail("waiting for REVOKE");
                break;
            }
            if (n.type == VMIO_MEMLEND_NOTICE_REVOKE) {
                printf("revoke %" PRIu64 "\n", n.lease.id);
                fflush(stdout);
                if (vmio_memlend_release(c, n.lease.id) < 0)
                    st = fail("release");
                break;
            }
        }
    } else {
        st = 2;
    }
    vmio_memlend_disconnect(c);
    return st;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "chap") == 0) {
        struct vmio_memlend_chap ch;
        if (vmio_memlend_chap_derive(argv[2], argv[3], &ch) < 0)
            return fail("chap");
        printf("%s %s\n", ch.user, ch.secret);
        return 0;
    }
    if (argc == 5 && (strcmp(argv[1], "write") == 0 || strcmp(argv[1], "verify") == 0))
        return rw(argv[2], argv[1][0] == 'w', (uint32_t)strtoul(argv[3], NULL, 10),
                  strtoull(argv[4], NULL, 0));
    if (argc == 4 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2], (unsigned)atoi(argv[3]));
    if (argc >= 6) {
        int r = borrower(argc, argv);
        if (r != 2)
            return r;
    }
    fprintf(stderr, "usage: see the top of vmio-test-iscsi-rw.c\n");
    return 2;
}
