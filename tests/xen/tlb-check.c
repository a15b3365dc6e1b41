/* Memory handed between threads while the address space changes: a
 * producer maps a buffer, fills it with a pattern and hands it to a
 * consumer thread (on another CPU), which verifies it and unmaps it; the
 * next mapping usually lands at the same address with new frames, so a
 * CPU that kept a stale TLB entry would read or write the old frames.
 * Also the same through malloc/free of large blocks (glibc's mmap
 * threshold). Prints mismatches; exit 1 on any. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 4
static size_t bufsz = 512 * 1024;
static long iters = 20000;
static int use_malloc;

struct chan {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t *slot[SLOTS];
    uint64_t seq[SLOTS];
    unsigned head, count;
    long bad, checked;
};

static uint64_t *get_buf(void)
{
    if (use_malloc)
        return malloc(bufsz);
    void *p = mmap(NULL, bufsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void put_buf(uint64_t *p)
{
    if (use_malloc)
        free(p);
    else
        munmap(p, bufsz);
}

static void *producer(void *arg)
{
    struct chan *c = arg;
    for (long i = 0; i < iters; i++) {
        uint64_t *b = get_buf();
        size_t n = bufsz / 8;
        for (size_t j = 0; j < n; j += 512)  /* one word per 4 KiB page */
            b[j] = ((uint64_t)i << 20) ^ j ^ 0xA5A5;
        pthread_mutex_lock(&c->mu);
        while (c->count == SLOTS)
            pthread_cond_wait(&c->cv, &c->mu);
        unsigned k = (c->head + c->count++) % SLOTS;
        c->slot[k] = b;
        c->seq[k] = (uint64_t)i;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct chan *c = arg;
    for (long i = 0; i < iters; i++) {
        pthread_mutex_lock(&c->mu);
        while (c->count == 0)
            pthread_cond_wait(&c->cv, &c->mu);
        uint64_t *b = c->slot[c->head];
        uint64_t s = c->seq[c->head];
        c->head = (c->head + 1) % SLOTS;
        c->count--;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        size_t n = bufsz / 8;
        long bad = 0;
        for (size_t j = 0; j < n; j += 512)
            if (b[j] != ((s << 20) ^ j ^ 0xA5A5))
                bad++;
        if (bad && c->bad < 5)
            fprintf(stderr, "buffer %ld: %ld of %zu pages wrong\n", (long)s, bad, n / 512);
        c->bad += bad;
        c->checked++;
        put_buf(b);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int pairs = argc > 1 ? atoi(argv[1]) : 2;
    if (argc > 2)
        iters = atol(argv[2]);
    if (argc > 3)
        use_malloc = !strcmp(argv[3], "malloc");
    struct chan *c = calloc((size_t)pairs, sizeof(*c));
    pthread_t t[64];
    for (int i = 0; i < pairs && i < 32; i++) {
        pthread_mutex_init(&c[i].mu, NULL);
        pthread_cond_init(&c[i].cv, NULL);
        pthread_create(&t[2 * i], NULL, producer, &c[i]);
        pthread_create(&t[2 * i + 1], NULL, consumer, &c[i]);
    }
    long bad = 0, checked = 0;
    for (int i = 0; i < pairs && i < 32; i++) {
        pthread_join(t[2 * i], NULL);
        pthread_join(t[2 * i + 1], NULL);
        bad += c[i].bad;
        checked += c[i].checked;
    }
    printf("tlb-check (%s): %d pairs, %ld buffers of %zu KiB: %ld wrong pages\n",
           use_malloc ? "malloc" : "mmap", pairs, checked, bufsz / 1024, bad);
    return bad ? 1 : 0;
}
