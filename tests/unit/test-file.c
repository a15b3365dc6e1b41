/* The file:// backend through the public API (shared library): creation,
 * data paths with independent checks through plain file descriptors,
 * every range and mode error, holes seen both by vmio_block_status and by
 * the file's allocated blocks, O_DIRECT, counters and many threads on one
 * handle. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>

#include <vmio/storage.h>

#include "test-common.h"

#define MiB (1024u * 1024u)

static char dir[256];
static char path[320];

static void setup(void)
{
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/disk.img", dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

static vmio_file *create(uint64_t size, unsigned extra)
{
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = size };
    vmio_file *f = NULL;
    ck_assert_vmio_ok(vmio_open_ex(path, VMIO_O_CREATE | extra, &o, &f));
    ck_assert_ptr_nonnull(f);
    return f;
}

/* Reads len bytes at off straight from the file, bypassing libvmio. */
static void raw_read(void *buf, size_t len, off_t off)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

static long long allocated(void)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (long long)st.st_blocks * 512;
}

static uint64_t size_of(vmio_file *f)
{
    uint64_t s = 0;
    ck_assert_vmio_ok(vmio_get_size(f, &s));
    return s;
}

START_TEST(test_create)
{
    vmio_file *f = create(3 * MiB + 512, 0);
    ck_assert_str_eq(vmio_backend_name(f), "file");
    ck_assert(size_of(f) == 3 * MiB + 512);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 3 * MiB + 512);
    unsigned caps = 0;
    ck_assert_vmio_ok(vmio_get_caps(f, &caps));
    unsigned want = VMIO_CAP_WRITE | VMIO_CAP_FLUSH | VMIO_CAP_DISCARD |
                    VMIO_CAP_WRITE_ZEROES | VMIO_CAP_BLOCK_STATUS | VMIO_CAP_FUA;
    ck_assert_uint_eq(caps & want, want);
    ck_assert_int_eq(vmio_close(f), 0);

    /* create_size sizes new files only. */
    f = create(9 * MiB, 0);
    ck_assert(size_of(f) == 3 * MiB + 512);
    vmio_close(f);
    /* EXCL refuses an existing file; TRUNC empties it. */
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = 4096 };
    ck_assert_vmio_err(vmio_open_ex(path, VMIO_O_CREATE | VMIO_O_EXCL, &o, &f), EEXIST,
                       "vmio_open");
    ck_assert_vmio_ok(vmio_open(path, VMIO_O_TRUNC, &f));
    ck_assert(size_of(f) == 0);
    vmio_close(f);
    /* EXCL on a new file sizes it. */
    unlink(path);
    ck_assert_vmio_ok(vmio_open_ex(path, VMIO_O_CREATE | VMIO_O_EXCL, &o, &f));
    ck_assert(size_of(f) == 4096);
    vmio_close(f);

    /* A file:// URI and file://localhost/ open the same file. */
    char uri[400];
    snprintf(uri, sizeof uri, "file://%s", path);
    ck_assert_vmio_ok(vmio_open(uri, 0, &f));
    ck_assert(size_of(f) == 4096);
    vmio_close(f);
    snprintf(uri, sizeof uri, "file://localhost%s", path);
    ck_assert_vmio_ok(vmio_open(uri, 0, &f));
    vmio_close(f);
    ck_assert_int_eq(vmio_close(NULL), 0);
}
END_TEST

START_TEST(test_read_write)
{
    vmio_file *f = create(4 * MiB, 0);
    size_t len = 3 * MiB + 17;
    uint8_t *w = malloc(len), *r = malloc(len);
    ck_assert(w && r);

    /* An unaligned offset and length, checked through a plain fd. */
    test_fill(w, len, 1001, 1);
    ck_assert_vmio_ok(vmio_pwrite(f, w, len, 1001, 0));
    raw_read(r, len, 1001);
    ck_assert_int_eq(test_check(r, len, 1001, 1), -1);
    memset(r, 0, len);
    ck_assert_vmio_ok(vmio_pread(f, r, len, 1001));
    ck_assert_int_eq(test_check(r, len, 1001, 1), -1);
    /* Bytes before the write are still zero. */
    ck_assert_vmio_ok(vmio_pread(f, r, 1001, 0));
    ck_assert(test_is_zero(r, 1001));

    /* Vectors with odd and empty segments. */
    size_t lens[] = { 1, 0, 4095, 65536, 3, 12345 };
    struct iovec iov[6];
    size_t total = 0;
    for (int i = 0; i < 6; i++) {
        iov[i].iov_base = w + total;
        iov[i].iov_len = lens[i];
        total += lens[i];
    }
    test_fill(w, total, 77777, 2);
    ck_assert_vmio_ok(vmio_pwritev(f, iov, 6, 77777, VMIO_REQ_FUA));
    raw_read(r, total, 77777);
    ck_assert_int_eq(test_check(r, total, 77777, 2), -1);
    memset(r, 0xff, total);
    for (int i = 0, o = 0; i < 6; o += (int)lens[i], i++)
        iov[i].iov_base = r + o;
    ck_assert_vmio_ok(vmio_preadv(f, iov, 6, 77777));
    ck_assert_int_eq(test_check(r, total, 77777, 2), -1);

    /* Data written around libvmio is read through it. */
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    test_fill(w, 8192, 4 * MiB - 8192, 3);
    ck_assert_int_eq(pwrite(fd, w, 8192, 4 * MiB - 8192), 8192);
    close(fd);
    ck_assert_vmio_ok(vmio_pread(f, r, 8192, 4 * MiB - 8192));
    ck_assert_int_eq(test_check(r, 8192, 4 * MiB - 8192, 3), -1);

    /* Empty transfers succeed anywhere inside, even at the end. */
    ck_assert_vmio_ok(vmio_pread(f, r, 0, 4 * MiB));
    ck_assert_vmio_ok(vmio_pwrite(f, w, 0, 4 * MiB, 0));
    ck_assert_vmio_ok(vmio_preadv(f, NULL, 0, 0));

    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_int_eq(vmio_close(f), 0);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_many_segments)
{
    vmio_file *f = create(MiB, 0);
    int n = IOV_MAX;
    struct iovec *iov = calloc((size_t)n + 1, sizeof *iov);
    uint8_t *buf = malloc((size_t)n * 7);
    ck_assert(iov && buf);
    test_fill(buf, (size_t)n * 7, 5, 4);
    for (int i = 0; i <= n; i++) {
        iov[i].iov_base = buf + (size_t)(i % n) * 7;
        iov[i].iov_len = 7;
    }
    ck_assert_vmio_ok(vmio_pwritev(f, iov, n, 5, 0));
    uint8_t *r = malloc((size_t)n * 7);
    raw_read(r, (size_t)n * 7, 5);
    ck_assert_int_eq(test_check(r, (size_t)n * 7, 5, 4), -1);
    ck_assert_vmio_err_msg(vmio_pwritev(f, iov, n + 1, 5, 0), EINVAL, "vmio_pwritev", "iovcnt");
    ck_assert_vmio_err_msg(vmio_preadv(f, iov, n + 1, 5), EINVAL, "vmio_preadv", "iovcnt");
    vmio_close(f);
    free(iov);
    free(buf);
    free(r);
}
END_TEST

START_TEST(test_out_of_range)
{
    vmio_file *f = create(64 * 1024, 0);
    uint8_t b[8192];
    memset(b, 0, sizeof b);
    ck_assert_vmio_ok(vmio_pread(f, b, 1, 65535));
    ck_assert_vmio_err_msg(vmio_pread(f, b, 2, 65535), EINVAL, "vmio_pread", "beyond the end");
    ck_assert_vmio_err_msg(vmio_pread(f, b, 1, 65536), EINVAL, "vmio_pread", "beyond the end");
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 8192, 60000, 0), EINVAL, "vmio_pwrite",
                           "beyond the end");
    struct iovec iov[2] = { { b, 4096 }, { b, 4096 } };
    ck_assert_vmio_err_msg(vmio_preadv(f, iov, 2, 61441), EINVAL, "vmio_preadv",
                           "beyond the end");
    ck_assert_vmio_err_msg(vmio_pwritev(f, iov, 2, 61441, 0), EINVAL, "vmio_pwritev",
                           "beyond the end");
    ck_assert_vmio_err_msg(vmio_discard(f, 65536, 1), EINVAL, "vmio_discard", "beyond the end");
    ck_assert_vmio_err_msg(vmio_write_zeroes(f, 4096, 65536, 0), EINVAL, "vmio_write_zeroes",
                           "beyond the end");
    uint64_t l;
    int t;
    ck_assert_vmio_err_msg(vmio_block_status(f, 65536, 1, &l, &t), EINVAL,
                           "vmio_block_status", "beyond the end");
    /* Offsets that overflow are refused before any arithmetic. */
    ck_assert_vmio_err_msg(vmio_pread(f, b, 2, UINT64_MAX), EINVAL, "vmio_pread", "overflow");
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 16, (uint64_t)INT64_MAX, 0), EINVAL,
                           "vmio_pwrite", "overflow");
    ck_assert_vmio_err_msg(vmio_discard(f, 1, UINT64_MAX), EINVAL, "vmio_discard", "overflow");
    ck_assert_vmio_err(vmio_truncate(f, (uint64_t)INT64_MAX + 1), EFBIG, "vmio_truncate");
    /* Nothing was written by the failed calls. */
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.writes == 0 && st.bytes_written == 0 && st.discards == 0);
    ck_assert(st.reads == 1 && st.bytes_read == 1);

    /* A file grown behind the handle's back is seen on the next request. */
    ck_assert_int_eq(truncate(path, 128 * 1024), 0);
    ck_assert_vmio_ok(vmio_pread(f, b, 2, 65535));
    vmio_close(f);
}
END_TEST

START_TEST(test_read_only)
{
    vmio_file *f = create(MiB, 0);
    uint8_t b[4096];
    test_fill(b, sizeof b, 0, 5);
    ck_assert_vmio_ok(vmio_pwrite(f, b, sizeof b, 0, 0));
    vmio_close(f);

    ck_assert_vmio_ok(vmio_open(path, VMIO_O_RDONLY, &f));
    unsigned caps = 0;
    ck_assert_vmio_ok(vmio_get_caps(f, &caps));
    ck_assert_uint_eq(caps & (VMIO_CAP_WRITE | VMIO_CAP_DISCARD | VMIO_CAP_WRITE_ZEROES), 0);
    ck_assert(caps & VMIO_CAP_FLUSH);
    struct iovec iov = { b, sizeof b };
    ck_assert_vmio_err_msg(vmio_pwrite(f, b, 1, 0, 0), EBADF, "vmio_pwrite", "read-only");
    ck_assert_vmio_err_msg(vmio_pwritev(f, &iov, 1, 0, 0), EBADF, "vmio_pwritev", "read-only");
    ck_assert_vmio_err_msg(vmio_discard(f, 0, 4096), EBADF, "vmio_discard", "read-only");
    ck_assert_vmio_err_msg(vmio_write_zeroes(f, 0, 4096, 0), EBADF, "vmio_write_zeroes",
                           "read-only");
    ck_assert_vmio_err_msg(vmio_truncate(f, 0), EBADF, "vmio_truncate", "read-only");
    ck_assert_vmio_ok(vmio_flush(f));
    memset(b, 0, sizeof b);
    ck_assert_vmio_ok(vmio_pread(f, b, sizeof b, 0));
    ck_assert_int_eq(test_check(b, sizeof b, 0, 5), -1);
    ck_assert(size_of(f) == MiB);
    vmio_close(f);
}
END_TEST

START_TEST(test_discard_hole)
{
    vmio_file *f = create(4 * MiB, 0);
    uint8_t *w = malloc(4 * MiB), *r = malloc(MiB);
    test_fill(w, 4 * MiB, 0, 6);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 4 * MiB, 0, 0));
    ck_assert_vmio_ok(vmio_flush(f));
    long long before = allocated();
    ck_assert_int_ge(before, 4 * MiB);

    uint64_t len;
    int type = -1;
    ck_assert_vmio_ok(vmio_block_status(f, MiB, MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);

    ck_assert_vmio_ok(vmio_discard(f, MiB, MiB));
    ck_assert_vmio_ok(vmio_flush(f));
    long long after = allocated();
    ck_assert_msg(after <= before - (long long)MiB, "allocated %lld -> %lld", before, after);
    ck_assert(size_of(f) == 4 * MiB);

    ck_assert_vmio_ok(vmio_block_status(f, MiB, 4 * MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == MiB);
    ck_assert_vmio_ok(vmio_block_status(f, 0, 4 * MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == MiB);
    ck_assert_vmio_ok(vmio_block_status(f, 2 * MiB, 4 * MiB, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == 2 * MiB);

    /* The hole reads as zeroes, its neighbours are intact. */
    ck_assert_vmio_ok(vmio_pread(f, r, MiB, MiB));
    ck_assert(test_is_zero(r, MiB));
    ck_assert_vmio_ok(vmio_pread(f, r, 4096, MiB - 4096));
    ck_assert_int_eq(test_check(r, 4096, MiB - 4096, 6), -1);
    ck_assert_vmio_ok(vmio_pread(f, r, 4096, 2 * MiB));
    ck_assert_int_eq(test_check(r, 4096, 2 * MiB, 6), -1);
    /* Zero-length discard is a no-op. */
    ck_assert_vmio_ok(vmio_discard(f, 0, 0));
    vmio_close(f);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_write_zeroes)
{
    vmio_file *f = create(4 * MiB, 0);
    uint8_t *w = malloc(4 * MiB), *r = malloc(4 * MiB);
    test_fill(w, 4 * MiB, 0, 7);
    ck_assert_vmio_ok(vmio_pwrite(f, w, 4 * MiB, 0, 0));
    ck_assert_vmio_ok(vmio_flush(f));
    long long before = allocated();

    /* Without MAY_TRIM: zeroes, and the blocks stay allocated. */
    ck_assert_vmio_ok(vmio_write_zeroes(f, 4096, MiB, 0));
    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_int_ge(allocated(), before);
    /* With MAY_TRIM, unaligned, and FUA. */
    ck_assert_vmio_ok(vmio_write_zeroes(f, 2 * MiB + 100, MiB + 7,
                                        VMIO_REQ_MAY_TRIM | VMIO_REQ_FUA));
    ck_assert_vmio_ok(vmio_write_zeroes(f, 0, 0, 0));

    ck_assert_vmio_ok(vmio_pread(f, r, 4 * MiB, 0));
    raw_read(w, 4 * MiB, 0);
    ck_assert_mem_eq(r, w, 4 * MiB);
    test_fill(w, 4 * MiB, 0, 7);
    memset(w + 4096, 0, MiB);
    memset(w + 2 * MiB + 100, 0, MiB + 7);
    ck_assert_mem_eq(r, w, 4 * MiB);
    ck_assert_vmio_err(vmio_write_zeroes(f, 0, 4096, 0x40), EINVAL, "vmio_write_zeroes");
    ck_assert(size_of(f) == 4 * MiB);
    vmio_close(f);
    free(w);
    free(r);
}
END_TEST

START_TEST(test_truncate)
{
    vmio_file *f = create(MiB, 0);
    uint8_t b[8192];
    test_fill(b, sizeof b, MiB - 8192, 8);
    ck_assert_vmio_ok(vmio_pwrite(f, b, sizeof b, MiB - 8192, 0));

    ck_assert_vmio_ok(vmio_truncate(f, 3 * MiB));
    ck_assert(size_of(f) == 3 * MiB);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 3 * MiB);
    /* The new tail reads as zeroes and is writable at once. */
    ck_assert_vmio_ok(vmio_pread(f, b, sizeof b, 3 * MiB - 8192));
    ck_assert(test_is_zero(b, sizeof b));
    ck_assert_vmio_ok(vmio_pwrite(f, b, 1, 3 * MiB - 1, 0));
    ck_assert_vmio_ok(vmio_pread(f, b, sizeof b, MiB - 8192));
    ck_assert_int_eq(test_check(b, sizeof b, MiB - 8192, 8), -1);

    ck_assert_vmio_ok(vmio_truncate(f, MiB - 4096));
    ck_assert(size_of(f) == MiB - 4096);
    ck_assert_vmio_err_msg(vmio_pread(f, b, 8192, MiB - 8192), EINVAL, "vmio_pread",
                           "beyond the end");
    ck_assert_vmio_ok(vmio_pread(f, b, 4096, MiB - 8192));
    ck_assert_int_eq(test_check(b, 4096, MiB - 8192, 8), -1);
    /* Growing again does not resurrect the cut data. */
    ck_assert_vmio_ok(vmio_truncate(f, MiB));
    ck_assert_vmio_ok(vmio_pread(f, b, 4096, MiB - 4096));
    ck_assert(test_is_zero(b, 4096));
    ck_assert_vmio_ok(vmio_truncate(f, 0));
    ck_assert(size_of(f) == 0);
    ck_assert_vmio_err(vmio_pread(f, b, 1, 0), EINVAL, "vmio_pread");
    vmio_close(f);
}
END_TEST

START_TEST(test_block_status_sparse)
{
    const uint64_t size = 8 * MiB;
    vmio_file *f = create(size, 0);
    uint8_t b[65536];
    test_fill(b, sizeof b, 2 * MiB, 9);
    ck_assert_vmio_ok(vmio_pwrite(f, b, sizeof b, 2 * MiB, 0));
    ck_assert_vmio_ok(vmio_pwrite(f, b, 4096, size - 4096, 0));
    ck_assert_vmio_ok(vmio_flush(f));

    uint64_t len;
    int type;
    ck_assert_vmio_ok(vmio_block_status(f, 0, size, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == 2 * MiB);
    ck_assert_vmio_ok(vmio_block_status(f, 2 * MiB, size, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == sizeof b);
    ck_assert_vmio_ok(vmio_block_status(f, 2 * MiB + sizeof b, size, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == size - 4096 - 2 * MiB - sizeof b);
    /* max_length clamps; a query inside an extent starts there. */
    ck_assert_vmio_ok(vmio_block_status(f, 100, 4096, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_HOLE);
    ck_assert(len == 4096);
    ck_assert_vmio_ok(vmio_block_status(f, 2 * MiB + 1000, size, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == sizeof b - 1000);
    /* The last byte, and a max_length past the end clamps to it. */
    ck_assert_vmio_ok(vmio_block_status(f, size - 1, UINT64_MAX, &len, &type));
    ck_assert_int_eq(type, VMIO_EXTENT_DATA);
    ck_assert(len == 1);

    /* Walking the extents covers the file exactly and holes read as 0. */
    uint64_t off = 0, data = 0;
    int n = 0;
    uint8_t *r = malloc(size);
    while (off < size) {
        ck_assert_vmio_ok(vmio_block_status(f, off, size, &len, &type));
        ck_assert(len > 0 && off + len <= size);
        ck_assert_vmio_ok(vmio_pread(f, r, len, off));
        if (type == VMIO_EXTENT_HOLE)
            ck_assert(test_is_zero(r, len));
        else
            data += len;
        off += len;
        n++;
    }
    ck_assert(off == size);
    ck_assert_int_eq(n, 4);
    ck_assert(data == sizeof b + 4096);
    free(r);
    vmio_close(f);
}
END_TEST

START_TEST(test_direct)
{
    vmio_file *f = create(4 * MiB, 0);
    vmio_close(f);
    int r = vmio_open(path, VMIO_O_RDWR | VMIO_O_DIRECT, &f);
    if (r == -EINVAL) {
        /* The file system under $TMPDIR refuses O_DIRECT. */
        fprintf(stderr, "O_DIRECT not supported here: %s\n", vmio_errmsg());
        return;
    }
    ck_assert_vmio_ok(r);
    void *al = NULL;
    ck_assert_int_eq(posix_memalign(&al, 4096, 3 * 65536), 0);
    uint8_t *a = al, *chk = malloc(3 * 65536);

    /* Aligned: buffer, offset and length. */
    test_fill(a, 65536, MiB, 10);
    ck_assert_vmio_ok(vmio_pwrite(f, a, 65536, MiB, 0));
    memset(a, 0, 65536);
    ck_assert_vmio_ok(vmio_pread(f, a, 65536, MiB));
    ck_assert_int_eq(test_check(a, 65536, MiB, 10), -1);
    raw_read(chk, 65536, MiB);
    ck_assert_int_eq(test_check(chk, 65536, MiB, 10), -1);

    /* Unaligned buffer, offset, length: still right. */
    test_fill(a + 1, 5000, 3 * MiB + 3, 11);
    ck_assert_vmio_ok(vmio_pwrite(f, a + 1, 5000, 3 * MiB + 3, 0));
    memset(a, 0, 2 * 65536);
    ck_assert_vmio_ok(vmio_pread(f, a + 1, 5000, 3 * MiB + 3));
    ck_assert_int_eq(test_check(a + 1, 5000, 3 * MiB + 3, 11), -1);
    /* An aligned read sees what the unaligned write left, and back. */
    ck_assert_vmio_ok(vmio_pread(f, a, 8192, 3 * MiB));
    ck_assert(test_is_zero(a, 3));
    ck_assert_int_eq(test_check(a + 3, 5000, 3 * MiB + 3, 11), -1);
    test_fill(a, 4096, 3 * MiB, 12);
    ck_assert_vmio_ok(vmio_pwrite(f, a, 4096, 3 * MiB, VMIO_REQ_FUA));
    ck_assert_vmio_ok(vmio_pread(f, chk + 1, 100, 3 * MiB + 10));
    ck_assert_int_eq(test_check(chk + 1, 100, 3 * MiB + 10, 12), -1);

    /* Mixed vectors: one misaligned segment sends the request buffered. */
    struct iovec iov[2] = { { a, 4096 }, { chk + 7, 4096 } };
    test_fill(a, 4096, 2 * MiB, 13);
    test_fill(chk + 7, 4096, 2 * MiB + 4096, 13);
    ck_assert_vmio_ok(vmio_pwritev(f, iov, 2, 2 * MiB, 0));
    memset(a, 0, 8192);
    ck_assert_vmio_ok(vmio_pread(f, a, 8192, 2 * MiB));
    ck_assert_int_eq(test_check(a, 8192, 2 * MiB, 13), -1);

    ck_assert_vmio_ok(vmio_flush(f));
    vmio_close(f);
    free(al);
    free(chk);
}
END_TEST

START_TEST(test_stats)
{
    vmio_file *f = create(MiB, 0);
    uint8_t b[4096];
    memset(b, 1, sizeof b);
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert(st.reads == 0 && st.writes == 0 && st.flushes == 0);

    for (int i = 0; i < 5; i++)
        ck_assert_vmio_ok(vmio_pwrite(f, b, 1000 + i, (uint64_t)i * 4096, 0));
    for (int i = 0; i < 3; i++)
        ck_assert_vmio_ok(vmio_pread(f, b, 512, 0));
    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_vmio_ok(vmio_flush(f));
    ck_assert_vmio_ok(vmio_discard(f, 0, 4096));
    ck_assert_vmio_ok(vmio_write_zeroes(f, 0, 4096, 0));
    ck_assert_vmio_ok(vmio_write_zeroes(f, 0, 4096, VMIO_REQ_MAY_TRIM));
    /* Failures are not counted. */
    ck_assert_vmio_err(vmio_pread(f, b, 2, MiB - 1), EINVAL, "vmio_pread");

    memset(&st, 0xff, sizeof st);
    st.struct_size = sizeof st;
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    ck_assert_uint_eq(st.struct_size, sizeof st);
    ck_assert(st.writes == 5);
    ck_assert(st.bytes_written == 5000 + 0 + 1 + 2 + 3 + 4);
    ck_assert(st.reads == 3);
    ck_assert(st.bytes_read == 3 * 512);
    ck_assert(st.flushes == 2);
    ck_assert(st.discards == 1);
    ck_assert(st.write_zeroes == 2);
    ck_assert(st.reconnects == 0 && st.retried == 0);

    /* An older, smaller struct: only its bytes are written. */
    struct vmio_file_stats small;
    memset(&small, 0xee, sizeof small);
    small.struct_size = (uint32_t)offsetof(struct vmio_file_stats, flushes);
    ck_assert_vmio_ok(vmio_get_stats(f, &small));
    ck_assert_uint_eq(small.struct_size, offsetof(struct vmio_file_stats, flushes));
    ck_assert(small.reads == 3 && small.writes == 5);
    ck_assert(small.flushes == 0xeeeeeeeeeeeeeeeeull);
    ck_assert(small.retried == 0xeeeeeeeeeeeeeeeeull);
    vmio_close(f);
}
END_TEST

/* ---- many threads on one handle ---------------------------------------- */

#define NTHREADS 8
#define REGION (512u * 1024u)
#define CHUNK (16u * 1024u)
#define ROUNDS 4

struct worker {
    vmio_file *f;
    int id;
    int failures;
    char msg[256];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = malloc(CHUNK), *rd = malloc(CHUNK);
    uint64_t base = (uint64_t)w->id * REGION;
    for (int round = 0; round < ROUNDS && !w->failures; round++) {
        uint32_t seed = (uint32_t)(w->id * 100 + round);
        for (uint64_t off = base; off < base + REGION; off += CHUNK) {
            test_fill(buf, CHUNK, off, seed);
            int r = (off / CHUNK) % 2
                        ? vmio_pwrite(w->f, buf, CHUNK, off, 0)
                        : vmio_pwritev(w->f, &(struct iovec){ buf, CHUNK }, 1, off, 0);
            if (r < 0) {
                w->failures++;
                snprintf(w->msg, sizeof w->msg, "write: %s", vmio_errmsg());
                break;
            }
        }
        for (uint64_t off = base; off < base + REGION; off += CHUNK) {
            memset(rd, 0, CHUNK);
            int r = vmio_pread(w->f, rd, CHUNK, off);
            if (r < 0 || test_check(rd, CHUNK, off, seed) != -1) {
                w->failures++;
                snprintf(w->msg, sizeof w->msg, "read at %llu: %d %s",
                         (unsigned long long)off, r, vmio_errmsg());
                break;
            }
        }
    }
    free(buf);
    free(rd);
    return NULL;
}

START_TEST(test_copy_range)
{
    vmio_file *a = create(1 << 20, 0);
    char b_path[600];
    snprintf(b_path, sizeof b_path, "%s/copy.img", dir);
    struct vmio_open_options o = { .struct_size = sizeof o, .create_size = 1 << 20 };
    vmio_file *b = NULL;
    ck_assert_vmio_ok(vmio_open_ex(b_path, VMIO_O_CREATE, &o, &b));
    static char buf[65536], back[65536];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)(i * 7 + 3);
    ck_assert_vmio_ok(vmio_pwrite(a, buf, sizeof buf, 4096, 0));
    ck_assert_vmio_ok(vmio_copy_range(a, 4096, b, 8192, sizeof buf, 0));
    ck_assert_vmio_ok(vmio_pread(b, back, sizeof back, 8192));
    ck_assert_mem_eq(buf, back, sizeof buf);
    /* Ranges are checked on both sides; flags must be 0. */
    ck_assert_int_eq(vmio_copy_range(a, (1 << 20) - 10, b, 0, 11, 0), -EINVAL);
    ck_assert_int_eq(vmio_copy_range(a, 0, b, (1 << 20) - 10, 11, 0), -EINVAL);
    ck_assert_int_eq(vmio_copy_range(a, 0, b, 0, 1, 1), -EINVAL);
    ck_assert_ptr_nonnull(strstr(vmio_errmsg(), "vmio_copy_range"));
    /* A read-only destination is refused. */
    vmio_file *ro = NULL;
    ck_assert_vmio_ok(vmio_open(b_path, VMIO_O_RDONLY, &ro));
    ck_assert_int_eq(vmio_copy_range(a, 0, ro, 0, 4096, 0), -EBADF);
    ck_assert_vmio_ok(vmio_close(ro));
    ck_assert_vmio_ok(vmio_close(a));
    ck_assert_vmio_ok(vmio_close(b));
}
END_TEST

START_TEST(test_threads)
{
    vmio_file *f = create((uint64_t)NTHREADS * REGION, 0);
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){ .f = f, .id = i };
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d: %s", i, w[i].msg);

    /* The file holds every thread's last round, byte for byte. */
    uint8_t *r = malloc(REGION);
    for (int i = 0; i < NTHREADS; i++) {
        raw_read(r, REGION, (off_t)i * REGION);
        ck_assert_int_eq(test_check(r, REGION, (uint64_t)i * REGION,
                                    (uint32_t)(i * 100 + ROUNDS - 1)), -1);
    }
    free(r);
    struct vmio_file_stats st = { .struct_size = sizeof st };
    ck_assert_vmio_ok(vmio_get_stats(f, &st));
    uint64_t per_thread = (uint64_t)ROUNDS * (REGION / CHUNK);
    ck_assert(st.writes == NTHREADS * per_thread);
    ck_assert(st.reads == NTHREADS * per_thread);
    ck_assert(st.bytes_written == NTHREADS * per_thread * CHUNK);
    ck_assert_int_eq(vmio_close(f), 0);
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("file");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_read_write);
    tcase_add_test(tc, test_many_segments);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_read_only);
    tcase_add_test(tc, test_discard_hole);
    tcase_add_test(tc, test_write_zeroes);
    tcase_add_test(tc, test_truncate);
    tcase_add_test(tc, test_block_status_sparse);
    tcase_add_test(tc, test_direct);
    tcase_add_test(tc, test_stats);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_copy_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(file_suite());
}
