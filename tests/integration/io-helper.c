/* vmio-test-io: one storage call per invocation, for the integration tests
 * to reach error paths the CLIs do not (offsets past the end, writes
 * through a read-only handle) and to assert errno names and messages.
 *
 *   vmio-test-io URI size
 *   vmio-test-io URI read OFFSET LENGTH
 *   vmio-test-io [--rw] URI write OFFSET LENGTH      (writes 0xA5 bytes)
 *   vmio-test-io URI block-status OFFSET LENGTH
 *   vmio-test-io URI backend                        (vmio_backend_name)
 *   vmio-test-io --rw URI truncate SIZE
 *   vmio-test-io --rw URI flush
 *   vmio-test-io URI dump OFFSET LENGTH    (data to stdout, in 1 MiB reads)
 *   vmio-test-io --rw URI load OFFSET LENGTH (data from stdin, 1 MiB writes)
 *   --create (implies --rw) opens with VMIO_O_CREATE.
 *   --register: dump/load use one buffer given to vmio_register_memory();
 *   --chunk N: dump/load I/O size (default 1 MiB). dump and load print the
 *   file's stats on stderr ("stats: transport=... rdma=... bounce=...
 *   inline=...").
 *
 * On success prints the result and exits 0; on failure prints
 * "ERRNAME: <vmio_errmsg()>" on stderr and exits 1 (2 for usage). */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/vmio.h>

static int fail(int r)
{
    const char *name = strerrorname_np(-r);
    fprintf(stderr, "%s: %s\n", name ? name : "E?", vmio_errmsg());
    return 1;
}

/* dump/load: move len bytes between the image and stdout/stdin. */
static int stream_data(vmio_file *f, int dump, uint64_t off, uint64_t len, int reg, size_t chunk)
{
    char *buf = aligned_alloc(4096, (chunk + 4095) & ~(size_t)4095);
    if (!buf)
        return -ENOMEM;
    int r = 0;
    uint64_t size;
    if (!dump && (r = vmio_get_size(f, &size)) == 0 && size < off + len)
        r = vmio_truncate(f, off + len);
    if (r < 0 || (reg && (r = vmio_register_memory(f, buf, chunk)) < 0)) {
        free(buf);
        return r;
    }
    while (r == 0 && len > 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        if (dump) {
            r = vmio_pread(f, buf, n, off);
            if (r == 0 && fwrite(buf, 1, n, stdout) != n)
                r = -EIO;
        } else {
            if (fread(buf, 1, n, stdin) != n)
                r = -EIO;
            if (r == 0)
                r = vmio_pwrite(f, buf, n, off, 0);
        }
        off += n;
        len -= n;
    }
    /* Report the I/O error, not what the calls below leave. */
    char err[512];
    snprintf(err, sizeof err, "%s", r < 0 ? vmio_errmsg() : "");
    struct vmio_file_stats st = { .struct_size = sizeof st };
    if (vmio_get_stats(f, &st) == 0)
        fprintf(stderr, "stats: transport=%s rdma=%" PRIu64 " bounce=%" PRIu64
                " inline=%" PRIu64 "\n", st.transport[0] ? st.transport : "-",
                st.rdma_bytes, st.bounce_bytes, st.inline_bytes);
    if (reg)
        vmio_unregister_memory(f, buf);
    free(buf);
    if (r < 0)
        fprintf(stderr, "%s\n", err);
    return r;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || *end || end == s)
        return -1;
    *v = x;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: vmio-test-io [--rw|--create] URI "
                    "size|read|write|dump|load|block-status|backend|truncate|flush [ARGS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    unsigned flags = VMIO_O_RDONLY;
    int a = 1, reg = 0;
    size_t chunk = 1u << 20;
    for (; a < argc && argv[a][0] == '-' && argv[a][1] == '-'; a++) {
        uint64_t v;
        if (strcmp(argv[a], "--rw") == 0)
            flags |= VMIO_O_RDWR;
        else if (strcmp(argv[a], "--register") == 0)
            reg = 1;
        else if (strcmp(argv[a], "--chunk") == 0 && a + 1 < argc &&
                 parse_u64(argv[a + 1], &v) == 0 && v > 0 && v <= (64u << 20))
            chunk = (size_t)v, a++;
        else if (strcmp(argv[a], "--create") == 0)
            flags |= VMIO_O_RDWR | VMIO_O_CREATE;
        else
            return usage();
    }
    if (argc - a < 2)
        return usage();
    const char *uri = argv[a], *cmd = argv[a + 1];
    uint64_t off = 0, len = 0;
    if (strcmp(cmd, "truncate") == 0) {
        if (argc - a != 3 || parse_u64(argv[a + 2], &off) < 0)
            return usage();
    } else if (strcmp(cmd, "size") != 0 && strcmp(cmd, "backend") != 0 &&
               strcmp(cmd, "flush") != 0) {
        if (argc - a != 4 || parse_u64(argv[a + 2], &off) < 0 ||
            parse_u64(argv[a + 3], &len) < 0)
            return usage();
    }

    vmio_file *f;
    int r = vmio_open(uri, flags, &f);
    if (r < 0)
        return fail(r);
    if (strcmp(cmd, "size") == 0) {
        uint64_t size;
        r = vmio_get_size(f, &size);
        if (r == 0)
            printf("%" PRIu64 "\n", size);
    } else if (strcmp(cmd, "read") == 0 || strcmp(cmd, "write") == 0) {
        char *buf = malloc(len ? (size_t)len : 1);
        if (!buf) {
            fprintf(stderr, "out of memory\n");
            vmio_close(f);
            return 1;
        }
        if (cmd[0] == 'r') {
            r = vmio_pread(f, buf, (size_t)len, off);
        } else {
            memset(buf, 0xa5, (size_t)len);
            r = vmio_pwrite(f, buf, (size_t)len, off, 0);
        }
        if (r == 0)
            printf("%s %" PRIu64 " bytes at %" PRIu64 "\n", cmd, len, off);
        free(buf);
    } else if (strcmp(cmd, "dump") == 0 || strcmp(cmd, "load") == 0) {
        r = stream_data(f, cmd[0] == 'd', off, len, reg, chunk);
    } else if (strcmp(cmd, "backend") == 0) {
        printf("%s\n", vmio_backend_name(f));
    } else if (strcmp(cmd, "truncate") == 0) {
        r = vmio_truncate(f, off);
    } else if (strcmp(cmd, "flush") == 0) {
        r = vmio_flush(f);
    } else if (strcmp(cmd, "block-status") == 0) {
        uint64_t l;
        int type;
        r = vmio_block_status(f, off, len, &l, &type);
        if (r == 0)
            printf("%" PRIu64 " %s\n", l, type == VMIO_EXTENT_HOLE ? "hole" : "data");
    } else {
        vmio_close(f);
        return usage();
    }
    if (r < 0) {
        fail(r);
        vmio_close(f);
        return 1;
    }
    return vmio_close(f) < 0 ? fail(-vmio_errno()) : 0;
}
