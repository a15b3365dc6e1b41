/* aio-poll: copy one image to another through the asynchronous storage API,
 * driven by poll(2) on the files' completion eventfds, with up to DEPTH
 * requests in flight. The same pattern plugs into any event loop: add
 * vmio_aio_fd() to it and call vmio_aio_run_completions() when it fires.
 *
 *   aio-poll SRC-URI DST-URI
 *
 * Each chunk is read from the source; its read completion submits the
 * write of the same buffer to the destination; the write completion frees
 * the slot for the next chunk. */
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmio/vmio.h>

#define DEPTH 8
#define CHUNK (1u << 20)

struct slot {
    struct copy *c;
    struct iovec iov;
    uint64_t offset;
    int busy;
};

struct copy {
    vmio_file *src, *dst;
    uint64_t size, next;        /* next offset to read */
    int error;                  /* first failure, 0 if none */
    char errmsg[512];
    struct slot slots[DEPTH];
};

static void record(struct copy *c, int result)
{
    if (!c->error) {
        c->error = result;
        snprintf(c->errmsg, sizeof c->errmsg, "%s", vmio_errmsg());
    }
}

static void write_done(void *opaque, int result)
{
    struct slot *s = opaque;
    if (result < 0)
        record(s->c, result);
    s->busy = 0;
}

/* Runs from vmio_aio_run_completions(src): safe to submit from here. */
static void read_done(void *opaque, int result)
{
    struct slot *s = opaque;
    struct copy *c = s->c;
    if (result < 0 || c->error) {
        if (result < 0)
            record(c, result);
        s->busy = 0;
        return;
    }
    int r = vmio_aio_pwritev(c->dst, &s->iov, 1, s->offset, 0, write_done, s);
    if (r < 0) {
        record(c, r);
        s->busy = 0;
    }
}

static void submit_reads(struct copy *c)
{
    for (int i = 0; i < DEPTH && c->next < c->size && !c->error; i++) {
        struct slot *s = &c->slots[i];
        if (s->busy)
            continue;
        uint64_t left = c->size - c->next;
        s->offset = c->next;
        s->iov.iov_len = left < CHUNK ? (size_t)left : CHUNK;
        s->busy = 1;
        int r = vmio_aio_preadv(c->src, &s->iov, 1, s->offset, read_done, s);
        if (r < 0) {
            record(c, r);
            s->busy = 0;
            return;
        }
        c->next += s->iov.iov_len;
    }
}

static int busy_slots(const struct copy *c)
{
    int n = 0;
    for (int i = 0; i < DEPTH; i++)
        n += c->slots[i].busy;
    return n;
}

int main(int argc, char **argv)
{
    static struct copy c;
    int ret = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: aio-poll SRC-URI DST-URI\n");
        return 2;
    }
    if (vmio_open(argv[1], VMIO_O_RDONLY, &c.src) < 0 || vmio_get_size(c.src, &c.size) < 0) {
        fprintf(stderr, "aio-poll: %s: %s\n", argv[1], vmio_errmsg());
        goto out;
    }
    if (vmio_open(argv[2], VMIO_O_RDWR | VMIO_O_CREATE, &c.dst) < 0 ||
        vmio_truncate(c.dst, c.size) < 0) {
        fprintf(stderr, "aio-poll: %s: %s\n", argv[2], vmio_errmsg());
        goto out;
    }
    for (int i = 0; i < DEPTH; i++) {
        c.slots[i].c = &c;
        c.slots[i].iov.iov_base = malloc(CHUNK);
        if (!c.slots[i].iov.iov_base) {
            fprintf(stderr, "aio-poll: out of memory\n");
            goto out;
        }
    }

    struct pollfd pfd[2] = {
        { .fd = vmio_aio_fd(c.src), .events = POLLIN },
        { .fd = vmio_aio_fd(c.dst), .events = POLLIN },
    };
    submit_reads(&c);
    while (busy_slots(&c) > 0) {
        if (poll(pfd, 2, -1) < 0) {
            perror("aio-poll: poll");
            goto out;
        }
        /* Either fd may have fired; running an idle queue is cheap. */
        vmio_aio_run_completions(c.src);
        vmio_aio_run_completions(c.dst);
        submit_reads(&c);
    }
    if (c.error) {
        fprintf(stderr, "aio-poll: %s\n", c.errmsg);
        goto out;
    }
    if (vmio_flush(c.dst) < 0) {
        fprintf(stderr, "aio-poll: flush: %s\n", vmio_errmsg());
        goto out;
    }
    printf("copied %" PRIu64 " bytes with %d requests in flight\n", c.size, DEPTH);
    ret = 0;
out:
    /* vmio_close waits for anything still in flight before freeing. */
    vmio_close(c.src);
    vmio_close(c.dst);
    for (int i = 0; i < DEPTH; i++)
        free(c.slots[i].iov.iov_base);
    return ret;
}
