/* model_internal.h — the structs behind gg_model and gg_lora, shared by
 * model.c (loading) and decoder.c (forward pass). Not a public header. */
#ifndef GG_MODEL_INTERNAL_H
#define GG_MODEL_INTERNAL_H

#include "models/model.h"

typedef struct gg_layer {
    float *attn_norm_w, *attn_norm_b; /* backend vectors; b only for LayerNorm */
    float *mlp_norm_w, *mlp_norm_b;   /* NULL when attention and MLP share attn_norm */
    gg_weight w[GG_LIN_COUNT];        /* w[GG_LIN_GATE].data NULL for a plain GELU MLP */
    float *bias[GG_LIN_COUNT];        /* NULL when absent */
} gg_layer;

struct gg_model {
    gg_model_config cfg;
    const gg_file *file;
    gg_backend *be;
    gg_weight embed, lm_head_w;
    const gg_weight *lm_head; /* &embed when tied */
    float *final_norm_w, *final_norm_b;
    gg_layer *layers;
    float *inv_freq; /* [head_dim / 2] */
};

typedef struct gg_lora_bound {
    float *a, *b; /* backend: A [r, in], B [out, r]; NULL when not adapted */
    int64_t r;
    float scale;
} gg_lora_bound;

struct gg_lora {
    gg_backend *be;
    int64_t n_layers, max_r;
    gg_lora_bound *mods; /* [n_layers * GG_LIN_COUNT] */
};

#endif
