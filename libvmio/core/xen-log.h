/* The libxentoollog logger every libvmio user of Xen's libraries passes
 * them: libxenctrl and libxenforeignmemory print their errors on stderr by
 * default, and the library never prints, so this one drops them (what
 * failed is in errno, which the caller turns into its message). Include
 * after Xen's headers. Built when Xen's libraries are. */
#ifndef VMIO_CORE_XEN_LOG_H
#define VMIO_CORE_XEN_LOG_H

struct xentoollog_logger *vmio_xen_quiet_logger(void);

#endif
