#!/usr/bin/env python3
# Build step of the GPU offload: turns the fatbin nvcc made from
# gpu-kernels.cu into a C file that defines vmio_mig_gpu_image[] and
# vmio_mig_gpu_image_size (declared in gpu.h), so the kernels live inside
# the library. Usage: gpu-embed.py IN.fatbin OUT.c
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, 'rb') as f:
        data = f.read()
    if not data:
        sys.exit('gpu-embed.py: %s is empty' % src)
    out = ['/* Generated from gpu-kernels.cu by gpu-embed.py: do not edit. */',
           '#include "migrate/gpu.h"',
           '',
           '_Alignas(16) const unsigned char vmio_mig_gpu_image[] = {']
    for i in range(0, len(data), 24):
        out.append(''.join('%d,' % b for b in data[i:i + 24]))
    out.append('};')
    out.append('const uint64_t vmio_mig_gpu_image_size = %du;' % len(data))
    out.append('')
    with open(dst, 'w') as f:
        f.write('\n'.join(out))


if __name__ == '__main__':
    main()
