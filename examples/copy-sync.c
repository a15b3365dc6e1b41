/* copy-sync: copy one image to another with the synchronous storage API,
 * skipping holes so that a sparse source stays sparse.
 *
 *   copy-sync SRC-URI DST-URI
 *
 * Any URI libvmio knows works on either side (/path, file:///path,
 * vmio://host:port/export/path with VMIO_SECRET_FILE set). The destination
 * is created if needed and sized like the source. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <vmio/vmio.h>

#define CHUNK (4u << 20)

static int die(const char *what)
{
    fprintf(stderr, "copy-sync: %s: %s\n", what, vmio_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    vmio_file *src = NULL, *dst = NULL;
    uint64_t size, off = 0, copied = 0;
    char *buf = NULL;
    int ret = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: copy-sync SRC-URI DST-URI\n");
        return 2;
    }
    if (vmio_open(argv[1], VMIO_O_RDONLY, &src) < 0)
        return die(argv[1]);
    if (vmio_get_size(src, &size) < 0) {
        ret = die("size");
        goto out;
    }
    if (vmio_open(argv[2], VMIO_O_RDWR | VMIO_O_CREATE, &dst) < 0) {
        ret = die(argv[2]);
        goto out;
    }
    /* Truncating to 0 first drops stale data, so holes read as zeroes. */
    if (vmio_truncate(dst, 0) < 0 || vmio_truncate(dst, size) < 0) {
        ret = die("truncate");
        goto out;
    }
    buf = malloc(CHUNK);
    if (!buf) {
        fprintf(stderr, "copy-sync: out of memory\n");
        goto out;
    }
    while (off < size) {
        uint64_t len;
        int type;
        if (vmio_block_status(src, off, CHUNK, &len, &type) < 0) {
            ret = die("block status");
            goto out;
        }
        if (type == VMIO_EXTENT_DATA) {
            if (vmio_pread(src, buf, (size_t)len, off) < 0) {
                ret = die("read");
                goto out;
            }
            if (vmio_pwrite(dst, buf, (size_t)len, off, 0) < 0) {
                ret = die("write");
                goto out;
            }
            copied += len;
        }
        off += len;
    }
    if (vmio_flush(dst) < 0) {
        ret = die("flush");
        goto out;
    }
    printf("copied %" PRIu64 " of %" PRIu64 " bytes (%s -> %s)\n", copied, size,
           vmio_backend_name(src), vmio_backend_name(dst));
    ret = 0;
out:
    free(buf);
    if (vmio_close(dst) < 0 && ret == 0)
        ret = die("close");
    vmio_close(src);
    return ret;
}
