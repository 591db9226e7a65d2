/* model.h — the canonical decoder-only transformer: loading a .gg model onto
 * a backend, LoRA adapters applied unmerged, and the forward pass with a KV
 * cache (a session).
 *
 * One decoder for every architecture the converter writes (llama, mistral,
 * qwen2, gemma, falcon), parametrised by gg_model_config (read from the
 * model.* metadata keys, docs/FORMAT.md §6) and the canonical tensors (§7).
 * All compute goes through gg_backend (models/backend.h); on the CPU the
 * weights are used in place in the mmapped file.
 *
 * Errors: 0 / -1 with gg_err naming the file and the key / tensor at fault. */
#ifndef GG_MODEL_H
#define GG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/ggfmt.h"
#include "models/backend.h"

typedef enum gg_mnorm { GG_MNORM_RMS, GG_MNORM_RMS_1P, GG_MNORM_LAYER } gg_mnorm;
typedef enum gg_mmlp { GG_MMLP_SWIGLU, GG_MMLP_GEGLU_TANH, GG_MMLP_GELU } gg_mmlp;
typedef enum gg_mrope { GG_MROPE_DEFAULT, GG_MROPE_LLAMA3, GG_MROPE_LINEAR } gg_mrope;

typedef struct gg_model_config {
    char arch[16];
    int64_t vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn, context_length;
    gg_mnorm norm;
    float norm_eps;
    gg_mmlp mlp;
    int parallel_attn, tied_embeddings;
    float embed_scale;
    gg_mrope rope;
    double rope_theta, rope_factor, rope_low_freq, rope_high_freq;
    int64_t rope_original_context;
    int64_t sliding_window; /* 0 = none */
    int64_t bos_id, eos_id; /* -1 = none */
    uint64_t fingerprint;
} gg_model_config;

/* Read and check the model.* keys of a .gg model file. */
int gg_model_config_read(gg_model_config *c, const gg_file *f, gg_err *err);

/* The linear layers of a block, in this order everywhere (adapters too). */
typedef enum gg_linear { GG_LIN_Q, GG_LIN_K, GG_LIN_V, GG_LIN_O, GG_LIN_GATE, GG_LIN_UP, GG_LIN_DOWN, GG_LIN_COUNT } gg_linear;
extern const char *const gg_linear_names[GG_LIN_COUNT]; /* "q", ..., "down" */
/* Canonical tensor name of a block's linear weight: "layers.3.attn.q.weight". */
void gg_linear_tensor_name(char *buf, size_t len, int64_t layer, gg_linear l);

typedef struct gg_model gg_model;

/* Load the model of an open .gg file onto backend be. f and be must outlive
 * the model (CPU weights point into f's mapping). Checks every tensor's
 * presence, type and shape. */
int gg_model_load(gg_model **out, const gg_file *f, gg_backend *be, gg_err *err);
void gg_model_free(gg_model *m);
const gg_model_config *gg_model_cfg(const gg_model *m);
gg_backend *gg_model_backend(const gg_model *m);
/* The type of the linear weights (that of layer 0's q). */
gg_type gg_model_weight_type(const gg_model *m);
/* Shape [rows, cols] of linear l of a layer (0 rows if the model has none,
 * e.g. gate of a plain GELU MLP). */
void gg_model_linear_shape(const gg_model *m, gg_linear l, int64_t *rows, int64_t *cols);

/* ---- LoRA ---- */
/* One adapted linear layer, host float32: A [r, in], B [out, r] (PEFT
 * layout); y += scale · (x Aᵀ) Bᵀ. */
typedef struct gg_lora_module {
    int64_t layer;
    gg_linear target;
    int64_t r;
    const float *a, *b;
    float scale;
} gg_lora_module;

typedef struct gg_lora gg_lora;

/* Upload an adapter's modules for model m, checking each against the
 * layer's shape; label names the adapter in errors. */
int gg_lora_new(gg_lora **out, gg_model *m, const gg_lora_module *mods, size_t n, const char *label,
                gg_err *err);
void gg_lora_free(gg_lora *l);

/* ---- sessions: a KV cache and the scratch of one sequence ---- */
typedef struct gg_session gg_session;

/* n_ctx: KV cache slots (<= the model's context length); max_batch: most
 * tokens per gg_session_eval step (longer inputs are split). */
int gg_session_new(gg_session **out, gg_model *m, int64_t n_ctx, int64_t max_batch, gg_err *err);
void gg_session_free(gg_session *s);

/* Adapters applied from the next eval on (each with its own user scale,
 * multiplying the adapter's own alpha/r). n = 0 removes them. The
 * adapters must outlive their use. */
int gg_session_set_adapters(gg_session *s, gg_lora *const *l, const float *scales, size_t n, gg_err *err);

/* Tokens in the cache. */
int64_t gg_session_pos(const gg_session *s);
/* Forget everything after the first n_keep tokens. */
void gg_session_truncate(gg_session *s, int64_t n_keep);

/* Feed n tokens after those in the cache. ids are checked against the
 * vocabulary and the context. logits (host, may be NULL): with all_logits,
 * [n, vocab] — every position; else [vocab] — the last position only. */
int gg_session_eval(gg_session *s, const int32_t *ids, int64_t n, float *logits, int all_logits, gg_err *err);

/* ---- batches: one forward over several sessions ---- */
/* Scratch for forwards of up to max_tokens rows over any sessions of one
 * model. All sessions' new tokens are concatenated as rows, so each linear
 * layer is one matmul over every row (the weights are read once per step);
 * RoPE uses each row's own position, K/V go to each session's own cache,
 * attention runs per session over its cache, and each session's adapters
 * (gg_session_set_adapters) apply to its own rows only (rows of sessions
 * with the same adapters share one LoRA gemm pair). A batch serves one
 * thread at a time; its sessions must not be evaluated concurrently. */
typedef struct gg_batch gg_batch;

int gg_batch_new(gg_batch **out, gg_model *m, int64_t max_tokens, gg_err *err);
void gg_batch_free(gg_batch *b);
/* Rows the batch holds. */
int64_t gg_batch_capacity(const gg_batch *b);

/* Feed n[i] >= 1 tokens ids[i] to session ss[i] (distinct sessions of the
 * batch's model), for i < n_seq; Σ n[i] <= the capacity. Everything is
 * checked first (nothing is evaluated on error). logits (host, may be NULL):
 * per session in order, [n[i], vocab] when all_logits[i], else [vocab] (its
 * last position), concatenated; all_logits may be NULL (last only).
 * Results equal gg_session_eval of each session alone up to float rounding
 * (the summation order of a matmul may depend on its row count). */
int gg_batch_eval(gg_batch *b, gg_session *const *ss, const int32_t *const *ids, const int64_t *n, size_t n_seq,
                  float *logits, const int *all_logits, gg_err *err);

#endif
