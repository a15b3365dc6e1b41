/* CPU and NUMA-node sets for VM groups: fixed-size bitmaps with the Linux
 * cpulist text form ("0-3,8,10-11"). Internal. */
#ifndef VMIO_GROUP_CPUSET_H
#define VMIO_GROUP_CPUSET_H

#include <stddef.h>
#include <stdint.h>

#define VMIO_CPUSET_MAX 1024
#define VMIO_CPUSET_WORDS (VMIO_CPUSET_MAX / 64)

struct vmio_cpuset {
    uint64_t w[VMIO_CPUSET_WORDS];
};

void vmio_cpuset_zero(struct vmio_cpuset *s);
void vmio_cpuset_set(struct vmio_cpuset *s, unsigned cpu);
void vmio_cpuset_clear(struct vmio_cpuset *s, unsigned cpu);
int vmio_cpuset_test(const struct vmio_cpuset *s, unsigned cpu);
unsigned vmio_cpuset_count(const struct vmio_cpuset *s);
int vmio_cpuset_empty(const struct vmio_cpuset *s);
int vmio_cpuset_equal(const struct vmio_cpuset *a, const struct vmio_cpuset *b);
/* First member >= from, or -1. */
int vmio_cpuset_next(const struct vmio_cpuset *s, unsigned from);
void vmio_cpuset_or(struct vmio_cpuset *d, const struct vmio_cpuset *a);
void vmio_cpuset_and(struct vmio_cpuset *d, const struct vmio_cpuset *a);
void vmio_cpuset_andnot(struct vmio_cpuset *d, const struct vmio_cpuset *a);
/* "0-3,8": -EINVAL on bad text or a CPU >= VMIO_CPUSET_MAX. "" is empty. */
int vmio_cpuset_parse(const char *text, struct vmio_cpuset *s);
/* Canonical cpulist into buf; "" for the empty set. Returns the length it
 * needed (like snprintf). */
int vmio_cpuset_format(const struct vmio_cpuset *s, char *buf, size_t len);
/* libvirt/Xen cpumaps: byte i bit j is CPU 8i+j. */
void vmio_cpuset_from_map(struct vmio_cpuset *s, const unsigned char *map, size_t maplen);
void vmio_cpuset_to_map(const struct vmio_cpuset *s, unsigned char *map, size_t maplen);

#endif
