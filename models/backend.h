/* backend.h — gg_backend: the interface between the decoder (models/) and a
 * compute backend (backend-cpu/, backend-cuda/). An ops table plus buffers.
 *
 * This is the only header a backend shares with model code; it includes
 * nothing from models/ and the decoder includes no backend header. A tool
 * picks the backend at run time (--device cpu|cuda) and hands the table to
 * the model.
 *
 * Conventions of every op:
 * - Pointers are backend memory (for the CPU backend, host memory; for
 *   CUDA, device memory) obtained from alloc, or a weight's data.
 * - Activations are float32, row-major, rows = tokens. "n" is a row count.
 * - A weight is a 2-D [rows = out, cols = in] matrix of any gg_type, blocked
 *   along cols (ggfmt/quant.h); a linear layer computes y = x Wᵀ.
 * - Ops enqueue work and return nothing; they cannot fail on valid
 *   arguments (the caller validates shapes). A backend that can fail
 *   asynchronously (CUDA) reports it from sync, which every caller runs
 *   before it trusts results on the host.
 * - Outputs never alias inputs unless the op says "in place".
 * - Each op has a scalar reference in backend-cpu/ref.h that defines it;
 *   tests run every backend against those references on random data. */
#ifndef GG_BACKEND_H
#define GG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/quant.h"

typedef enum gg_act {
    GG_ACT_SILU = 0,      /* x·σ(x) */
    GG_ACT_GELU = 1,      /* x·Φ(x), erf form (torch GELU(approximate='none')) */
    GG_ACT_GELU_TANH = 2, /* tanh approximation (torch GELU(approximate='tanh')) */
} gg_act;

/* A weight matrix resident on a backend. Created by weight_init from host
 * bytes in the container layout (the CPU backend uses them in place: they
 * may live in a read-only mmap). priv is the backend's (repacked copies,
 * device pointers). */
typedef struct gg_weight {
    gg_type type;
    int64_t rows, cols;
    const void *data; /* backend memory, container layout */
    void *priv;
} gg_weight;

/* Hyper-parameters of one AdamW step (torch.optim.AdamW semantics):
 *   g' = g · grad_scale;  p ← p · (1 − lr·weight_decay);
 *   m ← β1·m + (1−β1)·g';  v ← β2·v + (1−β2)·g'²;
 *   p ← p − lr/(1−β1^step) · m / (sqrt(v)/sqrt(1−β2^step) + eps).
 * step counts from 1. grad_scale folds gradient clipping into the step. */
typedef struct gg_adamw_hp {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    int64_t step;
} gg_adamw_hp;

/* Block size of the 8-bit optimizer state (adamw8bit): each block of this
 * many moments shares one float absmax. */
#define GG_ADAM8_BLOCK 256

typedef struct gg_backend gg_backend;

struct gg_backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* the backend's own state */
    int n_threads;    /* CPU: worker threads; others: 0 */
    /* Set by the caller: matmuls of many tokens on q8 / nf4 weights may
     * quantize the activations to int8 and use integer dot products
     * (backend-cpu/ref.h gg_ref_matmul_int8). Faster where the hardware has
     * them; results differ from the float matmul by the 8-bit rounding.
     * Off (0) by default; training never sets it. */
    int int8_matmul;

    void (*destroy)(gg_backend *be);

    /* ---- memory ---- */
    /* bytes of backend memory (64-byte aligned), uninitialised; NULL with
     * err set when out of memory. */
    void *(*alloc)(gg_backend *be, size_t bytes, gg_err *err);
    void (*free)(gg_backend *be, void *p); /* NULL is a no-op */
    /* host ↔ backend copies and backend → backend copy (dst, src, bytes). */
    void (*upload)(gg_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(gg_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(gg_backend *be, void *dst, const void *src, size_t bytes);
    void (*memset0)(gg_backend *be, void *dst, size_t bytes);
    /* Wait for queued work; 0, or -1 with err naming what failed. */
    int (*sync)(gg_backend *be, gg_err *err);

    /* Make host bytes of a [rows, cols] tensor of type t (container layout,
     * gg_type_nbytes(t, rows, cols) bytes) usable as a weight. The host
     * bytes must outlive the weight on the CPU backend (zero-copy). */
    int (*weight_init)(gg_backend *be, gg_weight *w, gg_type t, int64_t rows, int64_t cols,
                       const void *host_data, gg_err *err);
    void (*weight_free)(gg_backend *be, gg_weight *w);

    /* ---- linear algebra ---- */
    /* y[n, w.rows] = beta·y + x[n, w.cols] · Wᵀ (+ bias[w.rows] if not NULL).
     * beta is 0 (y is overwritten, its old contents ignored even if NaN) or 1. */
    void (*matmul)(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                   const float *bias, float beta);
    /* The input gradient: dx[n, w.cols] = beta·dx + dy[n, w.rows] · W. */
    void (*matmul_dx)(gg_backend *be, float *dx, const float *dy, int64_t n, const gg_weight *w,
                      float beta);
    /* General f32 GEMM, row-major: C[M,N] = alpha·op(A)·op(B) + beta·C, where
     * op(A) is [M,K] (A is [K,M] when ta), op(B) is [K,N] (B is [N,K] when
     * tb); lda/ldb/ldc are row strides in floats. beta 0 ignores C's contents. */
    void (*gemm)(gg_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);

    /* ---- layers ---- */
    /* out[i, :] = scale · row ids[i] of w (any type), for i < n. ids are int32
     * in backend memory, each in [0, w.rows). */
    void (*embed)(gg_backend *be, float *out, const gg_weight *w, const int32_t *ids, int64_t n,
                  float scale);
    /* out[i] = x[i] / sqrt(mean(x[i]²) + eps) · (w, or 1 + w when plus_one).
     * In place allowed (out == x). */
    void (*rmsnorm)(gg_backend *be, float *out, const float *x, const float *w, int64_t n,
                    int64_t dim, float eps, int plus_one);
    /* out[i] = (x[i] − mean) / sqrt(var + eps) · w + b (biased variance;
     * w and b both required). In place allowed. */
    void (*layernorm)(gg_backend *be, float *out, const float *x, const float *w, const float *b,
                      int64_t n, int64_t dim, float eps);
    /* RoPE in place, HF rotate-half layout, on x[n, row_stride] holding
     * n_heads heads of head_dim from column 0: for each head and i <
     * head_dim/2, with f = (float)pos[t] · inv_freq[i] (float32 product),
     * c = cos(f)·attn_factor, s = sin(f)·attn_factor:
     *   x'[i] = x[i]·c − x[i + hd/2]·s,  x'[i + hd/2] = x[i + hd/2]·c + x[i]·s.
     * inv_freq[head_dim/2] and pos[n] (int32) are backend memory; the model
     * computes inv_freq for each scaling (default, linear, llama3). */
    void (*rope)(gg_backend *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads,
                 int64_t head_dim, const int32_t *pos, const float *inv_freq, float attn_factor);
    /* Causal attention with GQA/MQA over a key/value buffer (a KV cache, or
     * the keys of a packed batch). q[n, n_heads·hd], k and v [n_kv, n_kv_heads·hd]
     * rows with row stride kv_stride floats. Query t attends the keys j with
     * k_lo[t] <= j <= k_hi[t] (int32 arrays in backend memory; k_hi[t] < n_kv;
     * k_lo <= k_hi): k_hi is the query's own slot, k_lo its segment start
     * (or the sliding-window start). Query head h uses kv head
     * h / (n_heads / n_kv_heads). out[n, n_heads·hd] =
     * softmax(scale · q·kᵀ) · v per head. When lse is not NULL it receives
     * the log-sum-exp of the scaled scores, [n, n_heads] (for backward). */
    void (*attention)(gg_backend *be, float *out, const float *q, const float *k, const float *v,
                      int64_t n, int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads,
                      int64_t head_dim, const int32_t *k_lo, const int32_t *k_hi, float scale,
                      float *lse);
    /* out[i] = act(x[i]) for i < n (elements). In place allowed. */
    void (*act)(gg_backend *be, float *out, const float *x, int64_t n, gg_act a);
    /* Gated: out[i] = act(gate[i]) · up[i]. In place allowed (out == gate or up). */
    void (*glu)(gg_backend *be, float *out, const float *gate, const float *up, int64_t n, gg_act a);
    /* Row softmax in place on x[rows, cols]. */
    void (*softmax)(gg_backend *be, float *x, int64_t rows, int64_t cols);
    /* y = a + b (elements); in place allowed (y == a or b). */
    void (*add)(gg_backend *be, float *y, const float *a, const float *b, int64_t n);
    /* y = s · x; in place allowed. */
    void (*scale)(gg_backend *be, float *y, const float *x, float s, int64_t n);

    /* ---- backward (training; the frozen weights get no gradient) ---- */
    /* dx = beta·dx + (∂ rmsnorm(x) / ∂x)ᵀ dy, the norm as in rmsnorm
     * (weight w, 1+w when plus_one). beta is 0 or 1. */
    void (*rmsnorm_bwd)(gg_backend *be, float *dx, const float *dy, const float *x, const float *w,
                        int64_t n, int64_t dim, float eps, int plus_one, float beta);
    /* The same for layernorm (w and b as in layernorm; b does not matter). */
    void (*layernorm_bwd)(gg_backend *be, float *dx, const float *dy, const float *x, const float *w,
                          int64_t n, int64_t dim, float eps, float beta);
    /* dx[i] = dy[i] · act'(x[i]). In place allowed (dx == dy). */
    void (*act_bwd)(gg_backend *be, float *dx, const float *dy, const float *x, int64_t n, gg_act a);
    /* Gated backward of out = act(gate)·up: dgate[i] = dy[i]·up[i]·act'(gate[i]),
     * dup[i] = dy[i]·act(gate[i]). In place allowed: dgate == gate and/or
     * dup == up (each element is read before it is written). */
    void (*glu_bwd)(gg_backend *be, float *dgate, float *dup, const float *dy, const float *gate,
                    const float *up, int64_t n, gg_act a);
    /* Backward of attention (same arguments as attention; out and lse are
     * what the forward returned for these q, k, v). Writes dq [n, n_heads·hd]
     * and dk, dv [n_kv rows of stride kv_stride, first n_kv_heads·hd columns]
     * (overwritten, including key rows no query attends: zeros). */
    void (*attention_bwd)(gg_backend *be, float *dq, float *dk, float *dv, const float *dout,
                          const float *q, const float *k, const float *v, const float *out,
                          const float *lse, int64_t n, int64_t n_kv, int64_t kv_stride, int64_t n_heads,
                          int64_t n_kv_heads, int64_t head_dim, const int32_t *k_lo,
                          const int32_t *k_hi, float scale);
    /* Cross-entropy of logits[rows, cols] against labels[rows] (int32;
     * negative = ignored): loss[r] = logsumexp(row r) − logits[r, label[r]]
     * (0 when ignored), and logits replaced in place by its gradient times
     * grad_scale: grad_scale·(softmax(row) − onehot(label)) (a row of zeros
     * when ignored). Labels are in [0, cols) or negative. */
    void (*cross_entropy)(gg_backend *be, float *loss, float *logits, const int32_t *labels, int64_t rows,
                          int64_t cols, float grad_scale);
    /* Inverted dropout with a counter-based mask, identical on every
     * backend: out[i] = keep(i) ? x[i] / (1 − p) : 0, where keep(i) is
     * gg_dropout_u(seed, i) >= p (below). 0 <= p < 1. In place allowed. */
    void (*dropout)(gg_backend *be, float *out, const float *x, int64_t n, float p, uint64_t seed);
    /* out[0] = Σ x[i]² (one float in backend memory), accumulated in double
     * in a fixed order that does not depend on the thread count. */
    void (*sumsq)(gg_backend *be, float *out, const float *x, int64_t n);

    /* ---- optimizers ---- */
    /* One AdamW step (gg_adamw_hp) on n parameters p with gradient g and f32
     * moments m, v. */
    void (*adamw)(gg_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                  const gg_adamw_hp *hp);
    /* The same with both moments blockwise-quantized to 8 bits (as
     * bitsandbytes' 8-bit blockwise optimizers): m8/v8 [n] codes and
     * m_absmax/v_absmax [ceil(n / GG_ADAM8_BLOCK)] scales. Each step
     * dequantizes a block, updates as adamw, and requantizes it (m with the
     * signed dynamic map, v with the unsigned one: gg_ref_adam8_map in
     * backend-cpu/ref.h). All-zero
     * codes/absmax is the initial state. */
    void (*adamw8bit)(gg_backend *be, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                      float *v_absmax, int64_t n, const gg_adamw_hp *hp);

    /* ---- selection ---- */
    /* ids[r] = index of the largest value of row r of x[rows, cols] (the
     * first one on ties; NaN never wins). ids int32 in backend memory. */
    void (*argmax)(gg_backend *be, int32_t *ids, const float *x, int64_t rows, int64_t cols);
    /* The k largest values of each row, in descending order (ties: lower
     * index first; NaN after every number): vals[rows, k], ids[rows, k].
     * 1 <= k <= cols. */
    void (*topk)(gg_backend *be, float *vals, int32_t *ids, const float *x, int64_t rows,
                 int64_t cols, int64_t k);
};

/* The dropout hash: a uniform float in [0, 1) from (seed, index)
 * (splitmix64 of seed + index·golden ratio, top 24 bits). */
static inline float gg_dropout_u(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* Convenience: free a backend (NULL is a no-op). */
static inline void gg_backend_free(gg_backend *be) {
    if (be) be->destroy(be);
}

#endif
