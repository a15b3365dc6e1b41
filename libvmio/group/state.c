/* The group registry in a state directory: one "<id>.group" file per
 * group, written atomically (temporary file, fsync, rename), read back by
 * a strict parser, and the id counter bumped under an flock. See state.h
 * for the format's rules. Touches only files inside the state directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "group/state.h"

#define STATE_MAGIC "vmio-group"
#define STATE_MAX_BYTES (16u << 20)
#define MAX_WEIGHT 1000000u
#define MAX_CAP (100u * VMIO_CPUSET_MAX)
#define MAX_SHMEM (1ull << 50)

int vmio_group_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > VMIO_GROUP_NAME_MAX)
        return 0;
    int digits = 1;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok)
            return 0;
        if (c < '0' || c > '9')
            digits = 0;
    }
    return !digits;
}

int vmio_group_vm_name_valid(const char *vm)
{
    size_t n = vm ? strlen(vm) : 0;
    if (n < 1 || n > VMIO_GROUP_VM_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)vm[i] < 0x20 || vm[i] == 0x7f)
            return 0;
    return vm[0] != ' ' && vm[n - 1] != ' ';
}

void vmio_group_state_clear(struct vmio_group_state *st)
{
    for (size_t i = 0; i < st->nmembers; i++)
        free(st->members[i]);
    free(st->members);
    for (size_t i = 0; i < st->nsaved; i++)
        free(st->saved[i].vm);
    free(st->saved);
    memset(st, 0, sizeof *st);
}

const struct vmio_group_saved *vmio_group_state_saved(const struct vmio_group_state *st,
                                                      const char *vm)
{
    for (size_t i = 0; i < st->nsaved; i++)
        if (strcmp(st->saved[i].vm, vm) == 0)
            return &st->saved[i];
    return NULL;
}

int vmio_group_state_save_before(struct vmio_group_state *st, const char *vm, unsigned weight,
                                 unsigned cap)
{
    if (vmio_group_state_saved(st, vm))
        return 0;
    /* within what the parser takes back */
    weight = VMIO_MIN(weight, MAX_WEIGHT);
    cap = VMIO_MIN(cap, MAX_CAP);
    char *copy = strdup(vm);
    struct vmio_group_saved *s = realloc(st->saved, (st->nsaved + 1) * sizeof *s);
    if (!copy || !s) {
        free(copy);
        if (s)
            st->saved = s;
        return -ENOMEM;
    }
    st->saved = s;
    s[st->nsaved++] = (struct vmio_group_saved){ .vm = copy, .weight = weight, .cap = cap };
    return 1;
}

void vmio_group_state_forget(struct vmio_group_state *st, const char *vm)
{
    for (size_t i = 0; i < st->nsaved; i++)
        if (strcmp(st->saved[i].vm, vm) == 0) {
            free(st->saved[i].vm);
            st->saved[i] = st->saved[--st->nsaved];
            return;
        }
}

int vmio_group_state_add_member(struct vmio_group_state *st, const char *vm)
{
    char *copy = strdup(vm);
    char **m = realloc(st->members, (st->nmembers + 1) * sizeof *m);
    if (!copy || !m) {
        free(copy);
        if (m)
            st->members = m;
        return -ENOMEM;
    }
    st->members = m;
    m[st->nmembers++] = copy;
    return 0;
}

/* ---- parsing ---------------------------------------------------------- */

static const char *const pin_names[] = { "auto", "none", "strict", "loose" };
static const char *const loc_names[] = { "any", "node", "socket", "pci" };

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s || (s[0] == '0' && s[1]))
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int pci_valid(const char *s)
{
    /* dddd:bb:dd.f, hexadecimal */
    if (strlen(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.')
        return 0;
    for (int i = 0; i < 12; i++) {
        if (i == 4 || i == 7 || i == 10)
            continue;
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return s[11] >= '0' && s[11] <= '7';
}

static int sched_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 31)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

enum {
    K_ID, K_NAME, K_BACKEND, K_PIN, K_LOCALITY, K_PCI, K_DEDICATED, K_NCPUS, K_HOUSEKEEPING,
    K_WEIGHT, K_CAP, K_SCHEDULER, K_SHMEM, K_PLACED, K_MEMBER, K_SAVED, K_COUNT
};
static const char *const key_names[K_COUNT] = {
    "id", "name", "backend", "pin", "locality", "pci", "dedicated", "ncpus", "housekeeping",
    "weight", "cap", "scheduler", "shmem", "placed", "member", "saved",
};

#define BAD(...)                                                                  \
    do {                                                                          \
        r = vmio_set_error(api, EINVAL, __VA_ARGS__);                             \
        goto fail;                                                                \
    } while (0)

/* One "key value" line into st; seen[] catches repeated keys. */
static int parse_line(const char *api, const char *origin, unsigned lineno, char *line,
                      struct vmio_group_state *st, int *seen)
{
    int r;
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1])
        BAD("%s:%u: expected 'key value', got '%.40s'", origin, lineno, line);
    *sp = '\0';
    const char *key = line, *val = sp + 1;
    int k = parse_enum(key, key_names, K_COUNT);
    if (k < 0)
        BAD("%s:%u: unknown key '%.40s'", origin, lineno, key);
    if (k != K_MEMBER && k != K_SAVED && seen[k])
        BAD("%s:%u: key '%s' given twice", origin, lineno, key);
    seen[k] = 1;
    uint64_t v = 0;
    switch (k) {
    case K_ID:
        if (parse_u64(val, UINT32_MAX - 1, &v) < 0 || v == 0)
            BAD("%s:%u: id '%.40s' is not a number in 1..%u", origin, lineno, val,
                UINT32_MAX - 1);
        st->id = (uint32_t)v;
        break;
    case K_NAME:
        if (!vmio_group_name_valid(val))
            BAD("%s:%u: invalid group name '%.70s'", origin, lineno, val);
        snprintf(st->name, sizeof st->name, "%s", val);
        break;
    case K_BACKEND:
        if (strcmp(val, "libvirt") != 0 && strcmp(val, "xen") != 0)
            BAD("%s:%u: unknown backend '%.40s'", origin, lineno, val);
        snprintf(st->backend, sizeof st->backend, "%s", val);
        break;
    case K_PIN:
        if ((st->pin = parse_enum(val, pin_names, 4)) < 0)
            BAD("%s:%u: pin must be auto, none, strict or loose, not '%.40s'", origin, lineno,
                val);
        break;
    case K_LOCALITY:
        if ((st->locality = parse_enum(val, loc_names, 4)) < 0)
            BAD("%s:%u: locality must be any, node, socket or pci, not '%.40s'", origin, lineno,
                val);
        break;
    case K_PCI:
        if (!pci_valid(val))
            BAD("%s:%u: invalid PCI address '%.40s'", origin, lineno, val);
        snprintf(st->pci, sizeof st->pci, "%s", val);
        break;
    case K_DEDICATED:
        if (parse_u64(val, 1, &v) < 0)
            BAD("%s:%u: dedicated must be 0 or 1, not '%.40s'", origin, lineno, val);
        st->dedicated = (int)v;
        break;
    case K_NCPUS:
        if (parse_u64(val, VMIO_CPUSET_MAX, &v) < 0)
            BAD("%s:%u: ncpus '%.40s' is not a number in 0..%u", origin, lineno, val,
                VMIO_CPUSET_MAX);
        st->ncpus = (unsigned)v;
        break;
    case K_HOUSEKEEPING: {
        struct vmio_cpuset s;
        if (strlen(val) >= sizeof st->housekeeping || vmio_cpuset_parse(val, &s) < 0)
            BAD("%s:%u: housekeeping '%.40s' is not a CPU list", origin, lineno, val);
        snprintf(st->housekeeping, sizeof st->housekeeping, "%s", val);
        break;
    }
    case K_WEIGHT:
        if (parse_u64(val, MAX_WEIGHT, &v) < 0)
            BAD("%s:%u: weight '%.40s' is not a number in 0..%u", origin, lineno, val,
                MAX_WEIGHT);
        st->weight = (unsigned)v;
        break;
    case K_CAP:
        if (parse_u64(val, MAX_CAP, &v) < 0)
            BAD("%s:%u: cap '%.40s' is not a number in 0..%u", origin, lineno, val, MAX_CAP);
        st->cap = (unsigned)v;
        break;
    case K_SCHEDULER:
        if (!sched_valid(val))
            BAD("%s:%u: invalid scheduler name '%.40s'", origin, lineno, val);
        snprintf(st->scheduler, sizeof st->scheduler, "%s", val);
        break;
    case K_SHMEM:
        if (parse_u64(val, MAX_SHMEM, &v) < 0)
            BAD("%s:%u: shmem '%.40s' is not a byte count in 0..2^50", origin, lineno, val);
        st->shmem_bytes = v;
        break;
    case K_PLACED:
        if (vmio_cpuset_parse(val, &st->placed) < 0)
            BAD("%s:%u: placed '%.40s' is not a CPU list", origin, lineno, val);
        break;
    case K_MEMBER:
        if (!vmio_group_vm_name_valid(val))
            BAD("%s:%u: invalid VM name '%.40s'", origin, lineno, val);
        if (st->nmembers >= VMIO_GROUP_MAX_MEMBERS)
            BAD("%s:%u: more than %u members", origin, lineno, VMIO_GROUP_MAX_MEMBERS);
        for (size_t i = 0; i < st->nmembers; i++)
            if (strcmp(st->members[i], val) == 0)
                BAD("%s:%u: member '%.40s' listed twice", origin, lineno, val);
        if (vmio_group_state_add_member(st, val) < 0)
            return vmio_set_error(api, ENOMEM, "out of memory");
        break;
    case K_SAVED: {
        /* "saved WEIGHT CAP VM" */
        char num[2][16];
        const char *p = val;
        uint64_t w[2];
        for (int i = 0; i < 2; i++) {
            const char *e = strchr(p, ' ');
            if (!e || (size_t)(e - p) >= sizeof num[i])
                BAD("%s:%u: expected 'saved WEIGHT CAP VM', got '%.40s'", origin, lineno, val);
            memcpy(num[i], p, (size_t)(e - p));
            num[i][e - p] = '\0';
            p = e + 1;
        }
        if (parse_u64(num[0], MAX_WEIGHT, &w[0]) < 0 || parse_u64(num[1], MAX_CAP, &w[1]) < 0)
            BAD("%s:%u: saved weight or cap out of range in '%.40s'", origin, lineno, val);
        if (!vmio_group_vm_name_valid(p))
            BAD("%s:%u: invalid VM name '%.40s'", origin, lineno, p);
        if (st->nsaved >= VMIO_GROUP_MAX_MEMBERS)
            BAD("%s:%u: more than %u saved entries", origin, lineno, VMIO_GROUP_MAX_MEMBERS);
        int a = vmio_group_state_save_before(st, p, (unsigned)w[0], (unsigned)w[1]);
        if (a == 0)
            BAD("%s:%u: saved values of '%.40s' given twice", origin, lineno, p);
        if (a < 0)
            return vmio_set_error(api, ENOMEM, "out of memory");
        break;
    }
    }
    return 0;
fail:
    return r;
}

int vmio_group_state_parse(const char *api, const char *origin, const char *text, size_t len,
                           struct vmio_group_state *st)
{
    int r = 0;
    memset(st, 0, sizeof *st);
    if (len > STATE_MAX_BYTES)
        return vmio_set_error(api, EINVAL, "%s: larger than %u bytes", origin, STATE_MAX_BYTES);
    if (memchr(text, '\0', len))
        return vmio_set_error(api, EINVAL, "%s: contains a NUL byte: not a group state file",
                              origin);
    char *buf = malloc(len + 1);
    if (!buf)
        return vmio_set_error(api, ENOMEM, "out of memory");
    memcpy(buf, text, len);
    buf[len] = '\0';

    int seen[K_COUNT] = { 0 };
    int have_magic = 0;
    unsigned lineno = 0;
    char *p = buf;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *line = p;
        p = nl ? nl + 1 : p + strlen(p);
        for (char *c = line; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                r = vmio_set_error(api, EINVAL, "%s:%u: control character in line", origin,
                                   lineno);
                goto out;
            }
        if (!*line || line[0] == '#')
            continue;
        if (!have_magic) {
            char want[32];
            snprintf(want, sizeof want, "%s %d", STATE_MAGIC, VMIO_GROUP_STATE_VERSION);
            if (strcmp(line, want) != 0) {
                r = vmio_set_error(api, EINVAL,
                                   "%s:%u: not a group state file (expected '%s', got '%.40s')",
                                   origin, lineno, want, line);
                goto out;
            }
            have_magic = 1;
            continue;
        }
        if ((r = parse_line(api, origin, lineno, line, st, seen)) < 0)
            goto out;
    }
    if (!have_magic) {
        r = vmio_set_error(api, EINVAL, "%s: empty: not a group state file", origin);
        goto out;
    }
    for (int k = K_ID; k <= K_BACKEND; k++)
        if (!seen[k]) {
            r = vmio_set_error(api, EINVAL, "%s: key '%s' missing", origin, key_names[k]);
            goto out;
        }
    if (st->locality == VMIO_GROUP_NEAR_PCI && !st->pci[0]) {
        r = vmio_set_error(api, EINVAL, "%s: locality pci without a pci line", origin);
        goto out;
    }
out:
    free(buf);
    if (r < 0)
        vmio_group_state_clear(st);
    return r;
}

/* ---- formatting ------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) VMIO_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

int vmio_group_state_format(const char *api, const struct vmio_group_state *st, char **out)
{
    struct sbuf b = { .p = malloc(512), .cap = 512 };
    if (!b.p)
        return vmio_set_error(api, ENOMEM, "out of memory");
    b.p[0] = '\0';
    sb_printf(&b, "%s %d\n", STATE_MAGIC, VMIO_GROUP_STATE_VERSION);
    sb_printf(&b, "id %" PRIu32 "\nname %s\nbackend %s\n", st->id, st->name, st->backend);
    sb_printf(&b, "pin %s\nlocality %s\n", pin_names[st->pin & 3], loc_names[st->locality & 3]);
    if (st->pci[0])
        sb_printf(&b, "pci %s\n", st->pci);
    sb_printf(&b, "dedicated %d\nncpus %u\n", st->dedicated ? 1 : 0, st->ncpus);
    if (st->housekeeping[0])
        sb_printf(&b, "housekeeping %s\n", st->housekeeping);
    sb_printf(&b, "weight %u\ncap %u\n", st->weight, st->cap);
    if (st->scheduler[0])
        sb_printf(&b, "scheduler %s\n", st->scheduler);
    sb_printf(&b, "shmem %" PRIu64 "\n", st->shmem_bytes);
    if (!vmio_cpuset_empty(&st->placed)) {
        char cpus[4096];
        vmio_cpuset_format(&st->placed, cpus, sizeof cpus);
        sb_printf(&b, "placed %s\n", cpus);
    }
    for (size_t i = 0; i < st->nmembers; i++)
        sb_printf(&b, "member %s\n", st->members[i]);
    for (size_t i = 0; i < st->nsaved; i++)
        sb_printf(&b, "saved %u %u %s\n", st->saved[i].weight, st->saved[i].cap,
                  st->saved[i].vm);
    if (b.oom) {
        free(b.p);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    *out = b.p;
    return 0;
}

/* ---- files ------------------------------------------------------------ */

static int mkdir_p(const char *api, const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return vmio_set_error(api, ENAMETOOLONG, "state directory path too long");
    for (char *s = path + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return vmio_set_error_errno(api, errno, "creating %s", path);
        *s = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return vmio_set_error_errno(api, errno, "creating state directory %s", path);
    return 0;
}

int vmio_group_state_lock(const char *api, const char *dir)
{
    int r = mkdir_p(api, dir);
    if (r < 0)
        return r;
    char path[4200];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "opening %s", path);
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            r = vmio_set_error_errno(api, errno, "locking %s", path);
            close(fd);
            return r;
        }
    }
    return fd;
}

void vmio_group_state_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static int read_file(const char *api, const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > (off_t)STATE_MAX_BYTES) {
        close(fd);
        return vmio_set_error(api, EINVAL, "%s: not a regular file of at most %u bytes", path,
                              STATE_MAX_BYTES);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        close(fd);
        return vmio_set_error(api, ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int write_atomic(const char *api, const char *path, const char *text)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return vmio_set_error_errno(api, errno, "creating %s", tmp);
    int r = vmio_write_full(fd, text, strlen(text));
    if (r < 0) {
        r = vmio_set_error_errno(api, -r, "writing %s", tmp);
    } else if (fsync(fd) < 0) {
        r = vmio_set_error_errno(api, errno, "fsync %s", tmp);
    }
    if (close(fd) < 0 && r == 0)
        r = vmio_set_error_errno(api, errno, "closing %s", tmp);
    if (r == 0 && rename(tmp, path) < 0)
        r = vmio_set_error_errno(api, errno, "renaming %s to %s", tmp, path);
    if (r < 0)
        unlink(tmp);
    return r;
}

int vmio_group_state_alloc_id(const char *api, const char *dir, uint32_t *id)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/next-id", dir);
    char *text = NULL;
    size_t len = 0;
    uint64_t next = 1;
    int r = read_file(api, path, &text, &len);
    if (r == 0) {
        if (len && text[len - 1] == '\n')
            text[--len] = '\0';
        if (parse_u64(text, UINT32_MAX - 1, &next) < 0 || next == 0) {
            free(text);
            return vmio_set_error(api, EINVAL, "%s: corrupted id counter", path);
        }
        free(text);
    } else if (r == -ENOENT) {
        /* No counter yet: start after any group already there. */
        struct vmio_group_state *all = NULL;
        size_t n = 0;
        if ((r = vmio_group_state_load_all(api, dir, &all, &n)) < 0)
            return r;
        for (size_t i = 0; i < n; i++)
            if (all[i].id >= next)
                next = (uint64_t)all[i].id + 1;
        vmio_group_state_free_all(all, n);
    } else {
        return r == -EINVAL ? r : vmio_set_error_errno(api, -r, "reading %s", path);
    }
    if (next >= UINT32_MAX)
        return vmio_set_error(api, ENOSPC, "group ids exhausted");
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64 "\n", next + 1);
    if ((r = write_atomic(api, path, buf)) < 0)
        return r;
    *id = (uint32_t)next;
    return 0;
}

int vmio_group_state_load(const char *api, const char *dir, uint32_t id,
                          struct vmio_group_state *st)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%" PRIu32 ".group", dir, id);
    char *text = NULL;
    size_t len = 0;
    int r = read_file(api, path, &text, &len);
    if (r == -ENOENT)
        return vmio_set_error(api, ENOENT, "no group with id %" PRIu32, id);
    if (r < 0)
        return r == -EINVAL || r == -ENOMEM ? r : vmio_set_error_errno(api, -r, "reading %s", path);
    r = vmio_group_state_parse(api, path, text, len, st);
    free(text);
    if (r == 0 && st->id != id) {
        uint32_t held = st->id;
        vmio_group_state_clear(st);
        r = vmio_set_error(api, EINVAL, "%s: holds id %" PRIu32 ", not %" PRIu32, path, held, id);
    }
    return r;
}

int vmio_group_state_save(const char *api, const char *dir, const struct vmio_group_state *st)
{
    char *text = NULL;
    int r = vmio_group_state_format(api, st, &text);
    if (r < 0)
        return r;
    char path[4200];
    snprintf(path, sizeof path, "%s/%" PRIu32 ".group", dir, st->id);
    r = write_atomic(api, path, text);
    free(text);
    return r;
}

int vmio_group_state_remove(const char *api, const char *dir, uint32_t id)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%" PRIu32 ".group", dir, id);
    if (unlink(path) < 0 && errno != ENOENT)
        return vmio_set_error_errno(api, errno, "removing %s", path);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    const struct vmio_group_state *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int vmio_group_state_load_all(const char *api, const char *dir, struct vmio_group_state **out,
                              size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) {
            *out = NULL;
            *count = 0;
            return 0;
        }
        return vmio_set_error_errno(api, errno, "opening state directory %s", dir);
    }
    struct vmio_group_state *all = NULL;
    size_t n = 0;
    int r = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strchr(e->d_name, '.');
        if (!dot || strcmp(dot, ".group") != 0 || e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        uint64_t id = 0;
        char num[16];
        size_t nl = (size_t)(dot - e->d_name);
        if (nl >= sizeof num)
            continue;
        memcpy(num, e->d_name, nl);
        num[nl] = '\0';
        if (parse_u64(num, UINT32_MAX - 1, &id) < 0)
            continue;
        struct vmio_group_state *na = realloc(all, (n + 1) * sizeof *na);
        if (!na) {
            r = vmio_set_error(api, ENOMEM, "out of memory");
            break;
        }
        all = na;
        if ((r = vmio_group_state_load(api, dir, (uint32_t)id, &all[n])) < 0) {
            if (r == -ENOENT) { /* removed meanwhile */
                r = 0;
                continue;
            }
            break;
        }
        n++;
    }
    closedir(d);
    if (r < 0) {
        vmio_group_state_free_all(all, n);
        return r;
    }
    if (n > 1)
        qsort(all, n, sizeof *all, by_id);
    *out = all;
    *count = n;
    return 0;
}

void vmio_group_state_free_all(struct vmio_group_state *all, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vmio_group_state_clear(&all[i]);
    free(all);
}
