/* libvmio server API: the I/O server behind vmio:// URIs, embeddable in any
 * process (cli/vmiod is a thin wrapper around it).
 *
 * All functions follow the error convention of <vmio/core.h>.
 */
#ifndef VMIO_SERVER_H
#define VMIO_SERVER_H

#include <stdint.h>
#include <stddef.h>

#include <vmio/core.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmio_server vmio_server;

/* Export flags. */
#define VMIO_EXPORT_RDONLY 0x1u
/* Never hand this export's open files to clients on the same host (the
 * local data path, URI option local=; docs/protocol.md section 13). */
#define VMIO_EXPORT_NOLOCAL 0x2u

VMIO_API int vmio_server_new(vmio_server **server);
/* Frees everything; stops the server first if it runs. server may be NULL. */
VMIO_API void vmio_server_free(vmio_server *server);

/* Shared secret used to authenticate clients (challenge-response HMAC). */
VMIO_API int vmio_server_set_secret(vmio_server *server, const void *secret,
                                    size_t len);
VMIO_API int vmio_server_set_secret_file(vmio_server *server, const char *path);
/* Request threads per connection (0 = default, 8): each reads a request,
 * serves it and sends the reply itself. */
VMIO_API int vmio_server_set_workers(vmio_server *server, unsigned workers);
/* Polling: a connection with nothing to read and no request in progress
 * spins on its socket for an adaptive window of up to max_us microseconds
 * before it sleeps, yielding
 * the CPU to anything runnable meanwhile. The window grows while requests
 * come soon after one was answered (a client with one request at a time,
 * which then needs no wake-up across CPUs) and shrinks to nothing when
 * they do not, so idle connections cost no CPU. 0 turns polling off; the
 * default is 200; at most 10000. Applies to connections accepted from
 * then on, over TCP (RDMA does not poll). Since 0.6. */
VMIO_API int vmio_server_set_poll(vmio_server *server, unsigned max_us);
/* Large WRITEs to a local file over TCP: splice the data from the socket
 * through a pipe into the file (one copy per byte, made under the file's
 * inode lock) or receive it into a buffer and write that (two copies, one
 * of them outside the lock). Splicing is faster where the server runs on
 * one CPU, slower where parallel writers share a file on several.
 * AUTO (the default) splices on connections accepted while the server may
 * run on one CPU only (its CPU affinity). Applies to connections accepted
 * from then on. Since 0.6. */
enum vmio_server_splice {
    VMIO_SERVER_SPLICE_AUTO = 0,
    VMIO_SERVER_SPLICE_ON = 1,
    VMIO_SERVER_SPLICE_OFF = 2,
};
VMIO_API int vmio_server_set_splice(vmio_server *server, int mode);

/* Export directory dir under name. Clients open "name/relative/path";
 * nothing outside dir can be reached (no "..", no symlink escape). */
VMIO_API int vmio_server_add_export(vmio_server *server, const char *name,
                                    const char *dir, unsigned flags);

/* Bind and listen on host:port (host may be NULL for all addresses, port 0
 * for an ephemeral port). May be called more than once. */
VMIO_API int vmio_server_listen(vmio_server *server, const char *host,
                                uint16_t port);
/* Also accept RDMA connections (librdmacm; InfiniBand, RoCE, soft-RoCE)
 * on host:port, where host is an address of an RDMA device (NULL = every
 * device). Data then moves by one-sided RDMA into and out of the clients'
 * registered buffers. -ENOTSUP when the library has no RDMA transport,
 * -ENODEV when no RDMA device serves the address. Since 0.2. */
VMIO_API int vmio_server_listen_rdma(vmio_server *server, const char *host, uint16_t port);
/* The port bound by the last vmio_server_listen() (useful with port 0). */
VMIO_API int vmio_server_port(vmio_server *server);

/* Serve in background threads; returns at once. */
VMIO_API int vmio_server_start(vmio_server *server);
/* Stop accepting, close connections after in-flight requests are answered,
 * join all threads. Call it from a thread, not from a signal handler. */
VMIO_API int vmio_server_stop(vmio_server *server);

#ifdef __cplusplus
}
#endif

#endif /* VMIO_SERVER_H */
