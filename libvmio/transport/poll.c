/* Adaptive polling window (see poll.h). */
#include "transport/poll.h"

void vmio_poll_update(struct vmio_poll *p, int hit, uint64_t waited_ns)
{
    if (p->max_ns == 0)
        return;
    if (hit) {
        p->hits++;
        return;
    }
    p->sleeps++;
    if (waited_ns <= p->max_ns) {
        /* A longer window would have caught it. */
        uint64_t n = p->ns ? p->ns * 2 : VMIO_POLL_START_NS;
        p->ns = n < p->max_ns ? n : p->max_ns;
    } else if (p->ns) {
        /* The peer was away for longer than polling may last. */
        p->ns /= 2;
        if (p->ns < VMIO_POLL_START_NS)
            p->ns = 0;
    }
}
