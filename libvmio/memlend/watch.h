/* The lender's memory watcher: samples /proc/meminfo (MemTotal,
 * MemAvailable), /proc/pressure/memory (some/full avg10 and total) and,
 * where configured, the libvirt guests' virDomainMemoryStats (a guest
 * that swaps in counts as pressure on this host). The parsers are strict
 * and separate so that they can be tested on fixture files; the paths can
 * be overridden for the same reason. */
#ifndef VMIO_MEMLEND_WATCH_H
#define VMIO_MEMLEND_WATCH_H

#include <stdint.h>

#include "memlend/surplus.h"

/* /proc/meminfo text -> bytes. -EINVAL (message under api) when a field is
 * missing, repeated, malformed or not in kB, or MemAvailable > MemTotal. */
int vmio_ml_parse_meminfo(const char *api, const char *text, uint64_t *total,
                          uint64_t *available);
/* /proc/pressure/memory text -> s->psi_* (avg10 in hundredths of a
 * percent). Requires the "some" line; "full" is optional (older kernels).
 * -EINVAL on malformed input. */
int vmio_ml_parse_psi(const char *api, const char *text, struct vmio_ml_mem_sample *s);

struct vmio_ml_watch;

struct vmio_ml_watch_cfg {
    const char *meminfo_path;   /* NULL: /proc/meminfo */
    const char *psi_path;       /* NULL: /proc/pressure/memory; "" = none */
    const char *libvirt_uri;    /* NULL: no guests sampled */
};

int vmio_ml_watch_new(const char *api, const struct vmio_ml_watch_cfg *cfg,
                      struct vmio_ml_watch **out);
/* Fill s (t_ns from the monotonic clock). psi_valid is 0 when the kernel
 * has no PSI (file missing or EOPNOTSUPP). */
int vmio_ml_watch_sample(const char *api, struct vmio_ml_watch *w, struct vmio_ml_mem_sample *s);
void vmio_ml_watch_free(struct vmio_ml_watch *w);

/* libvirt guests (watch-libvirt.c, or watch-libvirt-none.c without
 * libvirt: -ENOTSUP). */
struct vmio_ml_guests;
int vmio_ml_guests_open(const char *api, const char *uri, struct vmio_ml_guests **out);
/* *n = running guests whose stats could be read; *swapping = of those,
 * how many swapped in since the previous call. */
int vmio_ml_guests_sample(const char *api, struct vmio_ml_guests *g, uint32_t *n,
                          uint32_t *swapping);
void vmio_ml_guests_close(struct vmio_ml_guests *g);

#endif
