/* Running external tools from library code: fork + execvp with argv (no
 * shell), stdin fed from a string, stdout/stderr captured through pipes, a
 * deadline after which the child's whole process group is killed. */
#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"

#define SPAWN_MAX_OUTPUT (16u << 20)
#define SPAWN_DEFAULT_TIMEOUT_MS 60000u

extern char **environ;

struct capture {
    char *buf;
    size_t len, cap;
};

static int capture_append(struct capture *c, const char *data, size_t n)
{
    if (c->len >= SPAWN_MAX_OUTPUT)
        return 0;
    if (n > SPAWN_MAX_OUTPUT - c->len)
        n = SPAWN_MAX_OUTPUT - c->len;
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *p = realloc(c->buf, cap);
        if (!p)
            return -ENOMEM;
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return 0;
}

static int capture_finish(struct capture *c, char **out, size_t *len)
{
    if (!c->buf) {
        c->buf = calloc(1, 1);
        if (!c->buf)
            return -ENOMEM;
    }
    *out = c->buf;
    *len = c->len;
    c->buf = NULL;
    return 0;
}

/* environ plus the extra entries (which replace same-named ones). */
static char **build_env(const char *const extra[])
{
    size_t n = 0, k = 0;
    while (environ && environ[n])
        n++;
    while (extra && extra[k])
        k++;
    char **env = calloc(n + k + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < k; j++)
            if (strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=')
                replaced = 1;
        if (!replaced)
            env[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        env[m++] = (char *)extra[j];
    env[m] = NULL;
    return env;
}

/* In the child: only async-signal-safe calls until exec. */
static void child_exec(const char *const argv[], char **env, int in_fd, int out_fd, int err_fd)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    /* Close everything else the library's caller may have open. */
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    for (int fd = 3; fd < maxfd; fd++)
        close(fd);
    if (env)
        environ = env;
    execvp(argv[0], (char *const *)argv);
    _exit(errno == ENOENT ? 127 : 126);
}

int vmio_spawn(const char *api, const char *const argv[], const char *const env[],
               const char *input, uint32_t timeout_ms, struct vmio_spawn_result *r)
{
    memset(r, 0, sizeof(*r));
    if (!argv || !argv[0])
        return vmio_set_error(api, EINVAL, "no program to run");
    if (timeout_ms == 0)
        timeout_ms = SPAWN_DEFAULT_TIMEOUT_MS;

    int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1};
    char **envp = NULL;
    int rc = 0;
    if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        rc = vmio_set_error_errno(api, errno, "cannot run %s: pipe", argv[0]);
        goto close_pipes;
    }
    if (env && !(envp = build_env(env))) {
        rc = vmio_set_error(api, ENOMEM, "cannot run %s: out of memory", argv[0]);
        goto close_pipes;
    }

    pid_t pid = fork();
    if (pid < 0) {
        rc = vmio_set_error_errno(api, errno, "cannot run %s: fork", argv[0]);
        goto close_pipes;
    }
    if (pid == 0)
        child_exec(argv, envp, inp[0], outp[1], errp[1]);
    setpgid(pid, pid); /* both sides, whichever runs first */
    close(inp[0]);
    close(outp[1]);
    close(errp[1]);
    inp[0] = outp[1] = errp[1] = -1;

    size_t in_len = input ? strlen(input) : 0, in_off = 0;
    if (in_len == 0) {
        close(inp[1]);
        inp[1] = -1;
    } else {
        fcntl(inp[1], F_SETFL, O_NONBLOCK);
    }

    struct capture out = {0}, err = {0};
    uint64_t deadline = vmio_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int oom = 0;
    while (outp[0] >= 0 || errp[0] >= 0) {
        struct pollfd p[3];
        int np = 0, iout = -1, ierr = -1, iin = -1;
        if (outp[0] >= 0) {
            iout = np;
            p[np++] = (struct pollfd){.fd = outp[0], .events = POLLIN};
        }
        if (errp[0] >= 0) {
            ierr = np;
            p[np++] = (struct pollfd){.fd = errp[0], .events = POLLIN};
        }
        if (inp[1] >= 0) {
            iin = np;
            p[np++] = (struct pollfd){.fd = inp[1], .events = POLLOUT};
        }
        uint64_t now = vmio_now_ns();
        if (now >= deadline) {
            r->timed_out = 1;
            break;
        }
        uint64_t left_ms = (deadline - now) / 1000000u + 1;
        int n = poll(p, (nfds_t)np, left_ms > 1000 ? 1000 : (int)left_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char buf[8192];
        if (iout >= 0 && (p[iout].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t k = read(outp[0], buf, sizeof(buf));
            if (k > 0) {
                oom |= capture_append(&out, buf, (size_t)k) < 0;
            } else if (k == 0 || errno != EINTR) {
                close(outp[0]);
                outp[0] = -1;
            }
        }
        if (ierr >= 0 && (p[ierr].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t k = read(errp[0], buf, sizeof(buf));
            if (k > 0) {
                oom |= capture_append(&err, buf, (size_t)k) < 0;
            } else if (k == 0 || errno != EINTR) {
                close(errp[0]);
                errp[0] = -1;
            }
        }
        if (iin >= 0 && (p[iin].revents & (POLLOUT | POLLHUP | POLLERR))) {
            ssize_t k = write(inp[1], input + in_off, in_len - in_off);
            if (k > 0)
                in_off += (size_t)k;
            if ((k < 0 && errno != EINTR && errno != EAGAIN) || in_off == in_len) {
                close(inp[1]);
                inp[1] = -1;
            }
        }
    }
    /* The pipes are closed (or the deadline passed); the child may still
     * run with its output closed: wait for it until the deadline too. */
    int status = 0;
    pid_t w;
    for (;;) {
        if (r->timed_out)
            kill(-pid, SIGKILL);
        w = waitpid(pid, &status, r->timed_out ? 0 : WNOHANG);
        if (w < 0 && errno == EINTR)
            continue;
        if (w != 0)
            break;
        if (vmio_now_ns() >= deadline) {
            r->timed_out = 1;
            continue;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (w < 0) {
        rc = vmio_set_error_errno(api, errno, "cannot wait for %s", argv[0]);
    } else if (WIFEXITED(status)) {
        r->status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->status = 128 + WTERMSIG(status);
    }
    if (rc == 0 && oom)
        rc = vmio_set_error(api, ENOMEM, "cannot capture the output of %s: out of memory",
                            argv[0]);
    if (capture_finish(&out, &r->out, &r->out_len) < 0 ||
        capture_finish(&err, &r->err, &r->err_len) < 0) {
        if (rc == 0)
            rc = vmio_set_error(api, ENOMEM, "out of memory");
    }
    free(out.buf);
    free(err.buf);
    if (rc == 0 && r->status == 127 && !r->timed_out && r->err_len == 0)
        rc = vmio_set_error(api, ENOENT, "cannot run %s: not found in PATH", argv[0]);
    if (rc < 0) {
        vmio_spawn_result_free(r);
        r->status = -1;
    }

close_pipes:
    for (int i = 0; i < 2; i++) {
        if (inp[i] >= 0)
            close(inp[i]);
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    free(envp);
    return rc;
}

/* The tool's stderr for an error message: trimmed, newlines as "; ",
 * at most the last ~600 bytes. */
static void stderr_summary(const struct vmio_spawn_result *r, char *dst, size_t cap)
{
    const char *s = r->err ? r->err : "";
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    size_t start = n > 600 ? n - 600 : 0;
    size_t o = 0;
    if (start > 0 && o + 4 < cap) {
        memcpy(dst, "... ", 4);
        o = 4;
    }
    for (size_t i = start; i < n && o + 3 < cap; i++) {
        if (s[i] == '\n') {
            dst[o++] = ';';
            dst[o++] = ' ';
        } else {
            dst[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        }
    }
    dst[o] = '\0';
}

int vmio_spawn_check(const char *api, const char *const argv[], uint32_t timeout_ms,
                     struct vmio_spawn_result *r)
{
    struct vmio_spawn_result local;
    struct vmio_spawn_result *res = r ? r : &local;
    int rc = vmio_spawn(api, argv, NULL, NULL, timeout_ms, res);
    if (rc < 0)
        return rc;
    if (res->status != 0 || res->timed_out) {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "%s%s%s", argv[0], argv[1] ? " " : "", argv[1] ? argv[1] : "");
        char why[720];
        stderr_summary(res, why, sizeof(why));
        if (res->timed_out)
            rc = vmio_set_error(api, ETIMEDOUT, "%s timed out after %u s%s%s", cmd,
                                (timeout_ms ? timeout_ms : SPAWN_DEFAULT_TIMEOUT_MS) / 1000,
                                why[0] ? ": " : "", why);
        else
            rc = vmio_set_error(api, EIO, "%s failed (exit status %d)%s%s", cmd, res->status,
                                why[0] ? ": " : "", why);
    }
    if (!r)
        vmio_spawn_result_free(&local);
    return rc;
}

void vmio_spawn_result_free(struct vmio_spawn_result *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}
