// cuda_ops.cu — the CUDA backend's non-matmul ops (cuda_internal.cuh,
// "cuda_ops.cu"): rmsnorm, layernorm, RoPE, activations, glu, softmax, add,
// scale, their backward ops (rmsnorm_bwd, layernorm_bwd, act_bwd,
// glu_bwd), dropout, sumsq, argmax and topk. Each computes what its scalar
// reference in backend-cpu/ref_ops.c, ref_bwd.c or ref_optim.c defines.
//
// Row ops (norms, softmax, argmax) run one block of ROW_THREADS per row;
// each thread takes a strided share of the row and the block combines the
// shares with a fixed tree (warp shuffles, then one warp over the warps'
// results), so sums are accumulated in double as in the references and a
// result does not depend on the GPU. Elementwise ops are grid-stride loops
// that read every input of an element before they write its outputs, which
// makes the in-place calls of models/backend.h safe. Activations and their
// derivatives are computed in double with the references' formulas.
//
// Bit-exact ops: add, scale and dropout (one float operation, __f*_rn so
// nothing contracts); sumsq sums in a fixed order: SUMSQ_BLOCKS ×
// SUMSQ_THREADS threads each add a strided share in double, then two fixed
// trees (in-block, then over the blocks' partials in scratch).
//
// argmax and topk order the elements by a 64-bit key: the high 32 bits
// rank the value (larger first, -0 equal to +0, every NaN after every
// number), the low 32 bits are the column, so the smallest key is the
// argmax (NaN never wins unless the row is all NaN: then column 0) and
// ascending keys are the topk order (ties: lower index first). topk sorts
// each row's keys (bitonic sort, padded to a power of two) in shared memory
// when they fit, else in global scratch, and takes the first k.
#include "backend-cuda/cuda_internal.cuh"

#include <cmath>

#define ELEM_THREADS 256   // threads per block of the elementwise ops
#define ROW_THREADS 256    // threads per block of the row ops (multiple of 32)
#define SUMSQ_BLOCKS 256   // sumsq: fixed grid (the summation order depends on it)
#define SUMSQ_THREADS 256  // sumsq: fixed block size (multiple of 32)
#define TOPK_SHARED_MAX 4096                 // topk: keys per row sorted in shared memory
#define TOPK_SCRATCH_BYTES (256ull << 20)    // topk: global scratch per launch (rows are chunked)
#define MAX_ROW_BLOCKS (65535 * 8)           // row ops: blocks per launch (grid-stride over rows)

// ------------------------------------------------------------------------
// Launch helpers

static unsigned row_blocks(int64_t rows) {
    return (unsigned)(rows < MAX_ROW_BLOCKS ? rows : MAX_ROW_BLOCKS);
}

#define GRID_STRIDE(i, n)                                                                  \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
         i += (int64_t)gridDim.x * blockDim.x)

#define ROW_LOOP(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

#define STRIDED(i, len) for (int64_t i = threadIdx.x; i < (len); i += blockDim.x)

// ------------------------------------------------------------------------
// Block reductions (blockDim.x a multiple of 32, at most 1024). Every thread
// of the block must call them; the result is returned to all threads. sh
// holds 33 values; the leading barrier makes back-to-back calls safe.

namespace {
struct op_sum_d {
    __device__ double operator()(double a, double b) const { return a + b; }
};
// float max that skips NaN (a NaN never replaces the running value)
struct op_max_f {
    __device__ float operator()(float a, float b) const { return b > a ? b : a; }
};
struct op_min_u64 {
    __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
        return b < a ? b : a;
    }
};
} // namespace

template <typename T, typename Op>
static __device__ T block_reduce(T v, T *sh, Op op, T identity) {
    int lane = (int)(threadIdx.x & 31), warp = (int)(threadIdx.x >> 5), nw = (int)(blockDim.x >> 5);
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads(); // the previous call's readers are done with sh
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sh[lane] : identity;
        for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) sh[32] = v;
    }
    __syncthreads();
    return sh[32];
}

static __device__ double block_sum(double v, double *sh) { return block_reduce(v, sh, op_sum_d(), 0.0); }

// ------------------------------------------------------------------------
// Norms (forward)

static __global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int64_t n, int64_t dim,
                                      float eps, int plus_one) {
    __shared__ double sh[33];
    ROW_LOOP(r, n) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double ss = 0;
        STRIDED(i, dim) ss += (double)xr[i] * xr[i];
        ss = block_sum(ss, sh); // every read of the row is done past this barrier
        double inv = 1.0 / sqrt(ss / (double)dim + (double)eps);
        STRIDED(i, dim) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            yr[i] = (float)((double)xr[i] * inv * g);
        }
    }
}

void cuda_rmsnorm(gg_backend *be, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps,
                  int plus_one) {
    if (n <= 0 || dim <= 0) return;
    rmsnorm_kernel<<<row_blocks(n), ROW_THREADS, 0, cuda_stream(be)>>>(out, x, w, n, dim, eps, plus_one);
    CUDA_LAUNCHED(be, "rmsnorm");
}

// mean and 1/sqrt(var + eps) of one row (biased variance, two passes)
static __device__ void row_mean_inv(const float *xr, int64_t dim, float eps, double *sh, double *mean,
                                    double *inv) {
    double s = 0;
    STRIDED(i, dim) s += (double)xr[i];
    double m = block_sum(s, sh) / (double)dim;
    double v = 0;
    STRIDED(i, dim) v += ((double)xr[i] - m) * ((double)xr[i] - m);
    v = block_sum(v, sh) / (double)dim;
    *mean = m;
    *inv = 1.0 / sqrt(v + (double)eps);
}

static __global__ void layernorm_kernel(float *out, const float *x, const float *w, const float *b, int64_t n,
                                        int64_t dim, float eps) {
    __shared__ double sh[33];
    ROW_LOOP(r, n) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double mean, inv;
        row_mean_inv(xr, dim, eps, sh, &mean, &inv);
        STRIDED(i, dim) yr[i] = (float)(((double)xr[i] - mean) * inv * (double)w[i] + (double)b[i]);
    }
}

void cuda_layernorm(gg_backend *be, float *out, const float *x, const float *w, const float *b, int64_t n,
                    int64_t dim, float eps) {
    if (n <= 0 || dim <= 0) return;
    layernorm_kernel<<<row_blocks(n), ROW_THREADS, 0, cuda_stream(be)>>>(out, x, w, b, n, dim, eps);
    CUDA_LAUNCHED(be, "layernorm");
}

// ------------------------------------------------------------------------
// RoPE: one thread per (token, head, i < head_dim/2) pair of elements

static __global__ void rope_kernel(float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                                   const int32_t *pos, const float *inv_freq, float attn_factor) {
    int64_t half = head_dim / 2, total = n * n_heads * half;
    GRID_STRIDE(idx, total) {
        int64_t i = idx % half, rest = idx / half;
        int64_t h = rest % n_heads, t = rest / n_heads;
        float f = __fmul_rn((float)pos[t], inv_freq[i]); // the float32 product, as HF
        float c = __fmul_rn((float)cos((double)f), attn_factor);
        float s = __fmul_rn((float)sin((double)f), attn_factor);
        float *xh = x + t * row_stride + h * head_dim;
        double x0 = xh[i], x1 = xh[i + half];
        xh[i] = (float)(x0 * c - x1 * s);
        xh[i + half] = (float)(x1 * c + x0 * s);
    }
}

void cuda_rope(gg_backend *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
               const int32_t *pos, const float *inv_freq, float attn_factor) {
    int64_t total = n * n_heads * (head_dim / 2);
    if (n <= 0 || n_heads <= 0 || total <= 0) return;
    rope_kernel<<<cuda_blocks(total, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(
        x, n, row_stride, n_heads, head_dim, pos, inv_freq, attn_factor);
    CUDA_LAUNCHED(be, "rope");
}

// ------------------------------------------------------------------------
// Activations: act(x) and act'(x) in double, the forms of ref_ops.c and
// ref_bwd.c

static __device__ double act_d(double x, int a) {
    switch (a) {
    case GG_ACT_SILU: return x / (1.0 + exp(-x));
    case GG_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case GG_ACT_GELU_TANH: {
        const double k = 0.7978845608028654; // sqrt(2/pi)
        return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
    }
    return x;
}

static __device__ double act_grad_d(double x, int a) {
    switch (a) {
    case GG_ACT_SILU: { // σ·(1 + x·(1 − σ))
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 + x * (1.0 - s));
    }
    case GG_ACT_GELU: // Φ(x) + x·φ(x)
        return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
    case GG_ACT_GELU_TANH: { // ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715·x²)
        const double k = 0.7978845608028654;
        double t = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
    }
    }
    return 1.0;
}

static __global__ void act_kernel(float *out, const float *x, int64_t n, int a) {
    GRID_STRIDE(i, n) out[i] = (float)act_d((double)x[i], a);
}

void cuda_act(gg_backend *be, float *out, const float *x, int64_t n, gg_act a) {
    if (n <= 0) return;
    act_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(out, x, n, (int)a);
    CUDA_LAUNCHED(be, "act");
}

static __global__ void glu_kernel(float *out, const float *gate, const float *up, int64_t n, int a) {
    GRID_STRIDE(i, n) {
        double g = gate[i], u = up[i]; // both read before the write (in place)
        out[i] = (float)(act_d(g, a) * u);
    }
}

void cuda_glu(gg_backend *be, float *out, const float *gate, const float *up, int64_t n, gg_act a) {
    if (n <= 0) return;
    glu_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(out, gate, up, n, (int)a);
    CUDA_LAUNCHED(be, "glu");
}

// ------------------------------------------------------------------------
// Softmax, add, scale

static __global__ void softmax_kernel(float *x, int64_t rows, int64_t cols) {
    __shared__ float shf[33];
    __shared__ double sh[33];
    ROW_LOOP(r, rows) {
        float *xr = x + r * cols;
        float mf = -INFINITY;
        STRIDED(i, cols) mf = op_max_f()(mf, xr[i]);
        double m = (double)block_reduce(mf, shf, op_max_f(), -INFINITY);
        double s = 0;
        STRIDED(i, cols) s += exp((double)xr[i] - m);
        double sum = block_sum(s, sh); // every read of the row is done past this barrier
        STRIDED(i, cols) xr[i] = (float)(exp((double)xr[i] - m) / sum);
    }
}

void cuda_softmax(gg_backend *be, float *x, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    softmax_kernel<<<row_blocks(rows), ROW_THREADS, 0, cuda_stream(be)>>>(x, rows, cols);
    CUDA_LAUNCHED(be, "softmax");
}

static __global__ void add_kernel(float *y, const float *a, const float *b, int64_t n) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(a[i], b[i]);
}

void cuda_add(gg_backend *be, float *y, const float *a, const float *b, int64_t n) {
    if (n <= 0) return;
    add_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(y, a, b, n);
    CUDA_LAUNCHED(be, "add");
}

static __global__ void scale_kernel(float *y, const float *x, float s, int64_t n) {
    GRID_STRIDE(i, n) y[i] = __fmul_rn(s, x[i]);
}

void cuda_scale(gg_backend *be, float *y, const float *x, float s, int64_t n) {
    if (n <= 0) return;
    scale_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(y, x, s, n);
    CUDA_LAUNCHED(be, "scale");
}

// ------------------------------------------------------------------------
// Norms (backward)

// dx = inv·g·dy − x·inv³/dim · Σ dy·g·x
static __global__ void rmsnorm_bwd_kernel(float *dx, const float *dy, const float *x, const float *w, int64_t n,
                                          int64_t dim, float eps, int plus_one, float beta) {
    __shared__ double sh[33];
    ROW_LOOP(r, n) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        double ss = 0, c = 0;
        STRIDED(i, dim) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            ss += (double)xr[i] * xr[i];
            c += (double)gr[i] * g * xr[i];
        }
        ss = block_sum(ss, sh);
        c = block_sum(c, sh);
        double inv = 1.0 / sqrt(ss / (double)dim + (double)eps);
        double k = c * inv * inv * inv / (double)dim;
        STRIDED(i, dim) {
            double g = plus_one ? 1.0 + (double)w[i] : (double)w[i];
            double d = inv * g * gr[i] - k * xr[i];
            dr[i] = (float)(beta != 0.0f ? (double)dr[i] + d : d);
        }
    }
}

void cuda_rmsnorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                      int64_t dim, float eps, int plus_one, float beta) {
    if (n <= 0 || dim <= 0) return;
    rmsnorm_bwd_kernel<<<row_blocks(n), ROW_THREADS, 0, cuda_stream(be)>>>(dx, dy, x, w, n, dim, eps, plus_one,
                                                                           beta);
    CUDA_LAUNCHED(be, "rmsnorm_bwd");
}

// with g = dy·w: dx = inv · (g − mean(g) − xhat·mean(g·xhat))
static __global__ void layernorm_bwd_kernel(float *dx, const float *dy, const float *x, const float *w, int64_t n,
                                            int64_t dim, float eps, float beta) {
    __shared__ double sh[33];
    ROW_LOOP(r, n) {
        const float *xr = x + r * dim, *gr = dy + r * dim;
        float *dr = dx + r * dim;
        double mean, inv;
        row_mean_inv(xr, dim, eps, sh, &mean, &inv);
        double mg = 0, mgx = 0;
        STRIDED(i, dim) {
            double g = (double)gr[i] * w[i];
            mg += g;
            mgx += g * ((double)xr[i] - mean) * inv;
        }
        mg = block_sum(mg, sh) / (double)dim;
        mgx = block_sum(mgx, sh) / (double)dim;
        STRIDED(i, dim) {
            double g = (double)gr[i] * w[i], xh = ((double)xr[i] - mean) * inv;
            double d = inv * (g - mg - xh * mgx);
            dr[i] = (float)(beta != 0.0f ? (double)dr[i] + d : d);
        }
    }
}

void cuda_layernorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                        int64_t dim, float eps, float beta) {
    if (n <= 0 || dim <= 0) return;
    layernorm_bwd_kernel<<<row_blocks(n), ROW_THREADS, 0, cuda_stream(be)>>>(dx, dy, x, w, n, dim, eps, beta);
    CUDA_LAUNCHED(be, "layernorm_bwd");
}

// ------------------------------------------------------------------------
// Activations (backward)

static __global__ void act_bwd_kernel(float *dx, const float *dy, const float *x, int64_t n, int a) {
    GRID_STRIDE(i, n) {
        double d = dy[i], xi = x[i]; // read before the write (in place)
        dx[i] = (float)(d * act_grad_d(xi, a));
    }
}

void cuda_act_bwd(gg_backend *be, float *dx, const float *dy, const float *x, int64_t n, gg_act a) {
    if (n <= 0) return;
    act_bwd_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(dx, dy, x, n, (int)a);
    CUDA_LAUNCHED(be, "act_bwd");
}

static __global__ void glu_bwd_kernel(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                                      int64_t n, int a) {
    GRID_STRIDE(i, n) {
        double g = gate[i], u = up[i], d = dy[i]; // read before either write (in place)
        float dg = (float)(d * u * act_grad_d(g, a));
        float du = (float)(d * act_d(g, a));
        dgate[i] = dg;
        dup[i] = du;
    }
}

void cuda_glu_bwd(gg_backend *be, float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                  int64_t n, gg_act a) {
    if (n <= 0) return;
    glu_bwd_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(dgate, dup, dy, gate, up,
                                                                                       n, (int)a);
    CUDA_LAUNCHED(be, "glu_bwd");
}

// ------------------------------------------------------------------------
// Dropout

// gg_dropout_u (models/backend.h), the same constants, on the device
static __device__ float dropout_u(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return __fmul_rn((float)(z >> 40), 1.0f / 16777216.0f);
}

static __global__ void dropout_kernel(float *out, const float *x, int64_t n, float p, float keep, uint64_t seed) {
    GRID_STRIDE(i, n) {
        float xi = x[i];
        out[i] = dropout_u(seed, (uint64_t)i) >= p ? __fdiv_rn(xi, keep) : 0.0f;
    }
}

void cuda_dropout(gg_backend *be, float *out, const float *x, int64_t n, float p, uint64_t seed) {
    if (n <= 0) return;
    float keep = 1.0f - p; // the float 1 − p, as the reference
    dropout_kernel<<<cuda_blocks(n, ELEM_THREADS), ELEM_THREADS, 0, cuda_stream(be)>>>(out, x, n, p, keep, seed);
    CUDA_LAUNCHED(be, "dropout");
}

// ------------------------------------------------------------------------
// Sum of squares: a fixed grid, so a fixed order of the double sums

static __global__ void sumsq_partial_kernel(double *partial, const float *x, int64_t n) {
    __shared__ double sh[33];
    double s = 0;
    for (int64_t i = (int64_t)blockIdx.x * SUMSQ_THREADS + threadIdx.x; i < n;
         i += (int64_t)SUMSQ_BLOCKS * SUMSQ_THREADS)
        s += (double)x[i] * x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

static __global__ void sumsq_final_kernel(float *out, const double *partial) {
    __shared__ double sh[33];
    double s = block_sum(partial[threadIdx.x], sh);
    if (threadIdx.x == 0) out[0] = (float)s;
}

void cuda_sumsq(gg_backend *be, float *out, const float *x, int64_t n) {
    static_assert(SUMSQ_BLOCKS == SUMSQ_THREADS, "the final pass takes one partial a thread");
    if (n <= 0) { // no launch; the sum of nothing is 0
        cuda_note(be, cudaMemsetAsync(out, 0, sizeof(float), cuda_stream(be)), "sumsq");
        return;
    }
    double *partial = (double *)cuda_scratch(be, SUMSQ_BLOCKS * sizeof(double));
    if (!partial) return; // noted by cuda_scratch
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, cuda_stream(be)>>>(partial, x, n);
    CUDA_LAUNCHED(be, "sumsq");
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, cuda_stream(be)>>>(out, partial);
    CUDA_LAUNCHED(be, "sumsq");
}

// ------------------------------------------------------------------------
// Selection: the order key of element (v, column)

#define KEY_NONE 0xFFFFFFFFFFFFFFFFull // after every element's key (padding, empty rows)

// Ascending keys = descending values, -0 == +0, every NaN after every
// number; the column breaks ties (lower first).
static __device__ unsigned long long order_key(float v, int64_t col) {
    uint32_t rank;
    if (isnan(v)) {
        rank = 0xFFFFFFFFu;
    } else {
        uint32_t u = __float_as_uint(v);
        if (u == 0x80000000u) u = 0; // -0 ranks as +0
        uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u); // ascending with v
        rank = ~asc; // descending with v; at most ~asc(-inf) = 0xFF800000 < NaN's
    }
    return ((unsigned long long)rank << 32) | (unsigned long long)(uint32_t)col;
}

static __global__ void argmax_kernel(int32_t *ids, const float *x, int64_t rows, int64_t cols) {
    __shared__ unsigned long long sh[33];
    ROW_LOOP(r, rows) {
        const float *xr = x + r * cols;
        unsigned long long best = KEY_NONE;
        STRIDED(i, cols) best = op_min_u64()(best, order_key(xr[i], i));
        best = block_reduce(best, sh, op_min_u64(), KEY_NONE);
        if (threadIdx.x == 0) ids[r] = best == KEY_NONE ? 0 : (int32_t)(uint32_t)best;
    }
}

void cuda_argmax(gg_backend *be, int32_t *ids, const float *x, int64_t rows, int64_t cols) {
    if (rows <= 0) return;
    argmax_kernel<<<row_blocks(rows), ROW_THREADS, 0, cuda_stream(be)>>>(ids, x, rows, cols);
    CUDA_LAUNCHED(be, "argmax");
}

// One row's topk with the block: keys of x[cols] into buf[P] (P a power of
// two >= cols, padded with KEY_NONE), bitonic sort ascending, the first k
// out. buf is shared or global memory of this block alone.
static __device__ void topk_row(unsigned long long *buf, int64_t P, const float *xr, int64_t cols, int64_t k,
                         float *vr, int32_t *ir) {
    STRIDED(i, P) buf[i] = i < cols ? order_key(xr[i], i) : KEY_NONE;
    __syncthreads();
    for (int64_t size = 2; size <= P; size <<= 1) {
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
            STRIDED(i, P) {
                int64_t j = i ^ stride;
                if (j > i) { // the pair (i, j) belongs to thread of i
                    unsigned long long a = buf[i], b = buf[j];
                    bool up = (i & size) == 0;
                    if (up ? a > b : a < b) {
                        buf[i] = b;
                        buf[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
    STRIDED(j, k) {
        int64_t col = (int64_t)(uint32_t)buf[j];
        vr[j] = xr[col];
        ir[j] = (int32_t)col;
    }
    __syncthreads(); // buf is free for the next row
}

static __global__ void __launch_bounds__(1024)
    topk_shared_kernel(float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k, int64_t P) {
    extern __shared__ unsigned long long topk_buf[];
    ROW_LOOP(r, rows) topk_row(topk_buf, P, x + r * cols, cols, k, vals + r * k, ids + r * k);
}

// rows r0 .. r0 + gridDim.x − 1, one block each, buf[P] per block in scratch
static __global__ void __launch_bounds__(1024)
    topk_global_kernel(float *vals, int32_t *ids, const float *x, int64_t r0, int64_t cols, int64_t k, int64_t P,
                       unsigned long long *scratch) {
    int64_t r = r0 + blockIdx.x;
    topk_row(scratch + (int64_t)blockIdx.x * P, P, x + r * cols, cols, k, vals + r * k, ids + r * k);
}

static int topk_threads(int64_t P) {
    int64_t t = P / 2;
    return (int)(t < 32 ? 32 : t > 1024 ? 1024 : t);
}

void cuda_topk(gg_backend *be, float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k) {
    if (rows <= 0 || cols <= 0 || k <= 0) return;
    int64_t P = 1;
    while (P < cols) P <<= 1;
    int threads = topk_threads(P);
    if (P <= TOPK_SHARED_MAX) {
        size_t shm = (size_t)P * sizeof(unsigned long long);
        topk_shared_kernel<<<row_blocks(rows), threads, shm, cuda_stream(be)>>>(vals, ids, x, rows, cols, k, P);
        CUDA_LAUNCHED(be, "topk");
        return;
    }
    size_t row_bytes = (size_t)P * sizeof(unsigned long long);
    int64_t chunk = (int64_t)(TOPK_SCRATCH_BYTES / row_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    if (chunk > MAX_ROW_BLOCKS) chunk = MAX_ROW_BLOCKS;
    unsigned long long *scratch = (unsigned long long *)cuda_scratch(be, (size_t)chunk * row_bytes);
    if (!scratch) return; // noted by cuda_scratch
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        topk_global_kernel<<<(unsigned)nr, threads, 0, cuda_stream(be)>>>(vals, ids, x, r0, cols, k, P, scratch);
        CUDA_LAUNCHED(be, "topk");
    }
}
