// cuda_optim.cu — the CUDA backend's loss and optimizers (cuda_internal.cuh,
// "cuda_optim.cu"): cross_entropy, adamw, adamw8bit. Each computes what its
// scalar reference in backend-cpu/ref_optim.c defines and what the CPU
// backend (backend-cpu/optim.c) computes: cross_entropy up to float
// rounding (double sums and exps, as the reference), adamw bit for bit as
// the CPU backend (its float body, so that the first adamw8bit step from
// the all-zero state equals adamw's), adamw8bit bit for bit as the
// reference.
//
// cross_entropy: a thread block per row; the max (float), the sum of
// exp(x − max) in double (fixed per-thread order, then a fixed tree), the
// loss, then the row rewritten in place as its gradient.
//
// adamw, adamw8bit: the float arithmetic of ref_optim.c's adam8_update with
// the step constants of adam8_consts (computed on the host, as the CPU
// backend does), every operation an explicit round-to-nearest intrinsic so
// that nvcc contracts nothing into an FMA (the CPU code never does).
// adamw8bit runs a thread block per GG_ADAM8_BLOCK elements: dequantize,
// update, absmax of each new moment, requantize with ref_optim.c's nearest
// code search (binary search, the float midpoint decides, ties go to the
// lower code; NaN code 0; a positive v at least code 1). The two code maps
// are rebuilt here on the host with ref_optim.c's construction (the plugin
// does not link libgg) and passed to the kernel by value.
#include "backend-cuda/cuda_internal.cuh"
#include "backend-cpu/adam8_map.h"

#include <math.h>

#define CE_THREADS 512 // threads per cross-entropy row

static_assert(GG_ADAM8_BLOCK % 32 == 0 && GG_ADAM8_BLOCK <= 1024, "one thread block per 8-bit block");

// ---- block reductions ----

struct sum_op {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct max_op { // NaN never wins (as the references' `x > m`)
    __device__ float operator()(float a, float b) const { return b > a ? b : a; }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T x, Op op) {
    for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// The reduction of v over the block (blockDim.x a multiple of 32), the same
// bits in every thread; sh holds 32 values. Ends with a barrier, so sh may
// be reused at once.
template <typename T, typename Op> __device__ T block_reduce(T v, T *sh, Op op, T identity) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_reduce(v, op);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    T r = identity;
    for (int i = 0; i < nw; i++) r = op(r, sh[i]);
    __syncthreads();
    return r;
}

// ---- cross-entropy ----

// One row r (the whole block): loss[r] and the row replaced by its gradient.
__device__ void ce_row(float *loss, float *x, int32_t label, int64_t cols, float grad_scale, int64_t r,
                       double *shd, float *shf) {
    if (label < 0) {
        for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) x[i] = 0.0f;
        if (threadIdx.x == 0) loss[r] = 0.0f;
        return;
    }
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = max_op()(m, x[i]);
    m = block_reduce(m, shf, max_op(), -INFINITY);
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += exp((double)x[i] - (double)m);
    s = block_reduce(s, shd, sum_op(), 0.0);
    double lse = (double)m + log(s);
    if (threadIdx.x == 0) loss[r] = (float)(lse - (double)x[label]);
    __syncthreads(); // x[label] is read before any thread writes the row
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        double g = exp((double)x[i] - lse) - (i == label ? 1.0 : 0.0);
        x[i] = (float)((double)grad_scale * g);
    }
}

__global__ void __launch_bounds__(CE_THREADS)
    ce_kernel(float *loss, float *logits, const int32_t *labels, int64_t rows, int64_t cols, float grad_scale) {
    __shared__ double shd[32];
    __shared__ float shf[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) { // block-uniform loop
        ce_row(loss, logits + r * cols, labels[r], cols, grad_scale, r, shd, shf);
        __syncthreads();
    }
}

void cuda_cross_entropy(gg_backend *be, float *loss, float *logits, const int32_t *labels, int64_t rows,
                        int64_t cols, float grad_scale) {
    if (rows <= 0 || cols <= 0) return;
    unsigned grid = (unsigned)(rows < 65535 * 8 ? rows : 65535 * 8);
    ce_kernel<<<grid, CE_THREADS, 0, cuda_stream(be)>>>(loss, logits, labels, rows, cols, grad_scale);
    CUDA_LAUNCHED(be, "cross_entropy");
}

// ---- AdamW step (float, no contraction) ----

// The constants of one step, rounded to float as the tensor ops see them
// (ref_optim.c's adam8_consts, optim.c's adam_consts: the same values).
struct adam_c {
    float gs, decay, b1, omb1, b2, omb2, eps, step_size, bc2_sqrt;
};

static adam_c adam_consts(const gg_adamw_hp *hp) {
    double bc1 = 1.0 - pow((double)hp->beta1, (double)hp->step);
    double bc2 = 1.0 - pow((double)hp->beta2, (double)hp->step);
    adam_c c;
    c.gs = hp->grad_scale;
    c.decay = (float)(1.0 - (double)hp->lr * (double)hp->weight_decay);
    c.b1 = hp->beta1;
    c.omb1 = (float)(1.0 - (double)hp->beta1);
    c.b2 = hp->beta2;
    c.omb2 = (float)(1.0 - (double)hp->beta2);
    c.eps = hp->eps;
    c.step_size = (float)((double)hp->lr / bc1);
    c.bc2_sqrt = (float)sqrt(bc2);
    return c;
}

// One element, in place on p, m, v: ref_optim.c's adam8_update, operation
// for operation.
__device__ __forceinline__ void adam_update(const adam_c &c, float &p, float g, float &m, float &v) {
    float gi = __fmul_rn(g, c.gs);
    float mi = __fadd_rn(__fmul_rn(c.b1, m), __fmul_rn(c.omb1, gi));
    float vi = __fadd_rn(__fmul_rn(c.b2, v), __fmul_rn(c.omb2, __fmul_rn(gi, gi)));
    float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bc2_sqrt), c.eps);
    p = __fsub_rn(__fmul_rn(p, c.decay), __fmul_rn(c.step_size, __fdiv_rn(mi, den)));
    m = mi;
    v = vi;
}

__global__ void adamw_kernel(adam_c c, float *p, const float *g, float *m, float *v, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float pi = p[i], mi = m[i], vi = v[i];
        adam_update(c, pi, g[i], mi, vi);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

void cuda_adamw(gg_backend *be, float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp) {
    if (n <= 0) return;
    adamw_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_stream(be)>>>(adam_consts(hp), p, g, m, v, n);
    CUDA_LAUNCHED(be, "adamw");
}

// ---- the 8-bit code maps (backend-cpu/adam8_map.h) ----

struct adam8_maps {
    float u[256]; // unsigned (second moment)
    float s[256]; // signed (first moment)
};


static adam8_maps adam8_maps_build(void) {
    adam8_maps mp;
    gg_adam8_build(mp.u, 0);
    gg_adam8_build(mp.s, 1);
    return mp;
}

// Built once (thread-safe static initialisation).
static const adam8_maps &adam8_maps_get(void) {
    static const adam8_maps maps = adam8_maps_build();
    return maps;
}

// ---- AdamW, 8-bit state ----

// The index of the code nearest to x (ref_optim.c's adam8_nearest).
__device__ __forceinline__ int adam8_nearest(const float *map, float x) {
    if (x >= map[255]) return 255;
    if (!(x > map[0])) return 0; // below the map, or NaN
    int lo = 0, hi = 255;        // map[lo] <= x < map[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (map[mid] <= x) lo = mid;
        else hi = mid;
    }
    return x > __fmul_rn(__fadd_rn(map[lo], map[hi]), 0.5f) ? hi : lo;
}

// The code of x in a block of absmax amax (ref_optim.c's adam8_quantize,
// one element); with floor1, a positive x takes at least code 1.
__device__ __forceinline__ uint8_t adam8_code(const float *map, float x, float amax, bool floor1) {
    if (amax == 0.0f) return 0;
    float inv = __fdiv_rn(1.0f, amax);
    int c = adam8_nearest(map, __fmul_rn(x, inv));
    return (uint8_t)(floor1 && c == 0 && x > 0.0f ? 1 : c);
}

__global__ void __launch_bounds__(GG_ADAM8_BLOCK)
    adam8_kernel(adam_c c, adam8_maps maps, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                 float *v_absmax, int64_t n) {
    __shared__ float smap[256], umap[256];
    __shared__ float red[32];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        smap[i] = maps.s[i];
        umap[i] = maps.u[i];
    }
    __syncthreads();
    int64_t b = blockIdx.x, i = b * GG_ADAM8_BLOCK + threadIdx.x;
    bool in = i < n;
    float m = 0.0f, v = 0.0f;
    if (in) {
        m = __fmul_rn(smap[m8[i]], m_absmax[b]);
        v = __fmul_rn(umap[v8[i]], v_absmax[b]);
        float pi = p[i];
        adam_update(c, pi, g[i], m, v);
        p[i] = pi;
    }
    // absmax of the new moments (both reductions end with a barrier: every
    // thread has read m_absmax[b], v_absmax[b] before thread 0 writes them)
    float ma = block_reduce(in ? fabsf(m) : 0.0f, red, max_op(), 0.0f);
    float va = block_reduce(in ? fabsf(v) : 0.0f, red, max_op(), 0.0f);
    if (in) {
        m8[i] = adam8_code(smap, m, ma, false);
        v8[i] = adam8_code(umap, v, va, true);
    }
    if (threadIdx.x == 0) {
        m_absmax[b] = ma;
        v_absmax[b] = va;
    }
}

void cuda_adamw8bit(gg_backend *be, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                    float *v_absmax, int64_t n, const gg_adamw_hp *hp) {
    if (n <= 0) return;
    int64_t nb = (n + GG_ADAM8_BLOCK - 1) / GG_ADAM8_BLOCK;
    adam8_kernel<<<(unsigned)nb, GG_ADAM8_BLOCK, 0, cuda_stream(be)>>>(adam_consts(hp), adam8_maps_get(), p, g, m8,
                                                                       v8, m_absmax, v_absmax, n);
    CUDA_LAUNCHED(be, "adamw8bit");
}
