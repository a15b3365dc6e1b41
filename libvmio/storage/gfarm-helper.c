/* vmio-gfarm-helper: one libgfarm client process serving one open file
 * for the gfarm:// backend (see gfarm.c for why processes).
 *
 * Started by the library with the request socket on fd 3 and the shared
 * data window on fd 4; not meant to be run by hand. It exits when the
 * socket closes, after CLOSE, or when its parent dies. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "storage/gfarm-helper-proto.h"
#include "storage/gfarm-io.h"

static int reply(int sock, uint32_t op, int r, uint64_t value)
{
    struct gfh_rep p = { .op = op, .err = r < 0 ? -r : 0, .value = value };
    if (r < 0)
        snprintf(p.msg, sizeof p.msg, "%s", vmio_errmsg());
    uint8_t buf[GFH_REP_HEAD + GFH_MAX_MSG];
    int n = gfh_encode_rep(buf, sizeof buf, &p);
    if (n < 0)
        return n;
    return send(sock, buf, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* Die with the process that started us: a helper must never outlive
     * the VMM holding its file. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    int sock = GFH_SOCK_FD;
    struct stat st;
    /* Started by hand (no socket, no window): nothing to serve. */
    if (fstat(sock, &st) < 0 || !S_ISSOCK(st.st_mode) || fstat(GFH_WINDOW_FD, &st) < 0)
        return 2;

    static uint8_t buf[GFH_REQ_HEAD + 2 * GFH_MAX_PATH + 2];
    uint8_t *window = NULL;
    size_t wsize = 0;
    struct gfio *g = NULL;
    int inited = 0;

    for (;;) {
        ssize_t n = recv(sock, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        struct gfh_req q;
        int r = gfh_decode_req(buf, (size_t)n, &q);
        if (r < 0)
            break;          /* a broken peer: nothing sensible to answer */
        uint64_t value = 0;
        vmio_clear_error();
        if (q.op != GFH_OPEN && !g) {
            r = vmio_set_error("gfarm", EBADF, "helper has no open file");
        } else if (q.op == GFH_OPEN) {
            if (g) {
                r = vmio_set_error("gfarm", EBUSY, "helper already has a file open");
            } else if ((off_t)q.window > st.st_size) {
                r = vmio_set_error("gfarm", EINVAL, "data window larger than its memfd");
            } else {
                wsize = q.window;
                window = mmap(NULL, wsize, PROT_READ | PROT_WRITE, MAP_SHARED, GFH_WINDOW_FD, 0);
                if (window == MAP_FAILED) {
                    window = NULL;
                    r = vmio_set_error_errno("gfarm", errno, "mmap of the data window");
                } else if (!inited && (r = gfio_init()) == 0) {
                    inited = 1;
                }
                if (r == 0) {
                    char path[GFH_MAX_PATH + 1], beneath[GFH_MAX_PATH + 1];
                    memcpy(path, q.path, q.path_len);
                    path[q.path_len] = 0;
                    memcpy(beneath, q.beneath, q.beneath_len);
                    beneath[q.beneath_len] = 0;
                    r = gfio_open(path, (unsigned)q.arg0, q.arg1,
                                  q.beneath_len ? beneath : NULL, &g);
                }
            }
        } else if ((q.op == GFH_READ || q.op == GFH_WRITE) && q.arg1 > wsize) {
            r = vmio_set_error("gfarm", EINVAL, "request larger than the data window");
        } else if (q.op == GFH_READ) {
            r = gfio_pread(g, window, (size_t)q.arg1, q.arg0);
        } else if (q.op == GFH_WRITE) {
            r = gfio_pwrite(g, window, (size_t)q.arg1, q.arg0);
        } else if (q.op == GFH_SYNC) {
            r = gfio_datasync(g);
        } else if (q.op == GFH_TRUNCATE) {
            r = gfio_truncate(g, q.arg0);
        } else if (q.op == GFH_SIZE) {
            r = gfio_size(g, &value);
        } else if (q.op == GFH_CLOSE) {
            r = gfio_close(g);
            g = NULL;
            reply(sock, q.op, r, 0);
            break;
        }
        if (reply(sock, q.op, r, value) < 0)
            break;
    }
    if (g)
        gfio_close(g);
    if (inited)
        gfio_fini();
    return 0;
}
