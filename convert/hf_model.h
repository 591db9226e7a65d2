/* hf_model.h — Hugging Face config.json → gg's canonical model description,
 * and HF tensor names → canonical tensors.
 *
 * Owns: parsing config.json for LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM, GemmaForCausalLM, FalconForCausalLM (multi_query 7B
 * layout, new_decoder_architecture grouped 40B layout, classic per-head
 * interleaved layout), in both config styles (classic rope_theta /
 * rope_scaling / torch_dtype and new rope_parameters / dtype); the
 * canonical tensor names and the row segments that split fused weights;
 * writing the model.* metadata keys (docs/FORMAT.md lists them).
 *
 * Canonical tensor names (the engine sees only these):
 *   embed.weight                      [vocab, hidden]
 *   layers.N.attn_norm.weight / .bias [hidden]
 *   layers.N.attn.{q,k,v,o}.weight    q:[heads*hd, hidden] k,v:[kv*hd, hidden] o:[hidden, heads*hd]
 *   layers.N.attn.{q,k,v,o}.bias      (when the checkpoint has them)
 *   layers.N.mlp_norm.weight / .bias  (absent for Falcon-7B style: one norm feeds both)
 *   layers.N.mlp.{gate,up,down}.weight / .bias  (gate absent for plain GELU MLPs)
 *   final_norm.weight / .bias
 *   lm_head.weight                    (absent when embeddings are tied)
 * q and k rows stay in the HF rotate-half (NeoX) RoPE layout.
 *
 * Errors: 0 / -1 with gg_err naming the file and the key / tensor at fault. */
#ifndef GG_HF_MODEL_H
#define GG_HF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "convert/safetensors.h"
#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

typedef enum gg_norm_kind { GG_NORM_RMS, GG_NORM_RMS_1P, GG_NORM_LAYER } gg_norm_kind;
typedef enum gg_mlp_kind { GG_MLP_SWIGLU, GG_MLP_GEGLU_TANH, GG_MLP_GELU } gg_mlp_kind;
typedef enum gg_rope_kind { GG_ROPE_DEFAULT, GG_ROPE_LLAMA3, GG_ROPE_LINEAR } gg_rope_kind;
typedef enum gg_falcon_qkv {
    GG_FALCON_NONE = 0,        /* not falcon: separate q/k/v */
    GG_FALCON_MULTI_QUERY,     /* [(heads + 2) * hd]: q heads, then k, then v */
    GG_FALCON_GROUPED,         /* new_decoder_architecture: per kv group [q*(heads/kv), k, v] */
    GG_FALCON_INTERLEAVED,     /* neither: per head [q, k, v] */
} gg_falcon_qkv;

typedef struct gg_hf_config {
    char hf_class[64];    /* "LlamaForCausalLM" */
    char arch[16];        /* canonical family: llama mistral qwen2 gemma falcon */
    char dtype[16];       /* declared dtype: "bfloat16", ... ("" if absent) */
    int64_t vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, head_dim, ffn_size;
    int64_t context_length; /* max_position_embeddings */
    gg_norm_kind norm;
    double norm_eps;
    gg_mlp_kind mlp;
    int parallel_attn;    /* falcon: attention and MLP read the same input */
    int tied_embeddings;
    int attn_bias;        /* q/k/v (and for llama attention_bias: o) biases present */
    int mlp_bias;
    double embed_scale;   /* gemma: sqrt(hidden); else 1 */
    gg_rope_kind rope;
    double rope_theta, rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_context;
    int64_t sliding_window; /* 0 = none */
    int64_t bos_id, eos_id; /* -1 = none */
    gg_falcon_qkv falcon_qkv;
} gg_hf_config;

/* Parse config.json text; label names it in errors. */
int gg_hf_config_parse(gg_hf_config *cfg, const char *json, size_t len, const char *label, gg_err *err);
int gg_hf_config_load(gg_hf_config *cfg, const char *path, gg_err *err);

typedef struct gg_row_seg {
    uint64_t row0, nrows;
} gg_row_seg;

typedef enum gg_canon_role {
    GG_ROLE_LINEAR,    /* 2-D weight of a layer's linear map (quantizable) */
    GG_ROLE_EMBED,     /* embed.weight, lm_head.weight */
    GG_ROLE_VECTOR,    /* norms and biases (stay f32) */
} gg_canon_role;

typedef struct gg_canon_tensor {
    char name[96];
    gg_canon_role role;
    const gg_st_tensor *src;
    uint32_t ndim;       /* 1 or 2 */
    uint64_t shape[2];   /* after slicing */
    size_t nseg;         /* 0: the whole source; else rows of src (dim 0) concatenated */
    gg_row_seg *seg;
} gg_canon_tensor;

/* Map every tensor of the checkpoint to canonical tensors, checking shapes
 * against the config. Unknown or missing tensors are errors (naming them);
 * with tied embeddings an lm_head.weight in the checkpoint is dropped. */
int gg_canon_map(const gg_hf_config *cfg, const gg_st_set *st, gg_canon_tensor **out, size_t *n,
                 gg_err *err);
void gg_canon_free(gg_canon_tensor *t, size_t n);

/* Write the model.* metadata keys (architecture and hyper-parameters). */
int gg_hf_config_to_meta(const gg_hf_config *cfg, gg_writer *w, gg_err *err);

/* The rows of q (which 0), k (1) or v (2) inside Falcon's fused
 * query_key_value weight (dim 0, [(heads + 2*kv_heads) * head_dim] rows),
 * for cfg->falcon_qkv: exactly the segments gg_canon_map uses (adjacent
 * segments merged). *seg is malloc'd (caller frees); -1 with a message when
 * cfg is not a Falcon config or on out-of-memory. Used to split a LoRA B
 * matrix of query_key_value the same way as the base weight. */
int gg_falcon_qkv_segs(const gg_hf_config *cfg, int which, gg_row_seg **seg, size_t *nseg, gg_err *err);

#endif
