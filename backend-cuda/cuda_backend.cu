// cuda_backend.cu — the CUDA backend's core (cuda_backend.h): device
// discovery, the context (device, stream, cuBLAS handle, sticky error,
// scratch), device memory, and the ops table assembled from cuda_matmul.cu,
// cuda_ops.cu, cuda_attn.cu and cuda_optim.cu.
//
// Built into libggcuda.so (make CUDA=1); the tools load it at run time for
// --device cuda (tools/engine.h), so they start on machines without CUDA.
#include "backend-cuda/cuda_backend.h"
#include "backend-cuda/cuda_internal.cuh"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

int cuda_set_err(gg_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

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

void cuda_note(gg_backend *be, cudaError_t e, const char *where) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (e == cudaSuccess || c->failed) return;
    c->failed = 1;
    snprintf(c->failure, sizeof c->failure, "cuda: %s: %s", where, cudaGetErrorString(e));
}

void cuda_note_blas(gg_backend *be, cublasStatus_t s, const char *where) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (s == CUBLAS_STATUS_SUCCESS || c->failed) return;
    c->failed = 1;
    snprintf(c->failure, sizeof c->failure, "cuda: %s: cuBLAS status %d", where, (int)s);
}

void *cuda_scratch(gg_backend *be, size_t bytes) {
    cuda_ctx *c = cuda_ctx_of(be);
    if (bytes <= c->scratch_cap) return c->scratch;
    if (c->scratch) cudaFreeAsync(c->scratch, c->stream);
    c->scratch = nullptr;
    c->scratch_cap = 0;
    size_t want = bytes + bytes / 4; // some headroom: tiles grow a little with the shapes
    cudaError_t e = cudaMallocAsync(&c->scratch, want, c->stream);
    if (e != cudaSuccess) {
        cuda_note(be, e, "scratch allocation");
        c->scratch = nullptr;
        return nullptr;
    }
    c->scratch_cap = want;
    return c->scratch;
}

// ---- memory ----

static void *cu_alloc(gg_backend *be, size_t bytes, gg_err *err) {
    void *p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 64, cuda_stream(be));
    if (e != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is reported here, not by sync
        cuda_set_err(err, "cuda: out of device memory allocating %zu bytes (%s)", bytes, cudaGetErrorString(e));
        return nullptr;
    }
    return p;
}

static void cu_free(gg_backend *be, void *p) {
    if (p) cuda_note(be, cudaFreeAsync(p, cuda_stream(be)), "free");
}

static void cu_upload(gg_backend *be, void *dst, const void *src, size_t n) {
    // synchronous with respect to the host buffer: src may be reused at once
    cuda_note(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, cuda_stream(be)), "upload");
    cuda_note(be, cudaStreamSynchronize(cuda_stream(be)), "upload");
}

static void cu_download(gg_backend *be, void *dst, const void *src, size_t n) {
    cuda_note(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, cuda_stream(be)), "download");
    cuda_note(be, cudaStreamSynchronize(cuda_stream(be)), "download");
}

static void cu_copy(gg_backend *be, void *dst, const void *src, size_t n) {
    cuda_note(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, cuda_stream(be)), "copy");
}

static void cu_memset0(gg_backend *be, void *dst, size_t n) {
    cuda_note(be, cudaMemsetAsync(dst, 0, n, cuda_stream(be)), "memset");
}

static int cu_sync(gg_backend *be, gg_err *err) {
    cuda_ctx *c = cuda_ctx_of(be);
    cuda_note(be, cudaStreamSynchronize(c->stream), "sync");
    if (c->failed) return cuda_set_err(err, "%s", c->failure);
    return 0;
}

static void cu_destroy(gg_backend *be) {
    if (!be) return;
    cuda_ctx *c = cuda_ctx_of(be);
    if (c) {
        if (c->stream) cudaStreamSynchronize(c->stream);
        if (c->scratch) cudaFree(c->scratch);
        if (c->blas) cublasDestroy(c->blas);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

extern "C" gg_backend *gg_backend_cuda_new(int device, gg_err *err) {
    int count = gg_cuda_device_count();
    if (count == 0) {
        cuda_set_err(err, "--device cuda: no CUDA device is visible (driver missing or no GPU)");
        return nullptr;
    }
    if (device < 0 || device >= count) {
        cuda_set_err(err, "--device cuda:%d: only %d CUDA device%s", device, count, count == 1 ? "" : "s");
        return nullptr;
    }
    gg_backend *be = (gg_backend *)calloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        cuda_set_err(err, "out of memory creating the CUDA backend");
        return nullptr;
    }
    be->ctx = c;
    c->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cuda_set_err(err, "cuda:%d: %s", device, cudaGetErrorString(e));
        cu_destroy(be);
        return nullptr;
    }
    cublasStatus_t s = cublasCreate(&c->blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(c->blas, c->stream);
    // f32 GEMMs stay f32 (no TF32): the results must match the CPU backend
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cuda_set_err(err, "cuda:%d: cuBLAS initialisation failed (status %d)", device, (int)s);
        c->blas = nullptr;
        cu_destroy(be);
        return nullptr;
    }

    be->name = "cuda";
    be->n_threads = 0;
    be->destroy = cu_destroy;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->copy = cu_copy;
    be->memset0 = cu_memset0;
    be->sync = cu_sync;
    be->weight_init = cuda_weight_init;
    be->weight_free = cuda_weight_free;
    be->matmul = cuda_matmul;
    be->matmul_dx = cuda_matmul_dx;
    be->gemm = cuda_gemm;
    be->embed = cuda_embed;
    be->rmsnorm = cuda_rmsnorm;
    be->layernorm = cuda_layernorm;
    be->rope = cuda_rope;
    be->attention = cuda_attention;
    be->act = cuda_act;
    be->glu = cuda_glu;
    be->softmax = cuda_softmax;
    be->add = cuda_add;
    be->scale = cuda_scale;
    be->rmsnorm_bwd = cuda_rmsnorm_bwd;
    be->layernorm_bwd = cuda_layernorm_bwd;
    be->act_bwd = cuda_act_bwd;
    be->glu_bwd = cuda_glu_bwd;
    be->attention_bwd = cuda_attention_bwd;
    be->cross_entropy = cuda_cross_entropy;
    be->dropout = cuda_dropout;
    be->sumsq = cuda_sumsq;
    be->adamw = cuda_adamw;
    be->adamw8bit = cuda_adamw8bit;
    be->argmax = cuda_argmax;
    be->topk = cuda_topk;
    return be;
}
