/* The migration engine's internals: stream records and entries
 * (stream.c), the dedup table (dedup.c), the delta cache (dcache.c), the
 * adaptive policy (policy.c), the emulated link and addresses (link.c). */
#include <vmio/migrate.h>

#include "core/internal.h"
#include "migrate/engine.h"
#include "migrate/stream.h"
#include "protocol/wire.h"
#include "test-common.h"

static uint64_t test_ns(void)
{
    return vmio_now_ns();
}

START_TEST(t_uleb)
{
    uint8_t b[16];
    const uint64_t vals[] = { 0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = vmio_mig_uleb_put(b, vals[i]);
        uint64_t v = 1234;
        ck_assert_uint_eq(vmio_mig_uleb_get(b, b + n, &v), n);
        ck_assert_uint_eq(v, vals[i]);
        if (n > 1)   /* truncated */
            ck_assert_uint_eq(vmio_mig_uleb_get(b, b + n - 1, &v), 0);
    }
    uint8_t overlong[] = { 0x81, 0x00 };
    uint64_t v;
    ck_assert_uint_eq(vmio_mig_uleb_get(overlong, overlong + 2, &v), 0);
    uint8_t big[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
    ck_assert_uint_eq(vmio_mig_uleb_get(big, big + 10, &v), 0);
    uint8_t eleven[11];
    memset(eleven, 0x80, sizeof eleven);
    ck_assert_uint_eq(vmio_mig_uleb_get(eleven, eleven + 11, &v), 0);
}
END_TEST

START_TEST(t_records)
{
    uint8_t hdr[VMIO_MIG_REC_HDR], payload[100];
    memset(payload, 7, sizeof payload);
    struct vmio_mig_rec r = { VMIO_MIG_REC_PAGES, 0, 3, 41, 100, 100 }, q;
    vmio_mig_rec_pack(hdr, &r, payload);
    char err[160];
    ck_assert_int_eq(vmio_mig_rec_parse(hdr, 41, &q, err, sizeof err), 0);
    ck_assert_uint_eq(q.region, 3);
    ck_assert_uint_eq(q.wire_len, 100);
    ck_assert(vmio_mig_rec_check(hdr, payload, 100));
    payload[99] ^= 1;
    ck_assert(!vmio_mig_rec_check(hdr, payload, 100));
    payload[99] ^= 1;
    hdr[5] ^= 1;                                  /* region: in the checksum */
    ck_assert(!vmio_mig_rec_check(hdr, payload, 100));
    hdr[5] ^= 1;
    ck_assert_int_eq(vmio_mig_rec_parse(hdr, 40, &q, err, sizeof err), -EPROTO);
    ck_assert_msg(strstr(err, "expected") != NULL, "%s", err);
    uint8_t bad[VMIO_MIG_REC_HDR];
    memcpy(bad, hdr, sizeof bad);
    bad[0] = 9;
    ck_assert_int_eq(vmio_mig_rec_parse(bad, 41, &q, err, sizeof err), -EPROTO);
    memcpy(bad, hdr, sizeof bad);
    bad[2] = 1;
    ck_assert_int_eq(vmio_mig_rec_parse(bad, 41, &q, err, sizeof err), -EPROTO);
    memcpy(bad, hdr, sizeof bad);
    vmio_put_le32(bad + 16, VMIO_MIG_MAX_PAYLOAD + 1);
    ck_assert_int_eq(vmio_mig_rec_parse(bad, 41, &q, err, sizeof err), -EPROTO);
    memcpy(bad, hdr, sizeof bad);
    vmio_put_le32(bad + 20, 99);                  /* raw != wire uncompressed */
    ck_assert_int_eq(vmio_mig_rec_parse(bad, 41, &q, err, sizeof err), -EPROTO);
    memcpy(bad, hdr, sizeof bad);
    bad[0] = VMIO_MIG_REC_ROUND;                  /* region on a ROUND */
    ck_assert_int_eq(vmio_mig_rec_parse(bad, 41, &q, err, sizeof err), -EPROTO);
}
END_TEST

START_TEST(t_hello)
{
    struct vmio_mig_region_info ri[2] = { { 1u << 20, 4096, "ram" }, { 65536, 16384, "" } };
    struct vmio_mig_hello h = { VMIO_MIG_VERSION, 0, 2, ri }, g;
    size_t n = vmio_mig_hello_size(2);
    uint8_t *b = malloc(n);
    vmio_mig_hello_encode(&h, b);
    char err[160];
    ck_assert_int_eq(vmio_mig_hello_decode(b, n, &g, err, sizeof err), 0);
    ck_assert_uint_eq(g.nregions, 2);
    ck_assert_uint_eq(g.regions[0].length, 1u << 20);
    ck_assert_str_eq(g.regions[0].name, "ram");
    ck_assert_uint_eq(g.regions[1].page_size, 16384);
    free(g.regions);
    ck_assert_int_eq(vmio_mig_hello_decode(b, n - 1, &g, err, sizeof err), -EPROTO);
    vmio_put_le32(b, 2);
    ck_assert_int_eq(vmio_mig_hello_decode(b, n, &g, err, sizeof err), -EPROTONOSUPPORT);
    ck_assert_msg(strstr(err, "version 2") != NULL, "%s", err);
    vmio_put_le32(b, 1);
    vmio_put_le32(b + 16 + 8, 3000);              /* page size */
    ck_assert_int_eq(vmio_mig_hello_decode(b, n, &g, err, sizeof err), -EPROTO);
    vmio_put_le32(b + 16 + 8, 4096);
    vmio_put_le64(b + 16, 4097);                  /* length */
    ck_assert_int_eq(vmio_mig_hello_decode(b, n, &g, err, sizeof err), -EPROTO);
    vmio_put_le64(b + 16, 4096);
    memset(b + 16 + 16, 'x', 64);                 /* name without NUL */
    ck_assert_int_eq(vmio_mig_hello_decode(b, n, &g, err, sizeof err), -EPROTO);
    free(b);
}
END_TEST

START_TEST(t_entries)
{
    const uint32_t ps = 4096;
    uint8_t page[4096], enc[] = { 0, 2, 'h', 'i' }, hash[32];
    memset(page, 0x3c, sizeof page);
    memset(hash, 0xab, sizeof hash);
    struct vmio_mig_entry in[] = {
        { .codec = VMIO_MIGRATE_CODEC_ZERO, .page = 2, .count = 5 },
        { .codec = VMIO_MIGRATE_CODEC_RAW, .page = 7, .count = 1, .data = page },
        { .codec = VMIO_MIGRATE_CODEC_DELTA, .page = 9, .count = 1, .data = enc, .len = 4 },
        { .codec = VMIO_MIGRATE_CODEC_RLE, .page = 10, .count = 1, .data = enc, .len = 4 },
        { .codec = VMIO_MIGRATE_CODEC_DEDUP, .page = 11, .count = 1, .src_region = 1,
          .src_page = 300, .hash = hash },
        { .codec = VMIO_MIGRATE_CODEC_SKIP, .page = 12, .count = 4 },
    };
    uint8_t buf[16384];
    size_t n = 0;
    uint64_t cursor = 0;
    const uint64_t blk[] = { 0, 1, 30 };
    uint8_t cdata[3] = { 1, 2, 3 };
    n += vmio_mig_block_put(buf, VMIO_MIGRATE_CODEC_ZSTD, blk, 3, cdata, 3);
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        n += vmio_mig_entry_put(buf + n, &cursor, &in[i], ps);
    struct vmio_mig_entry_iter it;
    struct vmio_mig_entry e;
    char err[160];
    vmio_mig_entry_iter_init(&it, buf, n, 32, ps);
    ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), 1);
    ck_assert_uint_eq(e.codec, VMIO_MIGRATE_CODEC_ZSTD);
    ck_assert_uint_eq(e.count, 3);
    ck_assert_uint_eq(e.len, 3);
    struct vmio_mig_block_iter bi;
    vmio_mig_block_iter_init(&bi, &e);
    for (int k = 0; k < 3; k++)
        ck_assert_uint_eq(vmio_mig_block_iter_next(&bi), blk[k]);
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), 1);
        ck_assert_uint_eq(e.codec, in[i].codec);
        ck_assert_uint_eq(e.page, in[i].page);
        ck_assert_uint_eq(e.count, in[i].count);
        if (in[i].data)
            ck_assert(memcmp(e.data, in[i].data, e.len) == 0 && e.len == (in[i].len ? in[i].len : ps));
        if (in[i].hash) {
            ck_assert(memcmp(e.hash, hash, 32) == 0);
            ck_assert_uint_eq(e.src_region, 1);
            ck_assert_uint_eq(e.src_page, 300);
        }
    }
    ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), 0);

    /* the same bytes in a region too small: rejected, never past it */
    vmio_mig_entry_iter_init(&it, buf, n, 12, ps);
    int r;
    while ((r = vmio_mig_entry_next(&it, &e, err, sizeof err)) == 1)
        ck_assert_uint_lt(e.page + e.count - 1, 12);
    ck_assert_int_eq(r, -EINVAL);
    /* every truncation is rejected */
    for (size_t cut = 1; cut < n; cut++) {
        vmio_mig_entry_iter_init(&it, buf, cut, 32, ps);
        while ((r = vmio_mig_entry_next(&it, &e, err, sizeof err)) == 1)
            ;
        ck_assert_msg(r == -EINVAL || r == 0, "cut %zu: %d", cut, r);
        if (r == 0)   /* a clean boundary: the whole entries before it */
            ck_assert(it.p == buf + cut);
    }
    uint8_t unknown[] = { 0, 9 };
    vmio_mig_entry_iter_init(&it, unknown, 2, 32, ps);
    ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "unknown codec") != NULL, "%s", err);
    uint8_t zerolen[] = { 0, VMIO_MIGRATE_CODEC_DELTA, 0 };
    vmio_mig_entry_iter_init(&it, zerolen, 3, 32, ps);
    ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), -EINVAL);
    uint8_t blockadv[] = { 1, VMIO_MIGRATE_CODEC_LZ4, 0, 0, 1, 0 };
    vmio_mig_entry_iter_init(&it, blockadv, sizeof blockadv, 32, ps);
    ck_assert_int_eq(vmio_mig_entry_next(&it, &e, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(t_compress)
{
    uint8_t in[65536], out[70000], back[65536];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i % 251 < 100 ? 0 : i * 7);
    struct vmio_mig_comp_ctx cc = { 0 };
    for (int c = VMIO_MIG_COMP_ZSTD; c <= VMIO_MIG_COMP_LZ4; c++) {
        if (!vmio_mig_comp_available(c))
            continue;
        long n = vmio_mig_compress(&cc, c, 1, in, sizeof in, out, sizeof out);
        ck_assert_int_gt(n, 0);
        ck_assert_int_lt(n, (long)sizeof in);
        ck_assert_int_eq(vmio_mig_decompress(&cc, c, out, (size_t)n, back, sizeof back), 0);
        ck_assert(memcmp(in, back, sizeof in) == 0);
        /* wrong size and corruption are errors */
        ck_assert_int_eq(vmio_mig_decompress(&cc, c, out, (size_t)n, back, sizeof back - 1),
                         -EINVAL);
        out[n / 2] ^= 0xff;
        out[n / 3] ^= 0x55;
        int r = vmio_mig_decompress(&cc, c, out, (size_t)n, back, sizeof back);
        ck_assert(r == -EINVAL || memcmp(in, back, sizeof in) != 0 || r == 0);
        ck_assert_int_eq(vmio_mig_decompress(&cc, c, out, (size_t)n / 2, back, sizeof back),
                         -EINVAL);
    }
    vmio_mig_comp_ctx_free(&cc);
}
END_TEST

START_TEST(t_dedup)
{
    struct vmio_mig_dedup d;
    ck_assert_int_eq(vmio_mig_dedup_init(&d, 100), 0);
    uint8_t h1[32], h2[32];
    memset(h1, 1, 32);
    memset(h2, 2, 32);
    ck_assert_uint_eq(vmio_mig_dedup_find(&d, h1), UINT64_MAX);
    vmio_mig_dedup_set(&d, 5, h1);
    vmio_mig_dedup_set(&d, 6, h1);
    ck_assert(vmio_mig_dedup_holds(&d, 5, h1));
    ck_assert(!vmio_mig_dedup_holds(&d, 5, h2));
    uint64_t l = vmio_mig_dedup_find(&d, h1);
    ck_assert(l == 5 || l == 6);
    vmio_mig_dedup_set(&d, 5, h2);          /* 5 overwritten: 6 still holds h1 */
    vmio_mig_dedup_set(&d, 6, NULL);        /* 6 zeroed: nobody holds h1 */
    ck_assert_uint_eq(vmio_mig_dedup_find(&d, h1), UINT64_MAX);
    ck_assert_uint_eq(vmio_mig_dedup_find(&d, h2), 5);
    /* churn far past the table size: stale slots are reused, the answers
     * stay right */
    uint8_t h[32];
    for (uint32_t i = 0; i < 100000; i++) {
        memset(h, 0, 32);
        memcpy(h, &i, 4);
        h[31] = 0x77;
        vmio_mig_dedup_set(&d, i % 100, h);
        ck_assert_uint_eq(vmio_mig_dedup_find(&d, h), i % 100);
    }
    memset(h, 0, 32);
    uint32_t old = 99999 - 100;
    memcpy(h, &old, 4);
    h[31] = 0x77;
    ck_assert_uint_eq(vmio_mig_dedup_find(&d, h), UINT64_MAX);
    ck_assert_int_eq(vmio_mig_dedup_set(&d, 100, h), -EINVAL);
    vmio_mig_dedup_free(&d);
}
END_TEST

START_TEST(t_dcache)
{
    struct vmio_mig_dcache c;
    ck_assert_int_eq(vmio_mig_dcache_init(&c, 4 * 4096, 4096), 0);
    uint8_t a[4096], b[4096], ref[4096];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, a, ref), 0);
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, b, ref), 1);
    ck_assert(memcmp(ref, a, sizeof a) == 0);
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 5, a, ref), 0);   /* evicts 1 */
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, b, ref), 0);
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, NULL, ref), 1);/* forget */
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, a, ref), 0);
    vmio_mig_dcache_free(&c);
    ck_assert_int_eq(vmio_mig_dcache_init(&c, 0, 4096), 0);     /* no cache */
    ck_assert_int_eq(vmio_mig_dcache_swap(&c, 1, a, ref), 0);
    vmio_mig_dcache_free(&c);
}
END_TEST

static void teach(struct vmio_mig_policy *p, double link, double zbps, double zratio,
                  double lbps, double lratio)
{
    for (int i = 0; i < 30; i++) {
        vmio_mig_policy_note_link(p, (uint64_t)link, 1000000000);
        vmio_mig_policy_note_comp(p, VMIO_MIG_COMP_ZSTD, 1 << 20,
                                  (uint64_t)((1 << 20) / zratio), (uint64_t)(1048576e9 / zbps));
        vmio_mig_policy_note_comp(p, VMIO_MIG_COMP_LZ4, 1 << 20,
                                  (uint64_t)((1 << 20) / lratio), (uint64_t)(1048576e9 / lbps));
    }
}

START_TEST(t_policy)
{
    int allowed[VMIO_MIG_CHOICES] = { 1, 1, 1, 0 };
    struct vmio_mig_policy p;
    int probe, n[VMIO_MIG_CHOICES];
    /* a slow link, compressors that keep up: zstd, and hashing pays */
    vmio_mig_policy_init(&p, 1, 2, allowed);
    teach(&p, 125e6, 600e6, 4, 1200e6, 2);
    memset(n, 0, sizeof n);
    for (int i = 0; i < 100; i++)
        n[vmio_mig_policy_choose(&p, 1 << 20, 100, 100000, &probe)]++;
    ck_assert_int_ge(n[VMIO_MIG_COMP_ZSTD], 90);
    ck_assert_int_eq(vmio_mig_policy_hash(&p, 1 << 20, &probe), 1);
    vmio_mig_policy_destroy(&p);

    /* a slow link but a slow zstd: the CPU becomes the limit, the policy
     * mixes zstd with lz4 to balance CPU and wire */
    vmio_mig_policy_init(&p, 1, 2, allowed);
    teach(&p, 125e6, 100e6, 4, 400e6, 2);
    memset(n, 0, sizeof n);
    for (int i = 0; i < 400; i++)
        n[vmio_mig_policy_choose(&p, 1 << 20, 0, 0, &probe)]++;
    ck_assert_msg(n[VMIO_MIG_COMP_ZSTD] > 40 && n[VMIO_MIG_COMP_LZ4] > 40,
                  "zstd %d lz4 %d none %d", n[1], n[2], n[0]);
    ck_assert_msg(p.cpu_s < p.wire_s * 1.2 && p.wire_s < p.cpu_s * 1.2, "cpu %f wire %f",
                  p.cpu_s, p.wire_s);
    vmio_mig_policy_destroy(&p);

    /* the same with zstd's fast level allowed: it takes part in the mix */
    int withfast[VMIO_MIG_CHOICES] = { 1, 1, 1, 1 };
    vmio_mig_policy_init(&p, 1, 2, withfast);
    teach(&p, 125e6, 100e6, 4, 400e6, 2);
    for (int i = 0; i < 30; i++)
        vmio_mig_policy_note_comp(&p, VMIO_MIG_CHOICE_ZSTD_FAST, 1 << 20, (1 << 20) / 3,
                                  (uint64_t)(1048576e9 / 250e6));
    memset(n, 0, sizeof n);
    for (int i = 0; i < 400; i++)
        n[vmio_mig_policy_choose(&p, 1 << 20, 0, 0, &probe)]++;
    ck_assert_msg(n[VMIO_MIG_CHOICE_ZSTD_FAST] > 40, "fast %d zstd %d lz4 %d none %d",
                  n[3], n[1], n[2], n[0]);
    vmio_mig_policy_destroy(&p);

    /* a link faster than both compressors: raw, apart from probes, and no
     * hashing once the CPU is the limit (apart from probes) */
    vmio_mig_policy_init(&p, 1, 2, allowed);
    teach(&p, 5e9, 400e6, 3, 800e6, 2);
    int raw = 0, probes = 0;
    for (int i = 0; i < 64; i++) {
        int c = vmio_mig_policy_choose(&p, 1 << 20, 0, 2000000, &probe);
        raw += c == VMIO_MIG_COMP_NONE;
        probes += probe;
        ck_assert(c == VMIO_MIG_COMP_NONE || probe);
    }
    ck_assert_int_eq(raw + probes, 64);
    ck_assert_int_le(probes, 4);
    int hashes = 0;
    for (int i = 0; i < 64; i++) {
        int h = vmio_mig_policy_hash(&p, 1 << 20, &probe);
        hashes += h;
        ck_assert(!h || probe);
    }
    ck_assert_int_eq(hashes, 4);
    ck_assert_int_eq(vmio_mig_policy_choose(&p, 0, 10, 10, &probe), VMIO_MIG_COMP_NONE);
    vmio_mig_policy_destroy(&p);

    /* fixed: the strongest allowed whatever the link, always hashing */
    vmio_mig_policy_init(&p, 0, 2, allowed);
    vmio_mig_policy_note_link(&p, 5000000000ull, 1000000000);
    ck_assert_int_eq(vmio_mig_policy_choose(&p, 1 << 20, 0, 0, &probe), VMIO_MIG_COMP_ZSTD);
    ck_assert_int_eq(vmio_mig_policy_hash(&p, 1 << 20, &probe), 1);
    vmio_mig_policy_destroy(&p);
    int lz4only[VMIO_MIG_CHOICES] = { 1, 0, 1, 0 };
    vmio_mig_policy_init(&p, 0, 2, lz4only);
    ck_assert_int_eq(vmio_mig_policy_choose(&p, 1 << 20, 0, 0, &probe), VMIO_MIG_COMP_LZ4);
    vmio_mig_policy_destroy(&p);
}
END_TEST

START_TEST(t_link)
{
    struct vmio_mig_addr a;
    ck_assert_int_eq(vmio_mig_parse_addr("x", "tcp://h:1", &a), 0);
    ck_assert_int_eq(a.kind, 1);
    ck_assert_str_eq(a.host, "h");
    ck_assert_uint_eq(a.port, 1);
    ck_assert_int_eq(vmio_mig_parse_addr("x", "rdma://[fe80::1]:7000", &a), 0);
    ck_assert_int_eq(a.kind, 2);
    ck_assert_str_eq(a.host, "fe80::1");
    ck_assert_int_eq(vmio_mig_parse_addr("x", "10.0.0.1:0", &a), 0);
    ck_assert_int_eq(a.kind, 0);
    const char *bad[] = { "", "h", "tcp://h:", "tcp://h:70000", "udp://h:1", "[::1:5",
                          "tcp://h:1x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_vmio_err(vmio_mig_parse_addr("x", bad[i], &a), EINVAL, "x");
    /* the emulated link: 2 MB at 20 MB/s take 100 ms, idle time is no credit */
    struct vmio_mig_ratelimit rl = { 20000000, 0 };
    double t0 = test_now();
    for (int i = 0; i < 20; i++)
        vmio_mig_ratelimit_wait(&rl, test_ns(), 100000);
    double dt = test_now() - t0;
    ck_assert_msg(dt >= 0.099 && dt < 0.5, "%f s", dt);
    usleep(100000);
    t0 = test_now();
    vmio_mig_ratelimit_wait(&rl, test_ns(), 1000000);
    dt = test_now() - t0;
    ck_assert_msg(dt >= 0.049, "no wait after idling: %f s", dt);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("migrate-stream");
    TCase *tc = tcase_create("stream");
    tcase_add_test(tc, t_uleb);
    tcase_add_test(tc, t_records);
    tcase_add_test(tc, t_hello);
    tcase_add_test(tc, t_entries);
    tcase_add_test(tc, t_compress);
    tcase_add_test(tc, t_dedup);
    tcase_add_test(tc, t_dcache);
    tcase_add_test(tc, t_policy);
    tcase_add_test(tc, t_link);
    suite_add_tcase(s, tc);
    return test_run(s);
}
