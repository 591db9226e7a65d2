// cuda_backend.cu — device discovery for the CUDA backend (see cuda_backend.h).
#include "backend-cuda/cuda_backend.h"

#include <cstdio>
#include <cuda_runtime.h>

extern "C" int gg_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" int gg_cuda_device_describe(int i, char *buf, int len) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return -1;
    snprintf(buf, (size_t)len, "cuda:%d %s, compute %d.%d, %.1f GiB", i, p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}
