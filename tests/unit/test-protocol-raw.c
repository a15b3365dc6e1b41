/* The server against a hand-driven TCP peer: garbage, truncated and
 * oversized frames, broken handshakes, malformed requests. The server
 * must answer with an error or close the connection as docs/protocol.md
 * says, and keep serving other clients. Frames are built with the wire
 * encoders; proofs are checked with the auth helpers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <vmio/server.h>
#include <vmio/storage.h>

#include "test-common.h"

#include "protocol/auth.h"
#include "protocol/wire.h"
#include "server/internal.h"

#define SECRET "raw-protocol-test-secret-0d9e8f7a6b5c"
#define IMG_SIZE (1024u * 1024u)
#define ERR_BODY_MAX 4096u

static char dir[256];
static char expdir[300];
static vmio_server *srv;
static int port;

/* The server of every test: splicing on (the tests of the spliced path
 * would otherwise depend on the machine's CPUs; test_splice_modes
 * restarts it in the other modes). */
static void start_server(int splice)
{
    ck_assert_vmio_ok(vmio_server_new(&srv));
    ck_assert_vmio_ok(vmio_server_set_secret(srv, SECRET, strlen(SECRET)));
    ck_assert_vmio_ok(vmio_server_set_splice(srv, splice));
    ck_assert_vmio_ok(vmio_server_add_export(srv, "exp", expdir, 0));
    ck_assert_vmio_ok(vmio_server_listen(srv, "127.0.0.1", 0));
    ck_assert_vmio_ok(vmio_server_start(srv));
    port = vmio_server_port(srv);
    ck_assert_int_gt(port, 0);
}

static void stop_server(void)
{
    vmio_server_stop(srv);
    vmio_server_free(srv);
    srv = NULL;
}

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
    snprintf(expdir, sizeof expdir, "%s/exp", dir);
    ck_assert_int_eq(mkdir(expdir, 0755), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/img", expdir);
    int fd = open(p, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    uint8_t *b = malloc(IMG_SIZE);
    test_fill(b, IMG_SIZE, 0, 51);
    ck_assert_int_eq(pwrite(fd, b, IMG_SIZE, 0), IMG_SIZE);
    free(b);
    close(fd);
    start_server(VMIO_SERVER_SPLICE_ON);
}

static void teardown(void)
{
    if (srv)
        stop_server();
    test_rmtree(dir);
}

/* ---- a raw peer --------------------------------------------------------- */

static int rconnect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s",
                  strerror(errno));
    /* Never wait forever for a server that neither answers nor closes;
     * long enough for valgrind. */
    struct timeval tv = { .tv_sec = 20 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_raw(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        /* The server may already have closed on us: fine for the tests
         * that send nonsense, which then check for the close. */
        if (n < 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void send_frame(int fd, uint16_t type, uint64_t id, int32_t status, const void *body,
                       uint32_t len)
{
    struct vmio_wire_hdr h = { .type = type, .id = id, .length = len, .status = status };
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    vmio_wire_encode_hdr(hb, &h);
    send_raw(fd, hb, sizeof hb);
    if (len)
        send_raw(fd, body, len);
}

/* 0, or -EPIPE at end of stream (or reset), or another -errno. */
static int recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ECONNRESET ? -EPIPE : -errno;
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Receives one frame; body gets at most cap bytes (the test fails on a
 * longer one). */
static int recv_frame(int fd, struct vmio_wire_hdr *h, void *body, size_t cap)
{
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    int r = recv_all(fd, hb, sizeof hb);
    if (r < 0)
        return r;
    ck_assert_msg(vmio_wire_decode_hdr("raw", hb, VMIO_WIRE_MAX_FRAME, h) == 0,
                  "server sent a bad header: %s", vmio_errmsg());
    ck_assert_msg(h->length <= cap, "reply body of %u bytes", h->length);
    if (h->length) {
        r = recv_all(fd, body, h->length);
        ck_assert_msg(r == 0, "stream ended inside a reply body: %d", r);
    }
    return 0;
}

/* The server closes the connection without sending anything more. */
static void expect_closed(int fd)
{
    uint8_t b[64];
    ssize_t n;
    do
        n = recv(fd, b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET),
                  "expected the server to close: recv gave %zd (%s)", n,
                  n < 0 ? strerror(errno) : "data");
    close(fd);
}

/* An error reply of type (request | 0x80) with that id and status. */
static void expect_error(int fd, uint16_t req_type, uint64_t id, int32_t status,
                         const char *needle)
{
    struct vmio_wire_hdr h;
    static char body[ERR_BODY_MAX + 1];
    int r = recv_frame(fd, &h, body, ERR_BODY_MAX);
    ck_assert_msg(r == 0, "no error reply to type 0x%x: %d", req_type, r);
    ck_assert_uint_eq(h.type, req_type | VMIO_WIRE_REPLY);
    ck_assert(h.id == id);
    ck_assert_msg(h.status == status, "status %d, expected %d", h.status, status);
    ck_assert_uint_le(h.length, VMIO_WIRE_MAX_ERRMSG);
    body[h.length] = '\0';
    if (needle)
        ck_assert_msg(strstr(body, needle) != NULL, "error message '%s' lacks '%s'", body,
                      needle);
}

static void expect_ok(int fd, uint16_t req_type, uint64_t id, void *body, uint32_t len)
{
    struct vmio_wire_hdr h;
    static uint8_t tmp[ERR_BODY_MAX + IMG_SIZE];
    int r = recv_frame(fd, &h, tmp, sizeof tmp);
    ck_assert_msg(r == 0, "no reply to type 0x%x: %d", req_type, r);
    ck_assert_uint_eq(h.type, req_type | VMIO_WIRE_REPLY);
    ck_assert(h.id == id);
    if (h.status != 0) {
        tmp[h.length < ERR_BODY_MAX ? h.length : ERR_BODY_MAX] = 0;
        ck_abort_msg("type 0x%x failed with %d: %s", req_type, h.status, (char *)tmp);
    }
    ck_assert_uint_eq(h.length, len);
    if (len)
        memcpy(body, tmp, len);
}

struct peer_state {
    uint8_t cnonce[VMIO_WIRE_NONCE_SIZE];
    struct vmio_wire_hello_reply hr;
};

static void send_hello(int fd, uint16_t minv, uint16_t maxv, struct peer_state *s)
{
    struct vmio_wire_hello m = { .min_version = minv, .max_version = maxv,
                                 .features = VMIO_WIRE_F_ALL };
    ck_assert_int_eq(vmio_auth_random("raw", m.nonce, sizeof m.nonce), 0);
    memcpy(s->cnonce, m.nonce, sizeof m.nonce);
    uint8_t b[64];
    size_t n = vmio_wire_encode_hello(b, &m);
    send_frame(fd, VMIO_WIRE_HELLO, 1, 0, b, (uint32_t)n);
}

/* HELLO and its reply, checking the server's proof. */
static void do_hello(int fd, struct peer_state *s)
{
    send_hello(fd, 1, 1, s);
    uint8_t b[VMIO_WIRE_MAX_ERRMSG];
    struct vmio_wire_hdr h;
    ck_assert_int_eq(recv_frame(fd, &h, b, sizeof b), 0);
    ck_assert_uint_eq(h.type, VMIO_WIRE_HELLO | VMIO_WIRE_REPLY);
    ck_assert_int_eq(h.status, 0);
    ck_assert_int_eq(vmio_wire_decode_hello_reply("raw", b, h.length, &s->hr), 0);
    ck_assert_uint_eq(s->hr.version, 1);
    uint8_t proof[VMIO_WIRE_PROOF_SIZE];
    vmio_auth_server_proof((const uint8_t *)SECRET, strlen(SECRET), s->cnonce, s->hr.nonce,
                           proof);
    ck_assert_msg(vmio_auth_proof_equal(proof, s->hr.proof), "server proof is wrong");
}

static void do_auth(int fd, struct peer_state *s)
{
    uint8_t proof[VMIO_WIRE_PROOF_SIZE];
    vmio_auth_client_proof((const uint8_t *)SECRET, strlen(SECRET), s->hr.nonce, s->cnonce,
                           proof);
    send_frame(fd, VMIO_WIRE_AUTH, 2, 0, proof, sizeof proof);
    expect_ok(fd, VMIO_WIRE_AUTH, 2, NULL, 0);
}

static void send_open(int fd, uint32_t flags, const char *exp, const char *path)
{
    struct vmio_wire_open m = { .flags = flags, .export_name = exp,
                                .export_len = (uint16_t)strlen(exp), .path = path,
                                .path_len = (uint16_t)strlen(path) };
    uint8_t b[600];
    size_t n = vmio_wire_encode_open(b, &m);
    send_frame(fd, VMIO_WIRE_OPEN, 3, 0, b, (uint32_t)n);
}

/* A connection through the whole handshake, image "exp/img" open. */
static int open_conn(uint32_t flags, struct vmio_wire_open_reply *orep)
{
    struct peer_state s;
    int fd = rconnect();
    do_hello(fd, &s);
    do_auth(fd, &s);
    send_open(fd, flags, "exp", "img");
    uint8_t b[16];
    expect_ok(fd, VMIO_WIRE_OPEN, 3, b, sizeof b);
    struct vmio_wire_open_reply o;
    ck_assert_int_eq(vmio_wire_decode_open_reply("raw", b, sizeof b, &o), 0);
    ck_assert(o.size == IMG_SIZE);
    if (orep)
        *orep = o;
    return fd;
}

static void send_io(int fd, uint16_t type, uint64_t id, const struct vmio_wire_io *io,
                    const void *payload, uint32_t plen)
{
    uint8_t *b = malloc(VMIO_WIRE_IO_BODY + plen);
    vmio_wire_encode_io(b, io);
    if (plen)
        memcpy(b + VMIO_WIRE_IO_BODY, payload, plen);
    send_frame(fd, type, id, 0, b, VMIO_WIRE_IO_BODY + plen);
    free(b);
}

static void send_range(int fd, uint16_t type, uint64_t id, uint64_t off, uint64_t len,
                       uint32_t flags)
{
    struct vmio_wire_range rg = { .offset = off, .length = len, .flags = flags };
    uint8_t b[VMIO_WIRE_RANGE_BODY];
    vmio_wire_encode_range(b, &rg);
    send_frame(fd, type, id, 0, b, sizeof b);
}

/* The image's bytes at off match test_fill(seed 51) over len bytes. */
static void check_image(int fd, uint64_t off, uint32_t len, uint32_t seed)
{
    struct vmio_wire_io io = { .offset = off, .length = len };
    uint8_t *b = malloc(len);
    send_io(fd, VMIO_WIRE_READ, 900, &io, NULL, 0);
    expect_ok(fd, VMIO_WIRE_READ, 900, b, len);
    ck_assert_int_eq(test_check(b, len, off, seed), -1);
    free(b);
}

/* A well-behaved client still gets full service. */
static void good_connection(void)
{
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    check_image(fd, 4096, 8192, 51);
    uint8_t b[8];
    send_frame(fd, VMIO_WIRE_SIZE, 901, 0, NULL, 0);
    expect_ok(fd, VMIO_WIRE_SIZE, 901, b, 8);
    ck_assert(vmio_get_le64(b) == IMG_SIZE);
    send_frame(fd, VMIO_WIRE_DISCONNECT, 902, 0, NULL, 0);
    expect_closed(fd);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_good_client)
{
    struct vmio_wire_open_reply o;
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, &o);
    ck_assert(o.caps & VMIO_CAP_WRITE);
    ck_assert_uint_ge(o.max_io, 4096);

    /* Several requests in flight; replies matched by id. */
    uint8_t w[3][4096];
    for (int i = 0; i < 3; i++) {
        test_fill(w[i], 4096, (uint64_t)(10 + i) * 4096, 52);
        struct vmio_wire_io io = { .offset = (uint64_t)(10 + i) * 4096, .length = 4096 };
        send_io(fd, VMIO_WIRE_WRITE, 100 + (uint64_t)i, &io, w[i], 4096);
    }
    int seen[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        struct vmio_wire_hdr h;
        uint8_t b[ERR_BODY_MAX];
        ck_assert_int_eq(recv_frame(fd, &h, b, sizeof b), 0);
        ck_assert_uint_eq(h.type, VMIO_WIRE_WRITE | VMIO_WIRE_REPLY);
        ck_assert_int_eq(h.status, 0);
        ck_assert_uint_eq(h.length, 0);
        ck_assert(h.id >= 100 && h.id < 103);
        seen[h.id - 100]++;
    }
    ck_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    check_image(fd, 10 * 4096, 3 * 4096, 52);
    check_image(fd, 0, 40960, 51);

    send_frame(fd, VMIO_WIRE_FLUSH, 110, 0, NULL, 0);
    expect_ok(fd, VMIO_WIRE_FLUSH, 110, NULL, 0);
    send_range(fd, VMIO_WIRE_BLOCK_STATUS, 111, 0, IMG_SIZE, 0);
    uint8_t ext[16];
    expect_ok(fd, VMIO_WIRE_BLOCK_STATUS, 111, ext, sizeof ext);
    ck_assert(vmio_get_le64(ext) >= 1 && vmio_get_le64(ext) <= IMG_SIZE);
    ck_assert_uint_eq(vmio_get_le32(ext + 8), VMIO_EXTENT_DATA);
    send_frame(fd, VMIO_WIRE_DISCONNECT, 112, 0, NULL, 0);
    expect_closed(fd);
}
END_TEST

START_TEST(test_garbage)
{
    /* Bytes that are not a frame, before and after the handshake: the
     * stream cannot be resynchronised, so the server closes silently. */
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    int fd = rconnect();
    send_raw(fd, junk, sizeof junk);
    expect_closed(fd);

    fd = rconnect();
    send_raw(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_closed(fd);

    fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    send_raw(fd, junk, sizeof junk);
    expect_closed(fd);

    /* A valid magic with flags set, after the handshake. */
    fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_FLUSH, .id = 5 };
    vmio_wire_encode_hdr(hb, &h);
    vmio_put_le16(hb + 6, 1);
    send_raw(fd, hb, sizeof hb);
    expect_closed(fd);
    good_connection();
}
END_TEST

START_TEST(test_truncated)
{
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_HELLO, .id = 1, .length = 40 };
    uint8_t hb[VMIO_WIRE_HDR_SIZE + 20];
    vmio_wire_encode_hdr(hb, &h);
    memset(hb + VMIO_WIRE_HDR_SIZE, 0, 20);

    /* Half a header, then end of stream. */
    int fd = rconnect();
    send_raw(fd, hb, 10);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);
    /* A header promising 40 bytes, 20 sent. */
    fd = rconnect();
    send_raw(fd, hb, sizeof hb);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);
    /* A request cut short after the handshake. */
    fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    struct vmio_wire_io io = { .offset = 0, .length = 4096 };
    uint8_t b[VMIO_WIRE_HDR_SIZE + VMIO_WIRE_IO_BODY + 100];
    h = (struct vmio_wire_hdr){ .type = VMIO_WIRE_WRITE, .id = 9,
                                .length = VMIO_WIRE_IO_BODY + 4096 };
    vmio_wire_encode_hdr(b, &h);
    vmio_wire_encode_io(b + VMIO_WIRE_HDR_SIZE, &io);
    memset(b + VMIO_WIRE_HDR_SIZE + VMIO_WIRE_IO_BODY, 0xab, 100);
    send_raw(fd, b, sizeof b);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);

    /* Peers that stall halfway do not block anybody else. */
    int stalled1 = rconnect();
    send_raw(stalled1, hb, 10);
    int stalled2 = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    send_raw(stalled2, b, sizeof b);
    good_connection();
    good_connection();
    close(stalled1);
    close(stalled2);
    /* The cut WRITE did not reach the image. */
    fd = open_conn(0, NULL);
    check_image(fd, 0, 4096, 51);
    close(fd);
}
END_TEST

START_TEST(test_oversized)
{
    /* A handshake frame over the handshake limit. */
    int fd = rconnect();
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_HELLO, .id = 1,
                               .length = VMIO_WIRE_MAX_HANDSHAKE + 1 };
    uint8_t hb[VMIO_WIRE_HDR_SIZE];
    vmio_wire_encode_hdr(hb, &h);
    send_raw(fd, hb, sizeof hb);
    expect_closed(fd);

    fd = rconnect();
    h.length = UINT32_MAX;
    vmio_wire_encode_hdr(hb, &h);
    send_raw(fd, hb, sizeof hb);
    expect_closed(fd);

    /* A request over max_io + 32, and one absurdly large. */
    struct vmio_wire_open_reply o;
    fd = open_conn(VMIO_WIRE_OPEN_RDWR, &o);
    h = (struct vmio_wire_hdr){ .type = VMIO_WIRE_WRITE, .id = 7,
                                .length = o.max_io + VMIO_WIRE_IO_BODY + 1 };
    vmio_wire_encode_hdr(hb, &h);
    send_raw(fd, hb, sizeof hb);
    expect_closed(fd);
    fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    h.length = UINT32_MAX;
    vmio_wire_encode_hdr(hb, &h);
    send_raw(fd, hb, sizeof hb);
    expect_closed(fd);
    good_connection();
}
END_TEST

START_TEST(test_bad_handshake)
{
    struct peer_state s;
    uint8_t b[128];
    memset(b, 0, sizeof b);

    /* HELLO of the wrong size. */
    int fd = rconnect();
    send_frame(fd, VMIO_WIRE_HELLO, 1, 0, b, 39);
    expect_error(fd, VMIO_WIRE_HELLO, 1, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* No common version. */
    fd = rconnect();
    send_hello(fd, 2, 3, &s);
    expect_error(fd, VMIO_WIRE_HELLO, 1, VMIO_WIRE_EPROTO, "version");
    expect_closed(fd);
    /* A version range that makes no sense. */
    fd = rconnect();
    send_hello(fd, 0, 1, &s);
    expect_error(fd, VMIO_WIRE_HELLO, 1, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* A HELLO with a status. */
    fd = rconnect();
    struct vmio_wire_hello m = { .min_version = 1, .max_version = 1 };
    size_t n = vmio_wire_encode_hello(b, &m);
    send_frame(fd, VMIO_WIRE_HELLO, 1, 5, b, (uint32_t)n);
    expect_error(fd, VMIO_WIRE_HELLO, 1, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* OPEN and READ before anything else. */
    fd = rconnect();
    send_open(fd, 0, "exp", "img");
    expect_error(fd, VMIO_WIRE_OPEN, 3, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    fd = rconnect();
    struct vmio_wire_io io = { .offset = 0, .length = 16 };
    send_io(fd, VMIO_WIRE_READ, 4, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 4, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* OPEN instead of AUTH: names are not given to unauthenticated peers. */
    fd = rconnect();
    do_hello(fd, &s);
    send_open(fd, 0, "exp", "img");
    expect_error(fd, VMIO_WIRE_OPEN, 3, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* A second HELLO instead of AUTH. */
    fd = rconnect();
    do_hello(fd, &s);
    send_hello(fd, 1, 1, &s);
    expect_error(fd, VMIO_WIRE_HELLO, 1, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* A wrong proof, a proof of the wrong length, a replayed server proof. */
    fd = rconnect();
    do_hello(fd, &s);
    memset(b, 0x42, VMIO_WIRE_PROOF_SIZE);
    send_frame(fd, VMIO_WIRE_AUTH, 2, 0, b, VMIO_WIRE_PROOF_SIZE);
    expect_error(fd, VMIO_WIRE_AUTH, 2, VMIO_WIRE_EACCES, "authentication failed");
    expect_closed(fd);
    fd = rconnect();
    do_hello(fd, &s);
    send_frame(fd, VMIO_WIRE_AUTH, 2, 0, b, VMIO_WIRE_PROOF_SIZE - 1);
    expect_error(fd, VMIO_WIRE_AUTH, 2, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    fd = rconnect();
    do_hello(fd, &s);
    send_frame(fd, VMIO_WIRE_AUTH, 2, 0, s.hr.proof, VMIO_WIRE_PROOF_SIZE);
    expect_error(fd, VMIO_WIRE_AUTH, 2, VMIO_WIRE_EACCES, NULL);
    expect_closed(fd);
    /* A client proof computed for other nonces. */
    fd = rconnect();
    do_hello(fd, &s);
    uint8_t other[VMIO_WIRE_NONCE_SIZE];
    memset(other, 7, sizeof other);
    vmio_auth_client_proof((const uint8_t *)SECRET, strlen(SECRET), other, s.cnonce, b);
    send_frame(fd, VMIO_WIRE_AUTH, 2, 0, b, VMIO_WIRE_PROOF_SIZE);
    expect_error(fd, VMIO_WIRE_AUTH, 2, VMIO_WIRE_EACCES, NULL);
    expect_closed(fd);
    /* READ instead of OPEN after a good AUTH. */
    fd = rconnect();
    do_hello(fd, &s);
    do_auth(fd, &s);
    send_io(fd, VMIO_WIRE_READ, 4, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 4, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    /* Failed OPENs: bad body, unknown export, escape. */
    fd = rconnect();
    do_hello(fd, &s);
    do_auth(fd, &s);
    send_frame(fd, VMIO_WIRE_OPEN, 3, 0, b, 19);
    expect_error(fd, VMIO_WIRE_OPEN, 3, VMIO_WIRE_EPROTO, NULL);
    expect_closed(fd);
    fd = rconnect();
    do_hello(fd, &s);
    do_auth(fd, &s);
    send_open(fd, 0, "nope", "img");
    expect_error(fd, VMIO_WIRE_OPEN, 3, VMIO_WIRE_ENOENT, "unknown export");
    expect_closed(fd);
    fd = rconnect();
    do_hello(fd, &s);
    do_auth(fd, &s);
    send_open(fd, 0, "exp", "../exp/img");
    expect_error(fd, VMIO_WIRE_OPEN, 3, VMIO_WIRE_EACCES, "escape");
    expect_closed(fd);
    good_connection();
}
END_TEST

START_TEST(test_bad_requests)
{
    /* Well-framed but wrong requests get an error reply and the
     * connection goes on. */
    struct vmio_wire_open_reply o;
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, &o);
    uint8_t payload[200];
    memset(payload, 0xcd, sizeof payload);

    /* WRITE whose payload disagrees with its length field. */
    struct vmio_wire_io io = { .offset = 0, .length = 200 };
    send_io(fd, VMIO_WIRE_WRITE, 20, &io, payload, 100);
    expect_error(fd, VMIO_WIRE_WRITE, 20, VMIO_WIRE_EPROTO, NULL);
    io.length = 50;
    send_io(fd, VMIO_WIRE_WRITE, 21, &io, payload, 100);
    expect_error(fd, VMIO_WIRE_WRITE, 21, VMIO_WIRE_EPROTO, NULL);
    /* Non-zero RDMA slots over TCP: a WRITE naming a remote buffer must
     * not carry the data too, and without RDMA the server cannot use it. */
    io = (struct vmio_wire_io){ .offset = 0, .length = 100, .rkey = 1 };
    send_io(fd, VMIO_WIRE_WRITE, 22, &io, payload, 100);
    expect_error(fd, VMIO_WIRE_WRITE, 22, VMIO_WIRE_EPROTO, "RDMA carries a payload");
    send_io(fd, VMIO_WIRE_WRITE, 22, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_WRITE, 22, VMIO_WIRE_EINVAL, "without RDMA");
    io = (struct vmio_wire_io){ .offset = 0, .length = 100, .addr = 0x7f0000001000ull };
    send_io(fd, VMIO_WIRE_READ, 23, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 23, VMIO_WIRE_EINVAL, "RDMA");
    io = (struct vmio_wire_io){ .offset = 0, .length = 100, .rkey = 0xffffffffu };
    send_io(fd, VMIO_WIRE_READ, 24, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 24, VMIO_WIRE_EINVAL, NULL);
    /* Unknown type, unknown flag, flag not valid here. */
    send_frame(fd, 0x1a, 25, 0, NULL, 0);
    expect_error(fd, 0x1a, 25, VMIO_WIRE_EPROTO, NULL);
    /* LOCAL without the feature (this client did not ask for it). */
    send_frame(fd, VMIO_WIRE_LOCAL, 27, 0, NULL, 0);
    expect_error(fd, VMIO_WIRE_LOCAL, 27, VMIO_WIRE_ENOTSUP, "LOCAL was not negotiated");
    io = (struct vmio_wire_io){ .offset = 0, .length = 100, .flags = 0x4 };
    send_io(fd, VMIO_WIRE_READ, 26, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 26, VMIO_WIRE_EPROTO, NULL);
    io.flags = VMIO_WIRE_REQ_FUA;
    send_io(fd, VMIO_WIRE_READ, 27, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 27, VMIO_WIRE_EINVAL, NULL);
    io.flags = VMIO_WIRE_REQ_MAY_TRIM;
    send_io(fd, VMIO_WIRE_WRITE, 28, &io, payload, 100);
    expect_error(fd, VMIO_WIRE_WRITE, 28, VMIO_WIRE_EINVAL, NULL);
    /* Ranges beyond the end, zero, over max_io. */
    io = (struct vmio_wire_io){ .offset = IMG_SIZE - 50, .length = 100 };
    send_io(fd, VMIO_WIRE_WRITE, 29, &io, payload, 100);
    expect_error(fd, VMIO_WIRE_WRITE, 29, VMIO_WIRE_EINVAL, NULL);
    send_io(fd, VMIO_WIRE_READ, 30, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 30, VMIO_WIRE_EINVAL, NULL);
    io = (struct vmio_wire_io){ .offset = 0, .length = 0 };
    send_io(fd, VMIO_WIRE_READ, 31, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 31, VMIO_WIRE_EINVAL, NULL);
    io.length = o.max_io + 1;
    send_io(fd, VMIO_WIRE_READ, 32, &io, NULL, 0);
    expect_error(fd, VMIO_WIRE_READ, 32, VMIO_WIRE_EINVAL, NULL);
    send_range(fd, VMIO_WIRE_TRIM, 33, IMG_SIZE, 1, 0);
    expect_error(fd, VMIO_WIRE_TRIM, 33, VMIO_WIRE_EINVAL, NULL);
    send_range(fd, VMIO_WIRE_BLOCK_STATUS, 34, IMG_SIZE, 1, 0);
    expect_error(fd, VMIO_WIRE_BLOCK_STATUS, 34, VMIO_WIRE_EINVAL, NULL);
    /* A request carrying a status, bodies of the wrong size. */
    send_frame(fd, VMIO_WIRE_FLUSH, 35, 22, NULL, 0);
    expect_error(fd, VMIO_WIRE_FLUSH, 35, VMIO_WIRE_EPROTO, NULL);
    send_frame(fd, VMIO_WIRE_FLUSH, 36, 0, payload, 3);
    expect_error(fd, VMIO_WIRE_FLUSH, 36, VMIO_WIRE_EPROTO, NULL);
    send_frame(fd, VMIO_WIRE_TRUNCATE, 37, 0, payload, 7);
    expect_error(fd, VMIO_WIRE_TRUNCATE, 37, VMIO_WIRE_EPROTO, NULL);
    /* Handshake messages are not requests. */
    send_frame(fd, VMIO_WIRE_HELLO, 38, 0, payload, 40);
    expect_error(fd, VMIO_WIRE_HELLO, 38, VMIO_WIRE_EPROTO, NULL);

    /* Nothing of that reached the image, and the connection still works. */
    check_image(fd, 0, 8192, 51);
    check_image(fd, IMG_SIZE - 8192, 8192, 51);
    send_frame(fd, VMIO_WIRE_DISCONNECT, 40, 0, NULL, 0);
    expect_closed(fd);
    good_connection();
}
END_TEST

START_TEST(test_read_only_open)
{
    struct vmio_wire_open_reply o;
    int fd = open_conn(0, &o);
    ck_assert_uint_eq(o.caps & VMIO_CAP_WRITE, 0);
    uint8_t payload[64] = { 0 };
    struct vmio_wire_io io = { .offset = 0, .length = 64 };
    send_io(fd, VMIO_WIRE_WRITE, 50, &io, payload, 64);
    expect_error(fd, VMIO_WIRE_WRITE, 50, VMIO_WIRE_EROFS, NULL);
    send_range(fd, VMIO_WIRE_TRIM, 51, 0, 4096, 0);
    expect_error(fd, VMIO_WIRE_TRIM, 51, VMIO_WIRE_EROFS, NULL);
    send_range(fd, VMIO_WIRE_WRITE_ZEROES, 52, 0, 4096, 0);
    expect_error(fd, VMIO_WIRE_WRITE_ZEROES, 52, VMIO_WIRE_EROFS, NULL);
    uint8_t sz[8];
    vmio_put_le64(sz, 0);
    send_frame(fd, VMIO_WIRE_TRUNCATE, 53, 0, sz, 8);
    expect_error(fd, VMIO_WIRE_TRUNCATE, 53, VMIO_WIRE_EROFS, NULL);
    check_image(fd, 0, 4096, 51);
    close(fd);
}
END_TEST

/* WRITE data beyond the read-ahead goes into a pipe of the request thread
 * (splice) and from there into the file: it lands where it belongs,
 * refused and cut-off writes leave the image alone and the connection in
 * step, and data that does not fit the pipe still arrives whole. One
 * request at a time on each connection, so one thread (and one pipe)
 * serves them all. */
START_TEST(test_large_writes)
{
    const uint32_t len = 256 * 1024;
    uint8_t *p = malloc(len);
    uint64_t spliced0, spilled0, spliced, spilled;
    vmio_server_test_splice_stats(&spliced0, &spilled0);
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);

    test_fill(p, len, 4097, 77);
    struct vmio_wire_io io = { .offset = 4097, .length = len };
    send_io(fd, VMIO_WIRE_WRITE, 60, &io, p, len);
    expect_ok(fd, VMIO_WIRE_WRITE, 60, NULL, 0);
    check_image(fd, 4097, len, 77);
    check_image(fd, 0, 4097, 51);
    check_image(fd, 4097 + len, 4096, 51);
    vmio_server_test_splice_stats(&spliced, &spilled);
    ck_assert_uint_eq(spliced - spliced0, 1);
    ck_assert_uint_eq(spilled - spilled0, 0);

    /* Refused after the data was taken off the socket: an unknown flag
     * (by the decoder), a range past the end (when executed). Nothing
     * written, the next request is understood. */
    test_fill(p, len, 512 * 1024, 79);
    io = (struct vmio_wire_io){ .offset = 512 * 1024, .length = len, .flags = 0x40 };
    send_io(fd, VMIO_WIRE_WRITE, 62, &io, p, len);
    expect_error(fd, VMIO_WIRE_WRITE, 62, VMIO_WIRE_EPROTO, "flags");
    io = (struct vmio_wire_io){ .offset = IMG_SIZE - len / 2, .length = len };
    send_io(fd, VMIO_WIRE_WRITE, 63, &io, p, len);
    expect_error(fd, VMIO_WIRE_WRITE, 63, VMIO_WIRE_EINVAL, "beyond the end");
    check_image(fd, 512 * 1024, IMG_SIZE - 512 * 1024, 51);
    /* The refused data is gone: the next write is exactly its own. */
    test_fill(p, len, 8192, 81);
    io = (struct vmio_wire_io){ .offset = 8192, .length = len };
    send_io(fd, VMIO_WIRE_WRITE, 66, &io, p, len);
    expect_ok(fd, VMIO_WIRE_WRITE, 66, NULL, 0);
    check_image(fd, 8192, len, 81);
    vmio_server_test_splice_stats(&spliced, &spilled);
    ck_assert_uint_eq(spliced - spliced0, 4);
    /* FUA writes take the usual way (a spliced write could only be made
     * durable by syncing the whole file). */
    test_fill(p, len, 4097, 78);
    io = (struct vmio_wire_io){ .offset = 4097, .length = len, .flags = VMIO_WIRE_REQ_FUA };
    send_io(fd, VMIO_WIRE_WRITE, 61, &io, p, len);
    expect_ok(fd, VMIO_WIRE_WRITE, 61, NULL, 0);
    check_image(fd, 4097, len, 78);
    vmio_server_test_splice_stats(&spliced, &spilled);
    ck_assert_uint_eq(spliced - spliced0, 4);

    /* A read-only open: refused when executed, and in step afterwards. */
    int ro = open_conn(0, NULL);
    test_fill(p, len, 0, 82);
    io = (struct vmio_wire_io){ .offset = 0, .length = len };
    send_io(ro, VMIO_WIRE_WRITE, 67, &io, p, len);
    expect_error(ro, VMIO_WIRE_WRITE, 67, VMIO_WIRE_EROFS, NULL);
    check_image(ro, 0, 4097, 51);
    close(ro);

    /* Cut off in the middle of the data: the connection ends, nothing of
     * it reaches the image. The header and I/O fields go first, on their
     * own, so the pipe gets all of the data. */
    int cut = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_WRITE, .id = 64,
                               .length = VMIO_WIRE_IO_BODY + len };
    uint8_t hb[VMIO_WIRE_HDR_SIZE + VMIO_WIRE_IO_BODY];
    vmio_wire_encode_hdr(hb, &h);
    io = (struct vmio_wire_io){ .offset = 512 * 1024, .length = len };
    vmio_wire_encode_io(hb + VMIO_WIRE_HDR_SIZE, &io);
    send_raw(cut, hb, sizeof hb);
    usleep(20 * 1000);
    send_raw(cut, p, len - 1000);
    shutdown(cut, SHUT_WR);
    expect_closed(cut);
    check_image(fd, 512 * 1024, len, 51);
    close(fd);

    /* A one-page pipe: frames larger than the pipe are not spliced at
     * all. Pipes are made per request thread, so on a new connection. */
    vmio_server_test_pipe_size(4096);
    fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    vmio_server_test_splice_stats(&spliced0, &spilled0);
    test_fill(p, len, 512 * 1024 + 3, 80);
    io = (struct vmio_wire_io){ .offset = 512 * 1024 + 3, .length = len };
    send_io(fd, VMIO_WIRE_WRITE, 65, &io, p, len);
    expect_ok(fd, VMIO_WIRE_WRITE, 65, NULL, 0);
    vmio_server_test_pipe_size(0);
    check_image(fd, 512 * 1024 + 3, len, 80);
    check_image(fd, 512 * 1024 + 3 + len, 4096, 51);
    vmio_server_test_splice_stats(&spliced, &spilled);
    ck_assert_uint_eq(spliced - spliced0, 0);
    ck_assert_uint_eq(spilled - spilled0, 0);
    close(fd);
    free(p);
}
END_TEST

/* Data that does not fit in the pipe after all (its slots filled with
 * less than a page each, here: written in 1000-byte pieces) is taken
 * back out and the rest received the usual way. */
START_TEST(test_write_spill)
{
    const uint32_t len = 1024 * 1024 - 4096;
    uint8_t *p = malloc(len);
    uint64_t spliced0, spilled0, spliced, spilled;
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    vmio_server_test_splice_stats(&spliced0, &spilled0);
    struct vmio_wire_hdr h = { .type = VMIO_WIRE_WRITE, .id = 70,
                               .length = VMIO_WIRE_IO_BODY + len };
    uint8_t hb[VMIO_WIRE_HDR_SIZE + VMIO_WIRE_IO_BODY];
    vmio_wire_encode_hdr(hb, &h);
    struct vmio_wire_io io = { .offset = 4096, .length = len };
    vmio_wire_encode_io(hb + VMIO_WIRE_HDR_SIZE, &io);
    test_fill(p, len, 4096, 83);
    send_raw(fd, hb, sizeof hb);
    usleep(20 * 1000);
    /* Small segments, each one a slot of the pipe. */
    for (uint32_t off = 0; off < len; off += 1000) {
        send_raw(fd, p + off, len - off < 1000 ? len - off : 1000);
        if (off % 64000 == 0)
            usleep(1000);
    }
    expect_ok(fd, VMIO_WIRE_WRITE, 70, NULL, 0);
    check_image(fd, 4096, len, 83);
    check_image(fd, 0, 4096, 51);
    vmio_server_test_splice_stats(&spliced, &spilled);
    /* Taken back out here; a server slow enough for the kernel to merge
     * the segments before it splices may get it all into the pipe. */
    ck_assert_uint_eq(spliced - spliced0 + spilled - spilled0, 1);
    close(fd);
    free(p);
}
END_TEST

/* One 256 KiB WRITE on a new connection; returns how many frames were
 * spliced meanwhile. The data must land either way. */
static uint64_t spliced_write(uint8_t *p, uint32_t len, uint64_t off, uint32_t seed)
{
    uint64_t spliced0, spilled0, spliced, spilled;
    int fd = open_conn(VMIO_WIRE_OPEN_RDWR, NULL);
    vmio_server_test_splice_stats(&spliced0, &spilled0);
    test_fill(p, len, off, seed);
    struct vmio_wire_io io = { .offset = off, .length = len };
    send_io(fd, VMIO_WIRE_WRITE, 90, &io, p, len);
    expect_ok(fd, VMIO_WIRE_WRITE, 90, NULL, 0);
    check_image(fd, off, len, seed);
    vmio_server_test_splice_stats(&spliced, &spilled);
    close(fd);
    return spliced - spliced0;
}

/* vmio_server_set_splice: OFF never splices; AUTO splices when the server
 * may run on one CPU only (a server started by a thread pinned to one
 * CPU) and, where this process may use several, not otherwise. */
START_TEST(test_splice_modes)
{
    const uint32_t len = 256 * 1024;
    uint8_t *p = malloc(len);
    ck_assert_uint_eq(spliced_write(p, len, 4096, 91), 1);

    stop_server();
    start_server(VMIO_SERVER_SPLICE_OFF);
    ck_assert_uint_eq(spliced_write(p, len, 8192, 92), 0);

    cpu_set_t all, one;
    ck_assert_int_eq(sched_getaffinity(0, sizeof all, &all), 0);
    int ncpus = CPU_COUNT(&all), first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
        if (CPU_ISSET(i, &all))
            first = i;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    stop_server();
    if (sched_setaffinity(0, sizeof one, &one) == 0) {
        start_server(VMIO_SERVER_SPLICE_AUTO);   /* its threads inherit one CPU */
        ck_assert_int_eq(sched_setaffinity(0, sizeof all, &all), 0);
        ck_assert_uint_eq(spliced_write(p, len, 12288, 93), 1);
        stop_server();
    } else {
        fprintf(stderr, "test_splice_modes: cannot pin to CPU %d (%s): AUTO on one CPU "
                "not checked\n", first, strerror(errno));
    }

    /* With one CPU to begin with, AUTO cannot be told from ON here. */
    start_server(VMIO_SERVER_SPLICE_AUTO);
    ck_assert_uint_eq(spliced_write(p, len, 16384, 94), ncpus > 1 ? 0 : 1);

    ck_assert_vmio_err(vmio_server_set_splice(srv, 3), EINVAL, "vmio_server_set_splice");
    ck_assert_vmio_err(vmio_server_set_splice(NULL, 0), EFAULT, "vmio_server_set_splice");
    free(p);
}
END_TEST

/* ---- the client against a hand-driven server ---------------------------- */

/* Grants LOCAL in HELLO, answers AUTH and OPEN, and closes the connection
 * when LOCAL comes instead of answering it; a second connection, if the
 * client makes one, answers SIZE until the client sends anything else. */
struct fake {
    int lfd;
    int conns;                   /* connections to accept */
    uint32_t features[2];        /* what each HELLO asked for */
    uint16_t after_open[2];      /* type of the first frame after OPEN, 0: none */
};

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    static uint8_t body[ERR_BODY_MAX];
    for (int i = 0; i < f->conns; i++) {
        int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return NULL;
        struct vmio_wire_hdr h;
        struct vmio_wire_hello hello;
        if (recv_frame(fd, &h, body, sizeof body) < 0 ||
            vmio_wire_decode_hello("fake", body, h.length, &hello) < 0) {
            close(fd);
            return NULL;
        }
        f->features[i] = hello.features;
        struct vmio_wire_hello_reply hr = { .version = VMIO_WIRE_VERSION,
                                            .features = hello.features };
        memset(hr.nonce, 0x5c + i, sizeof hr.nonce);
        vmio_auth_server_proof((const uint8_t *)SECRET, strlen(SECRET), hello.nonce, hr.nonce,
                               hr.proof);
        uint8_t out[8 + VMIO_WIRE_NONCE_SIZE + VMIO_WIRE_PROOF_SIZE];
        send_frame(fd, VMIO_WIRE_HELLO | VMIO_WIRE_REPLY, h.id, 0, out,
                   (uint32_t)vmio_wire_encode_hello_reply(out, &hr));
        if (recv_frame(fd, &h, body, sizeof body) < 0) {           /* AUTH */
            close(fd);
            return NULL;
        }
        send_frame(fd, VMIO_WIRE_AUTH | VMIO_WIRE_REPLY, h.id, 0, NULL, 0);
        if (recv_frame(fd, &h, body, sizeof body) < 0) {           /* OPEN */
            close(fd);
            return NULL;
        }
        struct vmio_wire_open_reply orep = { .size = IMG_SIZE, .caps = VMIO_CAP_FLUSH,
                                             .max_io = 1u << 20 };
        uint8_t ob[16];
        send_frame(fd, VMIO_WIRE_OPEN | VMIO_WIRE_REPLY, h.id, 0, ob,
                   (uint32_t)vmio_wire_encode_open_reply(ob, &orep));
        /* LOCAL: dropped. Otherwise SIZE is answered until the client
         * disconnects. */
        while (recv_frame(fd, &h, body, sizeof body) == 0) {
            if (h.type != VMIO_WIRE_SIZE) {
                f->after_open[i] = h.type;
                break;
            }
            uint8_t sb[8];
            vmio_put_le64(sb, IMG_SIZE);
            send_frame(fd, VMIO_WIRE_SIZE | VMIO_WIRE_REPLY, h.id, 0, sb, sizeof sb);
        }
        close(fd);
    }
    return NULL;
}

static void fake_start(struct fake *f, int conns, pthread_t *th, char *uri, size_t len)
{
    memset(f, 0, sizeof *f);
    f->conns = conns;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->lfd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    ck_assert_int_eq(pthread_create(th, NULL, fake_main, f), 0);
    char sp[400];
    snprintf(sp, sizeof sp, "%s/secret", dir);
    int fd = open(sp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, SECRET, strlen(SECRET)), (ssize_t)strlen(SECRET));
    close(fd);
    snprintf(uri, len, "vmio://127.0.0.1:%u/exp/img?transport=tcp&secret-file=%s&local=",
             ntohs(sa.sin_port), sp);
}

/* A LOCAL exchange that breaks off: local=auto opens a fresh connection
 * without asking again and says why; local=on fails with the reason. */
START_TEST(test_local_broken_off)
{
    struct fake f;
    pthread_t th;
    char uri[600];
    fake_start(&f, 2, &th, uri, sizeof uri - 8);
    strcat(uri, "auto");
    vmio_file *vf = NULL;
    ck_assert_vmio_ok(vmio_open(uri, 0, &vf));
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(vf, &st));
    ck_assert_msg(strstr(st.transport, "no local path: ") &&
                  strstr(st.transport, "the local data path request"),
                  "transport '%s'", st.transport);
    uint64_t size = 0;
    ck_assert_vmio_ok(vmio_get_size(vf, &size));     /* from the second OPEN reply */
    ck_assert(size == IMG_SIZE);
    vmio_close(vf);
    pthread_join(th, NULL);
    close(f.lfd);
    ck_assert(f.features[0] & VMIO_WIRE_F_LOCAL);
    ck_assert_uint_eq(f.after_open[0], VMIO_WIRE_LOCAL);         /* dropped */
    ck_assert(!(f.features[1] & VMIO_WIRE_F_LOCAL));            /* not asked again */
    ck_assert_uint_eq(f.after_open[1], VMIO_WIRE_DISCONNECT);

    fake_start(&f, 1, &th, uri, sizeof uri - 8);
    strcat(uri, "on");
    vf = NULL;
    ck_assert_vmio_err_msg(vmio_open(uri, 0, &vf), ECONNRESET, "vmio_open",
                           "the local data path request");
    ck_assert_ptr_null(vf);
    pthread_join(th, NULL);
    close(f.lfd);
}
END_TEST

static Suite *raw_suite(void)
{
    Suite *s = suite_create("protocol-raw");
    TCase *tc = tcase_create("raw");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_good_client);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_large_writes);
    tcase_add_test(tc, test_write_spill);
    tcase_add_test(tc, test_splice_modes);
    tcase_add_test(tc, test_oversized);
    tcase_add_test(tc, test_bad_handshake);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_read_only_open);
    tcase_add_test(tc, test_local_broken_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(raw_suite());
}
