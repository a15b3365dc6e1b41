/* The migration GPU offload where no GPU is needed: the kernel image
 * embedded at build time (a fatbin with one cubin per architecture of the
 * build and PTX, each holding the three kernels), and every way opening
 * the CUDA driver fails before a device is touched: no libcuda.so.1, a
 * library that is not a CUDA driver, a file that is not a library, and
 * the CUDA toolkit's link stub (which answers every call with an error).
 * Also the host half of the packed copy-out (gpu-pack.c) against packing
 * done here from CPU-path results. Runs on every machine; with a real
 * driver present the "absent driver" case checks that opening either
 * works or names what is missing.
 *
 * Built with -DGPU_SM="75,80,..." -DGPU_PTX=75 (the build's architecture
 * lists) and -DCUDA_STUB="path" when the toolkit's stub exists. */
#include <dlfcn.h>
#include <link.h>

#include "test-common.h"

#include "config.h"
#include "migrate/codec.h"
#include "migrate/gpu.h"

#define API "test"

#if VMIO_BUILT_CUDA

static const char *const kernels[] = { VMIO_MIG_GPU_K_ANALYZE, VMIO_MIG_GPU_K_SCAN,
                                       VMIO_MIG_GPU_K_PACK };

static uint64_t rd(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Bytes s (with its NUL) somewhere in [p, p + n). */
static int has_cstr(const uint8_t *p, size_t n, const char *s)
{
    return memmem(p, n, s, strlen(s) + 1) != NULL;
}

/* Fatbin layout (as nvcc writes it, little endian):
 *   header: u32 magic 0xba55ed50, u16 version 1, u16 header size,
 *           u64 size of the entries that follow
 *   entry:  u16 kind (1 PTX, 2 cubin), u16 flags, u32 entry header size,
 *           u64 payload size, ..., u32 architecture at offset 28 */
START_TEST(test_image_entries)
{
    const uint8_t *img = vmio_mig_gpu_image;
    uint64_t size = vmio_mig_gpu_image_size;
    ck_assert_msg(size >= 16, "image of %llu bytes", (unsigned long long)size);
    ck_assert_msg(((uintptr_t)img & 15) == 0, "image not 16-byte aligned");
    ck_assert_uint_eq(rd(img, 4), 0xba55ed50u);
    ck_assert_uint_eq(rd(img + 4, 2), 1);
    uint64_t hs = rd(img + 6, 2);
    ck_assert_uint_eq(hs, 16);
    ck_assert_uint_eq(hs + rd(img + 8, 8), size);

    /* Expected architectures. */
    unsigned want_sm[32], nsm = 0;
    char list[] = GPU_SM;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        want_sm[nsm++] = (unsigned)strtoul(tok, NULL, 10);
    ck_assert_uint_ge(nsm, 1);
    unsigned seen_sm[32] = { 0 }, ptx = 0;

    uint64_t off = hs;
    while (off < size) {
        ck_assert_msg(size - off >= 32, "truncated entry header at %llu",
                      (unsigned long long)off);
        unsigned kind = (unsigned)rd(img + off, 2);
        uint64_t ehs = rd(img + off + 4, 4), psz = rd(img + off + 8, 8);
        unsigned arch = (unsigned)rd(img + off + 28, 4);
        ck_assert_msg(ehs >= 32 && ehs <= size - off && psz <= size - off - ehs,
                      "entry at %llu out of bounds", (unsigned long long)off);
        const uint8_t *pl = img + off + ehs;
        if (kind == 2) {
            /* A cubin: a 64-bit ELF for EM_CUDA (190) that defines the
             * kernels. */
            ck_assert_msg(psz > 64 && memcmp(pl, "\177ELF", 4) == 0 && pl[4] == 2,
                          "sm_%u entry is not an ELF64 (compressed?)", arch);
            ck_assert_uint_eq(rd(pl + 18, 2), 190);
            for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++)
                ck_assert_msg(has_cstr(pl, psz, kernels[k]), "sm_%u cubin lacks %s", arch,
                              kernels[k]);
            int found = 0;
            for (unsigned i = 0; i < nsm; i++) {
                if (want_sm[i] == arch) {
                    found = 1;
                    ck_assert_msg(!seen_sm[i], "sm_%u twice", arch);
                    seen_sm[i] = 1;
                }
            }
            ck_assert_msg(found, "unexpected cubin for sm_%u", arch);
        } else {
            ck_assert_msg(kind == 1, "entry kind %u", kind);
            ck_assert_uint_eq(arch, GPU_PTX);
            ck_assert_uint_eq(ptx, 0);
            ptx = 1;
            char target[32];
            snprintf(target, sizeof target, ".target sm_%u", arch);
            ck_assert_msg(memmem(pl, psz, target, strlen(target)) != NULL, "no %s", target);
            for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
                char entry[64];
                snprintf(entry, sizeof entry, ".entry %s(", kernels[k]);
                ck_assert_msg(memmem(pl, psz, entry, strlen(entry)) != NULL, "PTX lacks %s",
                              entry);
            }
        }
        off += ehs + psz;
    }
    ck_assert_uint_eq(off, size);
    ck_assert_msg(ptx, "no PTX for compute_%u", (unsigned)GPU_PTX);
    for (unsigned i = 0; i < nsm; i++)
        ck_assert_msg(seen_sm[i], "no cubin for sm_%u", want_sm[i]);
}
END_TEST

/* Whether this machine has a driver, asked directly. */
static int driver_present(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    return h != NULL;   /* never closed, like the library does */
}

START_TEST(test_open_default)
{
    struct vmio_mig_gpu *g = (struct vmio_mig_gpu *)(uintptr_t)1;
    int r = vmio_mig_gpu_open(API, &g);
    if (!driver_present()) {
        ck_assert_vmio_err_msg(r, ENODEV, API, "no CUDA driver (libcuda.so.1 not found)");
        ck_assert_ptr_eq(g, (struct vmio_mig_gpu *)(uintptr_t)1);
    } else if (r == 0) {
        ck_assert_str_ne(vmio_mig_gpu_name(g), "");
        vmio_mig_gpu_close(g);
    } else {
        /* A driver without a device, or one that cannot run these kernels:
         * the message names the cause. */
        ck_assert_vmio_err(r, ENODEV, API);
        ck_assert_msg(strstr(vmio_errmsg(), "CUDA") != NULL, "%s", vmio_errmsg());
    }
}
END_TEST

START_TEST(test_open_missing_path)
{
    struct vmio_mig_gpu *g = NULL;
    ck_assert_vmio_err_msg(vmio_mig_gpu_open_lib(API, "/nonexistent/libcuda.so.1", &g),
                           ENODEV, API, "no CUDA driver (/nonexistent/libcuda.so.1 not found)");
    ck_assert_ptr_null(g);
}
END_TEST

/* A real library without the driver API. */
START_TEST(test_open_not_a_driver)
{
    struct vmio_mig_gpu *g = NULL;
    ck_assert_vmio_err_msg(vmio_mig_gpu_open_lib(API, "libc.so.6", &g), ENODEV, API,
                           "libc.so.6 lacks cuInit");
    ck_assert_ptr_null(g);
}
END_TEST

START_TEST(test_open_not_a_library)
{
    char dir[256], path[300];
    test_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/libcuda.so.1", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    struct vmio_mig_gpu *g = NULL;
    int r = vmio_mig_gpu_open_lib(API, path, &g);
    ck_assert_vmio_err_msg(r, ENODEV, API, "cannot be loaded");
    ck_assert_msg(strstr(vmio_errmsg(), path) != NULL, "%s", vmio_errmsg());
    ck_assert_ptr_null(g);
    test_rmtree(dir);
}
END_TEST

#ifdef CUDA_STUB
/* The toolkit's stub exports the whole driver API and fails every call
 * with CUDA_ERROR_STUB_LIBRARY, cuGetErrorName included. */
START_TEST(test_open_stub)
{
    struct vmio_mig_gpu *g = NULL;
    int r = vmio_mig_gpu_open_lib(API, CUDA_STUB, &g);
    ck_assert_vmio_err_msg(r, ENODEV, API, "cuInit: CUDA_ERROR_STUB_LIBRARY (the CUDA "
                                           "toolkit's link stub, not a driver) (34)");
    ck_assert_ptr_null(g);
}
END_TEST
#endif

#else /* !VMIO_BUILT_CUDA */

START_TEST(test_not_built)
{
    ck_assert_uint_eq(vmio_mig_gpu_image_size, 0);
    struct vmio_mig_gpu *g = NULL;
    ck_assert_vmio_err_msg(vmio_mig_gpu_open(API, &g), ENOTSUP, API,
                           "built without CUDA kernels");
    ck_assert_ptr_null(g);
}
END_TEST

#endif

/* ---- packed copy-out (host side, in every build) ---------------------- */

static uint64_t rng = 1;

static uint32_t rnd32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

/* A batch analyzed by the CPU path; its encodings packed back to back the
 * way the device does (in page order, DELTA/RLE only) into another enc
 * buffer that holds garbage elsewhere, then unpacked: every encoding must
 * be back at i * page_size, byte for byte. */
START_TEST(test_unpack)
{
    static const uint32_t sizes[] = { 4096, 65536 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t ps = sizes[s], n = ps == 4096 ? 300 : 24;
        size_t bytes = (size_t)n * ps;
        uint8_t *pages = calloc(1, bytes), *refs = malloc(bytes), *has = calloc(1, n);
        uint8_t *enc = malloc(bytes), *enc2 = malloc(bytes);
        struct vmio_mig_page_out *out = calloc(n, sizeof *out);
        ck_assert(pages && refs && has && enc && enc2 && out);
        for (int round = 0; round < 20; round++) {
            memset(pages, 0, bytes);
            for (uint32_t i = 0; i < n; i++) {
                uint8_t *p = pages + (size_t)i * ps, *r = refs + (size_t)i * ps;
                has[i] = 0;
                switch (rnd32() % 5) {
                case 0:     /* zero */
                    break;
                case 1:     /* random: RAW */
                    for (uint32_t k = 0; k < ps; k++)
                        p[k] = (uint8_t)rnd32();
                    break;
                case 2:     /* sparse: RLE from tiny to near the limit */
                {
                    uint32_t m = 3 + rnd32() % 200;
                    for (uint32_t k = rnd32() % m; k < ps; k += m)
                        p[k] = (uint8_t)(1 + rnd32() % 255);
                    break;
                }
                default:    /* reference with changes: DELTA */
                    test_fill(r, ps, i, (uint32_t)round);
                    memcpy(p, r, ps);
                    for (uint32_t k = rnd32() % (ps / 4); k > 0; k--)
                        p[rnd32() % ps] ^= 0x3c;
                    has[i] = 1;
                    break;
                }
            }
            struct vmio_mig_batch b = { .page_size = ps, .n = n,
                                        .flags = VMIO_MIG_A_RLE | VMIO_MIG_A_DELTA,
                                        .pages = pages, .refs = refs, .has_ref = has,
                                        .out = out, .enc = enc };
            vmio_mig_analyze_cpu(&b);
            memset(enc2, 0xee, bytes);
            uint64_t total = 0;
            unsigned packed_pages = 0;
            for (uint32_t i = 0; i < n; i++) {
                if (out[i].kind != VMIO_MIG_KIND_RLE && out[i].kind != VMIO_MIG_KIND_DELTA)
                    continue;
                memcpy(enc2 + total, enc + (size_t)i * ps, out[i].len);
                total += out[i].len;
                packed_pages++;
            }
            struct vmio_mig_batch b2 = b;
            b2.enc = enc2;
            uint64_t got = 0;
            ck_assert_int_eq(vmio_mig_gpu_packed_size(API, &b2, &got), 0);
            ck_assert_uint_eq(got, total);
            vmio_mig_gpu_unpack(&b2, got);
            for (uint32_t i = 0; i < n; i++) {
                if (out[i].kind != VMIO_MIG_KIND_RLE && out[i].kind != VMIO_MIG_KIND_DELTA)
                    continue;
                ck_assert_msg(memcmp(enc2 + (size_t)i * ps, enc + (size_t)i * ps,
                                     out[i].len) == 0,
                              "page %u (kind %u, %u bytes) misplaced", i, out[i].kind,
                              out[i].len);
            }
            ck_assert_uint_gt(packed_pages, 0);
        }
        /* Results that cannot come from the kernels are refused before they
         * size a copy. */
        struct vmio_mig_batch bad = { .page_size = ps, .n = n, .out = out, .enc = enc };
        uint64_t t;
        struct vmio_mig_page_out keep = out[1];
        out[1].kind = 9;
        ck_assert_vmio_err_msg(vmio_mig_gpu_packed_size(API, &bad, &t), EIO, API, "page 1");
        out[1].kind = VMIO_MIG_KIND_RLE;
        out[1].len = vmio_mig_enc_limit(ps) + 1;
        ck_assert_vmio_err_msg(vmio_mig_gpu_packed_size(API, &bad, &t), EIO, API, "page 1");
        out[1].kind = VMIO_MIG_KIND_RAW;
        out[1].len = ps - 1;
        ck_assert_vmio_err_msg(vmio_mig_gpu_packed_size(API, &bad, &t), EIO, API, "page 1");
        out[1] = keep;
        free(pages);
        free(refs);
        free(has);
        free(enc);
        free(enc2);
        free(out);
    }
}
END_TEST

START_TEST(test_open_args)
{
    ck_assert_vmio_err(vmio_mig_gpu_open(API, NULL), VMIO_BUILT_CUDA ? EFAULT : ENOTSUP, API);
    vmio_mig_gpu_close(NULL);
}
END_TEST

static int find_libcuda(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "libcuda"))
        *(int *)data = 1;
    return 0;
}

/* The library never links the driver: nothing named libcuda is loaded
 * before the first open. */
START_TEST(test_no_link_dependency)
{
    int found = 0;
    dl_iterate_phdr(find_libcuda, &found);
    ck_assert_msg(!found, "libcuda is loaded at start: the library links it");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("migrate-gpu-image");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, test_no_link_dependency);
    tcase_add_test(tc, test_open_args);
    tcase_add_test(tc, test_unpack);
#if VMIO_BUILT_CUDA
    tcase_add_test(tc, test_image_entries);
    tcase_add_test(tc, test_open_default);
    tcase_add_test(tc, test_open_missing_path);
    tcase_add_test(tc, test_open_not_a_driver);
    tcase_add_test(tc, test_open_not_a_library);
#ifdef CUDA_STUB
    /* Last: the stub's soname is libcuda.so.1, so once it is loaded (with
     * CK_FORK=no, in this process) a dlopen of that name finds it. */
    tcase_add_test(tc, test_open_stub);
#endif
#else
    tcase_add_test(tc, test_not_built);
#endif
    suite_add_tcase(s, tc);
    return test_run(s);
}
