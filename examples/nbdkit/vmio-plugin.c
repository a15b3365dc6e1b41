/* nbdkit-vmio-plugin: serve any libvmio URI (a local file, file://, or a
 * vmio:// image behind vmiod) over NBD, so that qemu-img, qemu-nbd clients,
 * nbdcopy and the kernel's nbd driver can use libvmio storage unchanged.
 *
 *   nbdkit -U sock ./nbdkit-vmio-plugin.so uri=vmio://host:port/export/disk.img \
 *          secret-file=/etc/vmio/secret
 *
 * Each NBD connection opens its own vmio_file, so connections never share
 * a handle (or, for vmio://, a TCP connection). Capabilities advertised to
 * the NBD client come from vmio_get_caps(), never from probing by failure.
 * Debug messages of the library go to nbdkit's debug log with -D vmio.lib=1.
 *
 * This file is also an example of the storage API: nothing here uses
 * anything but <vmio/vmio.h>. */
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-plugin.h>

#include <vmio/vmio.h>

/* Set with nbdkit -D vmio.lib=1: forward libvmio's debug log. */
NBDKIT_DLL_PUBLIC int vmio_debug_lib = 0;

static char *cfg_uri;
static char *cfg_secret_file;
static int cfg_readonly;

struct handle {
    vmio_file *file;
    unsigned caps;
};

static void vmio_plugin_unload(void)
{
    vmio_set_log(NULL, NULL, VMIO_LOG_ERROR);
    free(cfg_uri);
    free(cfg_secret_file);
}

static int vmio_plugin_config(const char *key, const char *value)
{
    if (strcmp(key, "uri") == 0) {
        free(cfg_uri);
        cfg_uri = strdup(value);
        if (!cfg_uri) {
            nbdkit_error("strdup: %m");
            return -1;
        }
    } else if (strcmp(key, "secret-file") == 0) {
        free(cfg_secret_file);
        /* vmiod and the library resolve it later, after nbdkit may have
         * changed directory when it daemonised. */
        cfg_secret_file = nbdkit_absolute_path(value);
        if (!cfg_secret_file)
            return -1;
    } else if (strcmp(key, "readonly") == 0) {
        int r = nbdkit_parse_bool(value);
        if (r < 0)
            return -1;
        cfg_readonly = r;
    } else {
        nbdkit_error("unknown parameter '%s'", key);
        return -1;
    }
    return 0;
}

static int vmio_plugin_config_complete(void)
{
    if (!cfg_uri) {
        nbdkit_error("the uri parameter is required (uri=file:///path or "
                     "uri=vmio://host:port/export/path)");
        return -1;
    }
    return 0;
}

#define vmio_plugin_config_help \
    "uri=<URI>            (required) image to serve: /path, file:///path,\n" \
    "                     vmio://host[:port]/export/path\n" \
    "secret-file=<FILE>   shared secret for vmio:// (mode 0600)\n" \
    "readonly=true        open the image read-only"

static void forward_log(void *opaque, int level, const char *msg)
{
    nbdkit_debug("libvmio[%d]: %s", level, msg);
}

static int vmio_plugin_get_ready(void)
{
    if (vmio_debug_lib)
        vmio_set_log(forward_log, NULL, VMIO_LOG_DEBUG);
    return 0;
}

static void vmio_plugin_dump_plugin(void)
{
    printf("vmio_version=%s\n", vmio_version_string());
    for (int f = VMIO_FEATURE_FILE; f <= VMIO_FEATURE_HWLOC; f++)
        printf("vmio_feature_%s=%s\n", vmio_feature_name(f),
               vmio_supports(f) == 1 ? "yes" : "no");
}

/* Report the thread's last libvmio failure to nbdkit (and so to the NBD
 * client as an errno). Returns -1 for the callbacks' convenience. */
static int fail(int r)
{
    int err = r < 0 ? -r : EIO;
    nbdkit_error("%s", vmio_errmsg()[0] ? vmio_errmsg() : strerror(err));
    /* nbdkit falls back to pwrite for zero requests that fail this way. */
    if (err == ENOTSUP)
        err = EOPNOTSUPP;
    nbdkit_set_error(err);
    errno = err;
    return -1;
}

static void *vmio_plugin_open(int readonly)
{
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        nbdkit_error("calloc: %m");
        return NULL;
    }
    struct vmio_open_options opts;
    memset(&opts, 0, sizeof opts);
    opts.struct_size = sizeof opts;
    opts.secret_file = cfg_secret_file;
    unsigned flags = (readonly || cfg_readonly) ? VMIO_O_RDONLY : VMIO_O_RDWR;
    int r = vmio_open_ex(cfg_uri, flags, &opts, &h->file);
    if (r < 0) {
        fail(r);
        free(h);
        return NULL;
    }
    r = vmio_get_caps(h->file, &h->caps);
    if (r < 0) {
        fail(r);
        vmio_close(h->file);
        free(h);
        return NULL;
    }
    nbdkit_debug("vmio: opened %s with backend %s, caps 0x%x", cfg_uri,
                 vmio_backend_name(h->file), h->caps);
    return h;
}

static void vmio_plugin_close(void *handle)
{
    struct handle *h = handle;
    int r = vmio_close(h->file);
    if (r < 0)
        nbdkit_debug("vmio_close: %s", vmio_errmsg());
    free(h);
}

static int64_t vmio_plugin_get_size(void *handle)
{
    struct handle *h = handle;
    uint64_t size;
    int r = vmio_get_size(h->file, &size);
    if (r < 0)
        return fail(r);
    if (size > INT64_MAX) {
        nbdkit_error("image size %llu is too large for NBD", (unsigned long long)size);
        nbdkit_set_error(EFBIG);
        return -1;
    }
    return (int64_t)size;
}

static int has(void *handle, unsigned cap)
{
    return (((struct handle *)handle)->caps & cap) != 0;
}

static int vmio_plugin_can_write(void *handle) { return has(handle, VMIO_CAP_WRITE); }
static int vmio_plugin_can_flush(void *handle) { return has(handle, VMIO_CAP_FLUSH); }
static int vmio_plugin_can_trim(void *handle) { return has(handle, VMIO_CAP_DISCARD); }
static int vmio_plugin_can_zero(void *handle) { return has(handle, VMIO_CAP_WRITE_ZEROES); }
static int vmio_plugin_can_extents(void *handle) { return has(handle, VMIO_CAP_BLOCK_STATUS); }
static int vmio_plugin_can_multi_conn(void *handle) { return has(handle, VMIO_CAP_MULTI_CONN); }

static int vmio_plugin_can_fua(void *handle)
{
    if (has(handle, VMIO_CAP_FUA))
        return NBDKIT_FUA_NATIVE;
    /* Without native FUA, nbdkit follows the write with a flush. */
    return has(handle, VMIO_CAP_FLUSH) ? NBDKIT_FUA_EMULATE : NBDKIT_FUA_NONE;
}

static int vmio_plugin_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
                             uint32_t flags)
{
    struct handle *h = handle;
    int r = vmio_pread(h->file, buf, count, offset);
    return r < 0 ? fail(r) : 0;
}

static int vmio_plugin_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
                              uint32_t flags)
{
    struct handle *h = handle;
    unsigned rf = (flags & NBDKIT_FLAG_FUA) ? VMIO_REQ_FUA : 0;
    int r = vmio_pwrite(h->file, buf, count, offset, rf);
    return r < 0 ? fail(r) : 0;
}

static int vmio_plugin_flush(void *handle, uint32_t flags)
{
    struct handle *h = handle;
    int r = vmio_flush(h->file);
    return r < 0 ? fail(r) : 0;
}

static int vmio_plugin_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct handle *h = handle;
    int r = vmio_discard(h->file, offset, count);
    /* vmio_discard has no FUA flag: a flush gives the same guarantee. */
    if (r == 0 && (flags & NBDKIT_FLAG_FUA))
        r = vmio_flush(h->file);
    return r < 0 ? fail(r) : 0;
}

static int vmio_plugin_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct handle *h = handle;
    unsigned rf = 0;
    if (flags & NBDKIT_FLAG_MAY_TRIM)
        rf |= VMIO_REQ_MAY_TRIM;
    if (flags & NBDKIT_FLAG_FUA)
        rf |= VMIO_REQ_FUA;
    int r = vmio_write_zeroes(h->file, offset, count, rf);
    return r < 0 ? fail(r) : 0;
}

static int vmio_plugin_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                               struct nbdkit_extents *extents)
{
    struct handle *h = handle;
    uint64_t end = offset + count;
    while (offset < end) {
        uint64_t len;
        int type;
        int r = vmio_block_status(h->file, offset, end - offset, &len, &type);
        if (r < 0)
            return fail(r);
        uint32_t nt = type == VMIO_EXTENT_HOLE ? (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) : 0;
        if (nbdkit_add_extent(extents, offset, len, nt) < 0)
            return -1;
        offset += len;
        if (flags & NBDKIT_FLAG_REQ_ONE)
            break;
    }
    return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "vmio",
    .longname = "libvmio storage plugin",
    .version = VMIO_PLUGIN_VERSION,
    .description = "serves libvmio URIs (file://, vmio://) over NBD",
    .unload = vmio_plugin_unload,
    .config = vmio_plugin_config,
    .config_complete = vmio_plugin_config_complete,
    .config_help = vmio_plugin_config_help,
    .magic_config_key = "uri",
    .get_ready = vmio_plugin_get_ready,
    .dump_plugin = vmio_plugin_dump_plugin,
    .open = vmio_plugin_open,
    .close = vmio_plugin_close,
    .get_size = vmio_plugin_get_size,
    .can_write = vmio_plugin_can_write,
    .can_flush = vmio_plugin_can_flush,
    .can_trim = vmio_plugin_can_trim,
    .can_zero = vmio_plugin_can_zero,
    .can_fua = vmio_plugin_can_fua,
    .can_extents = vmio_plugin_can_extents,
    .can_multi_conn = vmio_plugin_can_multi_conn,
    .pread = vmio_plugin_pread,
    .pwrite = vmio_plugin_pwrite,
    .flush = vmio_plugin_flush,
    .trim = vmio_plugin_trim,
    .zero = vmio_plugin_zero,
    .extents = vmio_plugin_extents,
    .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN(plugin)
