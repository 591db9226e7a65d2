// cuda_internal.cuh — shared between the CUDA backend's files: its context
// (device, stream, cuBLAS handle, sticky error, scratch) and the op
// implementations each file provides; cuda_backend.cu assembles the ops
// table. Not for use outside backend-cuda/.
//
// Every op has the signature and the meaning of its gg_backend slot
// (models/backend.h); pointers are device memory; ops enqueue on the
// context's stream and never block. A launch or API error is recorded
// (the first one wins) and reported by sync.
#ifndef GG_CUDA_INTERNAL_CUH
#define GG_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "models/backend.h"

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int failed;          // an error was recorded
    char failure[256];   // its message, for sync
    void *scratch;       // grow-only device scratch (matmul tiles), stream-ordered
    size_t scratch_cap;
};

static inline cuda_ctx *cuda_ctx_of(gg_backend *be) { return (cuda_ctx *)be->ctx; }
static inline cudaStream_t cuda_stream(gg_backend *be) { return cuda_ctx_of(be)->stream; }

// A one-line message into err (NULL allowed); returns -1. The plugin does
// not link libgg, so it has its own gg_errf.
int cuda_set_err(gg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Record e (when not cudaSuccess) against `where`; the first one is kept.
void cuda_note(gg_backend *be, cudaError_t e, const char *where);
void cuda_note_blas(gg_backend *be, cublasStatus_t s, const char *where);
// After a kernel launch: record a launch error.
#define CUDA_LAUNCHED(be, where) cuda_note((be), cudaGetLastError(), (where))

// Device scratch of at least `bytes`, valid until the next call (work on
// the stream is ordered, so reuse is safe); NULL (and an error noted) when
// out of memory.
void *cuda_scratch(gg_backend *be, size_t bytes);

// Blocks of `threads` covering n elements, capped for grid-stride loops.
static inline unsigned cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

// ---- cuda_matmul.cu: weights, matmul, matmul_dx, gemm, embed ----
int cuda_weight_init(gg_backend *be, gg_weight *w, gg_type t, int64_t rows, int64_t cols, const void *host_data,
                     gg_err *err);
void cuda_weight_free(gg_backend *be, gg_weight *w);
void cuda_matmul(gg_backend *be, float *y, const float *x, int64_t n, const gg_weight *w, const float *bias,
                 float beta);
void cuda_matmul_dx(gg_backend *be, float *dx, const float *dy, int64_t n, const gg_weight *w, float beta);
void cuda_gemm(gg_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void cuda_embed(gg_backend *be, float *out, const gg_weight *w, const int32_t *ids, int64_t n, float scale);

// ---- cuda_ops.cu: norms, RoPE, activations, softmax, elementwise, selection ----
void cuda_rmsnorm(gg_backend *be, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps,
                  int plus_one);
void cuda_layernorm(gg_backend *be, float *out, const float *x, const float *w, const float *b, int64_t n,
                    int64_t dim, float eps);
void cuda_rope(gg_backend *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
               const int32_t *pos, const float *inv_freq, float attn_factor);
void cuda_act(gg_backend *be, float *out, const float *x, int64_t n, gg_act a);
void cuda_glu(gg_backend *be, float *out, const float *gate, const float *up, int64_t n, gg_act a);
void cuda_softmax(gg_backend *be, float *x, int64_t rows, int64_t cols);
void cuda_add(gg_backend *be, float *y, const float *a, const float *b, int64_t n);
void cuda_scale(gg_backend *be, float *y, const float *x, float s, int64_t n);
void cuda_rmsnorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                      int64_t dim, float eps, int plus_one, float beta);
void cuda_layernorm_bwd(gg_backend *be, float *dx, const float *dy, const float *x, const float *w, int64_t n,
                        int64_t dim, float eps, float beta);
void cuda_act_bwd(gg_backend *be, float *dx, const float *dy, const float *x, int64_t n, gg_act a);
void cuda_glu_bwd(gg_backend *be, float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                  int64_t n, gg_act a);
void cuda_dropout(gg_backend *be, float *out, const float *x, int64_t n, float p, uint64_t seed);
void cuda_sumsq(gg_backend *be, float *out, const float *x, int64_t n);
void cuda_argmax(gg_backend *be, int32_t *ids, const float *x, int64_t rows, int64_t cols);
void cuda_topk(gg_backend *be, float *vals, int32_t *ids, const float *x, int64_t rows, int64_t cols, int64_t k);

// ---- cuda_attn.cu: attention forward and backward ----
void cuda_attention(gg_backend *be, float *out, const float *q, const float *k, const float *v, int64_t n,
                    int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                    const int32_t *k_lo, const int32_t *k_hi, float scale, float *lse);
void cuda_attention_bwd(gg_backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse, int64_t n,
                        int64_t n_kv, int64_t kv_stride, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                        const int32_t *k_lo, const int32_t *k_hi, float scale);

// ---- cuda_optim.cu: loss, optimizers ----
void cuda_cross_entropy(gg_backend *be, float *loss, float *logits, const int32_t *labels, int64_t rows,
                        int64_t cols, float grad_scale);
void cuda_adamw(gg_backend *be, float *p, const float *g, float *m, float *v, int64_t n, const gg_adamw_hp *hp);
void cuda_adamw8bit(gg_backend *be, float *p, const float *g, uint8_t *m8, uint8_t *v8, float *m_absmax,
                    float *v_absmax, int64_t n, const gg_adamw_hp *hp);

#endif
