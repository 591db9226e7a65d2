/* cpu_internal.h — shared between the CPU backend's files: its context and
 * the op implementations each file provides (cpu_backend.c assembles the
 * ops table). Not for use outside backend-cpu/ (tests excepted). */
#ifndef GG_CPU_INTERNAL_H
#define GG_CPU_INTERNAL_H

#include "backend-cpu/pool.h"
#include "models/backend.h"

typedef struct cpu_ctx {
    gg_pool *pool;
    int simd; /* GG_SIMD_* level the kernels use (ggfmt/quant.h) */
    /* matmul_int8.c's buffers, kept between calls (grow only; a backend
     * runs one op at a time, as its pool does) */
    void *i8_buf;
    size_t i8_cap;
} cpu_ctx;

static inline cpu_ctx *cpu_ctx_of(gg_backend *be) { return (cpu_ctx *)be->ctx; }

/* Cap the SIMD level of the CPU kernels (tests: run every path); returns the
 * level now in use. */
int gg_cpu_simd_cap(gg_backend *be, int level);

/* ---- matmul.c / matmul_simd.c: weights, matmuls, GEMM, embedding ---- */
int cpu_weight_init(gg_backend *be, gg_weight *w, gg_type t, int64_t rows, int64_t cols,
                    const void *host_data, gg_err *err);
void cpu_weight_free(gg_backend *be, gg_weight *w);
void cpu_matmul(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                const float *bias, float beta);
void cpu_matmul_dx(gg_backend *be, float *dx, const float *dy, int64_t n, const gg_weight *w, float beta);
void cpu_gemm(gg_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void cpu_embed(gg_backend *be, float *out, const gg_weight *w, const int32_t *ids, int64_t n, float scale);

/* ---- matmul_int8.c: the int8 form of matmul (ref.h gg_ref_matmul_int8) ---- */
int cpu_int8_supported(void); /* this CPU has AVX-512 VNNI */
/* 0 when done; -1 when the weight type, the CPU or memory rule it out (the
 * caller then runs the float path). */
int cpu_matmul_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                    const float *bias, float beta);
/* gemv_int8.c: the same for n = 1..4 (decode), streaming the weights once;
 * 0 when done, -1 when ruled out as above (or n > 4). */
int cpu_gemv_int8(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w,
                  const float *bias, float beta);

/* ---- ops.c: norms, RoPE, attention, activations, softmax, selection ---- */
void cpu_rmsnorm(gg_backend *be, float *out, const float *x, const float *w, int64_t n, int64_t dim,
                 float eps, int plus_one);
void cpu_layernorm(gg_backend *be, float *out, const float *x, const float *w, const float *b, int64_t n,
                   int64_t dim, float eps);
void cpu_rope(gg_backend *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
              const int32_t *pos, const float *inv_freq, float attn_factor);
void cpu_attention(gg_backend *be, float *out, const float *q, const float *k, const float *v, int64_t n,
                   int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse);
void cpu_act(gg_backend *be, float *out, const float *x, int64_t n, gg_act a);
void cpu_glu(gg_backend *be, float *out, const float *gate, const float *up, int64_t n, gg_act a);
void cpu_softmax(gg_backend *be, float *x, int64_t rows, int64_t cols);
void cpu_add(gg_backend *be, float *y, const float *a, const float *b, int64_t n);
void cpu_scale(gg_backend *be, float *y, const float *x, float s, int64_t n);
void cpu_argmax(gg_backend *be, int32_t *ids, const float *x, int64_t rows, int64_t cols);
void cpu_topk(gg_backend *be, float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k);

/* ---- ops_bwd.c: backward of norms, activations, attention ---- */
void cpu_rmsnorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                     int64_t dim, float eps, int plus_one, float beta);
void cpu_layernorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                       int64_t dim, float eps, float beta);
void cpu_act_bwd(gg_backend *be, float *dx, const float *dy, const float *x, int64_t n, gg_act a);
void cpu_glu_bwd(gg_backend *be, float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                 int64_t n, gg_act a);
void cpu_attention_bwd(gg_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                       const float *k, const float *v, const float *out, const float *lse, int64_t n,
                       int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                       const int32_t *k_lo, const int32_t *k_hi, float scale);

/* ---- optim.c: loss, dropout, reductions, optimizers ---- */
void cpu_cross_entropy(gg_backend *be, float *loss, float *logits, const int32_t *labels, int64_t rows,
                       int64_t cols, float grad_scale);
void cpu_dropout(gg_backend *be, float *out, const float *x, int64_t n, float p, uint64_t seed);
void cpu_sumsq(gg_backend *be, float *out, const float *x, int64_t n);
void cpu_adamw(gg_backend *be, float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp);
void cpu_adamw8bit(gg_backend *be, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                   float *v_absmax, int64_t n, const gg_adamw_hp *hp);

#endif
