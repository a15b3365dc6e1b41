/* Routes table of the gfarm:// backend: which vmiod serves the replicas
 * kept by which gfsd host. One line per vmiod export:
 *
 *     # gfsd host     vmiod export URI                    Gfarm directory
 *     io1.example     vmio://io1.example:10810/images     /images
 *
 * A file /images/a/b.img whose replica lives on io1.example is then opened
 * as vmio://io1.example:10810/images/a/b.img. Blank lines and lines
 * starting with '#' are ignored. */
#ifndef VMIO_STORAGE_GFARM_ROUTE_H
#define VMIO_STORAGE_GFARM_ROUTE_H

#include <stddef.h>

struct gfroute_table;

/* Parse a routes file; errors name the file and line. */
int gfroute_load(const char *path, struct gfroute_table **out);
int gfroute_parse(const char *text, size_t len, const char *name, struct gfroute_table **out);
void gfroute_free(struct gfroute_table *t);

/* Pick a vmiod for gfarm path among the replica hosts (the local host
 * first, then in gfmd's order). Returns 0 with malloc'd *uri and *host,
 * 1 when no route matches, or -errno. */
int gfroute_pick(const struct gfroute_table *t, const char *path, const char *const *hosts,
                 int nhosts, char **uri, char **host);

#endif
