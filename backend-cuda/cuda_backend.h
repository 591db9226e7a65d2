/* cuda_backend.h — the CUDA backend (built with `make CUDA=1`).
 *
 * Today it only reports the devices it can see; the gg_backend ops table
 * (matmul over every quant type, norms, RoPE, attention, losses, AdamW)
 * arrives with the CUDA issue, behind the same interface as backend-cpu/. */
#ifndef GG_CUDA_BACKEND_H
#define GG_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices visible (0 when there is no driver or device). */
int gg_cuda_device_count(void);

/* Name and memory of device i into buf (one line); 0 on success, -1 if i is
 * not a device. */
int gg_cuda_device_describe(int i, char *buf, int len);

#ifdef __cplusplus
}
#endif

#endif
