/* Version query and runtime feature discovery. */
#include "core/internal.h"
#include "config.h"

VMIO_API uint32_t vmio_version_number(void)
{
    return VMIO_VERSION_NUMBER;
}

VMIO_API const char *vmio_version_string(void)
{
    return VMIO_PACKAGE_VERSION;
}

static const struct {
    int feature;
    const char *name;
    int built;
} features[] = {
    { VMIO_FEATURE_FILE, "file", 1 },
    { VMIO_FEATURE_REMOTE, "remote", 1 },
    { VMIO_FEATURE_SERVER, "server", 1 },
    { VMIO_FEATURE_RDMA, "rdma", VMIO_BUILT_RDMA },
    { VMIO_FEATURE_GFARM, "gfarm", VMIO_BUILT_GFARM },
    { VMIO_FEATURE_LIBVIRT, "libvirt", VMIO_BUILT_LIBVIRT },
    { VMIO_FEATURE_XEN, "xen", VMIO_BUILT_XEN },
    { VMIO_FEATURE_CUDA, "cuda", VMIO_BUILT_CUDA },
    { VMIO_FEATURE_HWLOC, "hwloc", VMIO_BUILT_HWLOC },
    { VMIO_FEATURE_MEMLEND_MANAGER, "memlend-manager", VMIO_BUILT_SQLITE },
    { VMIO_FEATURE_MEMLEND_BORROWER, "memlend-borrower", VMIO_BUILT_JSONC },
};

VMIO_API int vmio_supports(int feature)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(features); i++)
        if (features[i].feature == feature)
            return features[i].built;
    return vmio_set_error("vmio_supports", EINVAL, "unknown feature %d", feature);
}

VMIO_API const char *vmio_feature_name(int feature)
{
    for (size_t i = 0; i < VMIO_ARRAY_SIZE(features); i++)
        if (features[i].feature == feature)
            return features[i].name;
    return NULL;
}
