/* cuda_backend.h — the CUDA backend (built with `make CUDA=1` into
 * libggcuda.so, loaded by the tools at run time for --device cuda: see
 * tools/engine.h). gg_backend (models/backend.h) on device memory: weights
 * stay quantized on the GPU and are dequantized tile by tile into cuBLAS;
 * norms, RoPE, attention, losses and optimizers are CUDA kernels that
 * follow the scalar references in backend-cpu/ref.h. */
#ifndef GG_CUDA_BACKEND_H
#define GG_CUDA_BACKEND_H

#include "models/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices visible (0 when there is no driver or device). */
int gg_cuda_device_count(void);

/* Name and memory of device i into buf (one line); 0 on success, -1 if i is
 * not a device. */
int gg_cuda_device_describe(int i, char *buf, int len);

/* The backend on device `device`; NULL with err set when there is no such
 * device or it cannot be initialised. */
gg_backend *gg_backend_cuda_new(int device, gg_err *err);

#ifdef __cplusplus
}
#endif

#endif
