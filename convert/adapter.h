/* adapter.h — LoRA adapters on the host: loading a PEFT adapter folder
 * (adapter_config.json + adapter_model.safetensors) for a given base .gg
 * model, exporting one, loading and saving .gg adapter files
 * (docs/FORMAT.md §8), and checking an adapter against a base model.
 *
 * Owns: PEFT module names → (layer, target) for every supported
 * architecture (Falcon's fused query_key_value split into q, k, v with the
 * converter's own row segments), rank_pattern / alpha_pattern, scaling
 * (alpha / r, or alpha / sqrt(r) with rslora), the .gg adapter layout and
 * its validation. A/B are always host float32 here; backends upload them.
 *
 * Errors: 0 / -1 with a gg_err naming the file and the key / tensor /
 * module at fault (one line). */
#ifndef GG_ADAPTER_H
#define GG_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/ggfmt.h"

typedef enum gg_lora_target {
    GG_LT_Q, GG_LT_K, GG_LT_V, GG_LT_O, GG_LT_GATE, GG_LT_UP, GG_LT_DOWN, GG_LT_COUNT
} gg_lora_target;

/* "q", "k", "v", "o", "gate", "up", "down"; "?" when out of range. */
const char *gg_lora_target_name(gg_lora_target t);
/* The inverse of gg_lora_target_name: 0, or -1 (no message) for an unknown name. */
int gg_lora_target_from_name(const char *name, gg_lora_target *out);
/* The canonical base weight a target adapts: "layers.N.attn.q.weight",
 * "layers.N.mlp.gate.weight" (docs/FORMAT.md §7). Returns buf. */
const char *gg_lora_weight_name(char *buf, size_t cap, int64_t layer, gg_lora_target t);
/* The module part of that name: "layers.N.attn.q" (adapter tensor and
 * per-module metadata names are built from it). Returns buf. */
const char *gg_lora_module_name(char *buf, size_t cap, int64_t layer, gg_lora_target t);

typedef struct gg_adapter_tensor {
    int64_t layer;
    gg_lora_target target;
    int64_t r, in, out; /* A is [r, in], B is [out, r] (PEFT lora_A / lora_B layout) */
    float *a, *b;       /* host float32, owned */
    double alpha;       /* this module's alpha (alpha_pattern or the global one) */
    float scale;        /* alpha / r, or alpha / sqrt(r) with use_rslora */
} gg_adapter_tensor;

typedef struct gg_adapter {
    char label[256];           /* the path it came from (for messages) */
    char arch[16];             /* general.architecture of the base it is for */
    int64_t r;                 /* global values */
    double alpha;
    int rslora;
    uint64_t base_fingerprint; /* model.fingerprint of the base; 0 when unknown */
    char source[256];          /* provenance (adapter.source), "" when unknown */
    size_t n;
    gg_adapter_tensor *t;      /* sorted by (layer, target) */
} gg_adapter;

/* The scale of a module: alpha / r, or alpha / sqrt(r) when rslora. */
float gg_lora_scale(double alpha, int64_t r, int rslora);

/* A PEFT folder (adapter_config.json + adapter_model.safetensors; an
 * adapter_model.bin alone is refused with "convert to safetensors") for the
 * base model `base` (an open .gg model): maps PEFT module names to
 * (layer, target) for the base's architecture, checks every shape against
 * the base's tensors, and records the base's fingerprint. */
int gg_adapter_load_peft(gg_adapter **out, const char *dir, const gg_file *base, gg_err *err);

/* A .gg adapter file (docs/FORMAT.md §8), fully validated: kind, keys,
 * every A/B pair present and consistent, tensor checksums, finite values. */
int gg_adapter_load_gg(gg_adapter **out, const char *path, gg_err *err);

/* Check an adapter (from either source) against a base model: same
 * architecture, fingerprint equal when the adapter has one, every
 * (layer, target) exists in the base with in == weight cols and
 * out == weight rows. One line naming the first mismatch. */
int gg_adapter_check_base(const gg_adapter *a, const gg_file *base, gg_err *err);

/* Write a .gg adapter (atomic via gg_writer: PATH.tmp, fsync, rename).
 * Validates the struct first (sorted, unique, shapes, finite values). */
int gg_adapter_save_gg(const gg_adapter *a, const char *path, gg_err *err);

/* Export to a PEFT folder DIR (created, with its parents, if missing) that
 * PEFT's PeftModel.from_pretrained loads as a LoRA adapter, and that
 * gg_adapter_load_peft loads back bit-identically:
 *   DIR/adapter_model.safetensors  F32 tensors `base_model.model.<module>.
 *     lora_{A,B}.weight`, "__metadata__": {"format": "pt"};
 *   DIR/adapter_config.json  peft_type LORA, task_type CAUSAL_LM, r,
 *     lora_alpha (the adapter's global r / alpha), use_rslora, bias "none",
 *     lora_dropout 0.0 (not recorded in gg adapters; irrelevant to
 *     inference), target_modules, rank_pattern / alpha_pattern for modules
 *     whose r / alpha differ from the global ones (keyed by the short module
 *     name when every such module agrees, else by full module names),
 *     base_model_name_or_path (base_model_name, or null when NULL), and
 *     fan_in_fan_out false, init_lora_weights true, inference_mode true,
 *     modules_to_save / layers_to_transform / layers_pattern null.
 * target_modules lists the short HF names ("q_proj", "down_proj";
 * "query_key_value", "dense", ... for falcon) when every layer (of the base
 * when given, else 0..the last adapted layer) adapts the same set, and the
 * full module names ("model.layers.3.self_attn.q_proj") otherwise.
 * Both files are written atomically (NAME.tmp, fsync, rename).
 *
 * Falcon: PEFT adapts the fused query_key_value, gg the split q, k, v, and
 * the row layout of the fused weight depends on the base's config, so a
 * falcon adapter with q/k/v modules needs the base (the _base variant; the
 * plain one refuses it with a message saying so). When a layer's q, k, v
 * share one A (as after loading a PEFT adapter) the export is that A and the
 * rows of B put back in place: exact. Otherwise (independently trained, or
 * only some of q/k/v) the fused module gets rank R = the sum of the parts'
 * ranks: A stacks the parts' A, B is block-diagonal (zeros elsewhere), and
 * rank_pattern / alpha_pattern give R and the alpha that keeps the scale
 * (alpha·R/r, or alpha·sqrt(R/r) with rslora): the same ΔW, loaded back by
 * gg as rank-R q, k, v. The parts of one layer must then share one scale.
 * A gate target on falcon (which has no gate) is an error. */
int gg_adapter_save_peft(const gg_adapter *a, const char *dir, const char *base_model_name, gg_err *err);
/* The same, checked against base first (gg_adapter_check_base); base may be
 * NULL. Needed for falcon q/k/v; for other architectures it also lets
 * target_modules use short names only when all of the base's layers are
 * adapted. */
int gg_adapter_save_peft_base(const gg_adapter *a, const char *dir, const char *base_model_name, const gg_file *base,
                              gg_err *err);

/* Distinct targets present, in enum order, as a bit set (1u << target). */
unsigned gg_adapter_target_mask(const gg_adapter *a);

void gg_adapter_free(gg_adapter *a);

#endif
