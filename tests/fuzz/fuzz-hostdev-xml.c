/* Fuzz target for the libvirt XML code of InfiniBand passthrough
 * (libvmio/group/hostdev-xml.c): domain XML read back from libvirt (or
 * handed over by a user) is edited with libxml2, and node-device XML comes
 * from libvirt. The first input byte chooses the device's NUMA node and
 * local CPUs and the managed flag; the rest is the XML.
 *
 * Contract checked: a failure is -EINVAL/-ENOMEM with the API's prefix
 * and leaves the output alone; a successful attach yields XML that parses
 * again and holds the device exactly once, attaching it again adds
 * nothing, and detaching it leaves it absent (a second detach: -ENOENT).
 * The node-device parser returns 0, 1 or -EINVAL, and a PCI device gets a
 * well-formed address. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "group/hostdev.h"
#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_failure(int r, const char *api, char *out)
{
    CHECK(r == -EINVAL || r == -ENOMEM);
    CHECK(vmio_errno() == -r);
    CHECK(strncmp(vmio_errmsg(), api, strlen(api)) == 0);
    CHECK(out == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    char *xml = malloc(size);
    if (!xml)
        return 0;
    memcpy(xml, data + 1, size - 1);
    xml[size - 1] = '\0';

    struct vmio_hostdev dev;
    memset(&dev, 0, sizeof dev);
    snprintf(dev.pci, sizeof dev.pci, "0000:81:00.%u", mode & 7u);
    dev.numa_node = (mode & 8) ? (int)((mode >> 4) & 3) : -1;
    if (mode & 64)
        snprintf(dev.local_cpus, sizeof dev.local_cpus, "%s", (mode & 128) ? "4-7" : "0,2-3");
    unsigned flags = (mode & 128) ? VMIO_HOSTDEV_MANAGED : 0;
    struct vmio_pci_addr a;
    CHECK(vmio_hostdev_pci_parse(dev.pci, &a) == 0);

    char *out = NULL;
    int r = vmio_hostdev_xml_attach(xml, &dev, flags, &out);
    if (r < 0) {
        check_failure(r, "vmio_hostdev_xml_attach: ", out);
    } else {
        CHECK(r == 0 && out != NULL);
        CHECK(vmio_hostdev_xml_has("fuzz", out, &a) == 1);
        struct vmio_hostdev_edit e;
        char *again = NULL;
        CHECK(vmio_hostdev_xml_edit("fuzz", out, &dev, NULL, flags, 1, &again, &e) == 0);
        CHECK(!e.hostdev_changed && !e.cpuset_changed && !e.nodeset_changed);
        free(again);
        char *gone = NULL;
        CHECK(vmio_hostdev_xml_detach(out, dev.pci, &gone) == 0);
        CHECK(vmio_hostdev_xml_has("fuzz", gone, &a) == 0);
        char *twice = NULL;
        CHECK(vmio_hostdev_xml_detach(gone, dev.pci, &twice) == -ENOENT);
        CHECK(twice == NULL);
        free(gone);
        free(out);
    }
    /* Detaching straight from the input: absent or removed, never more. */
    out = NULL;
    r = vmio_hostdev_xml_detach(xml, dev.pci, &out);
    if (r == 0) {
        CHECK(vmio_hostdev_xml_has("fuzz", out, &a) >= 0);
        free(out);
    } else if (r != -ENOENT) {
        check_failure(r, "vmio_hostdev_xml_detach: ", out);
    }

    struct vmio_hostdev nd;
    unsigned cls;
    r = vmio_hostdev_parse_nodedev("fuzz", xml, &nd, &cls);
    CHECK(r == 0 || r == 1 || r == -EINVAL || r == -ENOMEM);
    if (r == 1) {
        CHECK(memchr(nd.pci, '\0', sizeof nd.pci) != NULL);
        CHECK(vmio_hostdev_pci_parse(nd.pci, &a) == 0);
        CHECK(nd.numa_node >= -1);
        CHECK(!nd.is_vf || vmio_hostdev_pci_parse(nd.pf, &a) == 0);
    }
    free(xml);
    return 0;
}
