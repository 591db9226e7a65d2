// cuda_matmul.cu — the CUDA backend's linear algebra (cuda_internal.cuh):
// weights (a device copy of the container bytes), matmul, matmul_dx, gemm
// and embed.
//
// Up to 8 tokens (decode): a GEMV kernel that reads each weight once and
// dequantizes it on the fly. More: f32 weights go to cublasSgemm directly;
// other types are dequantized a tile of rows at a time into the context's
// scratch (at most TILE_BYTES) and each tile goes to cublasSgemm. Dequantization gives exactly the
// floats gg_dequantize_rows_ref gives: one IEEE f32 operation per step,
// the products rounded on their own (__fmul_rn / __fadd_rn keep nvcc from
// contracting them into FMAs), f16 decoded bit by bit as gg_f16_to_f32.
// The cuBLAS handle is in pedantic math mode (no TF32: cuda_backend.cu).
//
// Everything is enqueued on the context's stream; cuBLAS statuses and
// launch errors are recorded (cuda_note*) and reported by sync. Only
// weight_init blocks (its host bytes may go away when it returns).
#include "backend-cuda/cuda_internal.cuh"

#include <cstdio>
#include <cstring>

#define THREADS 256
#define TILE_BYTES ((size_t)64 << 20) // scratch for one dequantized tile of W

// ---------------------------------------------------------------------------
// Weight layout on the device

// The 16 NF4 code values, identical to gg_nf4_codes (ggfmt/quant.c).
__constant__ float nf4_codes[16] = GG_NF4_CODES_INIT;

// Where the parts of a weight's container layout lie (ggfmt/quant.h; the
// same offsets as backend-cpu/wview.h), as device pointers.
struct dview {
    gg_type t;
    const uint8_t *p;       // f32/f16/bf16 elements, q8 int8 values, nf4 codes
    const uint16_t *q8d;    // q8: f16 scale of each 64-element block
    const int8_t *qabs;     // nf4: quantized absmax of each block
    const float *gscale;    // nf4: f32 scale of each group of 256 blocks
    const float *mean;      // nf4: mean of the block absmax values (one float)
};

// nf4 byte offsets inside a tensor of n elements (ggfmt/quant.c nf4_layout_of).
static uint64_t nf4_scales_off(uint64_t n) { return (n / 2 + n / GG_NF4_BLOCK + 3) & ~(uint64_t)3; }
static uint64_t nf4_groups(uint64_t n) { return (n / GG_NF4_BLOCK + GG_NF4_GROUP - 1) / GG_NF4_GROUP; }

static dview view_of(const gg_weight *w) {
    dview v;
    memset(&v, 0, sizeof v);
    v.t = w->type;
    v.p = (const uint8_t *)w->data;
    uint64_t n = (uint64_t)w->rows * (uint64_t)w->cols;
    if (w->type == GG_TYPE_Q8) v.q8d = (const uint16_t *)(v.p + n);
    if (w->type == GG_TYPE_NF4) {
        uint64_t scales = nf4_scales_off(n);
        v.qabs = (const int8_t *)(v.p + n / 2);
        v.gscale = (const float *)(v.p + scales);
        v.mean = (const float *)(v.p + scales + 4 * nf4_groups(n));
    }
    return v;
}

// Exact byte size of a [rows, cols] weight of type t (gg_type_nbytes); the
// shape is already valid (rows, cols <= 2^31 - 1: no overflow).
static uint64_t weight_nbytes(gg_type t, uint64_t rows, uint64_t cols) {
    uint64_t n = rows * cols;
    switch (t) {
    case GG_TYPE_F32: return 4 * n;
    case GG_TYPE_F16:
    case GG_TYPE_BF16: return 2 * n;
    case GG_TYPE_Q8: return n + 2 * (n / GG_Q8_BLOCK);
    case GG_TYPE_NF4: return nf4_scales_off(n) + 4 * nf4_groups(n) + 4;
    default: return 0;
    }
}

// ---------------------------------------------------------------------------
// Dequantization (device)

// gg_f16_to_f32, bit for bit (NaN payloads included).
__device__ __forceinline__ float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) // zero or subnormal: m * 2^-24, exact in f32
        return __uint_as_float(sign | __float_as_uint(__fmul_rn((float)m, 5.9604644775390625e-8f)));
    if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m ? 0x400000u | m << 13 : 0u));
    return __uint_as_float(sign | (e + 112) << 23 | m << 13);
}

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// Element i (row-major flat index) of the weight as f32: exactly the float
// gg_dequantize_rows_ref gives.
__device__ __forceinline__ float weight_elem(const dview &v, int64_t i) {
    switch (v.t) {
    case GG_TYPE_F32: return ((const float *)v.p)[i];
    case GG_TYPE_F16: return f16_to_f32(((const uint16_t *)v.p)[i]);
    case GG_TYPE_BF16: return bf16_to_f32(((const uint16_t *)v.p)[i]);
    case GG_TYPE_Q8: {
        float d = f16_to_f32(v.q8d[i / GG_Q8_BLOCK]);
        return __fmul_rn((float)((const int8_t *)v.p)[i], d);
    }
    case GG_TYPE_NF4: {
        int64_t b = i / GG_NF4_BLOCK;
        // a'_b = (f32)q_b * s_g + mean, the product rounded on its own
        float ap = __fadd_rn(__fmul_rn((float)v.qabs[b], v.gscale[b / GG_NF4_GROUP]), *v.mean);
        uint8_t byte = v.p[i / 2];
        unsigned idx = (i & 1) ? byte & 15 : byte >> 4; // blocks start at even i
        return __fmul_rn(nf4_codes[idx], ap);
    }
    default: return 0.0f;
    }
}

// Elements i .. i+7 of the weight (i a multiple of 8: one 64-element block
// of q8 / nf4), each exactly as weight_elem gives it; the block scale once.
__device__ __forceinline__ void weight_elems8(const dview &v, int64_t i, float (&w)[8]) {
    if (v.t == GG_TYPE_Q8) {
        float d = f16_to_f32(v.q8d[i / GG_Q8_BLOCK]);
        const int8_t *q = (const int8_t *)v.p + i;
#pragma unroll
        for (int k = 0; k < 8; k++) w[k] = __fmul_rn((float)q[k], d);
    } else if (v.t == GG_TYPE_NF4) {
        int64_t b = i / GG_NF4_BLOCK;
        float ap = __fadd_rn(__fmul_rn((float)v.qabs[b], v.gscale[b / GG_NF4_GROUP]), *v.mean);
        const uint8_t *by = v.p + i / 2;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            w[2 * k] = __fmul_rn(nf4_codes[by[k] >> 4], ap);
            w[2 * k + 1] = __fmul_rn(nf4_codes[by[k] & 15], ap);
        }
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) w[k] = weight_elem(v, i + k);
    }
}

// Decode (n = NT <= 8 tokens): y[t, r] = beta·y + x[t]·W[r] (+ bias[r]), a
// warp per row, each lane 8 consecutive columns at a time, the weight read
// once from memory and dequantized on the fly. cols % 8 == 0.
#define GEMV_WARPS 8
template <int NT>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(dview v, int64_t rows, int64_t cols, const float *x, float *y, const float *bias, float beta) {
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
    if (r >= rows) return; // the whole warp
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int64_t c = 8 * (int64_t)lane; c < cols; c += 256) {
        float w[8];
        weight_elems8(v, r * cols + c, w);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float *xt = x + t * cols + c;
#pragma unroll
            for (int k = 0; k < 8; k++) acc[t] = fmaf(w[k], xt[k], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        for (int o = 16; o > 0; o >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
    if (lane == 0)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float s = bias ? __fadd_rn(acc[t], bias[r]) : acc[t];
            float *yt = y + t * rows + r;
            *yt = beta != 0.0f ? __fadd_rn(s, __fmul_rn(beta, *yt)) : s;
        }
}

// dst[k] = element i0 + k of the weight, k < cnt.
__global__ void dequant_kernel(dview v, int64_t i0, int64_t cnt, float *dst) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < cnt;
         k += (int64_t)gridDim.x * blockDim.x)
        dst[k] = weight_elem(v, i0 + k);
}

// out[r, c] = scale · W[ids[r], c], r < n.
__global__ void embed_kernel(dview v, int64_t cols, const int32_t *ids, int64_t n, float scale,
                             float *out) {
    const int64_t total = n * cols;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / cols, c = k % cols;
        out[k] = __fmul_rn(scale, weight_elem(v, (int64_t)ids[r] * cols + c));
    }
}

// y[t, r] += bias[r] for y [n, rows].
__global__ void bias_kernel(float *y, const float *bias, int64_t n, int64_t rows) {
    const int64_t total = n * rows;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x)
        y[k] = __fadd_rn(y[k], bias[k % rows]);
}

// C[m, j] = beta · C[m, j] (beta 0: zeros, whatever C held), C [M, N] row stride ldc.
__global__ void scale_c_kernel(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
    const int64_t total = M * N;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (int64_t)gridDim.x * blockDim.x) {
        float *c = C + (k / N) * ldc + k % N;
        *c = beta != 0.0f ? __fmul_rn(beta, *c) : 0.0f;
    }
}

// ---------------------------------------------------------------------------
// Host helpers

// cuBLAS takes int dimensions: record an error (and skip the op) when one
// does not fit.
static bool dims_fit(gg_backend *be, const char *where, int64_t a, int64_t b, int64_t c) {
    if (a <= INT32_MAX && b <= INT32_MAX && c <= INT32_MAX) return true;
    cuda_note(be, cudaErrorInvalidValue, where);
    return false;
}

// Rows of W dequantized per tile: TILE_BYTES of floats, at least 1, at most rows.
static int64_t tile_rows(const gg_weight *w) {
    int64_t tr = (int64_t)(TILE_BYTES / (4 * (size_t)w->cols));
    if (tr < 1) tr = 1;
    return tr < w->rows ? tr : w->rows;
}

// Rows [r0, r0 + nr) of W as f32 into dst (nr · cols floats).
static void dequant_rows(gg_backend *be, const gg_weight *w, int64_t r0, int64_t nr, float *dst) {
    int64_t cnt = nr * w->cols;
    dequant_kernel<<<cuda_blocks(cnt, THREADS), THREADS, 0, cuda_stream(be)>>>(view_of(w), r0 * w->cols,
                                                                               cnt, dst);
    CUDA_LAUNCHED(be, "dequantize");
}

// ---------------------------------------------------------------------------
// Weights

static const char *type_name(gg_type t) {
    static const char *const names[GG_TYPE_COUNT] = {"f32", "f16", "bf16", "q8", "nf4"};
    return (unsigned)t < GG_TYPE_COUNT ? names[t] : "?";
}

int cuda_weight_init(gg_backend *be, gg_weight *w, gg_type t, int64_t rows, int64_t cols, const void *host_data,
                     gg_err *err) {
    memset(w, 0, sizeof *w);
    const long long R = (long long)rows, C = (long long)cols;
    if (rows <= 0 || cols <= 0)
        return cuda_set_err(err, "weight: rows (%lld) and cols (%lld) must be positive", R, C);
    if ((unsigned)t >= GG_TYPE_COUNT)
        return cuda_set_err(err, "weight [%lld, %lld]: invalid tensor type %d", R, C, (int)t);
    if ((t == GG_TYPE_Q8 || t == GG_TYPE_NF4) && cols % 64)
        return cuda_set_err(err, "weight [%lld, %lld]: %s needs the last dimension (%lld) to be a multiple of 64",
                          R, C, type_name(t), C);
    if (cols > INT32_MAX || rows > INT32_MAX)
        return cuda_set_err(err, "weight [%lld, %lld]: a dimension exceeds 2^31 - 1 (BLAS limit)", R, C);
    if (!host_data) return cuda_set_err(err, "weight [%lld, %lld]: no data", R, C);

    size_t bytes = (size_t)weight_nbytes(t, (uint64_t)rows, (uint64_t)cols);
    cudaStream_t s = cuda_stream(be);
    void *d = nullptr;
    cudaError_t e = cudaMallocAsync(&d, bytes, s);
    if (e != cudaSuccess) {
        cudaGetLastError(); // reported here, not by sync
        return cuda_set_err(err, "weight [%lld, %lld] %s: out of device memory allocating %zu bytes (%s)", R, C,
                          type_name(t), bytes, cudaGetErrorString(e));
    }
    // synchronous: host_data may be unmapped as soon as we return
    e = cudaMemcpyAsync(d, host_data, bytes, cudaMemcpyHostToDevice, s);
    cudaError_t e2 = cudaStreamSynchronize(s);
    if (e == cudaSuccess) e = e2;
    if (e != cudaSuccess) {
        cudaFreeAsync(d, s);
        cudaStreamSynchronize(s);
        cudaGetLastError();
        return cuda_set_err(err, "weight [%lld, %lld] %s: copying %zu bytes to the device failed (%s)", R, C,
                          type_name(t), bytes, cudaGetErrorString(e));
    }
    w->type = t;
    w->rows = rows;
    w->cols = cols;
    w->data = d;
    w->priv = nullptr;
    return 0;
}

void cuda_weight_free(gg_backend *be, gg_weight *w) {
    if (!w) return;
    if (w->data) cuda_note(be, cudaFreeAsync((void *)w->data, cuda_stream(be)), "weight free");
    w->data = nullptr;
    w->priv = nullptr;
}

// ---------------------------------------------------------------------------
// matmul: y[n, rows] = beta·y + x[n, cols] · Wᵀ (+ bias)
//
// Row-major y is column-major yᵀ [rows, n] (ld rows) = W · xᵀ, where
// row-major W [rows, cols] is column-major Wᵀ (ld cols): op T, and
// row-major x is column-major xᵀ (ld cols): op N.

// y[:, r0 : r0 + m] = beta·y + x · Wtᵀ for Wt the [m, cols] rows r0.. of W.
static void sgemm_rows(gg_backend *be, float *y, const float *x, int64_t n, int64_t rows, int64_t cols,
                       const float *wt, int64_t r0, int64_t m, float beta) {
    const float one = 1.0f;
    cublasStatus_t st = cublasSgemm(cuda_ctx_of(be)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)cols,
                                    &one, wt, (int)cols, x, (int)cols, &beta, y + r0, (int)rows);
    cuda_note_blas(be, st, "matmul sgemm");
}

void cuda_matmul(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w, const float *bias,
                 float beta) {
    if (n <= 0 || w->rows <= 0) return;
    if (!dims_fit(be, "matmul: a dimension exceeds 2^31 - 1", n, w->rows, w->cols)) return;
    if (n <= 8 && w->cols % 8 == 0) { /* decode: stream the weight once, no tile */
        unsigned blocks = (unsigned)((w->rows + GEMV_WARPS - 1) / GEMV_WARPS);
        dview v = view_of(w);
        cudaStream_t st = cuda_stream(be);
        switch (n) {
#define GEMV_CASE(N)                                                                               \
    case N: gemv_kernel<N><<<blocks, GEMV_WARPS * 32, 0, st>>>(v, w->rows, w->cols, x, y, bias, beta); break;
            GEMV_CASE(1) GEMV_CASE(2) GEMV_CASE(3) GEMV_CASE(4) GEMV_CASE(5) GEMV_CASE(6) GEMV_CASE(7)
            default: gemv_kernel<8><<<blocks, GEMV_WARPS * 32, 0, st>>>(v, w->rows, w->cols, x, y, bias, beta);
#undef GEMV_CASE
        }
        CUDA_LAUNCHED(be, "matmul gemv");
        return;
    }
    if (w->type == GG_TYPE_F32) {
        sgemm_rows(be, y, x, n, w->rows, w->cols, (const float *)w->data, 0, w->rows, beta);
    } else {
        const int64_t tr = tile_rows(w);
        float *tile = (float *)cuda_scratch(be, (size_t)(tr * w->cols) * sizeof(float));
        if (!tile) return; // noted by cuda_scratch
        for (int64_t r0 = 0; r0 < w->rows; r0 += tr) {
            int64_t m = w->rows - r0 < tr ? w->rows - r0 : tr;
            dequant_rows(be, w, r0, m, tile);
            sgemm_rows(be, y, x, n, w->rows, w->cols, tile, r0, m, beta);
        }
    }
    if (bias) {
        bias_kernel<<<cuda_blocks(n * w->rows, THREADS), THREADS, 0, cuda_stream(be)>>>(y, bias, n, w->rows);
        CUDA_LAUNCHED(be, "matmul bias");
    }
}

// ---------------------------------------------------------------------------
// matmul_dx: dx[n, cols] = beta·dx + dy[n, rows] · W
//
// Column-major dxᵀ [cols, n] (ld cols) = Wᵀ · dyᵀ: row-major W [rows, cols]
// is column-major Wᵀ (ld cols), op N; row-major dy is dyᵀ (ld rows), op N.

// dx = beta·dx + dy[:, r0 : r0 + m] · Wt for Wt the [m, cols] rows r0.. of W.
static void sgemm_dx_rows(gg_backend *be, float *dx, const float *dy, int64_t n, int64_t rows, int64_t cols,
                          const float *wt, int64_t r0, int64_t m, float beta) {
    const float one = 1.0f;
    cublasStatus_t st = cublasSgemm(cuda_ctx_of(be)->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)cols, (int)n, (int)m,
                                    &one, wt, (int)cols, dy + r0, (int)rows, &beta, dx, (int)cols);
    cuda_note_blas(be, st, "matmul_dx sgemm");
}

void cuda_matmul_dx(gg_backend *be, float *dx, const float *dy, int64_t n, const gg_weight *w, float beta) {
    if (n <= 0 || w->rows <= 0) return;
    if (!dims_fit(be, "matmul_dx: a dimension exceeds 2^31 - 1", n, w->rows, w->cols)) return;
    if (w->type == GG_TYPE_F32) {
        sgemm_dx_rows(be, dx, dy, n, w->rows, w->cols, (const float *)w->data, 0, w->rows, beta);
        return;
    }
    const int64_t tr = tile_rows(w);
    float *tile = (float *)cuda_scratch(be, (size_t)(tr * w->cols) * sizeof(float));
    if (!tile) return; // noted by cuda_scratch
    for (int64_t r0 = 0; r0 < w->rows; r0 += tr) {
        int64_t m = w->rows - r0 < tr ? w->rows - r0 : tr;
        dequant_rows(be, w, r0, m, tile);
        sgemm_dx_rows(be, dx, dy, n, w->rows, w->cols, tile, r0, m, r0 == 0 ? beta : 1.0f);
    }
}

// ---------------------------------------------------------------------------
// gemm: row-major C[M,N] = alpha·op(A)·op(B) + beta·C
//
// Row-major C is column-major Cᵀ [N, M] (ld ldc) = alpha·op(B)ᵀ·op(A)ᵀ +
// beta·Cᵀ. Row-major B (not tb: [K, N]) read column-major is op(B)ᵀ
// already: op N; with tb it is [N, K] and needs op T. The same for A.

// The stride cuBLAS checks (ld >= the stored row length) means nothing for
// a matrix with one row: lift it there so any caller value is accepted.
static int64_t ld_of(int64_t stored_rows, int64_t row_len, int64_t ld) {
    return stored_rows == 1 && ld < row_len ? row_len : ld;
}

void cuda_gemm(gg_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // C = beta·C (cuBLAS rejects some zero sizes)
        scale_c_kernel<<<cuda_blocks(M * N, THREADS), THREADS, 0, cuda_stream(be)>>>(C, M, N, ldc, beta);
        CUDA_LAUNCHED(be, "gemm (K = 0)");
        return;
    }
    lda = ta ? ld_of(K, M, lda) : ld_of(M, K, lda);
    ldb = tb ? ld_of(N, K, ldb) : ld_of(K, N, ldb);
    ldc = ld_of(M, N, ldc);
    if (!dims_fit(be, "gemm: a dimension exceeds 2^31 - 1", M, N, K) ||
        !dims_fit(be, "gemm: a stride exceeds 2^31 - 1", lda, ldb, ldc))
        return;
    cublasStatus_t st = cublasSgemm(cuda_ctx_of(be)->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B, (int)ldb,
                                    A, (int)lda, &beta, C, (int)ldc);
    cuda_note_blas(be, st, "gemm sgemm");
}

// ---------------------------------------------------------------------------
// embed: out[i, :] = scale · row ids[i] of W

void cuda_embed(gg_backend *be, float *out, const gg_weight *w, const int32_t *ids, int64_t n, float scale) {
    if (n <= 0) return;
    embed_kernel<<<cuda_blocks(n * w->cols, THREADS), THREADS, 0, cuda_stream(be)>>>(view_of(w), w->cols, ids, n,
                                                                                    scale, out);
    CUDA_LAUNCHED(be, "embed");
}
