/* Fuzz target for the libvirt capabilities XML reader of VM groups
 * (libvmio/group/topology-caps.c): the text comes from a libvirt daemon,
 * possibly remote. A failure is -EINVAL/-ENOMEM with the caller's prefix
 * and a zeroed topology; a success is a topology placement can trust:
 * CPUs sorted and unique below VMIO_CPUSET_MAX, nodes below nnodes,
 * sockets below nsockets and dense, cores never shared across sockets. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/topology.h"
#include "fuzz-check.h"

#define API "fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct vmio_topo t;
    memset(&t, 0xa5, sizeof t);
    int r = vmio_topo_from_caps_xml(API, s, &t);
    free(s);
    if (r < 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        CHECK(vmio_errno() == -r);
        CHECK(strncmp(vmio_errmsg(), API ": ", strlen(API ": ")) == 0);
        CHECK(t.cpus == NULL && t.ncpus == 0 && t.node_mem == NULL);
        return 0;
    }
    CHECK(r == 0);
    CHECK(t.ncpus > 0 && t.ncpus <= VMIO_CPUSET_MAX && t.cpus);
    CHECK(t.nnodes > 0 && t.nnodes <= VMIO_CPUSET_MAX && t.node_mem);
    CHECK(t.nsockets > 0);
    unsigned char *sock_seen = calloc((size_t)t.nsockets, 1);
    CHECK(sock_seen);
    for (size_t i = 0; i < t.ncpus; i++) {
        const struct vmio_topo_cpu *c = &t.cpus[i];
        CHECK(c->id >= 0 && c->id < VMIO_CPUSET_MAX);
        CHECK(i == 0 || t.cpus[i - 1].id < c->id);
        CHECK(c->node >= 0 && c->node < t.nnodes);
        CHECK(c->socket >= 0 && c->socket < t.nsockets);
        CHECK(c->core >= 0 && (size_t)c->core < t.ncpus);
        sock_seen[c->socket] = 1;
        for (size_t j = 0; j < i; j++)
            if (t.cpus[j].core == c->core)
                CHECK(t.cpus[j].socket == c->socket);
    }
    for (int k = 0; k < t.nsockets; k++)
        CHECK(sock_seen[k]);
    free(sock_seen);
    vmio_topo_free(&t);
    return 0;
}
