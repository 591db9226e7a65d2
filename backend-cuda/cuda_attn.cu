// cuda_attn.cu — the CUDA backend's attention (cuda_internal.cuh,
// "cuda_attn.cu"): attention and attention_bwd. Each computes what its
// scalar reference defines (gg_ref_attention in backend-cpu/ref_ops.c,
// gg_ref_attention_bwd in backend-cpu/ref_bwd.c) up to float rounding, and
// gives the same bits on every run (no atomics).
//
// One warp owns one row of work; lane l holds the elements d = l + 32·i
// (i < NPL) of a head_dim vector in registers, so dot products are a
// per-lane partial sum and a butterfly shuffle reduction (every lane ends
// with the same bits, so the warp takes every branch together). NPL is a
// template parameter: head_dim up to 32·NPL, at most ATTN_MAX_HD.
//
// Forward: a warp per (query t, head h) walks the keys [k_lo[t], k_hi[t]]
// with an online softmax (running max and sum, float), accumulating the
// output in registers; the n×n_kv scores never exist in memory.
//
// Backward recomputes the weights from the saved lse,
// p = exp(scale·q·k − lse), in two kernels that each own what they write:
// 1. a warp per (t, h): D = dout·out (kept in scratch for kernel 2) and
//    dq = scale·Σ_j p·(dout·v_j − D)·k_j over the keys the row attends;
// 2. a warp per (key j, kv head g): every query t that attends j (scanned
//    in order) with each head of the group adds p·dout into dv_j and
//    scale·ds·q into dk_j. A key no query attends is written as zeros (its
//    k, v values are loaded but never used: they may be NaN).
#include "backend-cuda/cuda_internal.cuh"

#include <math.h>

#define ATTN_WARPS 4     // warps (rows of work) per thread block
#define ATTN_MAX_HD 512  // largest head_dim (NPL = 16)

// The shape of one attention call, as the kernels see it.
struct attn_shape {
    int64_t n, n_kv, kv_stride, n_heads, n_kv_heads, hd;
    float scale;
};

// ---- warp helpers ----

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// r = the lane's elements of p[0, hd) (zeros past hd).
template <int NPL>
__device__ __forceinline__ void row_load(float (&r)[NPL], const float *p, int64_t hd, int lane) {
#pragma unroll
    for (int i = 0; i < NPL; i++) {
        int64_t d = lane + 32 * i;
        r[i] = d < hd ? p[d] : 0.0f;
    }
}

template <int NPL>
__device__ __forceinline__ void row_store(float *p, const float (&r)[NPL], int64_t hd, int lane) {
#pragma unroll
    for (int i = 0; i < NPL; i++) {
        int64_t d = lane + 32 * i;
        if (d < hd) p[d] = r[i];
    }
}

// a·b over the whole row (every lane gets the same bits).
template <int NPL>
__device__ __forceinline__ float row_dot(const float (&a)[NPL], const float (&b)[NPL]) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NPL; i++) s += a[i] * b[i];
    return warp_sum(s);
}

// ---- forward ----

template <int NPL>
__global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_fwd_kernel(float *out, const float *q, const float *k, const float *v, const int32_t *k_lo,
                    const int32_t *k_hi, float *lse, attn_shape s) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (row >= s.n * s.n_heads) return; // the whole warp: row is warp-uniform
    int64_t t = row / s.n_heads, h = row % s.n_heads;
    int64_t koff = (h / (s.n_heads / s.n_kv_heads)) * s.hd;

    float qr[NPL], acc[NPL], kr[NPL], vr[NPL];
    row_load(qr, q + row * s.hd, s.hd, lane);
#pragma unroll
    for (int i = 0; i < NPL; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int64_t lo = k_lo[t], hi = k_hi[t];
    for (int64_t j = lo; j <= hi; j++) {
        row_load(kr, k + j * s.kv_stride + koff, s.hd, lane);
        row_load(vr, v + j * s.kv_stride + koff, s.hd, lane);
        float sc = s.scale * row_dot(qr, kr);
        float mn = fmaxf(m, sc);
        float c = mn == m ? 1.0f : expf(m - mn); // rescale of what came before
        float p = expf(sc - mn);
        l = l * c + p;
#pragma unroll
        for (int i = 0; i < NPL; i++) acc[i] = acc[i] * c + p * vr[i];
        m = mn;
    }
#pragma unroll
    for (int i = 0; i < NPL; i++) acc[i] /= l;
    row_store(out + row * s.hd, acc, s.hd, lane);
    if (lse && lane == 0) lse[row] = m + logf(l);
}

// ---- backward, kernel 1: D and dq per (query, head) ----

template <int NPL>
__global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_bwd_dq_kernel(float *dq, float *Dbuf, const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse, const int32_t *k_lo, const int32_t *k_hi,
                       attn_shape s) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (row >= s.n * s.n_heads) return;
    int64_t t = row / s.n_heads, h = row % s.n_heads;
    int64_t koff = (h / (s.n_heads / s.n_kv_heads)) * s.hd;

    float qr[NPL], gr[NPL], acc[NPL], kr[NPL], vr[NPL];
    row_load(qr, q + row * s.hd, s.hd, lane);
    row_load(gr, dout + row * s.hd, s.hd, lane);
    row_load(kr, out + row * s.hd, s.hd, lane); // out, only for D
    float D = row_dot(gr, kr);
    float L = lse[row];
#pragma unroll
    for (int i = 0; i < NPL; i++) acc[i] = 0.0f;
    int64_t lo = k_lo[t], hi = k_hi[t];
    for (int64_t j = lo; j <= hi; j++) {
        row_load(kr, k + j * s.kv_stride + koff, s.hd, lane);
        row_load(vr, v + j * s.kv_stride + koff, s.hd, lane);
        float p = expf(s.scale * row_dot(qr, kr) - L);
        float ds = p * (row_dot(gr, vr) - D);
        float c = s.scale * ds;
#pragma unroll
        for (int i = 0; i < NPL; i++) acc[i] += c * kr[i];
    }
    row_store(dq + row * s.hd, acc, s.hd, lane);
    if (lane == 0) Dbuf[row] = D;
}

// ---- backward, kernel 2: dk, dv per (key, kv head) ----

template <int NPL>
__global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_bwd_dkv_kernel(float *dk, float *dv, const float *Dbuf, const float *dout, const float *q, const float *k,
                        const float *v, const float *lse, const int32_t *k_lo, const int32_t *k_hi,
                        attn_shape s) {
    int lane = threadIdx.x & 31;
    int64_t item = (int64_t)blockIdx.x * ATTN_WARPS + threadIdx.x / 32;
    if (item >= s.n_kv * s.n_kv_heads) return;
    int64_t j = item / s.n_kv_heads, g = item % s.n_kv_heads;
    int64_t group = s.n_heads / s.n_kv_heads, koff = g * s.hd;

    float kr[NPL], vr[NPL], dka[NPL], dva[NPL], qr[NPL], gr[NPL];
    row_load(kr, k + j * s.kv_stride + koff, s.hd, lane); // used only where a query attends j
    row_load(vr, v + j * s.kv_stride + koff, s.hd, lane);
#pragma unroll
    for (int i = 0; i < NPL; i++) dka[i] = dva[i] = 0.0f;
    for (int64_t t = 0; t < s.n; t++) {
        if (!(k_lo[t] <= j && j <= k_hi[t])) continue;
        for (int64_t h = g * group; h < (g + 1) * group; h++) {
            int64_t row = t * s.n_heads + h;
            row_load(qr, q + row * s.hd, s.hd, lane);
            row_load(gr, dout + row * s.hd, s.hd, lane);
            float p = expf(s.scale * row_dot(qr, kr) - lse[row]);
            float ds = p * (row_dot(gr, vr) - Dbuf[row]);
            float c = s.scale * ds;
#pragma unroll
            for (int i = 0; i < NPL; i++) {
                dva[i] += p * gr[i];
                dka[i] += c * qr[i];
            }
        }
    }
    row_store(dk + j * s.kv_stride + koff, dka, s.hd, lane);
    row_store(dv + j * s.kv_stride + koff, dva, s.hd, lane);
}

// ---- launchers ----

// Elements per lane for head_dim hd: 1, 2, 4, 8 or 16; 0 when unsupported.
static int attn_npl(int64_t hd) {
    for (int npl = 1; npl <= ATTN_MAX_HD / 32; npl *= 2)
        if (hd <= 32 * npl) return npl;
    return 0;
}

static unsigned attn_grid(int64_t rows) { return (unsigned)((rows + ATTN_WARPS - 1) / ATTN_WARPS); }

template <int NPL>
static void attn_fwd_launch(gg_backend *be, float *out, const float *q, const float *k, const float *v,
                            const int32_t *k_lo, const int32_t *k_hi, float *lse, const attn_shape &s) {
    attn_fwd_kernel<NPL><<<attn_grid(s.n * s.n_heads), ATTN_WARPS * 32, 0, cuda_stream(be)>>>(out, q, k, v, k_lo,
                                                                                            k_hi, lse, s);
    CUDA_LAUNCHED(be, "attention");
}

template <int NPL>
static void attn_bwd_launch(gg_backend *be, float *dq, float *dk, float *dv, float *Dbuf, const float *dout,
                            const float *q, const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *k_lo, const int32_t *k_hi, const attn_shape &s) {
    if (s.n > 0) {
        attn_bwd_dq_kernel<NPL><<<attn_grid(s.n * s.n_heads), ATTN_WARPS * 32, 0, cuda_stream(be)>>>(
            dq, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s);
        CUDA_LAUNCHED(be, "attention_bwd dq");
    }
    if (s.n_kv > 0) {
        attn_bwd_dkv_kernel<NPL><<<attn_grid(s.n_kv * s.n_kv_heads), ATTN_WARPS * 32, 0, cuda_stream(be)>>>(
            dk, dv, Dbuf, dout, q, k, v, lse, k_lo, k_hi, s);
        CUDA_LAUNCHED(be, "attention_bwd dk dv");
    }
}

void cuda_attention(gg_backend *be, float *out, const float *q, const float *k, const float *v, int64_t n,
                    int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                    const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse) {
    if (n <= 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0) return;
    attn_shape s = {n, n_kv, kv_stride, n_heads, n_kv_heads, head_dim, scale};
    switch (attn_npl(head_dim)) {
    case 1: attn_fwd_launch<1>(be, out, q, k, v, k_lo, k_hi, lse, s); break;
    case 2: attn_fwd_launch<2>(be, out, q, k, v, k_lo, k_hi, lse, s); break;
    case 4: attn_fwd_launch<4>(be, out, q, k, v, k_lo, k_hi, lse, s); break;
    case 8: attn_fwd_launch<8>(be, out, q, k, v, k_lo, k_hi, lse, s); break;
    case 16: attn_fwd_launch<16>(be, out, q, k, v, k_lo, k_hi, lse, s); break;
    default: cuda_note(be, cudaErrorInvalidValue, "attention (head_dim above 512)");
    }
}

void cuda_attention_bwd(gg_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse, int64_t n,
                        int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                        const int32_t *k_lo, const int32_t *k_hi, float scale) {
    if (n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || (n <= 0 && n_kv <= 0)) return;
    attn_shape s = {n < 0 ? 0 : n, n_kv < 0 ? 0 : n_kv, kv_stride, n_heads, n_kv_heads, head_dim, scale};
    int npl = attn_npl(head_dim);
    if (!npl) {
        cuda_note(be, cudaErrorInvalidValue, "attention_bwd (head_dim above 512)");
        return;
    }
    size_t dbytes = (size_t)(s.n * n_heads) * sizeof(float);
    float *Dbuf = (float *)cuda_scratch(be, dbytes ? dbytes : sizeof(float));
    if (!Dbuf) return; // noted by cuda_scratch
    switch (npl) {
    case 1: attn_bwd_launch<1>(be, dq, dk, dv, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s); break;
    case 2: attn_bwd_launch<2>(be, dq, dk, dv, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s); break;
    case 4: attn_bwd_launch<4>(be, dq, dk, dv, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s); break;
    case 8: attn_bwd_launch<8>(be, dq, dk, dv, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s); break;
    default: attn_bwd_launch<16>(be, dq, dk, dv, Dbuf, dout, q, k, v, out, lse, k_lo, k_hi, s); break;
    }
}
