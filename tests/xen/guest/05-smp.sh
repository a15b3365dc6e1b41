#!/bin/sh
# What the migration engine's threads take for granted in a dom0 with
# several vCPUs under TCG, checked independently of libvmio (see the
# multi-thread problem in docs/migration.md):
#   - ymm0-ymm15 survive task switches, voluntary (sched_yield) and
#     involuntary (a timer interrupt during a busy loop), and glibc's memcpy
#     copies random data intact while threads outnumber vCPUs;
#   - buffers mapped, filled, handed to a thread on another vCPU and unmapped
#     (mmap, and malloc above glibc's mmap threshold) read back intact: no
#     stale TLB entry survives an address-space change.
. "${XEN_LIB:-/xen/guest/lib.sh}"
t smp/ymm-yield simd-check 8 2000
t smp/ymm-preempt simd-check 16 100 1000000
t smp/tlb-mmap tlb-check 2 400
t smp/tlb-malloc tlb-check 2 400 malloc
