/* Vector register state across context switches: threads (more than CPUs)
 * load ymm0-ymm15 with a thread-specific pattern, make a system call that
 * may switch tasks (sched_yield), then check the registers; and memcpy of
 * random data checked with a scalar checksum. Prints mismatches; exit 1 on
 * any. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long iters = 200000;
/* 0: a system call (sched_yield) between load and check; else a busy
 * loop of this many iterations, which only involuntary preemption
 * (a timer interrupt) interrupts. */
static long spin_loops;
static long bad_regs, bad_copy;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((target("avx2"))) static int regs_once(uint64_t seed)
{
    uint64_t in[4] __attribute__((aligned(32))) = {seed, ~seed, seed * 3, seed ^ 0x5555};
    uint64_t out[16][4] __attribute__((aligned(32)));
    long nr = SYS_sched_yield;
    __asm__ volatile(
        "vmovdqa (%[in]), %%ymm0\n\t"
        "vmovdqa %%ymm0, %%ymm1\n\t vmovdqa %%ymm0, %%ymm2\n\t vmovdqa %%ymm0, %%ymm3\n\t"
        "vmovdqa %%ymm0, %%ymm4\n\t vmovdqa %%ymm0, %%ymm5\n\t vmovdqa %%ymm0, %%ymm6\n\t"
        "vmovdqa %%ymm0, %%ymm7\n\t vmovdqa %%ymm0, %%ymm8\n\t vmovdqa %%ymm0, %%ymm9\n\t"
        "vmovdqa %%ymm0, %%ymm10\n\t vmovdqa %%ymm0, %%ymm11\n\t vmovdqa %%ymm0, %%ymm12\n\t"
        "vmovdqa %%ymm0, %%ymm13\n\t vmovdqa %%ymm0, %%ymm14\n\t vmovdqa %%ymm0, %%ymm15\n\t"
        "test %[spin], %[spin]\n\t jz 2f\n\t"
        "mov %[spin], %%rax\n\t 1: dec %%rax\n\t jnz 1b\n\t jmp 3f\n\t"
        "2: mov %[nr], %%rax\n\t syscall\n\t 3:\n\t"
        "vmovdqa %%ymm0, 0(%[out])\n\t vmovdqa %%ymm1, 32(%[out])\n\t"
        "vmovdqa %%ymm2, 64(%[out])\n\t vmovdqa %%ymm3, 96(%[out])\n\t"
        "vmovdqa %%ymm4, 128(%[out])\n\t vmovdqa %%ymm5, 160(%[out])\n\t"
        "vmovdqa %%ymm6, 192(%[out])\n\t vmovdqa %%ymm7, 224(%[out])\n\t"
        "vmovdqa %%ymm8, 256(%[out])\n\t vmovdqa %%ymm9, 288(%[out])\n\t"
        "vmovdqa %%ymm10, 320(%[out])\n\t vmovdqa %%ymm11, 352(%[out])\n\t"
        "vmovdqa %%ymm12, 384(%[out])\n\t vmovdqa %%ymm13, 416(%[out])\n\t"
        "vmovdqa %%ymm14, 448(%[out])\n\t vmovdqa %%ymm15, 480(%[out])\n\t"
        :
        : [in] "r"(in), [out] "r"(out), [nr] "r"(nr), [spin] "r"(spin_loops)
        : "rax", "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    int bad = 0;
    for (int r = 0; r < 16; r++)
        if (memcmp(out[r], in, 32) != 0)
            bad++;
    return bad;
}

static uint64_t sum(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void *worker(void *arg)
{
    uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    size_t n = 256 * 1024;
    uint8_t *a = malloc(n), *b = malloc(n);
    long br = 0, bc = 0;
    for (long i = 0; i < iters; i++) {
        int k = regs_once(seed + (uint64_t)i);
        if (k) {
            br++;
            if (br < 5)
                fprintf(stderr, "thread %lu iter %ld: %d ymm registers changed\n",
                        (unsigned long)(uintptr_t)arg, i, k);
        }
        if (i % 256 == 0) {
            for (size_t j = 0; j < n; j += 8) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                memcpy(a + j, &seed, 8);
            }
            uint64_t want = sum(a, n);
            memcpy(b, a, n);
            if (sum(b, n) != want)
                bc++;
        }
    }
    pthread_mutex_lock(&mu);
    bad_regs += br;
    bad_copy += bc;
    pthread_mutex_unlock(&mu);
    free(a);
    free(b);
    return NULL;
}

int main(int argc, char **argv)
{
    if (!__builtin_cpu_supports("avx2")) {
        printf("simd-check: no AVX2 on this CPU\n");
        return 77;
    }
    int nt = argc > 1 ? atoi(argv[1]) : 4 * (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (argc > 2)
        iters = atol(argv[2]);
    if (argc > 3)
        spin_loops = atol(argv[3]);
    pthread_t t[256];
    if (nt > 256)
        nt = 256;
    for (int i = 0; i < nt; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < nt; i++)
        pthread_join(t[i], NULL);
    printf("simd-check: %d threads x %ld iterations (%s): %ld register-state errors, %ld memcpy "
           "errors\n", nt, iters, spin_loops ? "busy loops" : "sched_yield", bad_regs, bad_copy);
    return bad_regs || bad_copy ? 1 : 0;
}
