/* ref.h — scalar reference implementations of every gg_backend op: the
 * definition each backend (CPU fast paths, CUDA) is tested against.
 *
 * Plain loops over host memory, one thread, reductions accumulated in
 * double; no SIMD, no BLAS. Arguments mean what they mean in
 * models/backend.h, except that a weight is given as (type, host bytes in
 * the container layout, rows, cols) and dequantized with
 * gg_dequantize_rows_ref. ref_ops.c and ref_matmul.c implement them. */
#ifndef GG_REF_H
#define GG_REF_H

#include <stdint.h>

#include "ggfmt/quant.h"
#include "models/backend.h"

/* ref_matmul.c */
void gg_ref_matmul(float *y, const float *x, int64_t n, gg_type t, const void *w, int64_t rows, int64_t cols,
                   const float *bias, float beta);
void gg_ref_matmul_dx(float *dx, const float *dy, int64_t n, gg_type t, const void *w, int64_t rows,
                      int64_t cols, float beta);
void gg_ref_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The int8 form of matmul (gg_backend.int8_matmul; q8 and nf4 weights only):
 * x is quantized per token and 64-column block to int8, q = rne(x·127/amax)
 * with scale d = amax/127 (0 for an all-zero block); weights are int8 too:
 * q8's values with their f16 block scale, nf4 codes as rne(127·code) with
 * scale a'_b/127. Per block the integer dot product is exact, and
 *     y = Σ_b fmaf((float)dot_b, d_b·dw_b, acc)   (in block order, f32)
 * then + bias, + beta·y. The CPU kernels match this bit for bit. */
void gg_ref_matmul_int8(float *y, const float *x, int64_t n, gg_type t, const void *w, int64_t rows,
                        int64_t cols, const float *bias, float beta);
void gg_ref_embed(float *out, gg_type t, const void *w, int64_t rows, int64_t cols, const int32_t *ids,
                  int64_t n, float scale);

/* ref_ops.c */
void gg_ref_rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps, int plus_one);
void gg_ref_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, int64_t dim,
                      float eps);
void gg_ref_rope(float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                 const float *inv_freq, float attn_factor);
void gg_ref_attention(float *out, const float *q, const float *k, const float *v, int64_t n, int64_t n_kv,
                      int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                      const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse);
float gg_ref_act1(float x, gg_act a); /* one element */
void gg_ref_act(float *out, const float *x, int64_t n, gg_act a);
void gg_ref_glu(float *out, const float *gate, const float *up, int64_t n, gg_act a);
void gg_ref_softmax(float *x, int64_t rows, int64_t cols);
void gg_ref_add(float *y, const float *a, const float *b, int64_t n);
void gg_ref_scale(float *y, const float *x, float s, int64_t n);
void gg_ref_argmax(int32_t *ids, const float *x, int64_t rows, int64_t cols);
void gg_ref_topk(float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k);

/* ref_bwd.c: backward of norms, activations, attention */
void gg_ref_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, int64_t n, int64_t dim,
                        float eps, int plus_one, float beta);
void gg_ref_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w, int64_t n, int64_t dim,
                          float eps, float beta);
float gg_ref_act1_grad(float x, gg_act a); /* act'(x), one element */
void gg_ref_act_bwd(float *dx, const float *dy, const float *x, int64_t n, gg_act a);
void gg_ref_glu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int64_t n,
                    gg_act a);
void gg_ref_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, const float *out, const float *lse, int64_t n, int64_t n_kv,
                          int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          const int32_t *k_lo, const int32_t *k_hi, float scale);

/* ref_optim.c: loss, dropout, reductions, optimizers */
void gg_ref_cross_entropy(float *loss, float *logits, const int32_t *labels, int64_t rows, int64_t cols,
                          float grad_scale);
void gg_ref_dropout(float *out, const float *x, int64_t n, float p, uint64_t seed);
void gg_ref_sumsq(float *out, const float *x, int64_t n);
void gg_ref_adamw(float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp);
void gg_ref_adamw8bit(float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax, float *v_absmax,
                      int64_t n, const gg_adamw_hp *hp);
/* The 8-bit "dynamic" code maps of the 8-bit optimizer state, ascending:
 * signed (first moment, values in [-1, 1]) and unsigned (second moment,
 * [0, 1]); a value is stored as the index of the nearest code. */
const float *gg_ref_adam8_map(int is_signed);

#endif
