/* cpu_backend.h — the CPU backend: gg_backend (models/backend.h) on host
 * memory, OpenBLAS for f32 GEMM, runtime-dispatched SIMD (AVX-512, AVX2,
 * scalar) for quantized matmuls, a thread pool for everything heavy.
 *
 * Weights are used in place (zero-copy over the mmapped .gg). */
#ifndef GG_CPU_BACKEND_H
#define GG_CPU_BACKEND_H

#include "models/backend.h"

/* n_threads <= 0: one per online CPU. NULL with err set on failure. */
gg_backend *gg_backend_cpu_new(int n_threads, gg_err *err);

#endif
