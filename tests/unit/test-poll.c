/* Adaptive polling (libvmio/transport/poll.c) and the TCP transport's
 * polling receive: how the window grows, stops at its limit and shrinks,
 * and what recv_poll returns with no data, with data and at end of
 * stream. */
#include <sys/socket.h>
#include <unistd.h>

#include "test-common.h"

#include "transport/poll.h"
#include "transport/transport.h"

START_TEST(test_grows_on_short_waits)
{
    struct vmio_poll p;
    vmio_poll_init(&p, 100000);
    ck_assert_uint_eq(p.ns, 0);
    vmio_poll_update(&p, 0, 30000);     /* a wait polling would have caught */
    ck_assert_uint_eq(p.ns, VMIO_POLL_START_NS);
    uint64_t want = VMIO_POLL_START_NS;
    for (int i = 0; i < 20; i++) {
        vmio_poll_update(&p, 0, 90000);
        want = want * 2 < 100000 ? want * 2 : 100000;
        ck_assert_uint_eq(p.ns, want);
    }
    ck_assert_uint_eq(p.ns, 100000);    /* never past the limit */
    ck_assert_uint_eq(p.sleeps, 21);
    ck_assert_uint_eq(p.hits, 0);
}
END_TEST

START_TEST(test_hits_keep_the_window)
{
    struct vmio_poll p;
    vmio_poll_init(&p, 200000);
    vmio_poll_update(&p, 0, 1000);
    vmio_poll_update(&p, 0, 1000);
    uint64_t w = p.ns;
    ck_assert_uint_eq(w, 2 * VMIO_POLL_START_NS);
    for (int i = 0; i < 5; i++)
        vmio_poll_update(&p, 1, 0);
    ck_assert_uint_eq(p.ns, w);
    ck_assert_uint_eq(p.hits, 5);
    ck_assert_uint_eq(p.sleeps, 2);
}
END_TEST

START_TEST(test_shrinks_on_long_waits)
{
    struct vmio_poll p;
    vmio_poll_init(&p, 64000);
    for (int i = 0; i < 10; i++)
        vmio_poll_update(&p, 0, 10);
    ck_assert_uint_eq(p.ns, 64000);
    vmio_poll_update(&p, 0, 64001);     /* the peer was away for longer */
    ck_assert_uint_eq(p.ns, 32000);
    vmio_poll_update(&p, 0, 5000000);
    ck_assert_uint_eq(p.ns, 16000);
    vmio_poll_update(&p, 0, 5000000);
    vmio_poll_update(&p, 0, 5000000);
    ck_assert_uint_eq(p.ns, 4000);
    vmio_poll_update(&p, 0, 5000000);   /* below the first step: off */
    ck_assert_uint_eq(p.ns, 0);
    vmio_poll_update(&p, 0, 5000000);
    ck_assert_uint_eq(p.ns, 0);
    /* A limit below the first step still caps it. */
    vmio_poll_init(&p, 1000);
    vmio_poll_update(&p, 0, 500);
    ck_assert_uint_eq(p.ns, 1000);
}
END_TEST

START_TEST(test_off_does_nothing)
{
    struct vmio_poll p;
    vmio_poll_init(&p, 0);
    vmio_poll_update(&p, 0, 10);
    vmio_poll_update(&p, 1, 0);
    ck_assert_uint_eq(p.ns, 0);
    ck_assert_uint_eq(p.hits + p.sleeps, 0);
}
END_TEST

START_TEST(test_tcp_recv_poll)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct vmio_transport *t;
    ck_assert_int_eq(vmio_tcp_wrap("test", sv[0], &t), 0);
    char buf[16];
    /* Nothing there: the budget runs out. */
    ck_assert_int_eq(vmio_transport_recv_poll(t, buf, sizeof buf, 200000), -EAGAIN);
    ck_assert_int_eq(vmio_transport_recv_poll(t, buf, sizeof buf, 0), -EAGAIN);
    /* Data there: returned at once, no more than asked for. */
    ck_assert_int_eq(write(sv[1], "hello world", 11), 11);
    ck_assert_int_eq(vmio_transport_recv_poll(t, buf, 5, 1000000000), 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    ck_assert_int_eq(vmio_transport_recv_poll(t, buf, sizeof buf, 1000000000), 6);
    ck_assert_int_eq(memcmp(buf, " world", 6), 0);
    /* End of stream. */
    close(sv[1]);
    ck_assert_int_eq(vmio_transport_recv_poll(t, buf, sizeof buf, 1000000000), -EPIPE);
    vmio_transport_close(t);
}
END_TEST

static Suite *poll_suite(void)
{
    Suite *s = suite_create("poll");
    TCase *tc = tcase_create("poll");
    tcase_add_test(tc, test_grows_on_short_waits);
    tcase_add_test(tc, test_hits_keep_the_window);
    tcase_add_test(tc, test_shrinks_on_long_waits);
    tcase_add_test(tc, test_off_does_nothing);
    tcase_add_test(tc, test_tcp_recv_poll);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(poll_suite());
}
