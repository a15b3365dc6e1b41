/* Opening a lender target backend by name (target.h): parses the portal
 * and hands over to target-tgt.c or target-lio.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "memlend/target.h"

int vmio_ml_target_open(const char *api, const char *backend,
                        const struct vmio_ml_target_cfg *cfg, struct vmio_ml_target **out)
{
    const char *portal = cfg->portal;
    const char *colon = portal ? strrchr(portal, ':') : NULL;
    if (!colon || colon == portal || (size_t)(colon - portal) >= 128)
        return vmio_set_error(api, EINVAL, "portal '%s': expected ADDRESS:PORT",
                              portal ? portal : "(null)");
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port == 0 || port > 65535)
        return vmio_set_error(api, EINVAL, "portal '%s': bad port", portal);
    const char *addr = portal;
    size_t alen = (size_t)(colon - portal);
    if (addr[0] == '[' && alen > 2 && addr[alen - 1] == ']') { /* [v6]:port */
        addr++;
        alen -= 2;
    }
    struct vmio_ml_target *t = NULL;
    int r;
    if (!backend || strcmp(backend, "tgt") == 0)
        r = vmio_ml_target_tgt_new(api, &t);
    else if (strcmp(backend, "lio") == 0)
        r = vmio_ml_target_lio_new(api, cfg->configfs, &t);
    else
        return vmio_set_error(api, EINVAL, "unknown target backend '%s' (tgt or lio)", backend);
    if (r < 0)
        return r;
    memcpy(t->portal_addr, addr, alen);
    t->portal_addr[alen] = '\0';
    t->portal_port = (uint32_t)port;
    t->tgt_control_port = cfg->tgt_control_port;
    t->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
    snprintf(t->configfs, sizeof t->configfs, "%s",
             cfg->configfs ? cfg->configfs : "/sys/kernel/config");
    *out = t;
    return 0;
}

void vmio_ml_target_close(struct vmio_ml_target *t)
{
    if (t)
        t->ops->close(t);
}
