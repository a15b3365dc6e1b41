/* vmio-bench pingpong: latency and throughput of the transport seam
 * (TCP, RDMA) over message sizes, in the manner of IMB PingPong. */
#ifndef VMIO_BENCH_PINGPONG_H
#define VMIO_BENCH_PINGPONG_H

#include <stdio.h>

/* argv[0] is "pingpong". Returns the exit status: 0, 1 (the benchmark
 * failed) or 2 (usage error). */
int pingpong_main(int argc, char **argv);

/* One line for the mode list of 'vmio-bench --help'. */
void pingpong_usage_summary(FILE *fp);

#endif
