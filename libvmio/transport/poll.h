/* Adaptive polling: how long a receiver spins on its socket before it
 * goes to sleep. A wake-up across CPUs costs an IPI and often a halt exit
 * of a virtual CPU, tens of microseconds; a reader that polls for a short
 * while after it sent a reply finds the next request of a one-at-a-time
 * client already there. The window adapts like QEMU's event-loop polling
 * (poll-max-ns): it grows while waits end soon after it expired and
 * shrinks when they are long, so an idle or slow peer costs nothing. */
#ifndef VMIO_TRANSPORT_POLL_H
#define VMIO_TRANSPORT_POLL_H

#include <stdint.h>

/* The first window after a short wait; then it doubles. */
#define VMIO_POLL_START_NS 4000u

struct vmio_poll {
    uint64_t max_ns;    /* 0: polling off */
    uint64_t ns;        /* current window, 0..max_ns */
    uint64_t hits;      /* data arrived while polling */
    uint64_t sleeps;    /* the window ran out (or was 0): slept */
};

static inline void vmio_poll_init(struct vmio_poll *p, uint64_t max_ns)
{
    p->max_ns = max_ns;
    p->ns = 0;
    p->hits = p->sleeps = 0;
}

/* After a wait: hit when data came within the window; otherwise waited_ns
 * is the whole wait, polling included. */
void vmio_poll_update(struct vmio_poll *p, int hit, uint64_t waited_ns);

#endif
